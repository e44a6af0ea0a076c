import PruneKit
import XCTest

/// Winograd F(2×2, 3×3) against the direct 3×3 "same" convolution.
final class WinogradTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return .randomNormal(shape, using: &rng)
    }

    private func reference(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Tensor {
        let (c, n, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), o = w.shape[0]
        var y = Tensor(shape: [o, n, h, wd])
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            if let b {
                b.withUnsafeBufferPointer { bp in
                    referenceConvolution3x3Same(xp.baseAddress!, weight: wp.baseAddress!, bias: bp.baseAddress!,
                                                inChannels: c, outChannels: o, batch: n, height: h, width: wd,
                                                into: yp.baseAddress!)
                }
            } else {
                referenceConvolution3x3Same(xp.baseAddress!, weight: wp.baseAddress!, bias: nil, inChannels: c,
                                            outChannels: o, batch: n, height: h, width: wd, into: yp.baseAddress!)
            }
        } } }
        return y
    }

    /// F(2,3) in float: errors grow with the output's magnitude; relative 2e-4 of the largest.
    private func assertClose(_ y: Tensor, _ expected: Tensor, _ label: String) {
        XCTAssertEqual(y.shape, expected.shape, label)
        let scale = max(1, expected.scalars.map(abs).max() ?? 0)
        var worst: Float = 0
        for (a, b) in zip(y.scalars, expected.scalars) { worst = max(worst, abs(a - b)) }
        XCTAssertLessThanOrEqual(worst, 2e-4 * scale, "\(label): max error \(worst), scale \(scale)")
    }

    private let sizes = [(5, 5), (6, 7), (28, 28), (7, 7), (1, 1), (2, 3), (14, 13)]
    private let channels = [(16, 16), (3, 8), (32, 24), (17, 5)]

    /// The kernel itself, over the whole batch and split into chunks of images.
    func testKernelMatchesDirectConvolution() {
        for (si, (h, w)) in sizes.enumerated() { for (ci, (cin, cout)) in channels.enumerated() { for n in [1, 3] {
            let seed = UInt64(100 * si + 10 * ci + n)
            let x = random([cin, n, h, w], seed: seed), wt = random([cout, cin, 3, 3], seed: seed + 1)
            let expected = reference(x, wt, nil)
            for split in n == 1 ? [[0..<1]] : [[0..<3], [0..<1, 1..<3]] {
                var y = Tensor(shape: [cout, n, h, w])
                x.withUnsafeBufferPointer { xp in wt.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                    var u = [Float](repeating: 0, count: 16 * cout * cin)
                    u.withUnsafeMutableBufferPointer { up in
                        winogradFilterTransform(wp.baseAddress!, outChannels: cout, inChannels: cin, into: up.baseAddress!)
                        for images in split {
                            var scratch = [Float](repeating: .nan, count: images.count
                                * winogradFloatsPerImage(inChannels: cin, outChannels: cout, height: h, width: w))
                            scratch.withUnsafeMutableBufferPointer { sp in
                                winogradConvolveChunk(xp.baseAddress!, u: UnsafePointer(up.baseAddress!),
                                                      inChannels: cin, outChannels: cout, batch: n, height: h,
                                                      width: w, images: images, scratch: sp.baseAddress!,
                                                      into: yp.baseAddress!)
                            }
                        }
                    }
                } } }
                assertClose(y, expected, "\(h)×\(w) \(cin)→\(cout) batch \(n) chunks \(split)")
            }
        } } }
    }

    /// Conv2d's forward (Winograd for ≥ 16 input channels) with bias, against the reference.
    func testConv2dForwardMatchesDirectConvolution() {
        // The last case has several chunks of 5 images per thread, the last one smaller (the
        // products stay zeroed between chunks); run twice so the second finds used scratch.
        for (i, (h, w, cin, cout, n)) in [(28, 28, 16, 32, 3), (8, 9, 64, 16, 1), (7, 7, 20, 12, 3), (5, 5, 1, 8, 3),
                                          (28, 27, 16, 16, 13)].enumerated() {
            var rng = RandomGenerator(seed: UInt64(i))
            let conv = Conv2d(inChannels: cin, outChannels: cout, kernelSize: 3, padding: 1, rng: &rng)
            let x = random([cin, n, h, w], seed: UInt64(50 + i))
            let expected = reference(x, conv.weight.value, conv.bias?.value)
            for pass in 0..<2 {
                assertClose(conv.forward([x], mode: .inference), expected, "case \(i) pass \(pass)")
            }
        }
    }

    /// ∂L/∂x of a 3×3 "same" convolution is the convolution of ∂L/∂y with the weights flipped
    /// in space and transposed in channels (Winograd when ≥ 16 output channels).
    func testConv2dInputGradientMatchesDirectTransposedConvolution() {
        for (i, (h, w, cin, cout, n)) in [(28, 28, 8, 16, 3), (9, 8, 32, 64, 2), (5, 6, 16, 20, 1)].enumerated() {
            var rng = RandomGenerator(seed: UInt64(20 + i))
            let conv = Conv2d(inChannels: cin, outChannels: cout, kernelSize: 3, padding: 1, rng: &rng)
            let x = random([cin, n, h, w], seed: UInt64(60 + i)), dy = random([cout, n, h, w], seed: UInt64(70 + i))
            _ = conv.forward([x], mode: .training)
            let dx = conv.backward(dy, needsInputGradient: [true])[0]!
            var flipped = Tensor(shape: [cin, cout, 3, 3])
            let wt = conv.weight.value
            for o in 0..<cout { for c in 0..<cin { for a in 0..<3 { for b in 0..<3 {
                flipped[c, o, a, b] = wt[o, c, 2 - a, 2 - b]
            } } } }
            assertClose(dx, reference(dy, flipped, nil), "case \(i)")
        }
    }

    /// ∂L/∂w[o, c, a, b] = Σ dy[o, n, y, x]·x[c, n, y+a−1, x+b−1], accumulated in Double.
    private func referenceWeightGradient(_ x: Tensor, _ dy: Tensor) -> Tensor {
        let (c, n, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), o = dy.shape[0]
        let (xs, gs) = (x.scalars, dy.scalars)
        var out = [Float](repeating: 0, count: o * c * 9)
        for oc in 0..<o { for ic in 0..<c { for a in 0..<3 { for b in 0..<3 {
            var s: Double = 0
            for img in 0..<n { for y in 0..<h { for xx in 0..<w {
                let iy = y + a - 1, ix = xx + b - 1
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                s += Double(gs[((oc * n + img) * h + y) * w + xx]) * Double(xs[((ic * n + img) * h + iy) * w + ix])
            } } }
            out[((oc * c + ic) * 3 + a) * 3 + b] = Float(s)
        } } } }
        return Tensor(shape: [o, c, 3, 3], scalars: out)
    }

    /// The Winograd weight-gradient kernel, whole batch and in chunks, against the direct sum.
    func testWeightGradientKernelMatchesDirectSum() {
        for (si, (h, w)) in sizes.enumerated() { for (ci, (cin, cout)) in channels.enumerated() { for n in [1, 3] {
            let seed = UInt64(300 + 100 * si + 10 * ci + n)
            let x = random([cin, n, h, w], seed: seed), dy = random([cout, n, h, w], seed: seed + 1)
            let expected = referenceWeightGradient(x, dy)
            for split in n == 1 ? [[0..<1]] : [[0..<3], [0..<1, 1..<3]] {
                var m = [Float](repeating: 0, count: 16 * cout * cin)
                var dw = Tensor(shape: [cout, cin, 3, 3])
                x.withUnsafeBufferPointer { xp in dy.withUnsafeBufferPointer { gp in m.withUnsafeMutableBufferPointer { mp in
                    for images in split {
                        var scratch = [Float](repeating: .nan, count: images.count
                            * winogradFloatsPerImage(inChannels: cin, outChannels: cout, height: h, width: w))
                        scratch.withUnsafeMutableBufferPointer { sp in
                            winogradWeightGradientChunk(xp.baseAddress!, dy: gp.baseAddress!, inChannels: cin,
                                                        outChannels: cout, batch: n, height: h, width: w,
                                                        images: images, scratch: sp.baseAddress!,
                                                        accumulating: mp.baseAddress!)
                        }
                    }
                    dw.withUnsafeMutableBufferPointer { dp in
                        winogradWeightGradientTransform(mp.baseAddress!, outChannels: cout, inChannels: cin,
                                                        into: dp.baseAddress!)
                    }
                } } }
                assertClose(dw, expected, "\(h)×\(w) \(cin)→\(cout) batch \(n) chunks \(split)")
            }
        } } }
    }

    /// Conv2d's weight gradient (Winograd for ≥ 16 input channels and maps ≥ 8×8, both
    /// threads' partial sums) adds to the gradient already there.
    func testConv2dWeightGradientMatchesDirectSum() {
        for (i, (h, w, cin, cout, n)) in [(28, 28, 16, 8, 4), (9, 8, 32, 64, 3), (7, 7, 20, 12, 2)].enumerated() {
            var rng = RandomGenerator(seed: UInt64(80 + i))
            let conv = Conv2d(inChannels: cin, outChannels: cout, kernelSize: 3, padding: 1, rng: &rng)
            let x = random([cin, n, h, w], seed: UInt64(90 + i)), dy = random([cout, n, h, w], seed: UInt64(95 + i))
            conv.weight.zeroGradient()
            conv.weight.gradient.withUnsafeMutableBufferPointer { $0[0] = 1 }
            _ = conv.forward([x], mode: .training)
            _ = conv.backward(dy, needsInputGradient: [false])
            var expected = referenceWeightGradient(x, dy)
            expected.withUnsafeMutableBufferPointer { $0[0] += 1 }
            assertClose(conv.weight.gradient, expected, "case \(i)")
        }
    }

    /// The four-tiles-at-a-time input transform against the one-tile reference: same
    /// arithmetic in the same order, so bit for bit the same, ragged last groups included.
    func testVectorizedInputTransformMatchesReference() {
        for (si, (h, w)) in sizes.enumerated() { for n in [1, 3] {
            let c = 3, x = random([c, n, h, w], seed: UInt64(500 + 10 * si + n))
            for images in n == 1 ? [0..<1] : [0..<3, 1..<3] {
                let count = 16 * c * images.count * winogradTileCount(height: h, width: w)
                var expected = [Float](repeating: .nan, count: count), got = expected
                x.withUnsafeBufferPointer { xp in
                    expected.withUnsafeMutableBufferPointer { ep in
                        winogradInputTransform(xp.baseAddress!, channels: c, batch: n, height: h, width: w,
                                               images: images, into: ep.baseAddress!)
                    }
                    got.withUnsafeMutableBufferPointer { gp in
                        winogradInputTransformVectorized(xp.baseAddress!, channels: c, batch: n, height: h, width: w,
                                                         images: images, into: gp.baseAddress!)
                    }
                }
                XCTAssertEqual(got, expected, "\(h)×\(w) batch \(n) images \(images)")
            }
        } }
    }

    /// The four-tiles-at-a-time output transform against the one-tile reference: bit for bit
    /// the same, ragged last groups and odd sizes included; with `zeroing`, the products read
    /// (and only those) are left zero.
    func testVectorizedOutputTransformMatchesReference() {
        for (si, (h, w)) in (sizes + [(9, 16), (16, 17)]).enumerated() { for n in [1, 3] {
            let c = 3
            for images in n == 1 ? [0..<1] : [0..<3, 1..<3] {
                let count = 16 * c * images.count * winogradTileCount(height: h, width: w)
                let m = random([count + 5], seed: UInt64(700 + 10 * si + n)).scalars
                var expected = [Float](repeating: .nan, count: c * n * h * w)
                var consumed = m
                m.withUnsafeBufferPointer { mp in expected.withUnsafeMutableBufferPointer { ep in
                    winogradOutputTransform(mp.baseAddress!, channels: c, batch: n, height: h, width: w,
                                            images: images, into: ep.baseAddress!)
                } }
                for zeroing in [false, true] {
                    var scratch = m, got = [Float](repeating: .nan, count: c * n * h * w)
                    scratch.withUnsafeMutableBufferPointer { sp in got.withUnsafeMutableBufferPointer { gp in
                        winogradOutputTransformVectorized(sp.baseAddress!, channels: c, batch: n, height: h, width: w,
                                                          images: images, zeroing: zeroing, into: gp.baseAddress!)
                    } }
                    XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern),
                                   "\(h)×\(w) batch \(n) images \(images) zeroing \(zeroing)")
                    if zeroing { consumed = scratch }
                    else { XCTAssertEqual(scratch, m) }
                }
                XCTAssertEqual(Array(consumed[..<count]), [Float](repeating: 0, count: count))
                XCTAssertEqual(Array(consumed[count...]), Array(m[count...]))
            }
        } }
    }
}
