/// A fully connected layer, y = x·Wᵀ + b.
///
/// Input `[N, in]`, output `[N, out]`; weight `[out, in]`, bias `[out]` (PyTorch's layout).
/// Cost: 2·N·in·out flops forward, twice that backward, all in BLAS.
public final class Linear: Layer {
    public let kind = LayerKind.linear
    public let weight: Parameter
    public let bias: Parameter?
    public var inFeatures: Int { weight.value.shape[1] }
    public var outFeatures: Int { weight.value.shape[0] }
    private var input: Tensor?
    private var parameterGradients = true

    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true,
                initializer: WeightInit = .pytorchDefault, rng: inout RandomGenerator) {
        weight = Parameter(initialWeight([outFeatures, inFeatures], fanIn: inFeatures, initializer, rng: &rng))
        self.bias = bias ? Parameter(initialWeight([outFeatures], fanIn: inFeatures, .pytorchDefault, rng: &rng)) : nil
    }

    public var parameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public var configuration: [String: Double] {
        ["in_features": Double(inFeatures), "out_features": Double(outFeatures), "bias": bias == nil ? 0 : 1]
    }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && inputShapes[0] == [inFeatures],
                         "Linear(\(inFeatures)→\(outFeatures)) expects inputs of shape [\(inFeatures)], got \(inputShapes)")
        return [outFeatures]
    }

    public func macs(inputShapes: [[Int]]) -> Int { inFeatures * outFeatures }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        assert(x.rank == 2 && x.shape[1] == inFeatures)
        let n = x.shape[0], o = outFeatures
        var y = Tensor(uninitializedShape: [n, o])
        x.withUnsafeBufferPointer { xp in weight.value.withUnsafeBufferPointer { wp in
            y.withUnsafeMutableBufferPointer { yp in
                if let b = bias {
                    b.value.withUnsafeBufferPointer { bp in
                        for r in 0..<n { (yp.baseAddress! + r * o).update(from: bp.baseAddress!, count: o) }
                    }
                }
                sgemm(transB: true, m: n, n: o, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                      b: wp.baseAddress!, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: yp.baseAddress!, ldc: o)
            }
        } }
        if mode.recordsForBackward { input = x; parameterGradients = mode.parameterGradients }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        let n = x.shape[0], o = outFeatures, i = inFeatures
        if parameterGradients { gradOutput.withUnsafeBufferPointer { gp in
            x.withUnsafeBufferPointer { xp in weight.gradient.withUnsafeMutableBufferPointer { gw in
                // dW[o, i] += dYᵀ[o, n] · X[n, i]
                sgemm(transA: true, m: o, n: i, k: n, a: gp.baseAddress!, lda: o,
                      b: xp.baseAddress!, ldb: i, beta: 1, c: gw.baseAddress!, ldc: i)
            } }
            if let b = bias {
                b.gradient.withUnsafeMutableBufferPointer { gb in
                    for r in 0..<n { for j in 0..<o { gb[j] += gp[r * o + j] } }
                }
            }
        } }
        guard needsInputGradient.first == true else { return [nil] }
        var dx = Tensor(uninitializedShape: [n, i])
        gradOutput.withUnsafeBufferPointer { gp in weight.value.withUnsafeBufferPointer { wp in
            dx.withUnsafeMutableBufferPointer { dp in
                // dX[n, i] = dY[n, o] · W[o, i]
                sgemm(m: n, n: i, k: o, a: gp.baseAddress!, lda: o, b: wp.baseAddress!, ldb: i,
                      c: dp.baseAddress!, ldc: i)
            }
        } }
        return [dx]
    }
}
