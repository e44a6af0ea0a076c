/// A 2-d convolution with stride, zero padding and groups (depthwise when
/// `groups == inChannels == outChannels`).
///
/// Input `[C, N, H, W]` (channel-major), output `[O, N, Ho, Wo]`; weight
/// `[O, C/groups, kh, kw]` and bias `[O]` in PyTorch's layout.
/// Implemented as im2col over the whole batch followed by one BLAS product per group.
/// Cost: 2·N·O·Ho·Wo·(C/groups)·kh·kw flops forward, twice that backward.
public final class Conv2d: Layer {
    public let kind = LayerKind.conv2d
    public let weight: Parameter
    public let bias: Parameter?
    public let stride: Int, padding: Int, groups: Int
    public var outChannels: Int { weight.value.shape[0] }
    public var inChannels: Int { weight.value.shape[1] * groups }
    public var kernelSize: (height: Int, width: Int) { (weight.value.shape[2], weight.value.shape[3]) }
    private var input: Tensor?
    private var inputShape: [Int] = []

    public init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                groups: Int = 1, bias: Bool = true, initializer: WeightInit = .pytorchDefault,
                rng: inout RandomGenerator) {
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: channels \(inChannels)→\(outChannels) are not divisible by groups \(groups)")
        let fanIn = inChannels / groups * kernelSize * kernelSize
        weight = Parameter(initialWeight([outChannels, inChannels / groups, kernelSize, kernelSize],
                                         fanIn: fanIn, initializer, rng: &rng))
        self.bias = bias ? Parameter(initialWeight([outChannels], fanIn: fanIn, .pytorchDefault, rng: &rng)) : nil
        self.stride = stride; self.padding = padding; self.groups = groups
    }

    public var parameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public var configuration: [String: Double] {
        ["in_channels": Double(inChannels), "out_channels": Double(outChannels),
         "kernel_size": Double(kernelSize.height), "stride": Double(stride), "padding": Double(padding),
         "groups": Double(groups), "bias": bias == nil ? 0 : 1]
    }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && inputShapes[0].count == 3 && inputShapes[0][0] == inChannels,
                         "Conv2d(\(inChannels)→\(outChannels)) expects inputs [\(inChannels), H, W], got \(inputShapes)")
        let g = geometry(batch: 1, inputShapes[0])
        try requireShape(g.outHeight >= 1 && g.outWidth >= 1,
                         "Conv2d: a \(kernelSize.height)×\(kernelSize.width) kernel does not fit input \(inputShapes[0]) with padding \(padding)")
        return [outChannels, g.outHeight, g.outWidth]
    }

    public func macs(inputShapes: [[Int]]) -> Int {
        let g = geometry(batch: 1, inputShapes[0])
        return outChannels * g.outHeight * g.outWidth * (inChannels / groups) * g.rowsPerChannel
    }

    func geometry(batch: Int, _ shape: [Int]) -> ConvGeometry {
        ConvGeometry(batch: batch, height: shape[1], width: shape[2], kernelHeight: kernelSize.height,
                     kernelWidth: kernelSize.width, stride: stride, padding: padding)
    }

    /// A 1×1, stride-1, unpadded convolution reads its input as the column matrix itself.
    private var isPointwise: Bool { kernelSize == (1, 1) && stride == 1 && padding == 0 }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        assert(x.rank == 4 && x.shape[0] == inChannels)
        let g = geometry(batch: x.shape[1], [x.shape[0], x.shape[2], x.shape[3]])
        let cg = inChannels / groups, og = outChannels / groups
        let k = cg * g.rowsPerChannel, l = g.columnCount
        var y = Tensor(uninitializedShape: [outChannels, g.batch, g.outHeight, g.outWidth])
        x.withUnsafeBufferPointer { xp in weight.value.withUnsafeBufferPointer { wp in
            y.withUnsafeMutableBufferPointer { yp in
                let pointwise = isPointwise
                Workspace.withBuffer(count: pointwise ? 0 : k * l) { col in
                    for grp in 0..<groups {
                        let src = xp.baseAddress! + grp * cg * g.planeCount
                        if !pointwise { im2col(src, channels: cg, g, into: col) }
                        sgemm(m: og, n: l, k: k, a: wp.baseAddress! + grp * og * k, lda: k,
                              b: pointwise ? src : UnsafePointer(col), ldb: l,
                              c: yp.baseAddress! + grp * og * l, ldc: l)
                    }
                }
                if let b = bias { addChannelBias(yp.baseAddress!, b.value, planeCount: l) }
            }
        } }
        if mode.recordsForBackward { input = x; inputShape = x.shape }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        let g = geometry(batch: inputShape[1], [inputShape[0], inputShape[2], inputShape[3]])
        let cg = inChannels / groups, og = outChannels / groups
        let k = cg * g.rowsPerChannel, l = g.columnCount
        let wantsInput = needsInputGradient.first == true
        var dx: Tensor? = wantsInput ? Tensor(shape: inputShape) : nil
        let pointwise = isPointwise
        gradOutput.withUnsafeBufferPointer { gp in
            if let b = bias { accumulateChannelSums(gp.baseAddress!, planeCount: l, into: b) }
            x.withUnsafeBufferPointer { xp in weight.value.withUnsafeBufferPointer { wp in
                weight.gradient.withUnsafeMutableBufferPointer { gw in
                    Workspace.withBuffer(count: pointwise ? 0 : k * l) { col in
                        for grp in 0..<groups {
                            let src = xp.baseAddress! + grp * cg * g.planeCount
                            let dy = gp.baseAddress! + grp * og * l
                            if !pointwise { im2col(src, channels: cg, g, into: col) }
                            // dW_g[og, k] += dY_g[og, l] · colᵀ[l, k]
                            sgemm(transB: true, m: og, n: k, k: l, a: dy, lda: l,
                                  b: pointwise ? src : UnsafePointer(col), ldb: l,
                                  beta: 1, c: gw.baseAddress! + grp * og * k, ldc: k)
                            guard wantsInput else { continue }
                            dx!.withUnsafeMutableBufferPointer { dxp in
                                let dst = dxp.baseAddress! + grp * cg * g.planeCount
                                // dcol[k, l] = W_gᵀ[k, og] · dY_g[og, l], then fold back.
                                sgemm(transA: true, m: k, n: l, k: og, a: wp.baseAddress! + grp * og * k, lda: k,
                                      b: dy, ldb: l, c: pointwise ? dst : col, ldc: l)
                                if !pointwise { col2im(col, channels: cg, g, into: dst) }
                            }
                        }
                    }
                }
            } }
        }
        return [dx]
    }
}

/// y[c, ·] += b[c] for a channel-major tensor with `planeCount` elements per channel.
func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ b: Tensor, planeCount: Int) {
    b.withUnsafeBufferPointer { bp in
        Parallel.forEach(bp.count, grain: max(1, 16_384 / max(planeCount, 1))) { chans in
            for c in chans {
                let v = bp[c], row = y + c * planeCount
                for i in 0..<planeCount { row[i] += v }
            }
        }
    }
}

/// bias.gradient[c] += Σ dy[c, ·] for a channel-major gradient.
func accumulateChannelSums(_ dy: UnsafePointer<Float>, planeCount: Int, into bias: Parameter) {
    bias.gradient.withUnsafeMutableBufferPointer { gb in
        let base = gb.baseAddress!
        Parallel.forEach(gb.count, grain: max(1, 16_384 / max(planeCount, 1))) { chans in
            for c in chans {
                var s: Float = 0
                let row = dy + c * planeCount
                for i in 0..<planeCount { s += row[i] }
                base[c] += s
            }
        }
    }
}
