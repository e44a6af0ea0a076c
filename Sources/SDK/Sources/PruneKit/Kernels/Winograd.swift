/// Winograd F(2×2, 3×3) for 3×3, stride-1, "same"-padded (padding 1), ungrouped
/// convolutions over channel-major feature maps `[C, N, H, W]`.
///
/// Each output is cut into 2×2 tiles; tile (ty, tx) reads the 4×4 input patch at rows
/// 2·ty−1 … 2·ty+2 and columns 2·tx−1 … 2·tx+2 (zero outside the image). With
/// Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]], G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]]
/// and Aᵀ = [[1,1,1,0],[0,1,−1,−1]]:
///
///     U[ξ][o][c] = (G·w[o,c]·Gᵀ)[ξ]          once per call
///     V[ξ][c][t] = (Bᵀ·d[c,t]·B)[ξ]          per chunk of images
///     M[ξ]       = U[ξ] · V[ξ]               16 GEMMs, O×C by C×tiles
///     y[o, tile t] = Aᵀ·M[·][o][t]·A          only the outputs inside the image
///
/// 16 multiplies per 4 outputs and input channel instead of 36: 2.25× fewer in the GEMMs.
/// ``referenceConvolution3x3Same(_:weight:bias:inChannels:outChannels:batch:height:width:into:)``
/// is the naive loop it is tested against.

/// Whether Conv2d uses Winograd F(2×2, 3×3) for a convolution of this shape: 3×3, stride 1,
/// padding 1, no groups, enough input channels for the 16 GEMMs (k = inChannels) to pay, and
/// feature maps of at least 8×8: measured here on vgg-small, the 7×7 layer (64→128) ran
/// ≈ 25 % slower with Winograd (16 tiles compute 64 outputs for 49, and the GEMMs are small).
func winogradApplies(kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int, groups: Int,
                     inChannels: Int, height: Int, width: Int) -> Bool {
    kernelHeight == 3 && kernelWidth == 3 && stride == 1 && padding == 1 && groups == 1
        && inChannels >= 16 && min(height, width) >= 8
}

/// 2×2 output tiles of an H×W image: ⌈H/2⌉·⌈W/2⌉.
@inlinable
public func winogradTileCount(height: Int, width: Int) -> Int { ((height + 1) / 2) * ((width + 1) / 2) }

/// Scratch floats per image for one chunk: V (16·C·tiles) and M (16·O·tiles).
@inlinable
public func winogradFloatsPerImage(inChannels: Int, outChannels: Int, height: Int, width: Int) -> Int {
    16 * (inChannels + outChannels) * winogradTileCount(height: height, width: width)
}

/// U[ξ][o][c] = (G·w[o,c]·Gᵀ)[ξ] for weights `[O, C, 3, 3]`; `u` holds 16·O·C floats.
public func winogradFilterTransform(_ w: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                    into u: UnsafeMutablePointer<Float>) {
    let oc = outChannels * inChannels
    for i in 0..<oc {
        let g = w + i * 9
        // Rows of G·g (4×3), then ·Gᵀ on each row.
        let g0 = SIMD4<Float>(g[0], g[1], g[2], 0), g1 = SIMD4<Float>(g[3], g[4], g[5], 0)
        let g2 = SIMD4<Float>(g[6], g[7], g[8], 0)
        let rows = (g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2)
        for row in 0..<4 {
            let a = row == 0 ? rows.0 : row == 1 ? rows.1 : row == 2 ? rows.2 : rows.3
            u[(row * 4 + 0) * oc + i] = a.x
            u[(row * 4 + 1) * oc + i] = 0.5 * (a.x + a.y + a.z)
            u[(row * 4 + 2) * oc + i] = 0.5 * (a.x - a.y + a.z)
            u[(row * 4 + 3) * oc + i] = a.z
        }
    }
}

/// V[ξ][c][t] for the images `images` of `src` `[channels, batch, height, width]`; tiles are
/// numbered image by image, row by row. `v` holds 16·channels·T floats, T = images.count·tiles.
/// One tile at a time: the reference for ``winogradInputTransformVectorized(_:channels:batch:height:width:images:into:)``,
/// which the kernels use.
public func winogradInputTransform(_ src: UnsafePointer<Float>, channels: Int, batch: Int, height h: Int,
                                   width w: Int, images: Range<Int>, into v: UnsafeMutablePointer<Float>) {
    let th = (h + 1) / 2, tw = (w + 1) / 2
    let tiles = images.count * th * tw
    let plane = batch * h * w, stride = channels * tiles   // between ξ planes of V
    for c in 0..<channels {
        var out = v + c * tiles
        for img in images {
            let image = src + c * plane + img * h * w
            for ty in 0..<th {
                let y0 = 2 * ty - 1
                let rowsInside = y0 >= 0 && y0 + 3 < h
                for tx in 0..<tw {
                    let x0 = 2 * tx - 1
                    var d0: SIMD4<Float>, d1: SIMD4<Float>, d2: SIMD4<Float>, d3: SIMD4<Float>
                    if rowsInside && x0 >= 0 && x0 + 3 < w {
                        let p = image + y0 * w + x0
                        d0 = SIMD4(p[0], p[1], p[2], p[3])
                        d1 = SIMD4(p[w], p[w + 1], p[w + 2], p[w + 3])
                        d2 = SIMD4(p[2 * w], p[2 * w + 1], p[2 * w + 2], p[2 * w + 3])
                        d3 = SIMD4(p[3 * w], p[3 * w + 1], p[3 * w + 2], p[3 * w + 3])
                    } else {
                        @inline(__always) func load(_ dy: Int) -> SIMD4<Float> {
                            let y = y0 + dy
                            guard y >= 0 && y < h else { return .zero }
                            let row = image + y * w
                            var r = SIMD4<Float>.zero
                            for dx in 0..<4 { let x = x0 + dx; if x >= 0 && x < w { r[dx] = row[x] } }
                            return r
                        }
                        d0 = load(0); d1 = load(1); d2 = load(2); d3 = load(3)
                    }
                    // Bᵀ·d (rows), then ·B (columns).
                    let a0 = d0 - d2, a1 = d1 + d2, a2 = d2 - d1, a3 = d1 - d3
                    @inline(__always) func store(_ a: SIMD4<Float>, _ o: UnsafeMutablePointer<Float>) {
                        o[0] = a.x - a.z; o[stride] = a.y + a.z
                        o[2 * stride] = a.z - a.y; o[3 * stride] = a.y - a.w
                    }
                    store(a0, out); store(a1, out + 4 * stride)
                    store(a2, out + 8 * stride); store(a3, out + 12 * stride)
                    out += 1
                }
            }
        }
    }
}

/// y[o, img, ·, ·] = Aᵀ·M·A for every tile of `images`, writing only outputs inside the
/// image; `m` is `[16][channels][T]` and `y` the whole `[channels, batch, height, width]` output.
public func winogradOutputTransform(_ m: UnsafePointer<Float>, channels: Int, batch: Int, height h: Int,
                                    width w: Int, images: Range<Int>, into y: UnsafeMutablePointer<Float>) {
    let th = (h + 1) / 2, tw = (w + 1) / 2
    let tiles = images.count * th * tw
    let plane = batch * h * w, stride = channels * tiles
    for c in 0..<channels {
        var p = m + c * tiles
        for img in images {
            let image = y + c * plane + img * h * w
            for ty in 0..<th {
                let fullRows = 2 * ty + 1 < h
                for tx in 0..<tw {
                    let r0 = SIMD4(p[0], p[stride], p[2 * stride], p[3 * stride])
                    let r1 = SIMD4(p[4 * stride], p[5 * stride], p[6 * stride], p[7 * stride])
                    let r2 = SIMD4(p[8 * stride], p[9 * stride], p[10 * stride], p[11 * stride])
                    let r3 = SIMD4(p[12 * stride], p[13 * stride], p[14 * stride], p[15 * stride])
                    let b0 = r0 + r1 + r2, b1 = r1 - r2 - r3
                    let o = image + 2 * ty * w + 2 * tx
                    o[0] = b0.x + b0.y + b0.z
                    let fullColumns = 2 * tx + 1 < w
                    if fullColumns { o[1] = b0.y - b0.z - b0.w }
                    if fullRows {
                        o[w] = b1.x + b1.y + b1.z
                        if fullColumns { o[w + 1] = b1.y - b1.z - b1.w }
                    }
                    p += 1
                }
            }
        }
    }
}

/// One chunk of a Winograd convolution on the calling thread: y[:, images] = conv(x[:, images])
/// without bias. `u` comes from ``winogradFilterTransform(_:outChannels:inChannels:into:)``;
/// `scratch` holds `images.count ·` ``winogradFloatsPerImage(inChannels:outChannels:height:width:)`` floats.
public func winogradConvolveChunk(_ x: UnsafePointer<Float>, u: UnsafePointer<Float>, inChannels: Int,
                                  outChannels: Int, batch: Int, height: Int, width: Int, images: Range<Int>,
                                  scratch: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>) {
    winogradConvolveChunk(x, u: u, inChannels: inChannels, outChannels: outChannels, batch: batch, height: height,
                          width: width, images: images, scratch: scratch, productsZeroed: false,
                          leavesProductsZeroed: false, into: y)
}

/// ``winogradConvolveChunk(_:u:inChannels:outChannels:batch:height:width:images:scratch:into:)``
/// with the products M (the first 16·outChannels·T floats of `scratch`, T = images.count·tiles)
/// optionally kept zero between chunks: when `productsZeroed`, the 16 GEMMs accumulate into
/// them (beta = 1) and skip BLAS's zero-filling pass over C; when `leavesProductsZeroed`, the
/// output transform writes zeros back while the lines are still in cache, so the next chunk of
/// this scratch (as many images or fewer) can accumulate again.
/// Measured (perf, pruned vgg-small, batch 64, one thread): the zero-filling pass took 13 %.
func winogradConvolveChunk(_ x: UnsafePointer<Float>, u: UnsafePointer<Float>, inChannels: Int,
                           outChannels: Int, batch: Int, height: Int, width: Int, images: Range<Int>,
                           scratch: UnsafeMutablePointer<Float>, productsZeroed: Bool, leavesProductsZeroed: Bool,
                           into y: UnsafeMutablePointer<Float>) {
    let tiles = images.count * winogradTileCount(height: height, width: width)
    guard tiles > 0 else { return }
    // M first, so a smaller later chunk's M lies inside the zeroed part.
    let m = scratch, v = scratch + 16 * outChannels * tiles
    winogradInputTransformVectorized(x, channels: inChannels, batch: batch, height: height, width: width,
                           images: images, into: v)
    for xi in 0..<16 {
        sgemmSerial(m: outChannels, n: tiles, k: inChannels, a: u + xi * outChannels * inChannels, lda: inChannels,
                    b: v + xi * inChannels * tiles, ldb: tiles, beta: productsZeroed ? 1 : 0,
                    c: m + xi * outChannels * tiles, ldc: tiles)
    }
    winogradOutputTransformVectorized(m, channels: outChannels, batch: batch, height: height, width: width,
                                      images: images, zeroing: leavesProductsZeroed, into: y)
}

/// ``winogradOutputTransform(_:channels:batch:height:width:images:into:)`` four tiles at a
/// time: the 16 products of four adjacent tiles of a tile row are four-wide loads, and the two
/// output rows are stored eight wide (interleaving the tiles' left and right columns). Same
/// arithmetic in the same order, so the same results. With `zeroing`, every product read is
/// set to zero (see ``winogradConvolveChunk(_:u:inChannels:outChannels:batch:height:width:images:scratch:productsZeroed:leavesProductsZeroed:into:)``).
/// Measured (perf, pruned vgg-small, batch 64, one thread): the scalar kernel took 11.5 %.
public func winogradOutputTransformVectorized(_ m: UnsafeMutablePointer<Float>, channels: Int, batch: Int,
                                              height h: Int, width w: Int, images: Range<Int>, zeroing: Bool,
                                              into y: UnsafeMutablePointer<Float>) {
    let th = (h + 1) / 2, tw = (w + 1) / 2
    let tiles = images.count * th * tw
    let plane = batch * h * w, stride = channels * tiles
    guard tiles > 0 else { return }
    /// The (up to) four outputs of tile (img, ty, tx) that lie inside the image.
    @inline(__always) func put(_ c: Int, _ img: Int, _ ty: Int, _ tx: Int, _ a: Float, _ b: Float, _ d: Float, _ e: Float) {
        let o = y + c * plane + img * h * w + 2 * ty * w + 2 * tx
        let fullColumns = 2 * tx + 1 < w
        o[0] = a
        if fullColumns { o[1] = b }
        if 2 * ty + 1 < h {
            o[w] = d
            if fullColumns { o[w + 1] = e }
        }
    }
    for c in 0..<channels {
        let p = m + c * tiles
        // Tile t's position, kept incrementally: image img, tile row ty, tile column tx.
        var img = images.lowerBound, ty = 0, tx = 0
        @inline(__always) func advance() {
            tx += 1
            if tx == tw { tx = 0; ty += 1; if ty == th { ty = 0; img += 1 } }
        }
        var t = 0
        // Four consecutive tiles (possibly across tile rows and images), all products four wide.
        while t + 4 <= tiles {
            @inline(__always) func load(_ xi: Int) -> SIMD4<Float> {
                let q = UnsafeMutableRawPointer(p + xi * stride + t)
                let r = q.loadUnaligned(as: SIMD4<Float>.self)
                if zeroing { q.storeBytes(of: .zero, as: SIMD4<Float>.self) }
                return r
            }
            // Mk: product k (row-major in the 4×4 tile) of the four tiles; Aᵀ·M on rows
            // (b0 = m0+m1+m2, b1 = m1−m2−m3 per column), then ·A, as in the scalar kernel.
            let m0 = load(0), m1 = load(1), m2 = load(2), m3 = load(3)
            let m4 = load(4), m5 = load(5), m6 = load(6), m7 = load(7)
            let m8 = load(8), m9 = load(9), m10 = load(10), m11 = load(11)
            let m12 = load(12), m13 = load(13), m14 = load(14), m15 = load(15)
            let b00 = m0 + m4 + m8, b01 = m1 + m5 + m9, b02 = m2 + m6 + m10, b03 = m3 + m7 + m11
            let b10 = m4 - m8 - m12, b11 = m5 - m9 - m13, b12 = m6 - m10 - m14, b13 = m7 - m11 - m15
            let y00 = b00 + b01 + b02, y01 = b01 - b02 - b03
            let y10 = b10 + b11 + b12, y11 = b11 - b12 - b13
            if tx + 3 < tw && 2 * tx + 7 < w {
                // One tile row, all columns inside: two eight-wide stores (one when the
                // bottom output row lies outside the image).
                @inline(__always) func interleave(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> SIMD8<Float> {
                    SIMD8(a.x, b.x, a.y, b.y, a.z, b.z, a.w, b.w)
                }
                let o = UnsafeMutableRawPointer(y + c * plane + img * h * w + 2 * ty * w + 2 * tx)
                o.storeBytes(of: interleave(y00, y01), as: SIMD8<Float>.self)
                if 2 * ty + 1 < h { o.storeBytes(of: interleave(y10, y11), toByteOffset: 4 * w, as: SIMD8<Float>.self) }
                tx += 3; advance()
            } else {
                for l in 0..<4 { put(c, img, ty, tx, y00[l], y01[l], y10[l], y11[l]); advance() }
            }
            t += 4
        }
        // The last tiles, one at a time.
        while t < tiles {
            var r = (SIMD4<Float>.zero, SIMD4<Float>.zero, SIMD4<Float>.zero, SIMD4<Float>.zero)
            for row in 0..<4 {
                var v = SIMD4<Float>.zero
                for col in 0..<4 {
                    let q = p + (row * 4 + col) * stride + t
                    v[col] = q[0]
                    if zeroing { q[0] = 0 }
                }
                if row == 0 { r.0 = v } else if row == 1 { r.1 = v } else if row == 2 { r.2 = v } else { r.3 = v }
            }
            let b0 = r.0 + r.1 + r.2, b1 = r.1 - r.2 - r.3
            put(c, img, ty, tx, b0.x + b0.y + b0.z, b0.y - b0.z - b0.w, b1.x + b1.y + b1.z, b1.y - b1.z - b1.w)
            advance()
            t += 1
        }
    }
}

/// The direct 3×3, stride-1, padding-1 convolution that the Winograd kernel is tested
/// against (accumulating in Double). Never used on a hot path.
/// x `[C, N, H, W]`, weight `[O, C, 3, 3]`, bias `[O]` or nil, y `[O, N, H, W]`.
public func referenceConvolution3x3Same(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                        bias: UnsafePointer<Float>?, inChannels: Int, outChannels: Int,
                                        batch: Int, height h: Int, width w: Int,
                                        into y: UnsafeMutablePointer<Float>) {
    let plane = batch * h * w
    for o in 0..<outChannels { for n in 0..<batch { for oy in 0..<h { for ox in 0..<w {
        var s = Double(bias?[o] ?? 0)
        for c in 0..<inChannels { for ky in 0..<3 { for kx in 0..<3 {
            let iy = oy - 1 + ky, ix = ox - 1 + kx
            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
            s += Double(weight[((o * inChannels + c) * 3 + ky) * 3 + kx]) * Double(x[c * plane + (n * h + iy) * w + ix])
        } } }
        y[o * plane + (n * h + oy) * w + ox] = Float(s)
    } } } }
}

/// The transform of ∂L/∂y for the Winograd weight gradient: T[ξ][o][t] = (A·dy[o,t]·Aᵀ)[ξ]
/// for the 2×2 output tile t (zero outside the image), with A = [[1,0],[1,1],[1,−1],[0,−1]].
/// `dy` is `[channels, batch, height, width]`; `t` holds 16·channels·T floats, T = images.count·tiles.
public func winogradOutputGradientTransform(_ dy: UnsafePointer<Float>, channels: Int, batch: Int,
                                            height h: Int, width w: Int, images: Range<Int>,
                                            into t: UnsafeMutablePointer<Float>) {
    let th = (h + 1) / 2, tw = (w + 1) / 2
    let tiles = images.count * th * tw
    let plane = batch * h * w, stride = channels * tiles
    for c in 0..<channels {
        var out = t + c * tiles
        for img in images {
            let image = dy + c * plane + img * h * w
            for ty in 0..<th {
                let fullRows = 2 * ty + 1 < h
                for tx in 0..<tw {
                    let o = image + 2 * ty * w + 2 * tx
                    let fullColumns = 2 * tx + 1 < w
                    let a = o[0], b = fullColumns ? o[1] : 0
                    let c0 = fullRows ? o[w] : 0, d = fullRows && fullColumns ? o[w + 1] : 0
                    // A·dy: rows (a b), (a+c b+d), (a−c b−d), (−c −d); then ·Aᵀ on each row.
                    @inline(__always) func store(_ p: Float, _ q: Float, _ dst: UnsafeMutablePointer<Float>) {
                        dst[0] = p; dst[stride] = p + q; dst[2 * stride] = p - q; dst[3 * stride] = -q
                    }
                    store(a, b, out); store(a + c0, b + d, out + 4 * stride)
                    store(a - c0, b - d, out + 8 * stride); store(-c0, -d, out + 12 * stride)
                    out += 1
                }
            }
        }
    }
}

/// One chunk of the Winograd F(2×2, 3×3) weight gradient on the calling thread:
/// M[ξ][o][c] += Σ_t T[ξ][o][t]·V[ξ][c][t], with V the input transform of `x` and T that of `dy`
/// (``winogradOutputGradientTransform(_:channels:batch:height:width:images:into:)``).
/// ``winogradWeightGradientTransform(_:outChannels:inChannels:into:)`` turns M into ∂L/∂w.
///
/// It is the adjoint of the forward pass: y = Aᵀ[(G·w·Gᵀ) ⊙ V]A gives ∂L/∂w = Gᵀ[(A·dy·Aᵀ) ⊙ V]G.
/// - Parameters:
///   - x: `[inChannels, batch, height, width]`; dy: `[outChannels, batch, height, width]`.
///   - scratch: `images.count ·` ``winogradFloatsPerImage(inChannels:outChannels:height:width:)`` floats.
///   - m: `[16, outChannels, inChannels]`, accumulated into.
/// - Cost: 16 GEMMs of 2·O·C·T flops (2.25× fewer than im2col's 2·O·9C·4T) and two transforms.
public func winogradWeightGradientChunk(_ x: UnsafePointer<Float>, dy: UnsafePointer<Float>, inChannels: Int,
                                        outChannels: Int, batch: Int, height: Int, width: Int, images: Range<Int>,
                                        scratch: UnsafeMutablePointer<Float>, accumulating m: UnsafeMutablePointer<Float>) {
    let tiles = images.count * winogradTileCount(height: height, width: width)
    guard tiles > 0 else { return }
    let v = scratch, t = scratch + 16 * inChannels * tiles
    winogradInputTransformVectorized(x, channels: inChannels, batch: batch, height: height, width: width,
                           images: images, into: v)
    winogradOutputGradientTransform(dy, channels: outChannels, batch: batch, height: height, width: width,
                                    images: images, into: t)
    for xi in 0..<16 {
        sgemmSerial(transB: true, m: outChannels, n: inChannels, k: tiles, a: t + xi * outChannels * tiles, lda: tiles,
                    b: v + xi * inChannels * tiles, ldb: tiles, beta: 1,
                    c: m + xi * outChannels * inChannels, ldc: inChannels)
    }
}

/// ∂L/∂w[o, c] += Gᵀ·M[·][o][c]·G (3×3) for `m` `[16, O, C]` from
/// ``winogradWeightGradientChunk(_:dy:inChannels:outChannels:batch:height:width:images:scratch:accumulating:)``;
/// `dw` is `[O, C, 3, 3]`.
public func winogradWeightGradientTransform(_ m: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                            into dw: UnsafeMutablePointer<Float>) {
    let oc = outChannels * inChannels
    for i in 0..<oc {
        @inline(__always) func row(_ r: Int) -> SIMD4<Float> {
            SIMD4(m[(r * 4) * oc + i], m[(r * 4 + 1) * oc + i], m[(r * 4 + 2) * oc + i], m[(r * 4 + 3) * oc + i])
        }
        let m0 = row(0), m1 = row(1), m2 = row(2), m3 = row(3)
        // Gᵀ·M: rows m0 + ½(m1+m2), ½(m1−m2), ½(m1+m2) + m3; then ·G on each row.
        let rows = (m0 + 0.5 * (m1 + m2), 0.5 * (m1 - m2), 0.5 * (m1 + m2) + m3)
        let g = dw + i * 9
        for r in 0..<3 {
            let a = r == 0 ? rows.0 : r == 1 ? rows.1 : rows.2
            g[r * 3] += a.x + 0.5 * (a.y + a.z)
            g[r * 3 + 1] += 0.5 * (a.y - a.z)
            g[r * 3 + 2] += 0.5 * (a.y + a.z) + a.w
        }
    }
}

/// ``winogradInputTransform(_:channels:batch:height:width:images:into:)`` four tiles at a time:
/// the four input rows of a tile row are copied into a zero-padded strip, so every tile reads
/// inside it, and two unaligned 8-wide loads per row give the four columns of four adjacent
/// tiles (even and odd halves). Same arithmetic in the same order, so the same results.
/// Measured on vgg-small (one thread, perf): the scalar kernel took 13 % of an epoch once
/// the weight gradient used Winograd too.
public func winogradInputTransformVectorized(_ src: UnsafePointer<Float>, channels: Int, batch: Int, height h: Int,
                                             width w: Int, images: Range<Int>, into v: UnsafeMutablePointer<Float>) {
    let th = (h + 1) / 2, tw = (w + 1) / 2
    let tiles = images.count * th * tw
    let plane = batch * h * w, stride = channels * tiles
    // Strip row r holds input row 2·ty−1+r at offset 1 (column −1 at 0), zero elsewhere.
    let pitch = 2 * tw + 16
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * pitch) { buffer in
        let strip = buffer.baseAddress!
        strip.update(repeating: 0, count: 4 * pitch)
        for c in 0..<channels {
            var out = v + c * tiles
            for img in images {
                let image = src + c * plane + img * h * w
                for ty in 0..<th {
                    for r in 0..<4 {
                        let y = 2 * ty - 1 + r, row = strip + r * pitch
                        if y >= 0 && y < h { copyFloats(row + 1, image + y * w, w) } else { zeroFloats(row + 1, w) }
                    }
                    var j = 0
                    while j < tw {
                        @inline(__always) func columns(_ r: Int) -> (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>) {
                            let p = UnsafeRawPointer(strip + r * pitch + 2 * j)
                            let a = p.loadUnaligned(as: SIMD8<Float>.self)
                            let b = p.loadUnaligned(fromByteOffset: 8, as: SIMD8<Float>.self)
                            return (a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf)
                        }
                        // dR.k: column k of row R of the 4×4 patch, for tiles j…j+3.
                        let d0 = columns(0), d1 = columns(1), d2 = columns(2), d3 = columns(3)
                        // Bᵀ·d on rows, then ·B on columns (as in the scalar kernel).
                        let a0 = (d0.0 - d2.0, d0.1 - d2.1, d0.2 - d2.2, d0.3 - d2.3)
                        let a1 = (d1.0 + d2.0, d1.1 + d2.1, d1.2 + d2.2, d1.3 + d2.3)
                        let a2 = (d2.0 - d1.0, d2.1 - d1.1, d2.2 - d1.2, d2.3 - d1.3)
                        let a3 = (d1.0 - d3.0, d1.1 - d3.1, d1.2 - d3.2, d1.3 - d3.3)
                        let n = min(4, tw - j)
                        @inline(__always) func put(_ value: SIMD4<Float>, _ o: UnsafeMutablePointer<Float>) {
                            if n == 4 {
                                UnsafeMutableRawPointer(o).storeBytes(of: value, as: SIMD4<Float>.self)
                            } else {
                                for l in 0..<n { o[l] = value[l] }
                            }
                        }
                        @inline(__always) func store(_ a: (SIMD4<Float>, SIMD4<Float>, SIMD4<Float>, SIMD4<Float>),
                                                     _ o: UnsafeMutablePointer<Float>) {
                            put(a.0 - a.2, o); put(a.1 + a.2, o + stride)
                            put(a.2 - a.1, o + 2 * stride); put(a.1 - a.3, o + 3 * stride)
                        }
                        store(a0, out); store(a1, out + 4 * stride)
                        store(a2, out + 8 * stride); store(a3, out + 12 * stride)
                        out += n
                        j += 4
                    }
                }
            }
        }
    }
}
