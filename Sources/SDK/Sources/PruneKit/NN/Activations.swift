/// The rectifier, y = max(x, 0). Any shape. Cost: one pass, in parallel.
public final class ReLU: Layer {
    public let kind = LayerKind.relu
    private var output: Tensor?

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "ReLU takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        var y = Tensor(uninitializedShape: x.shape)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
            Parallel.forEach(x.count, grain: 65_536) { r in
                for i in r { dst[i] = max(src[i], 0) }
            }
        } }
        if mode.recordsForBackward { output = y }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let y = output else { return [nil] }
        output = nil
        guard needsInputGradient.first == true else { return [nil] }
        var dx = Tensor(uninitializedShape: y.shape)
        y.withUnsafeBufferPointer { yp in gradOutput.withUnsafeBufferPointer { gp in
            dx.withUnsafeMutableBufferPointer { dp in
                let (out, g, d) = (yp.baseAddress!, gp.baseAddress!, dp.baseAddress!)
                Parallel.forEach(y.count, grain: 65_536) { r in
                    // Load g[i] unconditionally: a conditional load blocks vectorisation and
                    // mispredicts on random signs (measured: 11 % of a VGG epoch).
                    for i in r { let gi = g[i]; d[i] = out[i] > 0 ? gi : 0 }
                }
            }
        } }
        return [dx]
    }
}

/// Clamps every element to [lower, upper]: y = min(max(x, lower), upper); ReLU6 is
/// `Clip(lower: 0, upper: 6)` (MobileNetV2). Either bound may be absent. Any shape.
///
/// The gradient passes where lower < x < upper (strictly, as ``ReLU``'s where x > 0).
/// Cost: one pass, in parallel.
public final class Clip: Layer {
    public let kind = LayerKind.clip
    public let lower: Float?
    public let upper: Float?
    private var input: Tensor?

    /// - Precondition: the bounds are finite and `lower ≤ upper`.
    public init(lower: Float?, upper: Float?) {
        precondition((lower?.isFinite ?? true) && (upper?.isFinite ?? true) && (lower ?? -.infinity) <= (upper ?? .infinity),
                     "Clip: bounds \(String(describing: lower))...\(String(describing: upper)) are not an interval")
        self.lower = lower
        self.upper = upper
    }

    /// `min` and `max`, each only when set.
    public var configuration: [String: Double] {
        var c: [String: Double] = [:]
        if let lower { c["min"] = Double(lower) }
        if let upper { c["max"] = Double(upper) }
        return c
    }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "Clip takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        var y = Tensor(uninitializedShape: x.shape)
        let (lo, hi) = (lower ?? -.infinity, upper ?? .infinity)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
            Parallel.forEach(x.count, grain: 65_536) { r in
                for i in r { dst[i] = min(max(src[i], lo), hi) }
            }
        } }
        if mode.recordsForBackward { input = x }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        guard needsInputGradient.first == true else { return [nil] }
        var dx = Tensor(uninitializedShape: x.shape)
        let (lo, hi) = (lower ?? -.infinity, upper ?? .infinity)
        x.withUnsafeBufferPointer { xp in gradOutput.withUnsafeBufferPointer { gp in
            dx.withUnsafeMutableBufferPointer { dp in
                let (v, g, d) = (xp.baseAddress!, gp.baseAddress!, dp.baseAddress!)
                Parallel.forEach(x.count, grain: 65_536) { r in
                    for i in r { let gi = g[i], xi = v[i]; d[i] = xi > lo && xi < hi ? gi : 0 }
                }
            }
        } }
        return [dx]
    }
}

/// Inverted dropout: in training, zeroes each element with probability `p` and scales
/// the rest by 1/(1−p); the identity in evaluation. Any shape.
///
/// The mask comes from the layer's own seeded generator, so a run is reproducible.
/// References: Srivastava et al., "Dropout", JMLR 2014.
public final class Dropout: Layer {
    public let kind = LayerKind.dropout
    public let probability: Float
    private var rng: RandomGenerator
    private var mask: Tensor?

    /// - Parameter probability: the chance of dropping an element, in [0, 1).
    public init(probability: Float, seed: UInt64 = 0) {
        precondition(probability >= 0 && probability < 1, "Dropout: probability \(probability) must be in [0, 1)")
        self.probability = probability
        rng = RandomGenerator(seed: seed, stream: "dropout")
    }

    /// Restarts the mask sequence (for example at the start of a seeded run).
    public func reseed(_ seed: UInt64) { rng = RandomGenerator(seed: seed, stream: "dropout") }

    public var configuration: [String: Double] { ["p": Double(probability)] }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "Dropout takes one input, got \(inputShapes.count)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        guard mode.training, probability > 0 else { return x }
        let keep = 1 - probability, scale = 1 / keep
        var m = Tensor(uninitializedShape: x.shape)
        m.withUnsafeMutableBufferPointer { mp in
            for i in 0..<mp.count { mp[i] = rng.nextFloat() < keep ? scale : 0 }
        }
        mask = mode.recordsForBackward ? m : nil
        return x * m
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true else { mask = nil; return [nil] }
        defer { mask = nil }
        guard let m = mask else { return [gradOutput] }
        return [gradOutput * m]
    }
}

/// The sum of two tensors of the same shape: the join of a residual connection.
public final class Add: Layer {
    public let kind = LayerKind.add

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 2 && inputShapes[0] == inputShapes[1],
                         "Add needs two inputs of the same shape, got \(inputShapes)")
        return inputShapes[0]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        var y = inputs[0]
        y.add(inputs[1])
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        needsInputGradient.map { $0 ? gradOutput : nil }
    }
}
