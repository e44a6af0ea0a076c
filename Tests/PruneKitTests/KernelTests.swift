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
        let (c, n, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        let ho = (h + 2 * padding - kh) / stride + 1, wo = (wd + 2 * padding - kw) / stride + 1
        let og = o / groups
        var y = Tensor(shape: [o, n, ho, wo])
        for oc in 0..<o { for img in 0..<n { for oy in 0..<ho { for ox in 0..<wo {
            var s = Double(b?.scalars[oc] ?? 0)
            let g = oc / og
            for ic in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                let iy = oy * stride - padding + ky, ix = ox * stride - padding + kx
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                s += Double(w[oc, ic, ky, kx]) * Double(x[g * cg + ic, img, iy, ix])
            } } }
            y[oc, img, oy, ox] = Float(s)
        } } } }
        _ = c
        return y
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
