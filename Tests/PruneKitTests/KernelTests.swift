import PruneKit
import XCTest

/// Each optimised kernel against a naive reference written for clarity.
final class KernelTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return .randomNormal(shape, using: &rng)
    }

    func testSgemmMatchesReferenceForEveryTransposition() {
        // Sizes large enough to be split over threads, and odd ones.
        for (m, n, k) in [(3, 5, 7), (67, 130, 45), (128, 64, 96)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let a = random(transA ? [k, m] : [m, k], seed: 1), b = random(transB ? [n, k] : [k, n], seed: 2)
                    var c = random([m, n], seed: 3), expected = c
                    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5,
                                  a: ap.baseAddress!, lda: a.shape[1], b: bp.baseAddress!, ldb: b.shape[1],
                                  beta: 2, c: cp.baseAddress!, ldc: n)
                        }
                        expected.withUnsafeMutableBufferPointer { ep in
                            referenceSgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5,
                                           a: ap.baseAddress!, lda: a.shape[1], b: bp.baseAddress!, ldb: b.shape[1],
                                           beta: 2, c: ep.baseAddress!, ldc: n)
                        }
                    } }
                    for i in 0..<c.count {
                        XCTAssertEqual(c.scalars[i], expected.scalars[i], accuracy: 1e-3 * max(1, abs(expected.scalars[i])),
                                       "m \(m) n \(n) k \(k) transA \(transA) transB \(transB)")
                    }
                }
            }
        }
    }

    /// Direct convolution from the definition, on channel-major input.
    private func referenceConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, padding: Int, groups: Int) -> Tensor {
        referenceConv(x, w, b, window: ConvWindow(stride: stride, padding: padding), groups: groups)
    }

    /// Direct convolution from the definition for any window: output (oy, ox) reads input
    /// (oy·sh − top + ky·dh, ox·sw − left + kx·dw), zero outside the image.
    private func referenceConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, window v: ConvWindow, groups: Int) -> Tensor {
        let (n, h, wd) = (x.shape[1], x.shape[2], x.shape[3])
        let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        let ho = (h + v.padTop + v.padBottom - ((kh - 1) * v.dilationHeight + 1)) / v.strideHeight + 1
        let wo = (wd + v.padLeft + v.padRight - ((kw - 1) * v.dilationWidth + 1)) / v.strideWidth + 1
        let og = o / groups
        var y = Tensor(shape: [o, n, ho, wo])
        for oc in 0..<o { for img in 0..<n { for oy in 0..<ho { for ox in 0..<wo {
            var s = Double(b?.scalars[oc] ?? 0)
            let g = oc / og
            for ic in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * v.strideHeight - v.padTop + ky * v.dilationHeight
                let ix = ox * v.strideWidth - v.padLeft + kx * v.dilationWidth
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                s += Double(w[oc, ic, ky, kx]) * Double(x[g * cg + ic, img, iy, ix])
            } } }
            y[oc, img, oy, ox] = Float(s)
        } } } }
        return y
    }

    /// Non-square kernels, per-axis strides, dilations and asymmetric padding (the general
    /// im2col path), forward in both modes and both gradients against the direct definition:
    /// ∂L/∂x and ∂L/∂w of L = Σ r ⊙ y by the adjoint identities ⟨∂L/∂x, e⟩ = ⟨r, conv(e)⟩.
    func testConv2dGeneralWindowsMatchDirectConvolution() {
        let cases: [(cin: Int, cout: Int, kh: Int, kw: Int, window: ConvWindow, g: Int, h: Int, w: Int)] = [
            (3, 4, 3, 2, ConvWindow(strideHeight: 2, strideWidth: 1, padTop: 0, padLeft: 1, padBottom: 1, padRight: 0), 1, 9, 8),
            (4, 5, 3, 3, ConvWindow(dilationHeight: 2, dilationWidth: 2, padTop: 2, padLeft: 2, padBottom: 2, padRight: 2), 1, 8, 7),
            (2, 3, 1, 3, ConvWindow(strideHeight: 1, strideWidth: 2, dilationHeight: 1, dilationWidth: 3, padLeft: 2, padRight: 1), 1, 5, 11),
            (4, 4, 3, 3, ConvWindow(strideHeight: 2, strideWidth: 3, dilationHeight: 2, dilationWidth: 1, padTop: 1, padLeft: 0, padBottom: 2, padRight: 2), 2, 10, 9),
            (3, 3, 2, 2, ConvWindow(padTop: 0, padLeft: 0, padBottom: 1, padRight: 1), 3, 6, 6),     // depthwise, SAME_UPPER-like
            (16, 16, 3, 3, ConvWindow(padTop: 1, padLeft: 1, padBottom: 1, padRight: 1), 1, 8, 8),   // Winograd-shaped control
        ]
        for (i, t) in cases.enumerated() {
            var rng = RandomGenerator(seed: UInt64(i))
            let conv = Conv2d(inChannels: t.cin, outChannels: t.cout, kernel: (t.kh, t.kw), window: t.window, groups: t.g, rng: &rng)
            let x = random([t.cin, 2, t.h, t.w], seed: UInt64(20 + i))
            let expected = referenceConv(x, conv.weight.value, conv.bias?.value, window: t.window, groups: t.g)
            XCTAssertEqual(try conv.outputShape(for: [[t.cin, t.h, t.w]]), [t.cout, expected.shape[2], expected.shape[3]], "case \(i)")
            for mode in [ForwardMode.inference, .training] {
                let y = conv.forward([x], mode: mode)
                XCTAssertEqual(y.shape, expected.shape, "case \(i)")
                for j in 0..<y.count {
                    XCTAssertEqual(y.scalars[j], expected.scalars[j], accuracy: 1e-4, "case \(i) \(mode.training) element \(j)")
                }
            }
            // Backward: ⟨∂L/∂x, e⟩ = ⟨r, conv(e) − bias⟩ and ⟨∂L/∂w, u⟩ = ⟨r, conv_u(x)⟩ for random e, u.
            let r = random(expected.shape, seed: UInt64(40 + i))
            conv.weight.zeroGradient()
            let dx = conv.backward(r, needsInputGradient: [true])[0]!
            let e = random(x.shape, seed: UInt64(60 + i)), u = random(conv.weight.value.shape, seed: UInt64(80 + i))
            func dot(_ a: Tensor, _ b: Tensor) -> Double { zip(a.scalars, b.scalars).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
            let ce = referenceConv(e, conv.weight.value, nil, window: t.window, groups: t.g)
            let cu = referenceConv(x, u, nil, window: t.window, groups: t.g)
            XCTAssertEqual(dot(dx, e), dot(r, ce), accuracy: 1e-3 * max(1, abs(dot(r, ce))), "case \(i) ∂L/∂x")
            XCTAssertEqual(dot(conv.weight.gradient, u), dot(r, cu), accuracy: 1e-3 * max(1, abs(dot(r, cu))), "case \(i) ∂L/∂w")
        }
    }

    func testConv2dForwardMatchesDirectConvolution() {
        let cases: [(cin: Int, cout: Int, k: Int, s: Int, p: Int, g: Int, h: Int, w: Int)] = [
            (1, 6, 5, 1, 2, 1, 12, 12), (6, 16, 5, 1, 0, 1, 14, 14), (3, 4, 3, 2, 1, 1, 9, 8),
            (4, 6, 3, 1, 1, 2, 7, 7), (5, 5, 3, 1, 1, 5, 6, 6), (3, 7, 1, 1, 0, 1, 5, 5), (2, 3, 3, 3, 0, 1, 10, 10),
        ]
        for (i, t) in cases.enumerated() {
            var rng = RandomGenerator(seed: UInt64(i))
            let conv = Conv2d(inChannels: t.cin, outChannels: t.cout, kernelSize: t.k, stride: t.s, padding: t.p,
                              groups: t.g, rng: &rng)
            let x = random([t.cin, 3, t.h, t.w], seed: UInt64(10 + i))
            let expected = referenceConv(x, conv.weight.value, conv.bias?.value, stride: t.s, padding: t.p, groups: t.g)
            // Inference unfolds in chunks; training keeps the whole batch's columns for backward.
            for mode in [ForwardMode.inference, .training] {
                let y = conv.forward([x], mode: mode)
                XCTAssertEqual(y.shape, expected.shape, "case \(i)")
                for j in 0..<y.count {
                    XCTAssertEqual(y.scalars[j], expected.scalars[j], accuracy: 1e-4, "case \(i) \(mode.training) element \(j)")
                }
            }
        }
    }

    /// col2im is the adjoint of im2col: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
    func testCol2imIsTheAdjointOfIm2col() {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (5, 1, 0), (2, 2, 0)] {
            let g = ConvGeometry(batch: 2, height: 7, width: 6, kernelHeight: k, kernelWidth: k, stride: s, padding: p)
            let x = random([3, 2, 7, 6], seed: 1)
            let rows = 3 * k * k, cols = g.columnCount
            let c = random([rows, cols], seed: 2)
            var colX = Tensor(shape: [rows, cols]), foldC = Tensor(shape: [3, 2, 7, 6])
            x.withUnsafeBufferPointer { xp in colX.withUnsafeMutableBufferPointer { cp in
                im2col(xp.baseAddress!, channels: 3, g, images: 0..<2, into: cp.baseAddress!)
            } }
            c.withUnsafeBufferPointer { cp in foldC.withUnsafeMutableBufferPointer { fp in
                col2im(cp.baseAddress!, channels: 3, g, images: 0..<2, into: fp.baseAddress!)
            } }
            let lhs = zip(colX.scalars, c.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let rhs = zip(x.scalars, foldC.scalars).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-3 * max(1, abs(lhs)), "k \(k) s \(s) p \(p)")
        }
    }

    func testSimdReductionsMatchDoubleLoops() {
        for n in [0, 1, 7, 16, 33, 1000] {
            let a = random([max(n, 1)], seed: 1), b = random([max(n, 1)], seed: 2)
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
                var s = 0.0, d = 0.0, q = 0.0
                for i in 0..<n { s += Double(ap[i]); d += Double(ap[i]) * Double(bp[i]); q += (Double(ap[i]) - 0.5) * (Double(ap[i]) - 0.5) }
                XCTAssertEqual(Double(simdSum(ap.baseAddress!, n)), s, accuracy: 1e-4 * max(1, Double(n)))
                XCTAssertEqual(Double(simdDot(ap.baseAddress!, bp.baseAddress!, n)), d, accuracy: 1e-4 * max(1, Double(n)))
                XCTAssertEqual(Double(simdSumOfSquaredDeviations(ap.baseAddress!, n, from: 0.5)), q, accuracy: 1e-4 * max(1, Double(n)))
            } }
        }
    }

    func testTransposeAndLayoutSwaps() {
        let m = random([5, 7], seed: 4)
        let t = m.transposed()
        XCTAssertEqual(t.shape, [7, 5])
        for i in 0..<5 { for j in 0..<7 { XCTAssertEqual(t[j, i], m[i, j]) } }
        let x = random([2, 3, 4, 5], seed: 5)
        let cm = batchMajorToChannelMajor(x)
        XCTAssertEqual(cm.shape, [3, 2, 4, 5])
        XCTAssertEqual(cm[2, 1, 3, 4], x[1, 2, 3, 4])
        XCTAssertEqual(channelMajorToBatchMajor(cm), x)
    }

    func testSameSeedAndThreadCountGiveBitIdenticalTraining() throws {
        func losses(threads: Int) throws -> [Float] {
            let saved = Parallel.threadCount
            Parallel.setThreadCount(threads)
            defer { Parallel.setThreadCount(saved) }
            let model = try ModelZoo.make("vgg-small", inputShape: [1, 12, 12], classCount: 4, seed: 3)
            let trainer = Trainer(model: model, optimizer: SGD(learningRate: 0.05, momentum: 0.9))
            let x = random([16, 1, 12, 12], seed: 6)
            let labels = (0..<16).map { $0 % 4 }
            return try (0..<3).map { _ in try trainer.step(images: x, labels: labels).loss }
        }
        let a = try losses(threads: 2), b = try losses(threads: 2)
        XCTAssertEqual(a, b, "the same seed and thread count must give the same losses, bit for bit")
        XCTAssertLessThan(a[2], a[0], "three steps on one batch should lower its loss")
        let single = try losses(threads: 1)
        for (u, v) in zip(a, single) { XCTAssertEqual(u, v, accuracy: 1e-4) }
    }
}
