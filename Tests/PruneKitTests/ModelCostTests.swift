import Foundation
import PruneKit
import XCTest

/// `Model.cost` (parameters, MACs, FLOPs, per layer and in total) against figures worked
/// out by hand, and `Model.measureLatency` (its structure, not its timings).
final class ModelCostTests: XCTestCase {
    private func zoo(_ name: String) throws -> Model {
        try ModelZoo.make(name, inputShape: [1, 28, 28], classCount: 10, seed: 0)
    }

    func testLeNet5ByHand() throws {
        let model = try zoo("lenet-5")
        let cost = model.cost
        // (path, kind, in, out, parameters, MACs), worked out by hand for a 1×28×28 input:
        // conv 5×5 pad 2 → 6×28×28; pool → 14; conv 5×5 → 16×10×10; pool → 5; fc 400→120→84→10.
        let expected: [(String, LayerKind, Int, Int, Int, Int)] = [
            ("features.0", .conv2d, 1, 6, 6 * 25 + 6, 6 * 28 * 28 * 25),
            ("features.3", .conv2d, 6, 16, 16 * 6 * 25 + 16, 16 * 10 * 10 * 6 * 25),
            ("classifier.0", .linear, 400, 120, 400 * 120 + 120, 400 * 120),
            ("classifier.2", .linear, 120, 84, 120 * 84 + 84, 120 * 84),
            ("classifier.4", .linear, 84, 10, 84 * 10 + 10, 84 * 10),
        ]
        XCTAssertEqual(cost.layers.map(\.path), expected.map(\.0))
        for (layer, e) in zip(cost.layers, expected) {
            XCTAssertEqual(layer.kind, e.1, e.0)
            XCTAssertEqual(layer.inputChannels, e.2, e.0)
            XCTAssertEqual(layer.outputChannels, e.3, e.0)
            XCTAssertEqual(layer.parameters, e.4, e.0)
            XCTAssertEqual(layer.nonZeroParameters, e.4, "\(e.0): fresh weights are non-zero")
            XCTAssertEqual(layer.macs, e.5, e.0)
            XCTAssertEqual(layer.sparseMACs, e.5, e.0)
            XCTAssertEqual(layer.flops, 2 * e.5, e.0)
        }
        XCTAssertEqual(cost.parameters, 61_706)
        XCTAssertEqual(cost.macs, 117_600 + 240_000 + 48_000 + 10_080 + 840)   // 416,520
        XCTAssertEqual(cost.flops, 833_040)
        XCTAssertEqual(cost.parameters, model.parameterCount)
        XCTAssertEqual(cost.macs, model.macs)
    }

    func testVGGSmallByHand() throws {
        let model = try zoo("vgg-small")
        let cost = model.cost
        // 3×3 pad 1 convolutions without bias, each followed by BatchNorm (γ, β); pools halve 28 → 14 → 7.
        let convs: [(String, Int, Int, Int)] = [   // path, in, out, side
            ("features.0", 1, 32, 28), ("features.3", 32, 32, 28), ("features.7", 32, 64, 14),
            ("features.10", 64, 64, 14), ("features.14", 64, 128, 7),
        ]
        for (path, cin, cout, side) in convs {
            let l = try XCTUnwrap(cost.layer(path), path)
            XCTAssertEqual(l.kind, .conv2d)
            XCTAssertEqual([l.inputChannels, l.outputChannels], [cin, cout], path)
            XCTAssertEqual(l.parameters, cout * cin * 9, path)
            XCTAssertEqual(l.macs, cout * side * side * cin * 9, path)
        }
        let bn = try XCTUnwrap(cost.layer("features.1"))
        XCTAssertEqual(bn.kind, .batchNorm)
        XCTAssertEqual([bn.parameters, bn.macs], [64, 0], "γ and β count, running statistics and the normalisation do not")
        let fc = try XCTUnwrap(cost.layer("classifier"))
        XCTAssertEqual([fc.inputChannels, fc.outputChannels, fc.parameters, fc.macs], [128, 10, 1290, 1280])
        XCTAssertEqual(cost.layers.count, 11, "5 convolutions, 5 BatchNorms, 1 linear")
        XCTAssertEqual(cost.macs, 225_792 + 7_225_344 + 3_612_672 + 7_225_344 + 3_612_672 + 1280)   // 21,903,104
        XCTAssertEqual(cost.parameters, 288 + 9216 + 18_432 + 36_864 + 73_728 + 2 * (32 + 32 + 64 + 64 + 128) + 1290)
        XCTAssertEqual(cost.macs, model.macs)
        XCTAssertEqual(cost.parameters, model.parameterCount)
    }

    func testZeroWeightsCountInSparseMACsAndMatchMaskedMACs() throws {
        let model = try zoo("lenet-5")
        // Prune the first 75 of conv1's 150 weights and every other weight of fc1.
        let conv = try XCTUnwrap(model.nodes[0].layer.parameter(named: "weight"))
        conv.mask = Tensor(shape: conv.value.shape, scalars: (0..<150).map { $0 < 75 ? 0 : 1 })
        let fc = try XCTUnwrap(model.nodes[model.nodeIndex(named: "classifier.0")!].layer.parameter(named: "weight"))
        fc.mask = Tensor(shape: fc.value.shape, scalars: (0..<48_000).map { $0 % 2 == 0 ? 0 : 1 })
        let cost = model.cost
        let c0 = try XCTUnwrap(cost.layer("features.0"))
        XCTAssertEqual(c0.nonZeroParameters, 75 + 6)
        XCTAssertEqual(c0.macs, 117_600)
        XCTAssertEqual(c0.sparseMACs, 75 * 28 * 28, "each conv1 weight is used at 28×28 positions")
        let f0 = try XCTUnwrap(cost.layer("classifier.0"))
        XCTAssertEqual(f0.sparseMACs, 24_000)
        XCTAssertEqual(f0.sparseFLOPs, 48_000)
        XCTAssertEqual(cost.sparseMACs, 416_520 - 58_800 - 24_000)
        XCTAssertEqual(cost.nonZeroParameters, 61_706 - 75 - 24_000)
        XCTAssertEqual(cost.sparseMACs, model.maskedMACs, "kept weights are all non-zero, so both counts agree")
        XCTAssertEqual(cost.macs, model.macs, "dense MACs ignore zeros")
    }

    func testDepthwiseAndNarrowedModels() throws {
        var rng = RandomGenerator(seed: 3)
        let depthwise = Conv2d(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, groups: 4, bias: false, rng: &rng)
        let pointwise = Conv2d(inChannels: 4, outChannels: 3, kernelSize: 1, rng: &rng)
        let model = try Model(architecture: "dw", inputShape: [4, 8, 8], nodes: [
            .init(name: "dw", layer: depthwise, inputs: [Model.inputIndex]),
            .init(name: "pw", layer: pointwise, inputs: [0]),
        ])
        depthwise.weight.mask = Tensor(shape: [4, 1, 3, 3], scalars: (0..<36).map { $0 < 9 ? 0 : 1 })   // channel 0's filter
        let cost = model.cost
        let dw = try XCTUnwrap(cost.layer("dw")), pw = try XCTUnwrap(cost.layer("pw"))
        XCTAssertEqual([dw.inputChannels, dw.outputChannels, dw.parameters, dw.nonZeroParameters], [4, 4, 36, 27])
        XCTAssertEqual(dw.macs, 4 * 8 * 8 * 1 * 9, "a depthwise filter sees one input channel")
        XCTAssertEqual(dw.sparseMACs, 27 * 64)
        XCTAssertEqual([pw.inputChannels, pw.outputChannels, pw.parameters, pw.macs], [4, 3, 15, 3 * 64 * 4])
        XCTAssertEqual(cost.macs, model.macs)
    }

    func testPercentilesFollowNumPy() {
        // numpy.percentile([5, 1, 4, 2, 3], [10, 50, 90]) = [1.4, 3.0, 4.6]
        let m = LatencyMeasurement(batchSize: 8, warmup: 0, threads: 1, samples: [5, 1, 4, 2, 3])
        XCTAssertEqual(m.p10, 1.4, accuracy: 1e-12)
        XCTAssertEqual(m.median, 3, accuracy: 1e-12)
        XCTAssertEqual(m.p90, 4.6, accuracy: 1e-12)
        XCTAssertEqual(m.throughput, 8.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(LatencyMeasurement(batchSize: 1, warmup: 0, threads: 1, samples: [2, 4]).median, 3)
    }

    func testLatencyMeasurementStructureAndModeRestored() throws {
        let model = try zoo("lenet-300-100")
        model.mode = .evaluationWithGradients
        var observed = 0
        model.forwardObserver = { _, _ in observed += 1 }
        let m = try model.measureLatency(batchSize: 3, runs: 5, warmup: 2)
        XCTAssertEqual(m.batchSize, 3)
        XCTAssertEqual(m.runs, 5)
        XCTAssertEqual(m.warmup, 2)
        XCTAssertEqual(m.threads, Parallel.threadCount)
        XCTAssert(m.samples.allSatisfy { $0 > 0 && $0.isFinite }, "\(m.samples)")
        XCTAssert(m.p10 <= m.median && m.median <= m.p90)
        XCTAssertEqual(model.mode, .evaluationWithGradients, "the mode is restored")
        XCTAssertEqual(observed, 0, "the observer is set aside during the measurement")
        XCTAssertNotNil(model.forwardObserver, "and restored after it")
        model.mode = .training
        _ = try model.measureLatency(batchSize: 1, runs: 1, warmup: 0)
        XCTAssertEqual(model.mode, .training)

        for (batch, runs, warmup, fragment) in [(0, 1, 0, "batch size"), (1, 0, 0, "timed run"), (1, 1, -1, "warm-up")] {
            XCTAssertThrowsError(try model.measureLatency(batchSize: batch, runs: runs, warmup: warmup)) { error in
                let e = error as? PruneKitError
                XCTAssertEqual(e?.kind, .invalidArgument)
                XCTAssert(e?.message.contains(fragment) == true, "\(error)")
            }
        }
    }
}
