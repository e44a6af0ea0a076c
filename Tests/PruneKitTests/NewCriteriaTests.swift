import Foundation
import PruneKit
import XCTest

/// The `fpgm`, `lamp`, `snip` and `hrank` criteria, loaded from their plugin libraries:
/// values by hand, values from an independent NumPy reference
/// (Tests/Fixtures/Reference/new_criteria.py), the conformance checker, non-finite
/// evidence, and hrank's rank against a naive Jacobi SVD on lenet-5's real feature maps.
final class NewCriteriaTests: XCTestCase {
    private func criterion(_ id: String, _ options: [String] = []) throws -> any Criterion {
        try TestSupport.builtInRegistry().criterion(id, options: options)
    }

    /// Feeds the batches to `criterion` for `layer` and scores it.
    private func run(_ criterion: any Criterion, _ layer: PrunableLayer, _ batches: [LayerBatch] = [],
                     gradient: Tensor? = nil, batchCount: Int? = nil) throws -> [Float] {
        try observeAndScore(criterion, layer: layer, batches: batches, weightGradient: gradient, batchCount: batchCount)
    }

    private func assertClose(_ a: [Float], _ e: [Double], _ tol: Double, _ what: String = "",
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, e.count, what, file: file, line: line)
        for (i, (x, y)) in zip(a, e).enumerated() {
            XCTAssertEqual(Double(x), y, accuracy: tol * max(1, abs(y)), "\(what) [\(i)]", file: file, line: line)
        }
    }

    private func assertThrowsNaming(_ layer: String, _ words: String, _ body: @autoclosure () throws -> [Float],
                                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssert(text.contains("'\(layer)'") && text.contains(words), text, file: file, line: line)
        }
    }

    // MARK: by hand

    func testFPGMByHand() throws {
        let fpgm = try criterion("fpgm")
        XCTAssertEqual(fpgm.granularity, .channel)
        XCTAssertEqual(fpgm.evidence, [])
        XCTAssertEqual(fpgm.preferredScope, .perLayer)
        // Filters (0, 0), (3, 4), (6, 8): ℓ2 distances 5, 10, 5 → sums 15, 10, 15; the
        // middle filter is the geometric median and scores lowest (pruned first).
        let layer = TestSupport.layer([[0, 0], [3, 4], [6, 8]], path: "fc")
        XCTAssertEqual(try run(fpgm, layer), [15, 10, 15])
        // ℓ1: 7, 14, 7 → 21, 14, 21.
        XCTAssertEqual(try run(criterion("fpgm", ["norm=l1"]), layer), [21, 14, 21])
        // One filter: no other to be near.
        XCTAssertEqual(try run(fpgm, TestSupport.layer([[1, 2]])), [0])
        XCTAssertThrowsError(try criterion("fpgm", ["norm=cosine"])) {
            XCTAssert("\($0)".contains("l2, l1"), "\($0)")
        }
    }

    func testLAMPByHand() throws {
        let lamp = try criterion("lamp")
        XCTAssertEqual(lamp.granularity, .weight)
        XCTAssertEqual(lamp.evidence, [])
        XCTAssertEqual(lamp.preferredScope, .global)
        // w = [1, −2, 2, 0, 3, 2], squares 1, 4, 4, 0, 9, 4 (total 22): 3 → 9/9; the three
        // tied ±2 share 4/(9 + 4 + 4 + 4), wherever they lie; 1 → 1/22; 0 → 0/22.
        let layer = TestSupport.layer([[1, -2, 2], [0, 3, 2]], path: "fc")
        XCTAssertEqual(try run(lamp, layer), [Float(1.0 / 22), Float(4.0 / 21), Float(4.0 / 21), 0, 1, Float(4.0 / 21)])
        // One row: squares 1, 4, 4, 0, 9 (total 18); the tied ±2 share 4/17.
        let simple = TestSupport.layer([[1, -2, 2, 0, 3]])
        XCTAssertEqual(try run(lamp, simple), [Float(1.0 / 18), Float(4.0 / 17), Float(4.0 / 17), 0, 1])
        // Permuting the weights permutes the scores, ties included (no position tie-break).
        XCTAssertEqual(try run(lamp, TestSupport.layer([[3, 2, 0, -2, 1]])), [1, Float(4.0 / 17), 0, Float(4.0 / 17), Float(1.0 / 18)])
        // k tied largest weights share 1/k (documented): 4/8 each.
        XCTAssertEqual(try run(lamp, TestSupport.layer([[2, -2, 1]])), [0.5, 0.5, Float(1.0 / 9)])
        // An all-zero layer (fully pruned): zeros, not NaN.
        XCTAssertEqual(try run(lamp, TestSupport.layer([[0, 0], [0, 0]])), [0, 0, 0, 0])
        // −0 ties with +0.
        XCTAssertEqual(try run(lamp, TestSupport.layer([[-0.0, 0, 1]])), [0, 0, 1])
    }

    func testSNIPByHand() throws {
        let snip = try criterion("snip")
        XCTAssertEqual(snip.granularity, .weight)
        XCTAssertEqual(snip.evidence, .weightGradients)
        XCTAssertEqual(snip.preferredScope, .global)
        let layer = TestSupport.layer([[1, -2], [0.5, 4]], path: "fc")
        // ∂L/∂W summed over 2 batches; ḡ is their mean: |w · g| / 2.
        let g = Tensor(shape: [2, 2], scalars: [3, 1, -8, -0.25])
        XCTAssertEqual(try run(snip, layer, gradient: g, batchCount: 2), [1.5, 1, 2, 0.5])
        XCTAssertEqual(try run(snip, layer, gradient: g, batchCount: 1), [3, 2, 4, 1])
        assertThrowsNaming("fc", "no weight gradient", try run(snip, layer))
    }

    /// Maps of known rank in one channel-major batch `[C, N, H, W]`.
    func testHRankByHand() throws {
        let hrank = try criterion("hrank")
        XCTAssertEqual(hrank.granularity, .channel)
        XCTAssertEqual(hrank.evidence, .activations)
        XCTAssertEqual(hrank.preferredScope, .perLayer)
        // 4 × 3 integer maps (exact in float32): channel 0 zero and rank 1; channel 1 rank 2
        // and rank 3 (full); channel 2 rank 3 and rank 2 (a repeated row, tall: Aᵀ·A path).
        let maps: [[Float]] = [
            [Float](repeating: 0, count: 12),
            [1, 2, 3, 2, 4, 6, 0, 0, 0, -1, -2, -3],                 // rows ∝ (1, 2, 3)
            [1, 0, 1, 0, 1, 1, 1, 1, 2, 2, 1, 3],                    // r3 = r1 + r2, r4 = 2r1 + r2
            [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1],
            [2, 1, 0, 0, 1, 5, 7, 0, 1, 3, 3, 3],
            [1, 1, 1, 4, 5, 6, 1, 1, 1, 4, 5, 6],
        ]
        let z = Tensor(shape: [3, 2, 4, 3], scalars: maps.flatMap { $0 })
        let layer = TestSupport.layer([[1], [1], [1]], path: "features.0", kind: .conv2d)
        XCTAssertEqual(try run(hrank, layer, [LayerBatch(activations: z, exampleCount: 2)]), [0.5, 2.5, 2.5])
        // A wide map (W > H: A·Aᵀ path) and a second batch: ranks are summed over all
        // examples, then divided once: channel 0 gets (0 + 1 + 2) / 3.
        let wide = Tensor(shape: [3, 1, 2, 3], scalars: [1, 0, 0, 0, 1, 0, /* c1 */ 0, 0, 0, 0, 0, 0, /* c2 */ 1, 2, 3, 2, 4, 6])
        XCTAssertEqual(try run(hrank, layer, [LayerBatch(activations: z, exampleCount: 2), LayerBatch(activations: wide, exampleCount: 1)]),
                       [1, Float(5.0 / 3), Float(6.0 / 3)])

        // The tolerance σ_max · max(H, W) · 2⁻²³: for diag(1, δ) (2 × 2) it is 2.38e-7.
        func rank2x2(_ delta: Float) throws -> Float {
            let m = Tensor(shape: [1, 1, 2, 2], scalars: [1, 0, 0, delta])
            return try run(hrank, TestSupport.layer([[1]], kind: .conv2d), [LayerBatch(activations: m, exampleCount: 1)])[0]
        }
        XCTAssertEqual(try rank2x2(3e-7), 2)
        XCTAssertEqual(try rank2x2(1.8e-7), 1)
        XCTAssertEqual(try rank2x2(0), 1)
        // The larger side sets it: for a 2 × 4 map diag(1, δ) it is 4.77e-7, so δ = 3e-7 is below.
        let wideDiagonal = Tensor(shape: [1, 1, 2, 4], scalars: [1, 0, 0, 0, 0, 3e-7, 0, 0])
        XCTAssertEqual(try run(hrank, TestSupport.layer([[1]], kind: .conv2d), [LayerBatch(activations: wideDiagonal, exampleCount: 1)]), [1])
        // Column vectors and 1 × 1 maps: rank 1 unless zero.
        let column = Tensor(shape: [2, 1, 5, 1], scalars: [0, 0, 1e-30, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try run(hrank, TestSupport.layer([[1], [1]], kind: .conv2d), [LayerBatch(activations: column, exampleCount: 1)]), [1, 0])
        // A linear layer's [N, F] output: the fraction of examples where the unit is non-zero.
        let rows = Tensor(shape: [2, 3], scalars: [0, 1, -2, 0, 0, 3])
        XCTAssertEqual(try run(hrank, TestSupport.layer([[1], [1], [1]]), [LayerBatch(activations: rows, exampleCount: 2)]), [0, 0.5, 1])
        assertThrowsNaming("features.0", "no activations", try run(hrank, layer, [LayerBatch(exampleCount: 2)]))
        assertThrowsNaming("features.0", "no activations", try run(hrank, layer))
    }

    /// Random integer low-rank maps of many shapes, and maps with a spread of singular
    /// values: hrank's Gram/Sturm rank equals a naive one-sided Jacobi SVD's with the same tolerance.
    func testHRankMatchesANaiveJacobiSVD() throws {
        let hrank = try criterion("hrank")
        var rng = RandomGenerator(seed: 2020)
        var checked = 0, ambiguous = 0
        for (h, w) in [(2, 2), (3, 5), (5, 3), (6, 6), (8, 4), (4, 9), (12, 12), (16, 7), (1, 6)] {
            let k = min(h, w)
            var maps: [[Float]] = []
            for r in 0...k {   // Σ of r integer outer products: rank r exactly (generically)
                var m = [Float](repeating: 0, count: h * w)
                for _ in 0..<r {
                    let u = (0..<h).map { _ in Float(Int(rng.next() % 7) - 3) }
                    let v = (0..<w).map { _ in Float(Int(rng.next() % 7) - 3) }
                    for i in 0..<h { for j in 0..<w { m[i * w + j] += u[i] * v[j] } }
                }
                maps.append(m)
            }
            for decades in [3.0, 6.0, 9.0] {   // U·diag(10^(−decades·i/(k−1)))·Vᵀ, rounded to float32
                var m = [Float](repeating: 0, count: h * w)
                for i in 0..<k {
                    let s = pow(10, -decades * Double(i) / Double(max(k - 1, 1)))
                    let u = (0..<h).map { _ in rng.nextNormal() }, v = (0..<w).map { _ in rng.nextNormal() }
                    for a in 0..<h { for b in 0..<w { m[a * w + b] += Float(s * Double(u[a]) * Double(v[b])) } }
                }
                maps.append(m)
            }
            let layer = TestSupport.layer([[1]], path: "maps", kind: .conv2d)
            for (i, m) in maps.enumerated() {
                let single = Tensor(shape: [1, 1, h, w], scalars: m)
                let got = try run(hrank, layer, [LayerBatch(activations: single, exampleCount: 1)])[0]
                let (expected, nearTolerance) = jacobiRank(m, rows: h, cols: w)
                if nearTolerance { ambiguous += 1; continue }
                XCTAssertEqual(got, Float(expected), "map \(i) of \(h)×\(w)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 70)
        XCTAssertLessThan(ambiguous, 3, "few maps have a singular value within 1% of the tolerance")
    }

    // MARK: against the NumPy reference, through Model.score

    private struct Reference: Decodable {
        let fpgm_l2: [String: [Double]], fpgm_l1: [String: [Double]], lamp: [String: [Double]]
        let snip: [String: [Double]], snip_normalised: [String: [Double]], hrank: [String: [Double]]
    }

    func testAgainstNumPyReference() throws {
        let url = TestSupport.repoRoot.appendingPathComponent("Tests/Fixtures/Reference/new_criteria.json")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let (model, data) = try TestSupport.referenceModel()

        // Two batches of 3: the mean of the batch-mean gradients is the reference's
        // whole-batch gradient whatever the shuffle; ranks are summed over all 6 examples.
        let settings = CalibrationSettings(batches: 2, batchSize: 3, seed: 11)
        let l2 = try model.score(with: criterion("fpgm"), data: nil, settings: settings)
        let l1 = try model.score(with: criterion("fpgm", ["norm=l1"]), data: nil, settings: settings)
        let lamp = try model.score(with: criterion("lamp"), data: nil, settings: settings)
        let snip = try model.score(with: criterion("snip"), data: data, settings: settings)
        let hrank = try model.score(with: criterion("hrank"), data: data, settings: settings)
        let snipTotal = snip.reduce(0.0) { $0 + $1.scores.reduce(0.0) { $0 + Double($1) } }
        for k in 0..<2 {
            let path = l2[k].layer.path
            assertClose(l2[k].scores, ref.fpgm_l2[path]!, 2e-7, "fpgm l2 \(path)")
            assertClose(l1[k].scores, ref.fpgm_l1[path]!, 2e-7, "fpgm l1 \(path)")
            assertClose(lamp[k].scores, ref.lamp[path]!, 1e-7, "lamp \(path)")
            // float32 forward/backward against float64 (measured: 6e-7 of the layer's largest
            // score; 3e-8 absolute once normalised). fpgm and lamp: float32 rounding (4e-8).
            let scale = ref.snip[path]!.max()!
            assertClose(snip[k].scores.map { $0 / Float(scale) }, ref.snip[path]!.map { $0 / scale }, 5e-6, "snip \(path)")
            assertClose(snip[k].scores.map { Float(Double($0) / snipTotal) }, ref.snip_normalised[path]!, 3e-7, "snip normalised \(path)")
            XCTAssertEqual(hrank[k].scores, ref.hrank[path]!.map { Float($0) }, "hrank \(path)")
        }
        // The reference sets ties (a weight equal to −another) in both layers: they share a score.
        XCTAssertEqual(lamp[0].scores[9], lamp[0].scores[4])   // w1[1,0,0,0] = −w1[0,0,1,1]
        XCTAssertEqual(lamp[1].scores[9], lamp[1].scores[3])   // w2[2,1] = −w2[0,3]
    }

    // MARK: contract

    func testConformance() throws {
        let registry = try TestSupport.builtInRegistry()
        for (id, options) in [("fpgm", []), ("fpgm", ["norm=l1"]), ("lamp", []), ("snip", []), ("hrank", [])] {
            for seed: UInt64 in [0, 3] {
                let report = assertConformance(try registry.criterion(id, options: options), seed: seed)
                XCTAssertFalse(report.results.isEmpty, id)
            }
        }
    }

    func testNonFiniteEvidenceIsAnErrorNamingTheLayer() throws {
        for bad in [Float.nan, .infinity] {
            let layer = TestSupport.layer([[1, bad], [2, 3]], path: "features.3")
            assertThrowsNaming("features.3", "NaN or infinite", try run(criterion("fpgm"), layer))
            assertThrowsNaming("features.3", "NaN or infinite", try run(criterion("lamp"), layer))
            let finite = TestSupport.layer([[1, 2], [2, 3]], path: "features.3")
            let g = Tensor(shape: [2, 2], scalars: [1, 1, 1, 1])
            assertThrowsNaming("features.3", "weights", try run(criterion("snip"), layer, gradient: g, batchCount: 1))
            let badG = Tensor(shape: [2, 2], scalars: [0, 1, bad, 1])
            assertThrowsNaming("features.3", "gradient", try run(criterion("snip"), finite, gradient: badG, batchCount: 1))
            // A NaN that would compare false everywhere and read as rank 0.
            let z = Tensor(shape: [2, 1, 2, 2], scalars: [1, 0, 0, 1, bad, 0, 0, 0])
            assertThrowsNaming("features.3", "activations", try run(criterion("hrank"), finite, [LayerBatch(activations: z, exampleCount: 1)]))
        }
    }

    // MARK: lenet-5 with real calibration data

    private func lenet() throws -> (Model, Dataset) {
        let data = try DatasetCatalog.load().train.subset(Array(0..<64))
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        return (model, data)
    }

    /// hrank on lenet-5's real post-ReLU maps (28 × 28 and 10 × 10, with MNIST's blank
    /// borders) equals the mean Jacobi-SVD rank of the same maps, gathered directly.
    func testHRankOnLeNet5MatchesJacobiRanks() throws {
        let (model, data) = try lenet()
        let settings = CalibrationSettings(batches: 2, batchSize: 6, seed: 4)
        let scored = try model.score(with: criterion("hrank"), data: data, settings: settings)
        XCTAssertEqual(scored.map(\.scores.count), [6, 16, 120, 84, 10])

        let m = try model.clone()
        m.mode = .inference
        let loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed)
        let relus = ["features.0": "features.1", "features.3": "features.4"]
        var sums: [String: [Int]] = [:], examples = 0, ambiguous = 0
        for bi in 0..<settings.batches {
            var outputs: [Int: Tensor] = [:]
            m.forwardObserver = { i, y in outputs[i] = y }
            _ = m.forward(loader.batch(bi).images)
            for (conv, relu) in relus {
                let y = outputs[m.nodes.firstIndex { $0.name == relu }!]!
                let (c, n, h, w) = (y.shape[0], y.shape[1], y.shape[2], y.shape[3])
                let x = y.scalars
                var s = sums[conv] ?? [Int](repeating: 0, count: c)
                for ch in 0..<c {
                    for e in 0..<n {
                        let start = (ch * n + e) * h * w
                        let (r, near) = jacobiRank(Array(x[start..<(start + h * w)]), rows: h, cols: w)
                        s[ch] += r
                        if near { ambiguous += 1 }
                    }
                }
                sums[conv] = s
            }
            examples += loader.batch(bi).count
        }
        XCTAssertEqual(ambiguous, 0, "no map has a singular value within 1% of the tolerance")
        for s in scored where relus[s.layer.path] != nil {
            XCTAssertEqual(s.scores, sums[s.layer.path]!.map { Float(Double($0) / Double(examples)) }, s.layer.path)
            XCTAssertGreaterThan(Set(s.scores).count, 1, "\(s.layer.path): channels differ")
        }
    }

    /// snip's scores are global-gradient-magnitude's over the same calibration batches,
    /// divided by the batch count; normalised over all layers they sum to 1.
    func testSNIPOnLeNet5IsTheMeanGradientTimesWeight() throws {
        let (model, data) = try lenet()
        let settings = CalibrationSettings(batches: 3, batchSize: 16, seed: 9)
        let snip = try model.score(with: criterion("snip"), data: data, settings: settings)
        let gm = try model.score(with: criterion("global-gradient-magnitude"), data: data, settings: settings)
        for (s, g) in zip(snip, gm) {
            XCTAssertEqual(s.layer.path, g.layer.path)
            assertClose(s.scores, g.scores.map { Double($0) / 3 }, 1e-6, "snip \(s.layer.path)")
        }
    }

    // MARK: the naive reference

    /// The numerical rank of a row-major `rows × cols` matrix by a one-sided (Hestenes)
    /// Jacobi SVD in `Double` — slow and simple, for checking hrank — with
    /// torch.linalg.matrix_rank's float32 tolerance; and whether any singular value lies
    /// within 1 % of that tolerance (where float rounding may decide either way).
    private func jacobiRank(_ a: [Float], rows: Int, cols: Int) -> (rank: Int, nearTolerance: Bool) {
        // Columns of B (tall: m ≥ n) are orthogonalised in place; σ_i = ‖b_i‖.
        let tall = rows >= cols
        let (m, n) = tall ? (rows, cols) : (cols, rows)
        var b = [[Double]](repeating: [Double](repeating: 0, count: m), count: n)
        for i in 0..<rows { for j in 0..<cols { if tall { b[j][i] = Double(a[i * cols + j]) } else { b[i][j] = Double(a[i * cols + j]) } } }
        for _ in 0..<100 {
            var rotated = false
            for p in 0..<n {
                for q in (p + 1)..<n where q > p {
                    var alpha = 0.0, beta = 0.0, gamma = 0.0
                    for i in 0..<m { alpha += b[p][i] * b[p][i]; beta += b[q][i] * b[q][i]; gamma += b[p][i] * b[q][i] }
                    if gamma == 0 || abs(gamma) <= 1e-15 * (alpha * beta).squareRoot() { continue }
                    rotated = true
                    let zeta = (beta - alpha) / (2 * gamma)
                    let t = (zeta >= 0 ? 1.0 : -1.0) / (abs(zeta) + (1 + zeta * zeta).squareRoot())
                    let c = 1 / (1 + t * t).squareRoot(), s = c * t
                    for i in 0..<m {
                        let (x, y) = (b[p][i], b[q][i])
                        b[p][i] = c * x - s * y
                        b[q][i] = s * x + c * y
                    }
                }
            }
            if !rotated { break }
        }
        let sigma = b.map { col in col.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        let tolerance = (sigma.max() ?? 0) * Double(max(rows, cols)) * Double(Float.ulpOfOne)
        let rank = sigma.filter { $0 > tolerance }.count
        let near = tolerance > 0 && sigma.contains { abs($0 - tolerance) <= 0.01 * tolerance }
        return (rank, near)
    }
}
