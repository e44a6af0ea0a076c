import Dispatch

/// A 2-d convolution with strides, dilations, zero padding (its own on each side) and groups
/// (depthwise when `groups == inChannels == outChannels`).
///
/// Input `[C, N, H, W]` (channel-major), output `[O, N, Ho, Wo]` with
/// Ho = ⌊(H + padTop + padBottom − ((kh − 1)·dilationHeight + 1)) / strideHeight⌋ + 1 (Wo likewise);
/// weight `[O, C/groups, kh, kw]` and bias `[O]` in PyTorch's layout.
/// Implemented as im2col followed by one BLAS product per group, in cache-sized chunks of
/// images per thread; 3×3 "same" convolutions with a uniform window (``ConvWindow/isUniform``),
/// ≥ 16 input channels on maps ≥ 8×8 use Winograd F(2×2, 3×3) for the forward pass and both
/// gradients (Kernels/Winograd.swift); any other window (non-square kernels, per-axis strides,
/// dilation, asymmetric padding) goes through the general im2col.
/// A column matrix of at most ``columnCacheLimit`` floats is kept from the forward pass for
/// the weight gradient instead of being unfolded again.
/// Cost: 2·N·O·Ho·Wo·(C/groups)·kh·kw flops forward, twice that backward (2.25× fewer in
/// the Winograd GEMMs).
public final class Conv2d: Layer {
    public let kind = LayerKind.conv2d
    public let weight: Parameter
    public let bias: Parameter?
    /// Strides, dilations and the padding of each side.
    public let window: ConvWindow
    public let groups: Int
    /// The vertical stride: the stride of a uniform window (see ``window`` for the general one).
    public var stride: Int { window.strideHeight }
    /// The top padding: the padding of a uniform window (see ``window`` for the general one).
    public var padding: Int { window.padTop }
    public var outChannels: Int { weight.value.shape[0] }
    public var inChannels: Int { weight.value.shape[1] * groups }
    public var kernelSize: (height: Int, width: Int) { (weight.value.shape[2], weight.value.shape[3]) }
    private var input: Tensor?
    /// The forward pass's column matrix `[C·kh·kw, N·Ho·Wo]`, kept for the weight gradient
    /// when it is small (see ``columnCacheLimit``).
    private var columns: Tensor?
    private var inputShape: [Int] = []
    private var parameterGradients = true

    /// A square `kernelSize` kernel with a uniform window.
    public convenience init(inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            groups: Int = 1, bias: Bool = true, initializer: WeightInit = .pytorchDefault,
                            rng: inout RandomGenerator) {
        self.init(inChannels: inChannels, outChannels: outChannels, kernel: (kernelSize, kernelSize),
                  window: ConvWindow(stride: stride, padding: padding), groups: groups, bias: bias,
                  initializer: initializer, rng: &rng)
    }

    /// A `kernel.height × kernel.width` kernel placed by `window`.
    /// - Precondition: channels divisible by `groups`; kernel, strides and dilations ≥ 1, pads ≥ 0.
    public init(inChannels: Int, outChannels: Int, kernel: (height: Int, width: Int), window: ConvWindow,
                groups: Int = 1, bias: Bool = true, initializer: WeightInit = .pytorchDefault,
                rng: inout RandomGenerator) {
        precondition(groups >= 1 && inChannels % groups == 0 && outChannels % groups == 0,
                     "Conv2d: channels \(inChannels)→\(outChannels) are not divisible by groups \(groups)")
        precondition(kernel.height >= 1 && kernel.width >= 1 && min(window.strideHeight, window.strideWidth) >= 1
                     && min(window.dilationHeight, window.dilationWidth) >= 1 && window.pads.allSatisfy { $0 >= 0 },
                     "Conv2d: kernel \(kernel) or window \(window) is out of range")
        let fanIn = inChannels / groups * kernel.height * kernel.width
        weight = Parameter(initialWeight([outChannels, inChannels / groups, kernel.height, kernel.width],
                                         fanIn: fanIn, initializer, rng: &rng))
        self.bias = bias ? Parameter(initialWeight([outChannels], fanIn: fanIn, .pytorchDefault, rng: &rng)) : nil
        self.window = window; self.groups = groups
    }

    public var parameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// A square kernel with a uniform window saves as before (`kernel_size`, `stride`, `padding`);
    /// otherwise the keys that differ per axis or side are split (see ``LayerFactory``).
    public var configuration: [String: Double] {
        var c: [String: Double] = ["in_channels": Double(inChannels), "out_channels": Double(outChannels),
                                   "groups": Double(groups), "bias": bias == nil ? 0 : 1]
        c.merge(windowConfiguration(kernel: kernelSize, window, dilation: true)) { a, _ in a }
        return c
    }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && inputShapes[0].count == 3 && inputShapes[0][0] == inChannels,
                         "Conv2d(\(inChannels)→\(outChannels)) expects inputs [\(inChannels), H, W], got \(inputShapes)")
        let s = inputShapes[0]
        try requireShape(s[1] + window.padTop + window.padBottom >= window.extent(kernelHeight: kernelSize.height)
                         && s[2] + window.padLeft + window.padRight >= window.extent(kernelWidth: kernelSize.width),
                         "Conv2d: a \(kernelSize.height)×\(kernelSize.width) kernel does not fit input \(s) with padding \(window.pads)"
                         + (window.dilationHeight * window.dilationWidth > 1 ? " and dilation \([window.dilationHeight, window.dilationWidth])" : ""))
        let g = geometry(batch: 1, s)
        return [outChannels, g.outHeight, g.outWidth]
    }

    public func macs(inputShapes: [[Int]]) -> Int {
        let g = geometry(batch: 1, inputShapes[0])
        return outChannels * g.outHeight * g.outWidth * (inChannels / groups) * g.rowsPerChannel
    }

    func geometry(batch: Int, _ shape: [Int]) -> ConvGeometry {
        ConvGeometry(batch: batch, height: shape[1], width: shape[2], kernelHeight: kernelSize.height,
                     kernelWidth: kernelSize.width, window: window)
    }

    /// A 1×1, stride-1, unpadded convolution reads its input as the column matrix itself.
    private var isPointwise: Bool { kernelSize == (1, 1) && window == ConvWindow() }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        assert(x.rank == 4 && x.shape[0] == inChannels)
        let g = geometry(batch: x.shape[1], [x.shape[0], x.shape[2], x.shape[3]])
        let cg = inChannels / groups, og = outChannels / groups
        let k = cg * g.rowsPerChannel, l = g.columnCount, hw = g.outHeight * g.outWidth
        let pointwise = isPointwise, groups = self.groups
        var y = Tensor(uninitializedShape: [outChannels, g.batch, g.outHeight, g.outWidth])
        let (kh, kw) = kernelSize
        let winograd = window.isUniform
            && winogradApplies(kernelHeight: kh, kernelWidth: kw, stride: stride, padding: padding,
                               groups: groups, inChannels: inChannels, height: g.height, width: g.width)
        let (cin, cout) = (inChannels, outChannels)
        let cacheColumns = !winograd && !pointwise && groups == 1 && mode.recordsForBackward
            && mode.parameterGradients && k * l <= columnCacheLimit
        var columnCache = cacheColumns ? Tensor(uninitializedShape: [k, l]) : nil
        x.withUnsafeBufferPointer { xp in weight.value.withUnsafeBufferPointer { wp in
            y.withUnsafeMutableBufferPointer { yp in
                let (xb, wb, yb) = (xp.baseAddress!, wp.baseAddress!, yp.baseAddress!)
                if winograd {
                    // F(2×2, 3×3): filter transform once, then per chunk input transform,
                    // 16 GEMMs and output transform (Kernels/Winograd.swift).
                    Workspace.withBuffer(count: 16 * cout * cin) { u in
                        winogradFilterTransform(wb, outChannels: cout, inChannels: cin, into: u)
                        let perImage = winogradFloatsPerImage(inChannels: cin, outChannels: cout,
                                                              height: g.height, width: g.width)
                        // The products M are zeroed once per thread and kept zero between its
                        // chunks, so the GEMMs accumulate and BLAS skips its zero-filling pass.
                        let tilesPerImage = winogradTileCount(height: g.height, width: g.width)
                        forEachImageChunk(g, floatsPerImage: perImage) { images, scratch, _, first, last in
                            if first { zeroFloats(scratch, 16 * cout * tilesPerImage * images.count) }
                            winogradConvolveChunk(xb, u: u, inChannels: cin, outChannels: cout, batch: g.batch,
                                                  height: g.height, width: g.width, images: images,
                                                  scratch: scratch, productsZeroed: true,
                                                  leavesProductsZeroed: !last, into: yb)
                        }
                    }
                } else if cacheColumns {
                    // The whole batch's columns, kept for the weight gradient; each thread fills
                    // and multiplies its own images' columns.
                    columnCache!.withUnsafeMutableBufferPointer { cp in
                        let cache = cp.baseAddress!
                        Parallel.forEach(g.batch, grain: 1) { images in
                            let first = images.lowerBound * hw
                            im2col(xb, channels: cin, g, images: images, into: cache + first, rowStride: l)
                            sgemmSerial(m: cout, n: images.count * hw, k: k, a: wb, lda: k, b: cache + first, ldb: l,
                                        c: yb + first, ldc: l)
                        }
                    }
                } else {
                forEachImageChunk(g, floatsPerImage: k * hw) { images, col in
                    let cols = images.count * hw, first = images.lowerBound * hw
                    for grp in 0..<groups {
                        let src = xb + grp * cg * g.planeCount
                        if !pointwise { im2col(src, channels: cg, g, images: images, into: col) }
                        sgemmSerial(m: og, n: cols, k: k, a: wb + grp * og * k, lda: k,
                                    b: pointwise ? src + first : UnsafePointer(col), ldb: pointwise ? l : cols,
                                    c: yb + grp * og * l + first, ldc: l)
                    }
                }
                }
                if let b = bias { addChannelBias(yb, b.value, planeCount: l) }
            }
        } }
        columns = columnCache
        if mode.recordsForBackward { input = x; inputShape = x.shape; parameterGradients = mode.parameterGradients }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let x = input else { return [nil] }
        input = nil
        let cached = columns
        columns = nil
        let g = geometry(batch: inputShape[1], [inputShape[0], inputShape[2], inputShape[3]])
        let cg = inChannels / groups, og = outChannels / groups
        let k = cg * g.rowsPerChannel, l = g.columnCount, hw = g.outHeight * g.outWidth
        let wantsInput = needsInputGradient.first == true
        let pointwise = isPointwise, groups = self.groups, weightCount = weight.value.count
        // For stride 1 (and no groups), ∂L/∂x is itself a convolution: of ∂L/∂y with the
        // weights flipped in space and transposed in channels, padded by k−1−p. Its
        // im2col copies rows, where the general route (col2im) scatters and must zero
        // ∂L/∂x first — measured here at 11 % of a VGG epoch.
        let (kh, kw) = kernelSize
        // Only for "same" padding: otherwise the transposed convolution pads by k−1−p and
        // does more work than the scatter (2× for LeNet-5's unpadded 5×5).
        let asConvolution = wantsInput && !pointwise && window.isUniform && stride == 1 && groups == 1
            && 2 * padding == kh - 1 && 2 * padding == kw - 1
        let transposedGeometry = ConvGeometry(batch: g.batch, height: g.outHeight, width: g.outWidth,
                                              kernelHeight: kh, kernelWidth: kw, stride: 1,
                                              padding: kh - 1 - padding)
        let flipped = asConvolution ? flippedTransposedWeight() : nil
        // The transposed convolution is 3×3, stride 1, padding 1 too: Winograd when it applies.
        let winograd = asConvolution && winogradApplies(kernelHeight: kh, kernelWidth: kw, stride: 1,
                                                        padding: padding, groups: 1, inChannels: outChannels,
                                                        height: g.height, width: g.width)
        var winogradU: Tensor? = nil
        if winograd, let flipped {
            var u = Tensor(uninitializedShape: [16, inChannels, outChannels])
            flipped.withUnsafeBufferPointer { f in u.withUnsafeMutableBufferPointer { up in
                winogradFilterTransform(f.baseAddress!, outChannels: inChannels, inChannels: outChannels,
                                        into: up.baseAddress!)
            } }
            winogradU = u
        }
        let (cin, cout) = (inChannels, outChannels)
        let kTransposed = outChannels * kh * kw
        var dx: Tensor? = wantsInput
            ? (asConvolution ? Tensor(uninitializedShape: inputShape) : Tensor(shape: inputShape)) : nil
        let transposedFloats = !asConvolution ? 0 : winograd
            ? winogradFloatsPerImage(inChannels: outChannels, outChannels: inChannels, height: g.height, width: g.width)
            : kTransposed * g.height * g.width
        // The weight gradient of a Winograd-shaped layer by Winograd too (Kernels/Winograd.swift).
        let winogradWeights = parameterGradients && window.isUniform
            && winogradApplies(kernelHeight: kh, kernelWidth: kw, stride: stride, padding: padding, groups: groups,
                               inChannels: inChannels, height: g.height, width: g.width)
        let weightFloats = winogradWeights
            ? winogradFloatsPerImage(inChannels: inChannels, outChannels: outChannels, height: g.height, width: g.width)
            : cached != nil && !wantsInput ? 0 : k * hw
        let floatsPerImage = max(weightFloats, transposedFloats)
        let partialPerThread = winogradWeights ? 16 * outChannels * inChannels : weightCount
        let chunks = imageChunkCount(g, floatsPerImage: floatsPerImage)
        gradOutput.withUnsafeBufferPointer { gp in
            let wantsWeights = parameterGradients
            if let b = bias, wantsWeights { accumulateChannelSums(gp.baseAddress!, planeCount: l, into: b) }
            x.withUnsafeBufferPointer { xp in weight.value.withUnsafeBufferPointer { wp in
                withOptionalMutablePointer(&dx) { dxBase in withOptionalPointer(flipped) { flippedBase in
                withOptionalPointer(winogradU) { winogradBase in withOptionalPointer(cached) { cachedBase in
                // One weight-gradient buffer per thread, summed in thread order afterwards.
                let partialCount = wantsWeights ? chunks.threads * partialPerThread : 0
                Workspace.withBuffer(count: partialCount) { partial in
                    partial.update(repeating: 0, count: partialCount)
                    let (xb, wb, dyb) = (xp.baseAddress!, wp.baseAddress!, gp.baseAddress!)
                    forEachImageChunk(g, floatsPerImage: floatsPerImage) { images, col, thread in
                        let cols = images.count * hw, first = images.lowerBound * hw
                        let dw = partial + thread * partialPerThread
                        for grp in 0..<groups {
                            let src = xb + grp * cg * g.planeCount
                            let dy = dyb + grp * og * l + first
                            if wantsWeights && winogradWeights {
                                winogradWeightGradientChunk(xb, dy: dyb, inChannels: cin, outChannels: cout,
                                                            batch: g.batch, height: g.height, width: g.width,
                                                            images: images, scratch: col, accumulating: dw)
                            } else if wantsWeights, let cachedBase {
                                // dW[O, k] += dY[O, cols] · colᵀ[cols, k], columns from the forward pass.
                                sgemmSerial(transB: true, m: og, n: k, k: cols, a: dy, lda: l, b: cachedBase + first,
                                            ldb: l, beta: 1, c: dw, ldc: k)
                            } else if wantsWeights {
                                if !pointwise { im2col(src, channels: cg, g, images: images, into: col) }
                                // dW_g[og, k] += dY_g[og, cols] · colᵀ[cols, k]
                                sgemmSerial(transB: true, m: og, n: k, k: cols, a: dy, lda: l,
                                            b: pointwise ? src + first : UnsafePointer(col), ldb: pointwise ? l : cols,
                                            beta: 1, c: dw + grp * og * k, ldc: k)
                            }
                            guard let dxb = dxBase else { continue }
                            let dst = dxb + grp * cg * g.planeCount
                            let inCols = images.count * g.height * g.width, inFirst = images.lowerBound * g.height * g.width
                            if let u = winogradBase {
                                // dX = conv₃ₓ₃(dY, W') by Winograd F(2×2, 3×3).
                                winogradConvolveChunk(dyb, u: u, inChannels: cout, outChannels: cin, batch: g.batch,
                                                      height: g.height, width: g.width, images: images,
                                                      scratch: col, into: dst)
                            } else if let wt = flippedBase {
                                // dX[C, cols] = W'[C, O·kh·kw] · im2col(dY)
                                im2col(dyb, channels: outChannels, transposedGeometry, images: images, into: col)
                                sgemmSerial(m: inChannels, n: inCols, k: kTransposed, a: wt, lda: kTransposed,
                                            b: col, ldb: inCols, c: dst + inFirst, ldc: g.planeCount)
                            } else {
                                // dcol[k, cols] = W_gᵀ[k, og] · dY_g[og, cols], then fold back.
                                sgemmSerial(transA: true, m: k, n: cols, k: og, a: wb + grp * og * k, lda: k,
                                            b: dy, ldb: l, c: pointwise ? dst + first : col, ldc: pointwise ? l : cols)
                                if !pointwise { col2im(col, channels: cg, g, images: images, into: dst) }
                            }
                        }
                    }
                    if wantsWeights && winogradWeights { weight.gradient.withUnsafeMutableBufferPointer { gw in
                        for t in 1..<max(chunks.threads, 1) {
                            let p = partial + t * partialPerThread
                            for i in 0..<partialPerThread { partial[i] += p[i] }
                        }
                        winogradWeightGradientTransform(partial, outChannels: cout, inChannels: cin, into: gw.baseAddress!)
                    } } else if wantsWeights { weight.gradient.withUnsafeMutableBufferPointer { gw in
                        for t in 0..<chunks.threads {
                            let p = partial + t * weightCount
                            for i in 0..<weightCount { gw[i] += p[i] }
                        }
                    } }
                }
                } } } }
            } }
        }
        return [dx]
    }

    /// W'[c, o, a, b] = W[o, c, kh−1−a, kw−1−b]: the weights of the convolution that maps
    /// ∂L/∂y to ∂L/∂x for stride 1.
    private func flippedTransposedWeight() -> Tensor {
        let (o, c, kh, kw) = (outChannels, inChannels, kernelSize.height, kernelSize.width)
        var out = Tensor(uninitializedShape: [c, o, kh, kw])
        weight.value.withUnsafeBufferPointer { w in out.withUnsafeMutableBufferPointer { t in
            for oc in 0..<o { for ic in 0..<c { for a in 0..<kh { for b in 0..<kw {
                t[((ic * o + oc) * kh + a) * kw + b] = w[((oc * c + ic) * kh + (kh - 1 - a)) * kw + (kw - 1 - b)]
            } } } }
        } }
        return out
    }
}

/// How a convolution's batch is divided: each of `threads` threads takes a contiguous
/// range of images and walks it in chunks of `imagesPerChunk`, sized so that a chunk's
/// column matrix stays in cache.
struct ImageChunking {
    var threads: Int
    var imagesPerChunk: Int
}

/// The largest forward column matrix (floats, 8 MiB) that Conv2d keeps for the weight
/// gradient instead of unfolding the input a second time.
let columnCacheLimit = 2 * 1024 * 1024

/// The column-matrix budget per thread, in floats (2 MiB): measured here, VGG-sized
/// convolutions ran fastest with 1–4 MiB of columns per chunk.
let columnChunkBudget = 512 * 1024

func imageChunkCount(_ g: ConvGeometry, floatsPerImage: Int) -> ImageChunking {
    let perImage = max(1, floatsPerImage)
    let threads = Parallel.chunkCount(g.batch, grain: 1)
    return ImageChunking(threads: max(threads, 1), imagesPerChunk: max(1, columnChunkBudget / perImage))
}

/// Runs `body(images, columnBuffer, thread)` over the batch's images: the threads take
/// fixed contiguous ranges, each walked in cache-sized chunks with the thread's own
/// column buffer of `floatsPerImage` floats per image. The partition depends only on the shapes and the thread count.
func forEachImageChunk(_ g: ConvGeometry, floatsPerImage: Int,
                       _ body: (Range<Int>, UnsafeMutablePointer<Float>, Int) -> Void) {
    forEachImageChunk(g, floatsPerImage: floatsPerImage) { images, col, thread, _, _ in body(images, col, thread) }
}

/// ``forEachImageChunk(_:floatsPerImage:_:)`` that also tells `body` whether a chunk is its
/// thread's first and its last (the buffer is the same for all of a thread's chunks, and no
/// later chunk is larger than the first).
func forEachImageChunk(_ g: ConvGeometry, floatsPerImage: Int,
                       _ body: (Range<Int>, UnsafeMutablePointer<Float>, _ thread: Int, _ first: Bool, _ last: Bool) -> Void) {
    let plan = imageChunkCount(g, floatsPerImage: floatsPerImage)
    DispatchQueue.concurrentPerform(iterations: plan.threads) { t in
        Parallel.flushDenormals()
        let mine = Parallel.range(of: t, in: g.batch, chunks: plan.threads)
        Workspace.withBuffer(count: max(1, floatsPerImage) * min(plan.imagesPerChunk, max(mine.count, 1))) { col in
            var start = mine.lowerBound
            while start < mine.upperBound {
                let end = min(mine.upperBound, start + plan.imagesPerChunk)
                body(start..<end, col, t, start == mine.lowerBound, end == mine.upperBound)
                start = end
            }
        }
    }
}

/// ``forEachImageChunk(_:floatsPerImage:_:)`` for callers that do not need the thread index.
func forEachImageChunk(_ g: ConvGeometry, floatsPerImage: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
    forEachImageChunk(g, floatsPerImage: floatsPerImage) { images, col, _ in body(images, col) }
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
                base[c] += simdSum(dy + c * planeCount, planeCount)
            }
        }
    }
}

/// The configuration keys of a kernel and its window, in the form ``LayerFactory`` reads: one
/// key where both axes (or all four sides) agree (`kernel_size`, `stride`, `padding`,
/// `dilation`, the last only when not 1), split keys where they differ (`kernel_height` and
/// `kernel_width`, `stride_height` and `stride_width`, `dilation_height` and `dilation_width`,
/// `padding_top`, `padding_left`, `padding_bottom` and `padding_right`).
func windowConfiguration(kernel: (height: Int, width: Int), _ w: ConvWindow, dilation: Bool) -> [String: Double] {
    var c: [String: Double] = [:]
    func pair(_ key: String, _ a: Int, _ b: Int) {
        if a == b { c[key] = Double(a) } else { c[key + "_height"] = Double(a); c[key + "_width"] = Double(b) }
    }
    if kernel.height == kernel.width {
        c["kernel_size"] = Double(kernel.height)
    } else {
        c["kernel_height"] = Double(kernel.height); c["kernel_width"] = Double(kernel.width)
    }
    pair("stride", w.strideHeight, w.strideWidth)
    if dilation, w.dilationHeight != 1 || w.dilationWidth != 1 { pair("dilation", w.dilationHeight, w.dilationWidth) }
    if Set(w.pads).count == 1 {
        c["padding"] = Double(w.padTop)
    } else {
        for (side, v) in zip(["top", "left", "bottom", "right"], w.pads) { c["padding_" + side] = Double(v) }
    }
    return c
}
