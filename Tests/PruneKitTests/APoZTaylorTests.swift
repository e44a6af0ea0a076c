import Foundation
import PruneKit
import XCTest

/// The `apoz` and `taylor` criteria, loaded from their plugin libraries: values by hand,
/// values from an independent NumPy reference (Tests/Fixtures/Reference/apoz_taylor.py),
/// and end to end on lenet-5 with real calibration data against naive recomputations.
final class APoZTaylorTests: XCTestCase {
    private func criterion(_ id: String, _ options: [String] = []) throws -> any Criterion {
        try TestSupport.builtInRegistry().criterion(id, options: options)
    }

    /// Feeds the batches to `criterion` for `layer` and scores it.
    private func run(_ criterion: any Criterion, _ layer: PrunableLayer, _ batches: [LayerBatch]) throws -> [Float] {
        try observeAndScore(criterion, layer: layer, batches: batches)
    }

    private func assertClose(_ a: [Float], _ e: [Double], _ tol: Double = 1e-5, _ what: String = "",
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, e.count, what, file: file, line: line)
        for (i, (x, y)) in zip(a, e).enumerated() {
            XCTAssertEqual(Double(x), y, accuracy: tol * max(1, abs(y)), "\(what) [\(i)]", file: file, line: line)
        }
    }

    // MARK: by hand

    /// Two channels, two examples, 2×2, channel-major `[C, N, H, W]`.
    private let handActivations = Tensor(shape: [2, 2, 2, 2], scalars: [
        0, 1, 2, 0, /* c0 n1 */ 0, 0, 0, 3,
        1, 1, 1, 1, /* c1 n1 */ 0, 2, 0, 2,
    ])
    /// ∂C/∂z of a batch-mean loss over these 2 examples.
    private let handGradients = Tensor(shape: [2, 2, 2, 2], scalars: [
        1, 2, -1, 5, /* c0 n1 */ 4, 4, 4, 1,
        0.5, -0.5, 1, 1, /* c1 n1 */ 7, -1, 7, 2.5,
    ])

    func testAPoZByHand() throws {
        let apoz = try criterion("apoz")
        XCTAssertEqual(apoz.evidence, .activations)
        XCTAssertEqual(apoz.preferredScope, .perLayer)
        let conv = TestSupport.layer([[1], [1]], kind: .conv2d)
        // zeros: c0 2 + 3 = 5 of 8 → 1 − 5/8; c1 0 + 2 = 2 of 8 → 1 − 2/8.
        XCTAssertEqual(try run(apoz, conv, [LayerBatch(activations: handActivations, exampleCount: 2)]), [0.375, 0.75])
        // Counts, not per-batch averages: a second batch of one example with c0 all zero
        // and c1 all positive gives c0 9 of 12, c1 2 of 12 (per-batch averaging: 0.3125·…).
        let second = Tensor(shape: [2, 1, 2, 2], scalars: [0, 0, 0, 0, 1, 2, 3, 4])
        XCTAssertEqual(try run(apoz, conv, [LayerBatch(activations: handActivations, exampleCount: 2),
                                            LayerBatch(activations: second, exampleCount: 1)]),
                       [Float(3.0 / 12), Float(10.0 / 12)])
        // A linear layer, [N, F]: zeros per feature 2, 0, 1 of 2.
        let fc = TestSupport.layer([[1], [1], [1]])
        let rows = Tensor(shape: [2, 3], scalars: [0, 1, 0, 0, 2, 3])
        XCTAssertEqual(try run(apoz, fc, [LayerBatch(activations: rows, exampleCount: 2)]), [0, 1, 0.5])
    }

    func testAPoZOnANonReLUOutput() throws {
        let apoz = try criterion("apoz")
        let logits = Tensor(shape: [2, 2], scalars: [0.5, -1, 2, 0])
        let hidden = TestSupport.layer([[1], [1]])
        XCTAssertThrowsError(try run(apoz, hidden, [LayerBatch(activations: logits, exampleCount: 2)])) {
            XCTAssert("\($0)".contains("not the output of a ReLU"), "\($0)")
        }
        let w = Tensor(shape: [2, 1], scalars: [1, 1])
        let classifier = PrunableLayer(path: "fc", kind: .linear, weights: w, weightShape: [2, 1], bias: nil,
                                       macs: 2, index: 1, isClassifier: true)
        XCTAssertEqual(try run(apoz, classifier, [LayerBatch(activations: logits, exampleCount: 2)]), [0, 0])
    }

    func testTaylorByHand() throws {
        let taylor = try criterion("taylor")
        XCTAssertEqual(taylor.evidence, [.activations, .activationGradients])
        XCTAssertEqual(taylor.preferredScope, .global)
        let conv = TestSupport.layer([[1], [1]], kind: .conv2d)
        // Σ_hw z·g / 4 per (c, n): c0: 0/4, 3/4; c1: 2/4, 3/4. Times N = 2 (per-example loss):
        // c0: 0, 1.5; c1: 1, 1.5. Mean over n: Θ = [0.75, 1.25] = 0.25·[3, 5] → [3, 5]/√34.
        let batch = LayerBatch(activations: handActivations, activationGradients: handGradients, exampleCount: 2)
        assertClose(try run(taylor, conv, [batch]), [3 / 34.0.squareRoot(), 5 / 34.0.squareRoot()], 1e-6)
        // A further batch of one example (ex0 again, N = 1 so its ∂C/∂z is ∂L/∂z = 2 × the
        // above): each example counts once, Θ = [0 + 1.5 + 0, 1 + 1.5 + 1] / 3 ∝ [3, 7].
        let z0 = Tensor(shape: [2, 1, 2, 2], scalars: [0, 1, 2, 0, 1, 1, 1, 1])
        let g0 = Tensor(shape: [2, 1, 2, 2], scalars: [2, 4, -2, 10, 1, -1, 2, 2])
        assertClose(try run(taylor, conv, [batch, LayerBatch(activations: z0, activationGradients: g0, exampleCount: 1)]),
                    [3 / 58.0.squareRoot(), 7 / 58.0.squareRoot()], 1e-6)
        // FLOPs penalty: λ · 2·macs/outputs / 1e6; macs of this hand layer = 2 → 2e-6 per channel.
        let penalised = try criterion("taylor", ["flops_penalty=1000"])
        assertClose(try run(penalised, conv, [batch]), [3 / 34.0.squareRoot() - 2e-3, 5 / 34.0.squareRoot() - 2e-3], 1e-6)
        XCTAssertThrowsError(try criterion("taylor", ["flops_penalty=-1"]))
        // Without gradients: a clear error.
        XCTAssertThrowsError(try run(taylor, conv, [LayerBatch(activations: handActivations, exampleCount: 2)])) {
            XCTAssert("\($0)".contains("gradients"), "\($0)")
        }
    }

    // MARK: against the NumPy reference, through Model.score

    private struct Reference: Decodable {
        let count: Int, imageShape: [Int], classCount: Int, mean: Float, std: Float
        let pixels: [UInt8], labels: [Int32]
        let conv_weight: [Float], conv_bias: [Float], fc_weight: [Float], fc_bias: [Float]
        let apoz: [String: [Double]], taylor: [String: [Double]]
        let taylor_flops_penalty: Double, taylor_with_penalty: [String: [Double]]
    }

    func testAgainstNumPyReference() throws {
        let url = TestSupport.repoRoot.appendingPathComponent("Tests/Fixtures/Reference/apoz_taylor.json")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let data = try Dataset(name: "reference", imageShape: ref.imageShape, classCount: ref.classCount,
                               pixels: ref.pixels, labels: ref.labels,
                               normalization: Normalization(mean: [ref.mean], std: [ref.std]))
        var rng = RandomGenerator(seed: 0)
        var b = ModelBuilder(architecture: "reference", inputShape: ref.imageShape)
        b.add("features.0", Conv2d(inChannels: 1, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng))
        b.add("features.1", ReLU())
        b.add("pool", GlobalAvgPool())
        b.add("classifier", Linear(inFeatures: 3, outFeatures: 2, rng: &rng))
        let model = try b.build()
        model.nodes[0].layer.parameter(named: "weight")!.value = Tensor(shape: [3, 1, 3, 3], scalars: ref.conv_weight)
        model.nodes[0].layer.parameter(named: "bias")!.value = Tensor(shape: [3], scalars: ref.conv_bias)
        model.nodes[3].layer.parameter(named: "weight")!.value = Tensor(shape: [2, 3], scalars: ref.fc_weight)
        model.nodes[3].layer.parameter(named: "bias")!.value = Tensor(shape: [2], scalars: ref.fc_bias)

        // Batches of 4 and 2: the reference has no batches at all, so this also checks that
        // APoZ counts (not averages) and that Taylor uses each example's own loss gradient.
        let settings = CalibrationSettings(batches: 2, batchSize: 4, seed: 5)
        let apoz = try model.score(with: criterion("apoz"), data: data, settings: settings)
        let taylor = try model.score(with: criterion("taylor"), data: data, settings: settings)
        let penalised = try model.score(with: criterion("taylor", ["flops_penalty=\(ref.taylor_flops_penalty)"]),
                                        data: data, settings: settings)
        for k in 0..<2 {
            let path = apoz[k].layer.path
            assertClose(apoz[k].scores, ref.apoz[path]!, 1e-6, "apoz \(path)")
            assertClose(taylor[k].scores, ref.taylor[path]!, 2e-5, "taylor \(path)")
            assertClose(penalised[k].scores, ref.taylor_with_penalty[path]!, 2e-5, "taylor+flops \(path)")
        }
    }

    // MARK: lenet-5 with real calibration data

    private let settings = CalibrationSettings(batches: 3, batchSize: 50, seed: 7)

    /// Every ReLU output (by node) and its gradient over the same calibration batches as
    /// Model.score, gathered directly.
    private func gather(_ model: Model, _ data: Dataset) throws -> [(outputs: [Int: Tensor], grads: [Int: Tensor])] {
        let m = try model.clone()
        m.mode = .evaluationWithGradients
        let loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed)
        return (0..<settings.batches).map { b in
            var outputs: [Int: Tensor] = [:], grads: [Int: Tensor] = [:]
            m.forwardObserver = { i, y in outputs[i] = y }
            m.backwardObserver = { i, g in grads[i] = g }
            let batch = loader.batch(b)
            m.backward(softmaxCrossEntropy(logits: m.forward(batch.images), labels: batch.labels).gradient)
            return (outputs, grads)
        }
    }

    private func lenet() throws -> (Model, Dataset) {
        let data = try DatasetCatalog.load().train.subset(Array(0..<200))
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        return (model, data)
    }

    /// The ReLU node after each prunable layer of lenet-5 (the classifier has none).
    private let reluNodes = ["features.0": "features.1", "features.3": "features.4",
                             "classifier.0": "classifier.1", "classifier.2": "classifier.3"]

    func testAPoZOnLeNet5IsTheZeroFractionOfEachReLU() throws {
        let (model, data) = try lenet()
        let scored = try model.score(with: criterion("apoz"), data: data, settings: settings)
        XCTAssertEqual(scored.map(\.scores.count), [6, 16, 120, 84, 10])
        XCTAssert(scored.allSatisfy { $0.scores.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 } })
        let again = try model.score(with: criterion("apoz"), data: data, settings: settings)
        XCTAssertEqual(scored.map(\.scores), again.map(\.scores), "deterministic")
        XCTAssertEqual(scored[4].scores, [Float](repeating: 0, count: 10), "classifier: constant")

        let batches = try gather(model, data)
        for s in scored.dropLast() {
            let relu = model.nodes.firstIndex { $0.name == reluNodes[s.layer.path]! }!
            var zeros = [Int](repeating: 0, count: s.layer.outputs), total = 0
            for (outputs, _) in batches {
                let y = outputs[relu]!
                let channelMajor = y.rank == 4
                let per = channelMajor ? y.count / y.shape[0] : y.shape[0]
                total += per
                for (i, v) in y.scalars.enumerated() where v == 0 {
                    zeros[channelMajor ? i / per : i % s.layer.outputs] += 1
                }
            }
            let expected = zeros.map { 1 - Double($0) / Double(total) }
            assertClose(s.scores, expected, 1e-6, "apoz \(s.layer.path)")
            // Sanity: a freshly initialised lenet-5 has dead and live units, not all one value.
            XCTAssert(expected.contains { $0 < 1 }, "\(s.layer.path) has zeros")
        }
    }

    func testTaylorOnLeNet5MatchesANaiveComputation() throws {
        let (model, data) = try lenet()
        let scored = try model.score(with: criterion("taylor"), data: data, settings: settings)
        XCTAssertEqual(scored.map(\.scores.count), [6, 16, 120, 84, 10])
        let again = try model.score(with: criterion("taylor"), data: data, settings: settings)
        XCTAssertEqual(scored.map(\.scores), again.map(\.scores), "deterministic")
        for s in scored {
            let norm = s.scores.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertEqual(norm, 1, accuracy: 1e-5, "ℓ2-normalised \(s.layer.path)")
        }

        // Naive: per example, per channel, Double everywhere, straight from the definition.
        let batches = try gather(model, data)
        for s in scored {
            let node = model.nodes.firstIndex { $0.name == (reluNodes[s.layer.path] ?? s.layer.path) }!
            let c = s.layer.outputs
            var theta = [Double](repeating: 0, count: c), examples = 0
            for (outputs, grads) in batches {
                let z = outputs[node]!.scalars, g = grads[node]!.scalars
                let shape = outputs[node]!.shape
                let n = shape.count == 4 ? shape[1] : shape[0]
                let m = shape.count == 4 ? shape[2] * shape[3] : 1
                for e in 0..<n {
                    for ch in 0..<c {
                        var dot = 0.0
                        for p in 0..<m {
                            let i = shape.count == 4 ? (ch * n + e) * m + p : e * c + ch
                            dot += Double(z[i]) * Double(g[i]) * Double(n)   // ∂L_e/∂z = N · ∂C/∂z
                        }
                        theta[ch] += abs(dot / Double(m))
                    }
                }
                examples += n
            }
            let norm = theta.reduce(0) { $0 + $1 * $1 }.squareRoot()
            assertClose(s.scores, theta.map { $0 / norm }, 1e-4, "taylor \(s.layer.path)")
        }

        let lambda = 0.01
        let penalised = try model.score(with: criterion("taylor", ["flops_penalty=\(lambda)"]), data: data, settings: settings)
        for (p, s) in zip(penalised, scored) {
            let f = lambda * Double(p.layer.flops) / Double(p.layer.outputs) / 1e6
            assertClose(p.scores, s.scores.map { Double($0) - f }, 1e-5, "penalty \(p.layer.path)")
        }
    }
}
