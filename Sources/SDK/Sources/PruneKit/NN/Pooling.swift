/// Max pooling over channel-major feature maps, with any window: a `kh × kw` kernel,
/// per-axis strides, −∞ padding of its own on each side, and `ceilMode`.
///
/// Input `[C, N, H, W]`, output `[C, N, Ho, Wo]` with Ho = ⌊(H + padTop + padBottom − kh)/strideHeight⌋ + 1
/// (⌈·⌉ with `ceilMode`, less the last window when it would start below the map and its top
/// padding, as PyTorch and ONNX Runtime count it); Wo likewise. Padding counts as −∞
/// (PyTorch's `MaxPool2d(padding:)`): a window's maximum is over its positions inside the map,
/// and every pad is smaller than the kernel so that every window has one. Backward sends each
/// output's gradient to the position of its maximum (the first one on ties). The 2×2, stride-2
/// unpadded case has a vectorised kernel (the general loop is its reference).
/// Cost: one pass over the input; planes in parallel.
public final class MaxPool2d: Layer {
    public let kind = LayerKind.maxPool2d
    /// The window's rows and columns.
    public let kernel: (height: Int, width: Int)
    /// Strides and the padding of each side (no dilation).
    public let window: ConvWindow
    /// Whether partial windows at the end count (ONNX `ceil_mode`).
    public let ceilMode: Bool
    /// The kernel's height: its size when square.
    public var kernelSize: Int { kernel.height }
    /// The vertical stride: the stride when uniform.
    public var stride: Int { window.strideHeight }
    /// The top padding: the padding on every side when uniform.
    public var padding: Int { window.padTop }
    private var argmax: [Int32] = []
    private var inputShape: [Int] = []

    public convenience init(kernelSize: Int, stride: Int? = nil) {
        self.init(kernel: (kernelSize, kernelSize), window: ConvWindow(stride: stride ?? kernelSize))
    }

    /// A max pool with `padding` implicit −∞ rows and columns on every side.
    /// - Precondition: 0 ≤ `padding` ≤ `kernelSize` / 2.
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int) {
        precondition(padding >= 0 && padding <= kernelSize / 2,
                     "MaxPool2d: padding \(padding) must be in 0...\(kernelSize / 2) for a \(kernelSize)×\(kernelSize) window")
        self.init(kernel: (kernelSize, kernelSize), window: ConvWindow(stride: stride ?? kernelSize, padding: padding))
    }

    /// - Precondition: kernel and strides ≥ 1, no dilation, every pad ≥ 0 and smaller than the kernel along its axis.
    public init(kernel: (height: Int, width: Int), window: ConvWindow, ceilMode: Bool = false) {
        precondition(poolWindowIsValid(kernel, window), "MaxPool2d: kernel \(kernel) and window \(window) do not make a pool")
        self.kernel = kernel; self.window = window; self.ceilMode = ceilMode
    }

    /// A square, uniform, unpadded pool saves as before (`kernel_size`, `stride`).
    public var configuration: [String: Double] { poolConfiguration(kernel, window, ceilMode: ceilMode) }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try poolOutputShape(inputShapes, kernel, window, ceilMode: ceilMode, "MaxPool2d")
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
        let (ho, wo) = poolOutputSize(h, w, kernel, window, ceilMode: ceilMode)
        var y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], ho, wo])
        var idx = [Int32](repeating: 0, count: mode.recordsForBackward ? planes * ho * wo : 0)
        let (kh, kw, sh, sw) = (kernel.height, kernel.width, window.strideHeight, window.strideWidth)
        let (pt, pl) = (window.padTop, window.padLeft)
        let fast = kh == 2 && kw == 2 && sh == 2 && sw == 2 && pt == 0 && pl == 0 && ho == h / 2 && wo == w / 2
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in idx.withUnsafeMutableBufferPointer { ip in
            let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
            let record = mode.recordsForBackward ? ip.baseAddress : nil
            Parallel.forEach(planes, grain: 4) { r in
                if fast {
                    maxPool2x2(src, planes: r, height: h, width: w, into: dst, argmax: record)
                    return
                }
                for pl0 in r {
                    let image = src + pl0 * h * w
                    for oy in 0..<ho {
                        // The window's rows and columns inside the map.
                        let y0 = max(oy * sh - pt, 0), y1 = min(oy * sh - pt + kh, h)
                        for ox in 0..<wo {
                            let x0 = max(ox * sw - pl, 0), x1 = min(ox * sw - pl + kw, w)
                            assert(y0 < y1 && x0 < x1)
                            var best = y0 * w + x0
                            var bestValue = image[best]
                            for yy in y0..<y1 {
                                let row = yy * w
                                for xx in x0..<x1 where image[row + xx] > bestValue {
                                    bestValue = image[row + xx]; best = row + xx
                                }
                            }
                            let o = (pl0 * ho + oy) * wo + ox
                            dst[o] = bestValue
                            record?[o] = Int32(best)
                        }
                    }
                }
            }
        } } }
        if mode.recordsForBackward { argmax = idx; inputShape = x.shape }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true, !argmax.isEmpty else { argmax = []; return [nil] }
        let (h, w) = (inputShape[2], inputShape[3])
        // Non-overlapping windows that tile the plane write every element of ∂L/∂x exactly
        // once, so it needs no zeroing first.
        let tiles = window == ConvWindow(stride: kernelSize) && kernel == (kernelSize, kernelSize)
            && h % stride == 0 && w % stride == 0 && gradOutput.shape[2] == h / stride && gradOutput.shape[3] == w / stride
        var dx = tiles ? Tensor(uninitializedShape: inputShape) : Tensor(shape: inputShape)
        let planeIn = h * w
        let planeOut = gradOutput.count / (inputShape[0] * inputShape[1])
        let (k, wo) = (kernelSize, w / max(stride, 1))
        gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in argmax.withUnsafeBufferPointer { ip in
            let (g, d, idx) = (gp.baseAddress!, dp.baseAddress!, ip.baseAddress!)
            Parallel.forEach(inputShape[0] * inputShape[1], grain: 4) { r in
                if tiles && k == 2 {
                    maxUnpool2x2(g, argmax: idx, planes: r, height: h, width: w, into: d)
                    return
                }
                if tiles {
                    let ho = planeOut / max(wo, 1)
                    for pl in r {
                        let plane = d + pl * planeIn
                        for oy in 0..<ho {
                            let at = idx + pl * planeOut + oy * wo, go = g + pl * planeOut + oy * wo
                            for ky in 0..<k {
                                let row = (oy * k + ky) * w
                                for ox in 0..<wo {
                                    let a = Int(at[ox]) - row - ox * k, v = go[ox]
                                    for kx in 0..<k { plane[row + ox * k + kx] = kx == a ? v : 0 }
                                }
                            }
                        }
                    }
                    return
                }
                for pl in r {
                    for o in (pl * planeOut)..<((pl + 1) * planeOut) { d[pl * planeIn + Int(idx[o])] += g[o] }
                }
            }
        } } }
        argmax = []
        return [dx]
    }
}

/// 2×2 windows with stride 2 over `planes` of `[height, width]` floats: the max and, when
/// `argmax` is given, the index of the first maximum in row-major order within the plane
/// (the same choice as the general loop, which remains the reference). Four outputs at a
/// time with vector compares and selects instead of branches on the data (measured on
/// lenet-5, one thread: 4 % less CPU time per epoch).
private func maxPool2x2(_ src: UnsafePointer<Float>, planes: Range<Int>, height h: Int, width w: Int,
                        into dst: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>?) {
    let (ho, wo) = (h / 2, w / 2)
    let w32 = Int32(w), lanes = SIMD4<Int32>(0, 2, 4, 6)
    for pl in planes {
        let image = src + pl * h * w
        let out = dst + pl * ho * wo
        for oy in 0..<ho {
            let r0 = image + 2 * oy * w, r1 = r0 + w
            let o = out + oy * wo
            let a = argmax.map { $0 + (pl * ho + oy) * wo }
            var ox = 0
            while ox + 4 <= wo {
                let p0 = UnsafeRawPointer(r0 + 2 * ox).loadUnaligned(as: SIMD8<Float>.self)
                let p1 = UnsafeRawPointer(r1 + 2 * ox).loadUnaligned(as: SIMD8<Float>.self)
                var best = p0.evenHalf, code = SIMD4<Int32>()
                var m = p0.oddHalf .> best
                best.replace(with: p0.oddHalf, where: m); code.replace(with: 1, where: m)
                m = p1.evenHalf .> best
                best.replace(with: p1.evenHalf, where: m); code.replace(with: w32, where: m)
                m = p1.oddHalf .> best
                best.replace(with: p1.oddHalf, where: m); code.replace(with: w32 + 1, where: m)
                UnsafeMutableRawPointer(o + ox).storeBytes(of: best, as: SIMD4<Float>.self)
                if let a {
                    let at = (SIMD4<Int32>(repeating: Int32(2 * oy * w + 2 * ox)) &+ lanes) &+ code
                    UnsafeMutableRawPointer(a + ox).storeBytes(of: at, as: SIMD4<Int32>.self)
                }
                ox += 4
            }
            while ox < wo {
                let c = 2 * ox
                var best = r0[c], at = 2 * oy * w + c
                if r0[c + 1] > best { best = r0[c + 1]; at = 2 * oy * w + c + 1 }
                if r1[c] > best { best = r1[c]; at = (2 * oy + 1) * w + c }
                if r1[c + 1] > best { best = r1[c + 1]; at = (2 * oy + 1) * w + c + 1 }
                o[ox] = best
                a?[ox] = Int32(at)
                ox += 1
            }
        }
    }
}

/// The backward pass of 2×2, stride-2 max pooling over `planes` whose height and width are
/// even: each output's gradient goes to the input position `argmax` names, every other
/// element of `dx` is set to zero (so `dx` needs no zeroing first). Four outputs at a time
/// with vector compares and selects (measured on lenet-5, one thread: 13 % less CPU time per
/// epoch than the general tiling loop).
/// - Parameters:
///   - dy, argmax: `[planes, H/2, W/2]`, indices within the plane as the forward pass recorded them.
///   - dx: `[planes, H, W]`, every element of `planes` written.
/// - Cost: one write per input element; the general tiling loop in `MaxPool2d.backward` is its reference.
func maxUnpool2x2(_ dy: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, planes: Range<Int>,
                  height h: Int, width w: Int, into dx: UnsafeMutablePointer<Float>) {
    let (ho, wo) = (h / 2, w / 2)
    let w32 = Int32(w), lanes = SIMD4<Int32>(0, 2, 4, 6)
    @inline(__always) func interleave(_ e: SIMD4<Float>, _ o: SIMD4<Float>) -> SIMD8<Float> {
        SIMD8(e[0], o[0], e[1], o[1], e[2], o[2], e[3], o[3])
    }
    for pl in planes {
        let plane = dx + pl * h * w
        for oy in 0..<ho {
            let r0 = plane + 2 * oy * w, r1 = r0 + w
            let at = argmax + (pl * ho + oy) * wo, go = dy + (pl * ho + oy) * wo
            let base = Int32(2 * oy * w)
            var ox = 0
            while ox + 4 <= wo {
                let rel = UnsafeRawPointer(at + ox).loadUnaligned(as: SIMD4<Int32>.self)
                    &- (SIMD4<Int32>(repeating: base &+ Int32(2 * ox)) &+ lanes)
                let v = UnsafeRawPointer(go + ox).loadUnaligned(as: SIMD4<Float>.self), z = SIMD4<Float>()
                let e0 = z.replacing(with: v, where: rel .== 0), o0 = z.replacing(with: v, where: rel .== 1)
                let e1 = z.replacing(with: v, where: rel .== w32), o1 = z.replacing(with: v, where: rel .== w32 + 1)
                UnsafeMutableRawPointer(r0 + 2 * ox).storeBytes(of: interleave(e0, o0), as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(r1 + 2 * ox).storeBytes(of: interleave(e1, o1), as: SIMD8<Float>.self)
                ox += 4
            }
            while ox < wo {
                let a = at[ox] - base - Int32(2 * ox), v = go[ox]
                r0[2 * ox] = a == 0 ? v : 0
                r0[2 * ox + 1] = a == 1 ? v : 0
                r1[2 * ox] = a == w32 ? v : 0
                r1[2 * ox + 1] = a == w32 + 1 ? v : 0
                ox += 1
            }
        }
    }
}

/// Average pooling over channel-major feature maps, with any window: a `kh × kw` kernel,
/// per-axis strides, zero padding of its own on each side, `ceilMode` and `countIncludePad`.
///
/// Input `[C, N, H, W]`, output `[C, N, Ho, Wo]` sized as ``MaxPool2d``'s. Each output is the
/// sum of its window's positions inside the map divided by the window's size: with
/// `countIncludePad`, the positions inside the padded map (a partial window of `ceilMode`
/// that runs past the padding counts only up to it, as PyTorch and ONNX Runtime do);
/// without, the positions inside the map only. Backward spreads each output's gradient over
/// the same positions with the same divisor. Cost: one pass over the window per output.
public final class AvgPool2d: Layer {
    public let kind = LayerKind.avgPool2d
    public let kernel: (height: Int, width: Int)
    /// Strides and the padding of each side (no dilation).
    public let window: ConvWindow
    public let ceilMode: Bool
    /// Whether the padding counts in a window's size (ONNX `count_include_pad`; PyTorch's default).
    public let countIncludePad: Bool
    /// The kernel's height: its size when square.
    public var kernelSize: Int { kernel.height }
    /// The vertical stride: the stride when uniform.
    public var stride: Int { window.strideHeight }
    private var inputShape: [Int] = []

    public convenience init(kernelSize: Int, stride: Int? = nil) {
        self.init(kernel: (kernelSize, kernelSize), window: ConvWindow(stride: stride ?? kernelSize))
    }

    /// - Precondition: kernel and strides ≥ 1, no dilation, every pad ≥ 0 and smaller than the kernel along its axis.
    public init(kernel: (height: Int, width: Int), window: ConvWindow, ceilMode: Bool = false, countIncludePad: Bool = false) {
        precondition(poolWindowIsValid(kernel, window), "AvgPool2d: kernel \(kernel) and window \(window) do not make a pool")
        self.kernel = kernel; self.window = window; self.ceilMode = ceilMode; self.countIncludePad = countIncludePad
    }

    /// A square, uniform, unpadded pool saves as before (`kernel_size`, `stride`);
    /// `count_include_pad` appears when set.
    public var configuration: [String: Double] {
        var c = poolConfiguration(kernel, window, ceilMode: ceilMode)
        if countIncludePad { c["count_include_pad"] = 1 }
        return c
    }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try poolOutputShape(inputShapes, kernel, window, ceilMode: ceilMode, "AvgPool2d")
    }

    /// For output (oy, ox): the rows `y0..<y1` and columns `x0..<x1` inside the map, and 1/size.
    @inline(__always)
    private func span(_ oy: Int, _ ox: Int, _ h: Int, _ w: Int) -> (Int, Int, Int, Int, Float) {
        let ys = oy * window.strideHeight - window.padTop, xs = ox * window.strideWidth - window.padLeft
        let ye = min(ys + kernel.height, h + window.padBottom), xe = min(xs + kernel.width, w + window.padRight)
        let (y0, y1, x0, x1) = (max(ys, 0), min(ye, h), max(xs, 0), min(xe, w))
        let size = countIncludePad ? (ye - ys) * (xe - xs) : (y1 - y0) * (x1 - x0)
        return (y0, y1, x0, x1, 1 / Float(max(size, 1)))
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
        let (ho, wo) = poolOutputSize(h, w, kernel, window, ceilMode: ceilMode)
        var y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], ho, wo])
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
            Parallel.forEach(planes, grain: 4) { r in
                for pl in r {
                    let image = src + pl * h * w
                    for oy in 0..<ho { for ox in 0..<wo {
                        let (y0, y1, x0, x1, scale) = span(oy, ox, h, w)
                        var acc: Float = 0
                        for yy in y0..<y1 { for xx in x0..<x1 { acc += image[yy * w + xx] } }
                        dst[(pl * ho + oy) * wo + ox] = acc * scale
                    } }
                }
            }
        } }
        if mode.recordsForBackward { inputShape = x.shape }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true, !inputShape.isEmpty else { return [nil] }
        var dx = Tensor(shape: inputShape)
        let (h, w) = (inputShape[2], inputShape[3])
        let ho = gradOutput.shape[2], wo = gradOutput.shape[3]
        gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
            let (g, d) = (gp.baseAddress!, dp.baseAddress!)
            Parallel.forEach(inputShape[0] * inputShape[1], grain: 4) { r in
                for pl in r {
                    let image = d + pl * h * w
                    for oy in 0..<ho { for ox in 0..<wo {
                        let (y0, y1, x0, x1, scale) = span(oy, ox, h, w)
                        let v = g[(pl * ho + oy) * wo + ox] * scale
                        for yy in y0..<y1 { for xx in x0..<x1 { image[yy * w + xx] += v } }
                    } }
                }
            }
        } }
        inputShape = []
        return [dx]
    }
}

/// The mean of each channel over all spatial positions: `[C, N, H, W]` → `[N, C]`.
public final class GlobalAvgPool: Layer {
    public let kind = LayerKind.globalAvgPool
    private var inputShape: [Int] = []

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && inputShapes[0].count == 3,
                         "GlobalAvgPool expects [C, H, W] inputs, got \(inputShapes)")
        return [inputShapes[0][0]]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let (c, n, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        var y = Tensor(uninitializedShape: [n, c])
        let scale = 1 / Float(hw)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            for ch in 0..<c { for i in 0..<n {
                var acc: Float = 0
                let plane = (ch * n + i) * hw
                for j in 0..<hw { acc += xp[plane + j] }
                yp[i * c + ch] = acc * scale
            } }
        } }
        if mode.recordsForBackward { inputShape = x.shape }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true, !inputShape.isEmpty else { return [nil] }
        let (c, n, hw) = (inputShape[0], inputShape[1], inputShape[2] * inputShape[3])
        var dx = Tensor(uninitializedShape: inputShape)
        let scale = 1 / Float(hw)
        gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
            for ch in 0..<c { for i in 0..<n {
                let v = gp[i * c + ch] * scale
                let plane = (ch * n + i) * hw
                for j in 0..<hw { dp[plane + j] = v }
            } }
        } }
        inputShape = []
        return [dx]
    }
}

/// Flattens each example to a vector in PyTorch's (c, h, w) order:
/// `[C, N, H, W]` → `[N, C·H·W]`; vectors pass through unchanged.
public final class Flatten: Layer {
    public let kind = LayerKind.flatten
    private var inputShape: [Int] = []

    public init() {}

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1, "Flatten takes one input, got \(inputShapes.count)")
        return [inputShapes[0].reduce(1, *)]
    }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        guard x.rank == 4 else { return x }
        inputShape = x.shape
        return channelMajorToBatchMajor(x).reshaped([x.shape[1], x.count / x.shape[1]])
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true else { return [nil] }
        guard inputShape.count == 4 else { return [gradOutput] }
        let s = inputShape
        return [batchMajorToChannelMajor(gradOutput.reshaped([s[1], s[0], s[2], s[3]]))]
    }
}

/// The shortcut of a CIFAR ResNet block that changes width ("option A", He et al. 2016):
/// subsamples with `stride` and pads the channels with zeros, equally on both sides.
/// Parameter-free. `[C, N, H, W]` → `[outChannels, N, ⌈H/s⌉, ⌈W/s⌉]`.
public final class ChannelPadShortcut: Layer {
    public let kind = LayerKind.channelPadShortcut
    public let outChannels: Int, stride: Int
    private var inputShape: [Int] = []

    public init(outChannels: Int, stride: Int) {
        self.outChannels = outChannels
        self.stride = stride
    }

    public var configuration: [String: Double] { ["out_channels": Double(outChannels), "stride": Double(stride)] }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && inputShapes[0].count == 3 && inputShapes[0][0] <= outChannels,
                         "ChannelPadShortcut(\(outChannels)) expects [C ≤ \(outChannels), H, W], got \(inputShapes)")
        let s = inputShapes[0]
        return [outChannels, (s[1] + stride - 1) / stride, (s[2] + stride - 1) / stride]
    }

    private func padLow(_ c: Int) -> Int { (outChannels - c) / 2 }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let (c, n, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let ho = (h + stride - 1) / stride, wo = (w + stride - 1) / stride
        var y = Tensor(shape: [outChannels, n, ho, wo])
        let low = padLow(c)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            for ch in 0..<c { for i in 0..<n { for oy in 0..<ho { for ox in 0..<wo {
                yp[(((ch + low) * n + i) * ho + oy) * wo + ox] = xp[((ch * n + i) * h + oy * stride) * w + ox * stride]
            } } } }
        } }
        inputShape = x.shape
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard needsInputGradient.first == true else { return [nil] }
        let (c, n, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let (ho, wo) = (gradOutput.shape[2], gradOutput.shape[3])
        var dx = Tensor(shape: inputShape)
        let low = padLow(c)
        gradOutput.withUnsafeBufferPointer { gp in dx.withUnsafeMutableBufferPointer { dp in
            for ch in 0..<c { for i in 0..<n { for oy in 0..<ho { for ox in 0..<wo {
                dp[((ch * n + i) * h + oy * stride) * w + ox * stride] = gp[(((ch + low) * n + i) * ho + oy) * wo + ox]
            } } } }
        } }
        return [dx]
    }
}

/// Whether a pooling kernel and window are in range: kernel and strides ≥ 1, no dilation,
/// every pad ≥ 0 and smaller than the kernel along its axis (so every window overlaps the map).
func poolWindowIsValid(_ k: (height: Int, width: Int), _ w: ConvWindow) -> Bool {
    k.height >= 1 && k.width >= 1 && w.strideHeight >= 1 && w.strideWidth >= 1
        && w.dilationHeight == 1 && w.dilationWidth == 1 && w.pads.allSatisfy { $0 >= 0 }
        && w.padTop < k.height && w.padBottom < k.height && w.padLeft < k.width && w.padRight < k.width
}

/// Output rows and columns of a pool on an `h × w` map: ⌊(size + pads − k)/s⌋ + 1, or with
/// `ceilMode` ⌈·⌉ + 1 less a last window that would start past the map and its leading pad.
func poolOutputSize(_ h: Int, _ w: Int, _ k: (height: Int, width: Int), _ win: ConvWindow, ceilMode: Bool) -> (Int, Int) {
    func size(_ n: Int, _ k: Int, _ s: Int, _ begin: Int, _ end: Int) -> Int {
        let span = n + begin + end - k
        guard ceilMode else { return span / s + 1 }
        var out = (span + s - 1) / s + 1
        if (out - 1) * s >= n + begin { out -= 1 }
        return out
    }
    return (size(h, k.height, win.strideHeight, win.padTop, win.padBottom), size(w, k.width, win.strideWidth, win.padLeft, win.padRight))
}

/// The saved keys of a pool: as ``windowConfiguration(kernel:_:dilation:)``, and `ceil_mode`
/// when set.
func poolConfiguration(_ k: (height: Int, width: Int), _ w: ConvWindow, ceilMode: Bool) -> [String: Double] {
    var c = windowConfiguration(kernel: k, w, dilation: false)
    if c["padding"] == 0 { c["padding"] = nil }
    if ceilMode { c["ceil_mode"] = 1 }
    return c
}

private func poolOutputShape(_ inputShapes: [[Int]], _ k: (height: Int, width: Int), _ w: ConvWindow, ceilMode: Bool,
                             _ name: String) throws -> [Int] {
    try requireShape(inputShapes.count == 1 && inputShapes[0].count == 3,
                     "\(name) expects [C, H, W] inputs, got \(inputShapes)")
    let x = inputShapes[0]
    try requireShape(x[1] + w.padTop + w.padBottom >= k.height && x[2] + w.padLeft + w.padRight >= k.width,
                     "\(name): a \(k.height)×\(k.width) window does not fit input \(x)" + (w.pads.contains { $0 > 0 } ? " padded by \(w.pads)" : ""))
    let (ho, wo) = poolOutputSize(x[1], x[2], k, w, ceilMode: ceilMode)
    return [x[0], ho, wo]
}

/// `[C, N, H, W]` → `[N, C, H, W]`.
public func channelMajorToBatchMajor(_ x: Tensor) -> Tensor {
    swapLeadingAxes(x)
}

/// `[N, C, H, W]` → `[C, N, H, W]`.
public func batchMajorToChannelMajor(_ x: Tensor) -> Tensor {
    swapLeadingAxes(x)
}

/// Swaps the first two axes of a rank-4 tensor, moving `H·W` planes as blocks.
private func swapLeadingAxes(_ x: Tensor) -> Tensor {
    precondition(x.rank == 4, "swapLeadingAxes: needs rank 4, got \(x.shape)")
    let (a, b, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    if a == 1 || b == 1 { return x.reshaped([b, a, x.shape[2], x.shape[3]]) }
    var y = Tensor(uninitializedShape: [b, a, x.shape[2], x.shape[3]])
    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
        let (src, dst) = (xp.baseAddress!, yp.baseAddress!)
        Parallel.forEach(a, grain: max(1, 8192 / max(hw * b, 1))) { r in
            for i in r { for j in 0..<b { (dst + (j * a + i) * hw).update(from: src + (i * b + j) * hw, count: hw) } }
        }
    } }
    return y
}
