import Foundation
import PruneKit
import XCTest

/// ThiNet (Luo et al. 2017), loaded from its plugin library: the greedy order and the
/// least-squares scales against a case worked by hand, against an independent NumPy
/// reference (Tests/Fixtures/Reference/thinet.py), and end to end on LeNet-5.
final class ThiNetTests: XCTestCase {
    private func thinet(_ options: [String] = []) throws -> any Criterion {
        try TestSupport.builtInRegistry().criterion("thinet", options: options)
    }

    /// A one-node model holding `layer` under `name`: what adjustWeights rescales.
    private func model(_ layer: Layer, name: String, inputShape: [Int]) throws -> Model {
        try Model(architecture: "test", inputShape: inputShape, nodes: [Model.Node(name: name, layer: layer, inputs: [Model.inputIndex])])
    }

    private func setWeight(_ model: Model, _ values: [Float]) {
        let p = model.nodes[0].layer.parameter(named: "weight")!
        p.value = Tensor(shape: p.value.shape, scalars: values)
    }

    /// Observes `input` once (every output: samples-per-image=0), scores, and rescales the
    /// model's only layer for `kept`; returns the scores and the rescaled weights.
    private func run(_ criterion: any Criterion, channels: Int, model: Model, input: Tensor, keeping kept: [Int]?)
        throws -> (scores: [Float], weights: [Float]) {
        let previous = TestSupport.layer(Array(repeating: [1], count: channels), path: "previous")
        let next = model.prunableLayers()[0]
        let batch = LayerBatch(nextLayerInputs: input, nextLayer: next, exampleCount: input.shape[input.rank == 4 ? 1 : 0])
        let scores = try observeAndScore(criterion, layer: previous, batches: [batch], adjusting: kept.map { ($0, model) })
        return (scores, model.nodes[0].layer.parameter(named: "weight")!.value.scalars)
    }

    /// A linear next layer with one output reading 3 channels, W = [2, 1, −1], on 4
    /// examples. The contributions x̂ = W ⊙ x are
    ///     [1, 0, 2], [0, 1, 1], [1, 1, 0], [0, 2, 1],
    /// so Σx̂_c² = 2, 6, 6: channel 0 goes first. With T = {0}: Σ(x̂0 + x̂1)² = 1+1+4+4 = 10,
    /// Σ(x̂0 + x̂2)² = 9+1+1+1 = 12: channel 1 goes next; 2 is left. Scores 1/3, 2/3, 1.
    /// Keeping {1, 2}, ŷ = Σ_c x̂_c = [3, 2, 2, 3]: the normal equations are
    /// [[6, 3], [3, 6]] ŵ = [10, 11], so ŵ = (1, 4/3). Keeping {2}: ŵ = 11/6.
    func testGreedyOrderAndScalesMatchACaseWorkedByHand() throws {
        let x = Tensor(shape: [4, 3], scalars: [0.5, 0, -2, 0, 1, -1, 0.5, 1, 0, 0, 2, -1])
        let criterion = try thinet(["samples-per-image=0", "ridge=0"])
        var rng = RandomGenerator(seed: 0)
        let fc = try model(Linear(inFeatures: 3, outFeatures: 1, rng: &rng), name: "fc", inputShape: [3])
        setWeight(fc, [2, 1, -1])
        let (scores, rescaled) = try run(criterion, channels: 3, model: fc, input: x, keeping: [1, 2])
        XCTAssertEqual(scores, [Float(1) / 3, Float(2) / 3, 1])
        // W[:, c] · ŵ_c for kept c; removed channel 0 is zeroed.
        XCTAssertEqual(rescaled[0], 0)
        XCTAssertEqual(rescaled[1], 1, accuracy: 1e-5)
        XCTAssertEqual(rescaled[2], -4.0 / 3, accuracy: 1e-5)

        setWeight(fc, [2, 1, -1])
        let (_, keepOne) = try run(criterion, channels: 3, model: fc, input: x, keeping: [2])
        XCTAssertEqual(keepOne[0], 0); XCTAssertEqual(keepOne[1], 0)
        XCTAssertEqual(keepOne[2], -11.0 / 6, accuracy: 1e-5)

        // rescale=false: the same scores, the next layer untouched.
        setWeight(fc, [2, 1, -1])
        let (same, untouched) = try run(try thinet(["samples-per-image=0", "rescale=false"]), channels: 3, model: fc, input: x, keeping: [1, 2])
        XCTAssertEqual(same, scores)
        XCTAssertEqual(untouched, [2, 1, -1])
    }

    private struct Reference: Decodable {
        struct Case: Decodable {
            let name: String, kind: String, channels: Int, stride: Int, padding: Int, groups: Int
            let input_shape: [Int], input: [Float], weight_shape: [Int], weight: [Float], samples: Int
            let order: [Int], kept: [String: [Int]], scales: [String: [Double]]
        }
        let ridge: Double
        let cases: [Case]
    }

    /// Every case of the NumPy reference (a strided padded convolution, a grouped one, a
    /// linear layer after a flatten): the removal order, and the rescaled next-layer
    /// weights for every kept count.
    func testMatchesTheNumPyReference() throws {
        let url = TestSupport.repoRoot.appendingPathComponent("Tests/Fixtures/Reference/thinet.json")
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        XCTAssertEqual(reference.cases.count, 3)
        XCTAssertEqual(reference.ridge, 1e-6, "the fixture uses the plugin's default ridge")
        let criterion = try thinet(["samples-per-image=0"])
        for c in reference.cases {
            var rng = RandomGenerator(seed: 0)
            let layer: Layer, inputShape: [Int]
            if c.kind == "conv" {
                let ws = c.weight_shape
                layer = Conv2d(inChannels: ws[1] * c.groups, outChannels: ws[0], kernelSize: ws[2], stride: c.stride,
                               padding: c.padding, groups: c.groups, rng: &rng)
                inputShape = [c.input_shape[0], c.input_shape[2], c.input_shape[3]]
            } else {
                layer = Linear(inFeatures: c.weight_shape[1], outFeatures: c.weight_shape[0], rng: &rng)
                inputShape = [c.input_shape[1]]
            }
            let m = try model(layer, name: "next", inputShape: inputShape)
            let input = Tensor(shape: c.input_shape, scalars: c.input)
            for k in 1..<c.channels {
                setWeight(m, c.weight)
                let kept = try XCTUnwrap(c.kept[String(k)]), scales = try XCTUnwrap(c.scales[String(k)])
                let (scores, rescaled) = try run(criterion, channels: c.channels, model: m, input: input, keeping: kept)
                let order = scores.indices.sorted { scores[$0] < scores[$1] }
                XCTAssertEqual(Array(order.prefix(c.channels - 1)), c.order, c.name)
                // Selecting the k kept by score reproduces the greedy's set.
                XCTAssertEqual(Array(order.suffix(k)).sorted(), kept, c.name)
                var expected = [Float](repeating: 0, count: c.channels)
                for (channel, s) in zip(kept, scales) { expected[channel] = Float(s) }
                let perFilter = c.weight.count / c.weight_shape[0]
                for (i, (w, got)) in zip(c.weight, rescaled).enumerated() {
                    let channel: Int
                    if c.kind == "conv" {
                        let cg = c.weight_shape[1], og = c.weight_shape[0] / c.groups, area = perFilter / cg
                        channel = (i / perFilter) / og * cg + (i % perFilter) / area
                    } else {
                        channel = (i % perFilter) / (perFilter / c.channels)
                    }
                    XCTAssertEqual(got, w * expected[channel], accuracy: 1e-4 * max(1, abs(w)), "\(c.name) k=\(k) weight \(i)")
                }
            }
        }
    }

    func testSamplingIsDeterministicAndOptionsAreChecked() throws {
        let data = try DatasetCatalog.load().train.subset(Array(0..<64))
        let make = { try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0) }
        let settings = CalibrationSettings(batches: 2, batchSize: 32, seed: 1)
        let a = try make().score(with: try thinet(), data: data, settings: settings)
        let b = try make().score(with: try thinet(), data: data, settings: settings)
        XCTAssertEqual(a.map(\.scores), b.map(\.scores))
        // 10 samples per image by default: 2 batches × 32 images.
        XCTAssertEqual(Mirror(reflecting: a[0].context?.gatheredState as Any).descendant(0, "samples") as? Int, 640)
        for s in a where !s.layer.isClassifier {
            XCTAssertEqual(Set(s.scores).count, s.scores.count, "no ties: \(s.layer.path)")
        }
        XCTAssertThrowsError(try thinet(["samples-per-image=-1"]))
        XCTAssertThrowsError(try thinet(["ridge=-1"]))
        XCTAssertThrowsError(try thinet(["rescale=maybe"]))
    }

    /// Squared error of `node`'s output against `reference` over batches `range` of the loader.
    private func outputs(_ model: Model, node: Int, loader: DataLoader, batches: Range<Int>) -> [Tensor] {
        model.mode = .inference
        var captured: [Tensor] = []
        model.forwardObserver = { i, y in if i == node { captured.append(y) } }
        defer { model.forwardObserver = nil }
        for b in batches { _ = model.forward(loader.batch(b).images) }
        return captured
    }

    private func squaredError(_ a: [Tensor], _ b: [Tensor]) -> Double {
        var total = 0.0
        for (x, y) in zip(a, b) {
            for (u, v) in zip(x.scalars, y.scalars) {
                let d = Double(u) - Double(v)
                total += d * d
            }
        }
        return total
    }

    /// End to end with Model.prune on LeNet-5 (trained for one epoch) and the bundled data:
    /// pruning half the channels of one layer, the next layer's output on the calibration
    /// batches (and on 4 other batches) is closer to the unpruned model's with rescaling
    /// than without.
    func testRescalingBringsTheNextLayerCloserToTheOriginalOnLeNet5() throws {
        let data = try DatasetCatalog.load().train
        let calibration = CalibrationSettings(batches: 4, batchSize: 64, seed: 7)
        let loader = try DataLoader(data, batchSize: calibration.batchSize, shuffle: true, seed: calibration.seed, epoch: 0)
        let original = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 3)
        var training = TrainingConfiguration()
        training.epochs = 1
        _ = try original.fit(data, configuration: training)
        let trained = Dictionary(uniqueKeysWithValues: original.namedParameters.map { ($0.path, $0.parameter.value) })
        let make = {
            let m = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 3)
            for (path, p) in m.namedParameters { p.value = trained[path]! }
            return m
        }
        let paths = original.prunableLayers().map(\.path)
        for (layer, next) in [("features.0", "features.3"), ("features.3", "classifier.0")] {
            let node = try XCTUnwrap(original.nodeIndex(named: next))
            let reference = outputs(original, node: node, loader: loader, batches: 0..<4)
            let heldOutReference = outputs(original, node: node, loader: loader, batches: 4..<8)
            var errors: [Bool: (Double, Double)] = [:]
            var plans: [Bool: [Int]] = [:]
            for rescale in [true, false] {
                let model = try make()
                let plan = try model.prune(with: try thinet(["rescale=\(rescale)"]), toward: .sparsity(0.5),
                                           settings: TargetedPruningSettings(excluded: Set(paths.filter { $0 != layer })),
                                           data: data, calibration: calibration).plan
                plans[rescale] = plan.layers.first { $0.path == layer }?.keptPositions
                errors[rescale] = (squaredError(reference, outputs(model, node: node, loader: loader, batches: 0..<4)),
                                   squaredError(heldOutReference, outputs(model, node: node, loader: loader, batches: 4..<8)))
            }
            let (with, without) = (errors[true]!, errors[false]!)
            let total = squaredError(reference, reference.map { Tensor(shape: $0.shape) })
            print(String(format: "thinet lenet-5 %@ → %@: kept %@; squared error of %@'s output, calibration: %.6g rescaled vs %.6g not (%.1f%% less; ‖y‖² = %.6g); held out: %.6g vs %.6g",
                         layer, next, "\(plans[true]!)", next, with.0, without.0, 100 * (1 - with.0 / without.0), total, with.1, without.1))
            XCTAssertEqual(plans[true], plans[false], "rescaling does not change the selection")
            XCTAssertLessThan(with.0, without.0, "\(layer): rescaling lowers the next layer's error on the calibration data")
            XCTAssertLessThan(with.1, without.1, "\(layer): and on held-out batches")
        }
    }
}
