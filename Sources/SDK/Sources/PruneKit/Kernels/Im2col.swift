/// Where a convolution's (or pooling window's) taps fall on the input: the strides, the
/// dilations and the padding of each side, each per axis.
///
/// A uniform window (``isUniform``: equal strides, the same padding on every side, no
/// dilation) is what the fast paths (Winograd, the transposed-convolution backward) serve;
/// every other window goes through the general im2col.
public struct ConvWindow: Sendable, Equatable {
    public var strideHeight: Int, strideWidth: Int
    public var dilationHeight: Int, dilationWidth: Int
    public var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int

    /// Equal strides and the same padding on every side, no dilation.
    public init(stride: Int = 1, padding: Int = 0) {
        self.init(strideHeight: stride, strideWidth: stride, padTop: padding, padLeft: padding,
                  padBottom: padding, padRight: padding)
    }

    public init(strideHeight: Int = 1, strideWidth: Int = 1, dilationHeight: Int = 1, dilationWidth: Int = 1,
                padTop: Int = 0, padLeft: Int = 0, padBottom: Int = 0, padRight: Int = 0) {
        self.strideHeight = strideHeight; self.strideWidth = strideWidth
        self.dilationHeight = dilationHeight; self.dilationWidth = dilationWidth
        self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
    }

    /// Equal strides, the same padding on every side and no dilation.
    public var isUniform: Bool {
        strideHeight == strideWidth && dilationHeight == 1 && dilationWidth == 1
            && padTop == padLeft && padTop == padBottom && padTop == padRight
    }

    /// The pads in ONNX's order: top, left, bottom, right.
    public var pads: [Int] { [padTop, padLeft, padBottom, padRight] }

    /// Rows a `kernelHeight`-row window spans with its dilation: (k − 1)·d + 1.
    public func extent(kernelHeight k: Int) -> Int { (k - 1) * dilationHeight + 1 }
    /// Columns a `kernelWidth`-column window spans with its dilation.
    public func extent(kernelWidth k: Int) -> Int { (k - 1) * dilationWidth + 1 }
}

/// The geometry of a 2-d convolution or pooling window over channel-major feature maps
/// `[C, N, H, W]`.
public struct ConvGeometry: Equatable, Sendable {
    public var batch: Int, height: Int, width: Int
    public var kernelHeight: Int, kernelWidth: Int
    /// Strides, dilations and the padding of each side.
    public var window: ConvWindow

    /// A uniform window: `stride` on both axes, `padding` on every side.
    public init(batch: Int, height: Int, width: Int, kernelHeight: Int, kernelWidth: Int,
                stride: Int, padding: Int) {
        self.init(batch: batch, height: height, width: width, kernelHeight: kernelHeight, kernelWidth: kernelWidth,
                  window: ConvWindow(stride: stride, padding: padding))
    }

    public init(batch: Int, height: Int, width: Int, kernelHeight: Int, kernelWidth: Int, window: ConvWindow) {
        self.batch = batch; self.height = height; self.width = width
        self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
        self.window = window
    }

    /// The vertical stride (the stride of a uniform window); setting it sets both.
    public var stride: Int {
        get { window.strideHeight }
        set { window.strideHeight = newValue; window.strideWidth = newValue }
    }
    /// The top padding (the padding of a uniform window); setting it sets every side.
    public var padding: Int {
        get { window.padTop }
        set { window.padTop = newValue; window.padLeft = newValue; window.padBottom = newValue; window.padRight = newValue }
    }

    public var outHeight: Int {
        (height + window.padTop + window.padBottom - window.extent(kernelHeight: kernelHeight)) / window.strideHeight + 1
    }
    public var outWidth: Int {
        (width + window.padLeft + window.padRight - window.extent(kernelWidth: kernelWidth)) / window.strideWidth + 1
    }
    /// Elements of one input channel over the whole batch.
    public var planeCount: Int { batch * height * width }
    /// Columns of the im2col matrix: one per output position of the batch.
    public var columnCount: Int { batch * outHeight * outWidth }
    /// Rows of the im2col matrix contributed by one input channel.
    public var rowsPerChannel: Int { kernelHeight * kernelWidth }

    /// The output columns `x0..<x1` whose input column `x·strideWidth − padLeft + kj·dilationWidth`
    /// lies inside the image; the others read padding.
    @inlinable
    public func validOutputColumns(kernelColumn kj: Int) -> (Int, Int) {
        let (s, offset) = (window.strideWidth, window.padLeft - kj * window.dilationWidth)
        let first = offset > 0 ? (offset + s - 1) / s : 0
        let last = width - 1 + offset          // largest x·stride allowed
        guard last >= 0 else { return (0, 0) }
        let x0 = min(outWidth, first)
        return (x0, max(x0, min(outWidth, last / s + 1)))
    }
}

/// Unfolds `channels` channel-major input planes into the `[channels·kh·kw, N·Ho·Wo]`
/// column matrix of a convolution, zero where the window overlaps the padding. Any
/// ``ConvWindow``: per-axis strides and dilations, a different padding on each side.
///
/// - Parameters:
///   - src: `[channels, N, H, W]`.
///   - images: the examples to unfold; the matrix has `images.count·Ho·Wo` columns.
///   - dst: `[channels·kh·kw, images.count·Ho·Wo]`, every element written.
/// - Cost: one read and one write per column element, on the calling thread.
public func im2col(_ src: UnsafePointer<Float>, channels: Int, _ g: ConvGeometry, images: Range<Int>,
                   into dst: UnsafeMutablePointer<Float>) {
    im2col(src, channels: channels, g, images: images, into: dst, rowStride: images.count * g.outHeight * g.outWidth)
}

/// ``im2col(_:channels:_:images:into:)`` into the columns of a wider matrix whose rows are
/// `rowStride` floats apart (for example the whole batch's column matrix).
func im2col(_ src: UnsafePointer<Float>, channels: Int, _ g: ConvGeometry, images: Range<Int>,
            into dst: UnsafeMutablePointer<Float>, rowStride columns: Int) {
    let (kh, kw) = (g.kernelHeight, g.kernelWidth)
    let (sy, sx, dy, dx) = (g.window.strideHeight, g.window.strideWidth, g.window.dilationHeight, g.window.dilationWidth)
    let (pt, pl) = (g.window.padTop, g.window.padLeft)
    let (h, w, ho, wo) = (g.height, g.width, g.outHeight, g.outWidth)
    let plane = g.planeCount
    do {
        for r in 0..<(channels * kh * kw) {
            let c = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw
            let channel = src + c * plane
            var d = dst + r * columns
            let (x0, x1) = g.validOutputColumns(kernelColumn: kj)
            let shift = kj * dx - pl         // input column of output column x: x·sx + shift
            for img in images {
                let image = channel + img * h * w
                for y in 0..<ho {
                    let iy = y * sy - pt + ki * dy
                    if iy < 0 || iy >= h {
                        zeroFloats(d, wo)
                    } else {
                        let row = image + iy * w
                        if x0 > 0 { zeroFloats(d, x0) }
                        if sx == 1 {
                            copyFloats(d + x0, row + (x0 + shift), x1 - x0)
                        } else {
                            var x = x0
                            while x < x1 { d[x] = row[x * sx + shift]; x += 1 }
                        }
                        if x1 < wo { zeroFloats(d + x1, wo - x1) }
                    }
                    d += wo
                }
            }
        }
    }
}

/// The adjoint of ``im2col(_:channels:_:into:)``: adds each column element back into the
/// input position it was read from.
///
/// - Parameters:
///   - src: `[channels·kh·kw, images.count·Ho·Wo]`.
///   - images: the examples the columns belong to.
///   - dst: `[channels, N, H, W]`, accumulated into (zero it first for a plain fold).
/// - Cost: one read and one read–modify–write per column element, on the calling thread,
///   in a fixed order.
public func col2im(_ src: UnsafePointer<Float>, channels: Int, _ g: ConvGeometry, images: Range<Int>,
                   into dst: UnsafeMutablePointer<Float>) {
    let (kh, kw) = (g.kernelHeight, g.kernelWidth)
    let (sy, sx, dy, dx) = (g.window.strideHeight, g.window.strideWidth, g.window.dilationHeight, g.window.dilationWidth)
    let (pt, pl) = (g.window.padTop, g.window.padLeft)
    let (h, w, ho, wo) = (g.height, g.width, g.outHeight, g.outWidth)
    let columns = images.count * ho * wo, plane = g.planeCount
    do {
        for c in 0..<channels {
            let channel = dst + c * plane
            for ki in 0..<kh {
                for kj in 0..<kw {
                    var d = UnsafePointer(src + ((c * kh + ki) * kw + kj) * columns)
                    let (x0, x1) = g.validOutputColumns(kernelColumn: kj)
                    let shift = kj * dx - pl
                    for img in images {
                        let image = channel + img * h * w
                        for y in 0..<ho {
                            let iy = y * sy - pt + ki * dy
                            if iy >= 0 && iy < h {
                                let row = image + iy * w
                                if sx == 1 {
                                    let out = row + (x0 + shift)
                                    for x in 0..<(x1 - x0) { out[x] += d[x0 + x] }
                                } else {
                                    var x = x0
                                    while x < x1 { row[x * sx + shift] += d[x]; x += 1 }
                                }
                            }
                            d += wo
                        }
                    }
                }
            }
        }
    }
}

/// Copies `n` floats with 8-wide vector moves. Image rows are short (28 floats for MNIST),
/// where a `memmove` call costs more than the copy: measured at 8 % of a VGG epoch.
@inline(__always)
func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
    let rd = UnsafeMutableRawPointer(dst), rs = UnsafeRawPointer(src)
    var i = 0
    while i + 8 <= n {
        rd.storeBytes(of: rs.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self), toByteOffset: i * 4,
                      as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { dst[i] = src[i]; i += 1 }
}

/// Sets `n` floats to zero with 8-wide vector stores (see ``copyFloats(_:_:_:)``).
@inline(__always)
func zeroFloats(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    let rd = UnsafeMutableRawPointer(dst)
    var i = 0
    while i + 8 <= n {
        rd.storeBytes(of: SIMD8<Float>(), toByteOffset: i * 4, as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { dst[i] = 0; i += 1 }
}
