/// Zero rows and columns around every feature map (ONNX's constant-zero Pad on H and W,
/// PyTorch's `ZeroPad2d`), where the importer can't fold the padding into the next layer
/// (before a max pool, whose own padding is −∞).
///
/// Input `[C, N, H, W]`, output `[C, N, top + H + bottom, left + W + right]`. Backward crops
/// ∂L/∂y back to the input's rows and columns. Parameter-free; a zero channel stays zero, so
/// channel pruning passes through it. Cost: one copy of the output, planes in parallel.
public final class ZeroPad2d: Layer {
    public let kind = LayerKind.zeroPad2d
    public let top: Int, left: Int, bottom: Int, right: Int
    private var inputShape: [Int] = []

    /// - Precondition: every padding is ≥ 0.
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        precondition(min(top, left, bottom, right) >= 0, "ZeroPad2d: paddings \([top, left, bottom, right]) must be ≥ 0")
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }

    public var configuration: [String: Double] {
        ["top": Double(top), "left": Double(left), "bottom": Double(bottom), "right": Double(right)]
    }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && inputShapes[0].count == 3,
                         "ZeroPad2d expects [C, H, W] inputs, got \(inputShapes)")
        let s = inputShapes[0]
        return [s[0], s[1] + top + bottom, s[2] + left + right]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
        let (ho, wo) = (h + top + bottom, w + left + right)
        var y = Tensor(shape: [x.shape[0], x.shape[1], ho, wo])
        let (t, l) = (top, left)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
            Parallel.forEach(planes, grain: 8) { r in
                for pl in r {
                    for row in 0..<h { copyFloats(dst + (pl * ho + row + t) * wo + l, src + (pl * h + row) * w, w) }
                }
            }
        } }
        if mode.recordsForBackward { inputShape = x.shape }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true, inputShape.count == 4 else { inputShape = []; return [nil] }
        let (planes, h, w) = (inputShape[0] * inputShape[1], inputShape[2], inputShape[3])
        let (ho, wo) = (gradOutput.shape[2], gradOutput.shape[3])
        var dx = Tensor(uninitializedShape: inputShape)
        let (t, l) = (top, left)
        gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
            let (g, d) = (gp.baseAddress!, dp.baseAddress!)
            Parallel.forEach(planes, grain: 8) { r in
                for pl in r {
                    for row in 0..<h { copyFloats(d + (pl * h + row) * w, g + (pl * ho + row + t) * wo + l, w) }
                }
            }
        } }
        inputShape = []
        return [dx]
    }
}
