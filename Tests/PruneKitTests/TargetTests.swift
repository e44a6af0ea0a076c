import PruneKit
import XCTest

/// |w| per weight, so these tests need no plugin.
private struct TestMagnitude: Criterion, OptionConstructible {
    static let id = "test-magnitude"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    init() {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { layer.weights.scalars.map(abs) }
}

private struct OneShot: Schedule, OptionConstructible {
    static let id = "test-one-shot"
    init(options: OptionValues) {}
    func sparsities(toward target: Double) -> [Double] { [target] }
}

private struct TwoSteps: Schedule, OptionConstructible {
    static let id = "test-two-steps"
    init(options: OptionValues) {}
    func sparsities(toward target: Double) -> [Double] { [target / 2, target] }
}

/// ℓ1 of each filter, counting how often its evidence is gathered (once per scoring).
private struct CountingL1: Criterion, OptionConstructible {
    final class Counter: @unchecked Sendable { var gathers = 0 }
    static let id = "test-counting-l1"
    let granularity = Granularity.channel
    let counter: Counter
    init(options: OptionValues) { counter = Counter() }
    init(counter: Counter) { self.counter = counter }
    func gather(_ session: CalibrationSession, into states: inout [Void]) throws { counter.gathers += 1 }
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } }
    }
}

private struct NoFinetuning: FinetuneStrategy, OptionConstructible {
    static let id = "test-none"
    init(options: OptionValues) {}
    func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {}
}

/// Pruning toward a sparsity, a compression or a speed-up.
final class TargetTests: XCTestCase {
    private func lenet() throws -> Model { try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0) }

    /// Non-zero weights and their MACs, counted from the masked weights directly.
    private func nonzero(_ model: Model) -> (weights: Int, macs: Int, allWeights: Int, allMACs: Int) {
        var out = (0, 0, 0, 0)
        for i in model.prunableNodeIndices {
            let w = model.nodes[i].layer.parameter(named: "weight")!.value
            let perWeight = model.nodes[i].layer.macs(inputShapes: model.inputShapes(ofNode: i)) / w.count
            let n = w.scalars.filter { $0 != 0 }.count
            out.0 += n; out.1 += n * perWeight; out.2 += w.count; out.3 += w.count * perWeight
        }
        return out
    }

    func testWeightCompressionIsADirectSparsity() throws {
        let model = try lenet()
        let r = try model.prune(with: TestMagnitude(), toward: .compression(4), data: nil)
        // The classifier (840 of 61,470 weights) is kept whole, so the 60,630 in scope are
        // pruned at 61,470 · 3/4 / 60,630 = 0.760395… to leave a quarter of all 61,470.
        XCTAssertEqual(r.sparsity, 61_470.0 * 0.75 / 60_630, accuracy: 1e-12)
        let n = nonzero(model)
        XCTAssertEqual(n.allWeights, 61_470)
        XCTAssertEqual(r.achieved, Double(n.allWeights) / Double(n.weights), accuracy: 1e-9)
        XCTAssertEqual(r.achieved, 4, accuracy: 4 * 1e-4)
        // At most 61,470 / 840 = 73.2× with the classifier whole: 100× is a clear error.
        XCTAssertThrowsError(try lenet().prune(with: TestMagnitude(), toward: .compression(100), data: nil)) { error in
            XCTAssertTrue("\(error)".contains("73.179×"), "\(error)")
        }
    }

    func testWeightSpeedUpBisectsToTheSmallestSparsity() throws {
        let model = try lenet()
        let r = try model.prune(with: TestMagnitude(), toward: .speedup(3), data: nil)
        let n = nonzero(model)
        XCTAssertEqual(r.achieved, Double(n.allMACs) / Double(n.macs), accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(r.achieved, 3)
        // A hair less pruning does not reach it.
        let m = try lenet()
        try m.prune(with: TestMagnitude(), toward: .sparsity(r.sparsity - 2e-6), data: nil)
        let k = nonzero(m)
        XCTAssertLessThan(Double(k.allMACs) / Double(k.macs), 3)
    }

    func testChannelSpeedUpIsMeasuredOnTheNarrowerModel() throws {
        let model = TinyModels.randomized(try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0))
        let dense = model.macs
        let r = try model.prune(with: TestL1Channels(), toward: .speedup(2), data: nil)
        let cut = try model.removingPrunedChannels()
        XCTAssertEqual(r.achieved, Double(dense) / Double(cut.model.macs), accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(r.achieved, 2)
        // The smallest such pruning: slightly less does not reach 2×.
        let m = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        try m.prune(with: TestL1Channels(), toward: .sparsity(r.sparsity - 2e-6), data: nil)
        XCTAssertLessThan(Double(dense) / Double(try m.removingPrunedChannels().model.macs), 2)
    }

    /// With a channel multiple, every pruned layer keeps a multiple of it (or stays whole),
    /// the channels brought back are the best-scored of those pruned, and the speed-up
    /// target is still met on the narrower model.
    func testChannelMultipleRoundsKeptCountsAndStillMeetsTheTarget() throws {
        let model = TinyModels.randomized(try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0))
        let dense = model.macs
        let reference = try model.clone()
        var settings = TargetedPruningSettings()
        settings.channelMultiple = 8
        let r = try model.prune(with: TestL1Channels(), toward: .speedup(2), settings: settings, data: nil)
        let cut = try model.removingPrunedChannels()
        XCTAssertGreaterThanOrEqual(Double(dense) / Double(cut.model.macs), 2)
        var rounded = 0
        for layer in r.plan.layers where layer.keptCount < layer.units {
            XCTAssertEqual(layer.keptCount % 8, 0, "\(layer.path) keeps \(layer.keptCount) of \(layer.units)")
            rounded += 1
        }
        XCTAssertGreaterThan(rounded, 0, "no layer was pruned")
        // Without the multiple, the same selection keeps counts that are not multiples of 8
        // (so the test above can fail), and a kept channel never scores below a pruned one.
        let plain = try reference.prune(with: TestL1Channels(), toward: .speedup(2), data: nil)
        XCTAssert(plain.plan.layers.contains { $0.keptCount < $0.units && $0.keptCount % 8 != 0 }, "\(plain.plan.layers.map(\.keptCount))")
        let scores = try reference.score(with: TestL1Channels(), data: nil)
        for (layer, s) in zip(r.plan.layers, scores) where layer.keptCount < layer.units {
            let kept = Set(0..<layer.units).subtracting(layer.prunedPositions)
            let lowestKept = kept.map { s.scores[$0] }.min()!, highestPruned = layer.prunedPositions.map { s.scores[$0] }.max()!
            XCTAssertGreaterThanOrEqual(lowestKept, highestPruned, layer.path)
        }
    }

    func testGlobalChannelSpeedUp() throws {
        let model = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let dense = model.macs
        let r = try model.prune(with: TestL1Channels(), toward: .speedup(3), settings: TargetedPruningSettings(scope: .global), data: nil)
        XCTAssertEqual(r.plan.scope, .global)
        let cut = try model.removingPrunedChannels()
        XCTAssertEqual(r.achieved, Double(dense) / Double(cut.model.macs), accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(r.achieved, 3)
    }

    func testChannelCompressionCountsRemovedInputsToo() throws {
        let model = try lenet()
        let before = model.prunableLayers().reduce(0) { $0 + $1.weights.count }
        let r = try model.prune(with: TestL1Channels(), toward: .compression(3), data: nil)
        let after = try model.removingPrunedChannels().model.prunableLayers().reduce(0) { $0 + $1.weights.count }
        XCTAssertEqual(r.achieved, Double(before) / Double(after), accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(r.achieved, 3)
    }

    func testChannelSparsityAlongGroups() throws {
        let model = try ModelZoo.make("resnet-20", inputShape: [3, 16, 16], classCount: 10, seed: 0)
        let r = try model.prune(with: TestL1Channels(), toward: .sparsity(0.5), settings: TargetedPruningSettings(scope: .perLayer), data: nil)
        XCTAssertEqual(r.achieved, 0.5, accuracy: 1e-12)
        let cut = try model.removingPrunedChannels()
        XCTAssertEqual(cut.widths.first { $0.path == "layer2.2.conv1" }?.after, 16)
        XCTAssert(cut.notes.isEmpty, "\(cut.notes)")
    }

    func testUnreachableAndInvalidTargetsAreClearErrors() throws {
        XCTAssertThrowsError(try lenet().prune(with: TestL1Channels(), toward: .compression(1000), data: nil)) { error in
            let e = error as? PruneKitError
            XCTAssert(e?.message.contains("can't be reached") == true, "\(error)")
            XCTAssert(e?.hint?.contains("at most") == true, "\(error)")
        }
        for bad in [PruningTarget.sparsity(1), .sparsity(-0.1), .compression(0.5), .speedup(.nan)] {
            XCTAssertThrowsError(try lenet().prune(with: TestMagnitude(), toward: bad, data: nil), "\(bad)") { error in
                XCTAssertEqual((error as? PruneKitError)?.kind, .invalidArgument)
            }
        }
    }

    func testScheduleTowardASpeedUp() throws {
        let data = try DatasetCatalog.load().train
        let model = try lenet()
        let context = FinetuneContext(train: data, validation: nil, training: TrainingConfiguration())
        let steps = try model.prune(with: TestL1Channels(), schedule: TwoSteps(options: OptionValues(defaultsOf: [])),
                                    finetune: NoFinetuning(options: OptionValues(defaultsOf: [])), toward: .speedup(2),
                                    context: context, data: nil)
        XCTAssertEqual(steps.count, 2)
        XCTAssertEqual(steps[0].sparsity * 2, steps[1].sparsity, accuracy: 1e-12)
        XCTAssertGreaterThanOrEqual(steps[1].achieved, 2)
        XCTAssertEqual(steps[1].target, .speedup(2))
        let one = try lenet().prune(with: TestL1Channels(), schedule: OneShot(options: OptionValues(defaultsOf: [])),
                                    finetune: NoFinetuning(options: OptionValues(defaultsOf: [])), toward: .speedup(2),
                                    context: context, data: nil)
        XCTAssertEqual(one[0].sparsity, steps[1].sparsity, accuracy: 1e-12)
    }

    /// One pipeline, one scoring: a one-shot prune toward a speed-up or a compression
    /// scores once (the search for the target reuses the scores); a schedule of two steps
    /// scores once to turn the target into a sparsity, then once per step.
    func testAPruneScoresOncePerStep() throws {
        let context = FinetuneContext(train: try DatasetCatalog.load().train, validation: nil, training: TrainingConfiguration())
        let none = NoFinetuning(options: OptionValues(defaultsOf: []))
        for target in [PruningTarget.speedup(2), .compression(3), .sparsity(0.5)] {
            let counter = CountingL1.Counter()
            _ = try lenet().prune(with: CountingL1(counter: counter), schedule: OneShot(options: OptionValues(defaultsOf: [])),
                                  finetune: none, toward: target, context: context, data: nil)
            XCTAssertEqual(counter.gathers, 1, "one-shot toward \(target)")
        }
        let counter = CountingL1.Counter()
        _ = try lenet().prune(with: CountingL1(counter: counter), schedule: TwoSteps(options: OptionValues(defaultsOf: [])),
                              finetune: none, toward: .speedup(2), context: context, data: nil)
        XCTAssertEqual(counter.gathers, 3, "the target's sparsity, then two steps")
    }
}
