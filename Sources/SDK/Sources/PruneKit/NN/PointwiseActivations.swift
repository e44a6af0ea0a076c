import Foundation

// Element-wise activations beyond ReLU and Clip: LeakyReLU, Tanh, HardSigmoid, HardSwish and
// GELU (ONNX's LeakyRelu, Tanh, HardSigmoid, HardSwish, Gelu). Each takes any shape, keeps
// what its backward pass needs (its input, or for Tanh its output) and costs one pass over
// the tensor, in parallel.

/// y[i] = f(x[i]) for every element, in parallel chunks.
@inline(__always)
func mapElements(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
    var y = Tensor(uninitializedShape: x.shape)
    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
        let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
        Parallel.forEach(x.count, grain: 32_768) { r in
            for i in r { dst[i] = f(src[i]) }
        }
    } }
    return y
}

/// dx[i] = g[i] · d(v[i]) for every element, where `v` is what the forward pass kept (its
/// input or its output) and `d` the derivative written in terms of it; in parallel chunks.
@inline(__always)
func mapGradient(_ kept: Tensor, _ gradOutput: Tensor, _ d: (Float) -> Float) -> Tensor {
    assert(kept.shape == gradOutput.shape)
    var dx = Tensor(uninitializedShape: kept.shape)
    kept.withUnsafeBufferPointer { vp in gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
        let (v, g, out) = (vp.baseAddress!, gp.baseAddress!, dp.baseAddress!)
        Parallel.forEach(kept.count, grain: 32_768) { r in
            for i in r { out[i] = g[i] * d(v[i]) }
        }
    } } }
    return dx
}

/// The leaky rectifier: y = x for x ≥ 0, α·x below (ONNX LeakyRelu, PyTorch `LeakyReLU`).
/// The gradient is 1 for x > 0 and α otherwise. Any shape.
public final class LeakyReLU: Layer {
    public let kind = LayerKind.leakyRelu
    /// The slope below zero (ONNX's and PyTorch's default 0.01).
    public let alpha: Float
    private var input: Tensor?

    /// - Precondition: `alpha` is finite.
    public init(alpha: Float = 0.01) {
        precondition(alpha.isFinite, "LeakyReLU: alpha \(alpha) is not finite")
        self.alpha = alpha
    }

    public var configuration: [String: Double] { ["alpha": Double(alpha)] }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "LeakyReLU takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let a = alpha
        if mode.recordsForBackward { input = inputs[0] }
        return mapElements(inputs[0]) { $0 >= 0 ? $0 : a * $0 }
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        guard needsInputGradient.first == true else { return [nil] }
        let a = alpha
        return [mapGradient(x, gradOutput) { $0 > 0 ? 1 : a }]
    }
}

/// The hyperbolic tangent, y = tanh x (ONNX Tanh). Backward: ∂y/∂x = 1 − y², from the kept
/// output. Any shape.
public final class Tanh: Layer {
    public let kind = LayerKind.tanh
    private var output: Tensor?

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "Tanh takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let y = mapElements(inputs[0]) { Foundation.tanh($0) }
        if mode.recordsForBackward { output = y }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let y = output else { return [nil] }
        output = nil
        guard needsInputGradient.first == true else { return [nil] }
        return [mapGradient(y, gradOutput) { 1 - $0 * $0 }]
    }
}

/// The piecewise-linear sigmoid y = max(0, min(1, α·x + β)) (ONNX HardSigmoid: α = 0.2,
/// β = 0.5 by default; PyTorch's `Hardsigmoid` is α = 1/6, β = 1/2).
///
/// The gradient is α where 0 < α·x + β < 1 and 0 elsewhere. Any shape. Note that
/// y(0) = β: a pruned (zero) channel becomes the constant β, so channel pruning keeps the
/// channels it reads whole (see ``Model/channelDependencies(policy:)``).
public final class HardSigmoid: Layer {
    public let kind = LayerKind.hardSigmoid
    public let alpha: Float, beta: Float
    private var input: Tensor?

    /// - Precondition: `alpha` and `beta` are finite.
    public init(alpha: Float = 0.2, beta: Float = 0.5) {
        precondition(alpha.isFinite && beta.isFinite, "HardSigmoid: alpha \(alpha) and beta \(beta) must be finite")
        self.alpha = alpha; self.beta = beta
    }

    public var configuration: [String: Double] { ["alpha": Double(alpha), "beta": Double(beta)] }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "HardSigmoid takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let (a, b) = (alpha, beta)
        if mode.recordsForBackward { input = inputs[0] }
        return mapElements(inputs[0]) { max(0, min(1, a * $0 + b)) }
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        guard needsInputGradient.first == true else { return [nil] }
        let (a, b) = (alpha, beta)
        return [mapGradient(x, gradOutput) { v in let u = a * v + b; return u > 0 && u < 1 ? a : 0 }]
    }
}

/// y = x · max(0, min(1, x/6 + 1/2)) (ONNX HardSwish, PyTorch `Hardswish`, MobileNetV3).
///
/// The gradient is 0 for x ≤ −3, (2x + 3)/6 for −3 < x < 3, and 1 for x ≥ 3. Any shape.
public final class HardSwish: Layer {
    public let kind = LayerKind.hardSwish
    private var input: Tensor?

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "HardSwish takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        if mode.recordsForBackward { input = inputs[0] }
        return mapElements(inputs[0]) { v in v * max(0, min(1, v / 6 + 0.5)) }
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        guard needsInputGradient.first == true else { return [nil] }
        return [mapGradient(x, gradOutput) { v in v <= -3 ? 0 : v >= 3 ? 1 : (2 * v + 3) / 6 }]
    }
}

/// The Gaussian error linear unit (ONNX Gelu, PyTorch `GELU`).
///
/// Exact: y = x·Φ(x) = ½·x·(1 + erf(x/√2)), ∂y/∂x = Φ(x) + x·φ(x) with φ the standard normal
/// density. With ``Approximation/tanh``: y = ½·x·(1 + tanh u), u = √(2/π)·(x + 0.044715·x³).
/// Any shape.
///
/// References: Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)", 2016.
public final class GELU: Layer {
    /// How Φ is computed.
    public enum Approximation: String, Sendable, CaseIterable {
        /// With erf (exact; PyTorch's default, ONNX `approximate="none"`).
        case none
        /// With tanh (ONNX `approximate="tanh"`, PyTorch `GELU(approximate="tanh")`).
        case tanh
    }

    public let kind = LayerKind.gelu
    public let approximation: Approximation
    private var input: Tensor?

    public init(approximation: Approximation = .none) {
        self.approximation = approximation
    }

    /// `approximate`: 0 for erf (exact), 1 for tanh.
    public var configuration: [String: Double] { ["approximate": approximation == .none ? 0 : 1] }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "GELU takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    static let inverseSqrt2: Float = 0.707_106_77
    static let inverseSqrt2Pi: Float = 0.398_942_28
    static let sqrt2OverPi: Float = 0.797_884_56
    static let kappa: Float = 0.044_715

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        if mode.recordsForBackward { input = inputs[0] }
        switch approximation {
        case .none:
            return mapElements(inputs[0]) { v in 0.5 * v * (1 + erf(v * GELU.inverseSqrt2)) }
        case .tanh:
            return mapElements(inputs[0]) { v in
                0.5 * v * (1 + Foundation.tanh(GELU.sqrt2OverPi * (v + GELU.kappa * v * v * v)))
            }
        }
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        guard needsInputGradient.first == true else { return [nil] }
        switch approximation {
        case .none:
            return [mapGradient(x, gradOutput) { v in
                0.5 * (1 + erf(v * GELU.inverseSqrt2)) + v * GELU.inverseSqrt2Pi * exp(-0.5 * v * v)
            }]
        case .tanh:
            return [mapGradient(x, gradOutput) { v in
                let t = Foundation.tanh(GELU.sqrt2OverPi * (v + GELU.kappa * v * v * v))
                return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * GELU.sqrt2OverPi * (1 + 3 * GELU.kappa * v * v)
            }]
        }
    }
}
