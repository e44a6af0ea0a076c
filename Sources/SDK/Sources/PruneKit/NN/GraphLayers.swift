import Foundation

/// The logistic function, y = 1 / (1 + e^(−x)), element by element. Any shape.
///
/// The squeeze-and-excitation gate of EfficientNet and MobileNetV3 (Hu et al.,
/// "Squeeze-and-Excitation Networks", CVPR 2018). It maps 0 to ½, so a pruned (zero)
/// channel does not stay zero through it: dependency groups keep whole the channels
/// that reach a layer through a sigmoid, except as a ``ChannelMul`` gate.
///
/// Backward: ∂y/∂x = y (1 − y). Cost: one pass, in parallel.
public final class Sigmoid: Layer {
    public let kind = LayerKind.sigmoid
    private var output: Tensor?

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "Sigmoid takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let y = mapElements(inputs[0], logistic)
        if mode.recordsForBackward { output = y }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let y = output else { return [nil] }
        output = nil
        guard needsInputGradient.first == true else { return [nil] }
        return [mapGradient(y, gradOutput) { s in s * (1 - s) }]
    }
}

/// The sigmoid-weighted linear unit (swish), y = x · σ(x), element by element. Any shape.
///
/// EfficientNet's activation; ONNX (opset 17, as torch exports it) writes it as
/// `Mul(x, Sigmoid(x))`. It maps 0 to 0, so pruned channels stay zero through it.
///
/// Backward: ∂y/∂x = σ(x) (1 + x (1 − σ(x))).
/// References: Ramachandran et al., "Searching for Activation Functions", 2017;
/// Elfwing et al., "Sigmoid-Weighted Linear Units", 2018. Cost: one pass, in parallel.
public final class SiLU: Layer {
    public let kind = LayerKind.silu
    private var input: Tensor?

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "SiLU takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let y = mapElements(x) { $0 * logistic($0) }
        if mode.recordsForBackward { input = x }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        guard needsInputGradient.first == true else { return [nil] }
        return [mapGradient(x, gradOutput) { v in let s = logistic(v); return s * (1 + v * (1 - s)) }]
    }
}

/// 1 / (1 + e^(−x)), without overflow for large |x|.
@inline(__always)
func logistic(_ x: Float) -> Float {
    if x >= 0 { return 1 / (1 + expf(-x)) }
    let e = expf(x)
    return e / (1 + e)
}

/// Concatenation of feature maps along the channels: inputs `[C₁, H, W]`, `[C₂, H, W]`, …
/// give `[C₁ + C₂ + …, H, W]` (DenseNet's dense connections, Inception's branches).
///
/// Any number of inputs (one is a copy). Channel `c` of input `k` is channel
/// `C₁ + … + Cₖ₋₁ + c` of the output: dependency groups place each input's channels at
/// that offset in every layer that reads the result.
///
/// Cost: one copy (feature maps are channel-major, `[C, N, H, W]`, so each input is one
/// contiguous block of the output); backward splits the gradient the same way.
public final class Concat: Layer {
    public let kind = LayerKind.concat
    private var inputChannels: [Int] = []

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(!inputShapes.isEmpty, "Concat needs at least one input")
        try requireShape(inputShapes.allSatisfy { $0.count == 3 && Array($0.dropFirst()) == Array(inputShapes[0].dropFirst()) },
                         "Concat joins [C, H, W] feature maps of one height and width along the channels, got \(inputShapes)")
        return [inputShapes.reduce(0) { $0 + $1[0] }] + Array(inputShapes[0].dropFirst())
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let rest = Array(inputs[0].shape.dropFirst())
        let channels = inputs.map { $0.shape[0] }
        var y = Tensor(uninitializedShape: [channels.reduce(0, +)] + rest)
        y.withUnsafeMutableBufferPointer { yp in
            var offset = 0
            for x in inputs {
                x.withUnsafeBufferPointer { xp in
                    (yp.baseAddress! + offset).update(from: xp.baseAddress!, count: xp.count)
                    offset += xp.count
                }
            }
        }
        if mode.recordsForBackward { inputChannels = channels }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        defer { inputChannels = [] }
        guard !inputChannels.isEmpty else { return needsInputGradient.map { _ in nil } }
        let rest = Array(gradOutput.shape.dropFirst())
        let perChannel = rest.reduce(1, *)
        var offset = 0
        return zip(inputChannels, needsInputGradient).map { c, needed in
            defer { offset += c * perChannel }
            guard needed else { return nil }
            var dx = Tensor(uninitializedShape: [c] + rest)
            gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
                dp.baseAddress!.update(from: gp.baseAddress! + offset, count: c * perChannel)
            } }
            return dx
        }
    }
}

/// A feature map scaled channel by channel by a per-example gate: inputs `[C, H, W]` and
/// `[C]` give y[c, h, w] = x[c, h, w] · g[c] — squeeze-and-excitation's rescaling
/// (ONNX's `Mul` of `[N, C, H, W]` by `[N, C, 1, 1]`).
///
/// The gate's channel `c` is tied to the map's channel `c`: the layer that makes the gate
/// (the excitation's expand convolution) is pruned with the map's channels.
/// References: Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.
///
/// Backward: ∂L/∂x = ∂L/∂y · g, ∂L/∂g[c] = Σ_{h,w} ∂L/∂y · x. Cost: one pass over the map.
public final class ChannelMul: Layer {
    public let kind = LayerKind.channelMul
    private var saved: (x: Tensor, gate: Tensor)?

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 2 && inputShapes[0].count == 3 && inputShapes[1] == [inputShapes[0][0]],
                         "ChannelMul scales a [C, H, W] map by a [C] gate, got \(inputShapes)")
        return inputShapes[0]
    }

    /// - Parameter inputs: the map, channel-major `[C, N, H, W]`, and the gate `[N, C]`.
    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let (x, g) = (inputs[0], inputs[1])
        let (c, n) = (x.shape[0], x.shape[1])
        let hw = x.count / max(c * n, 1)
        var y = Tensor(uninitializedShape: x.shape)
        x.withUnsafeBufferPointer { xp in g.withUnsafeBufferPointer { gp in y.withUnsafeMutableBufferPointer { yp in
            let (src, gate, dst) = (xp.baseAddress!, gp.baseAddress!, yp.baseAddress!)
            Parallel.forEach(c, grain: max(1, 65_536 / max(n * hw, 1))) { r in
                for ch in r { for i in 0..<n {
                    let s = gate[i * c + ch], plane = (ch * n + i) * hw
                    for j in 0..<hw { dst[plane + j] = src[plane + j] * s }
                } }
            }
        } } }
        if mode.recordsForBackward { saved = (x, g) }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let (x, g) = saved else { return [nil, nil] }
        saved = nil
        let (c, n) = (x.shape[0], x.shape[1])
        let hw = x.count / max(c * n, 1)
        var dx: Tensor?, dg: Tensor?
        if needsInputGradient[0] {
            var d = Tensor(uninitializedShape: x.shape)
            gradOutput.withUnsafeBufferPointer { gp in g.withUnsafeBufferPointer { sp in d.withUnsafeMutableBufferPointer { dp in
                for ch in 0..<c { for i in 0..<n {
                    let s = sp[i * c + ch], plane = (ch * n + i) * hw
                    for j in 0..<hw { dp[plane + j] = gp[plane + j] * s }
                } }
            } } }
            dx = d
        }
        if needsInputGradient.count > 1, needsInputGradient[1] {
            var d = Tensor(uninitializedShape: g.shape)
            gradOutput.withUnsafeBufferPointer { gp in x.withUnsafeBufferPointer { xp in d.withUnsafeMutableBufferPointer { dp in
                for ch in 0..<c { for i in 0..<n {
                    let plane = (ch * n + i) * hw
                    var acc: Float = 0
                    for j in 0..<hw { acc += gp[plane + j] * xp[plane + j] }
                    dp[i * c + ch] = acc
                } }
            } } }
            dg = d
        }
        return [dx, dg]
    }
}
