import Foundation
import PruneKit
import XCTest

/// The five shipped finetuning strategies, loaded from their plugin library, each run on a
/// tiny model (LeNet-300-100 on 96 bundled digits, one or two epochs) and checked for
/// what it promises. Masks must survive every one.
final class FinetuningTests: XCTestCase {
    private static let splits: DataSplits = try! DatasetCatalog.load(validationCount: 32)

    private var train: Dataset { Self.splits.train.subset(Array(0..<96)) }
    private var validation: Dataset { Self.splits.validation! }

    private func configuration(epochs: Int) -> TrainingConfiguration {
        var c = TrainingConfiguration()
        c.epochs = epochs; c.batchSize = 32; c.learningRate = 0.05; c.seed = 3
        return c
    }

    private func model(seed: UInt64 = 0) throws -> Model {
        try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: seed)
    }

    /// Prunes half the weights by magnitude, as a pruning step would.
    private func prune(_ model: Model) throws {
        let criterion = try TestSupport.builtInRegistry().criterion("global-magnitude")
        try model.prune(with: criterion, toward: .sparsity(0.5), data: nil)
    }

    private func masks(_ model: Model) -> [String: Tensor] {
        var masks: [String: Tensor] = [:]
        for (path, p) in model.namedParameters { if let m = p.mask { masks[path] = m } }
        return masks
    }

    /// Every mask is unchanged and every masked weight is zero.
    private func assertMasksSurvive(_ model: Model, _ before: [String: Tensor], _ id: String,
                                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(before.isEmpty, file: file, line: line)
        XCTAssertEqual(masks(model), before, "\(id) changed the masks", file: file, line: line)
        for (path, p) in model.namedParameters {
            guard let m = p.mask else { continue }
            let revived = zip(p.value.scalars, m.scalars).filter { $1 == 0 && $0 != 0 }.count
            XCTAssertEqual(revived, 0, "\(id): \(revived) pruned weights of \(path) are non-zero", file: file, line: line)
        }
    }

    func testFitSavesTheCheckpointsAskedFor() throws {
        let m = try model()
        let initial = m.weightSnapshot()
        let run = try m.fit(train, configuration: configuration(epochs: 2), checkpointEpochs: [0, 2, 7])
        XCTAssertEqual(run.records.count, 2)
        XCTAssertEqual(Set(run.checkpoints.keys), [0, 2], "epoch 7 is past the run and ignored")
        XCTAssertEqual(run.checkpoints[0], initial, "epoch 0 is the initialisation")
        XCTAssertEqual(run.checkpoints[2], m.weightSnapshot(), "epoch T is the end of training")
        XCTAssertNotEqual(run.checkpoints[0], run.checkpoints[2])
    }

    func testNoneLeavesTheWeights() throws {
        let m = try model()
        try prune(m)
        let before = m.weightSnapshot(), mask = masks(m)
        try TestSupport.builtInRegistry().finetune("none").finetune(
            m, step: 0, of: 1, context: FinetuneContext(train: train, validation: validation, training: configuration(epochs: 1)))
        XCTAssertEqual(m.weightSnapshot(), before)
        assertMasksSurvive(m, mask, "none")
    }

    /// `rewind` with k = T: nothing left to train, so the weights are exactly the saved
    /// checkpoint times the mask (biases included, unmasked).
    func testRewindRestoresExactlyTheSavedWeightsUnderTheMask() throws {
        let m = try model()
        let original = configuration(epochs: 1)
        let run = try m.fit(train, configuration: original, checkpointEpochs: [0, 1])
        try prune(m)
        let mask = masks(m)
        var context = FinetuneContext(train: train, validation: validation, training: original, checkpoints: run.checkpoints)
        var trained = 0
        context.epochEnded = { _ in trained += 1 }
        for k in [1, 0] {
            let strategy = try TestSupport.builtInRegistry().finetune("rewind", options: ["epoch=\(k)"])
            if k == 0 {
                // k = 0 trains T epochs after rewinding: check the masks hold through training.
                try strategy.finetune(m, step: 0, of: 1, context: context)
                XCTAssertEqual(trained, 1)
                assertMasksSurvive(m, mask, "rewind")
                continue
            }
            try strategy.finetune(m, step: 0, of: 1, context: context)
            XCTAssertEqual(trained, 0, "k = T: no epoch left to train")
            for (path, p) in m.namedParameters {
                let saved = run.checkpoints[k]![path]!.scalars
                let expected = p.mask.map { zip(saved, $0.scalars).map { $0 * $1 } } ?? saved
                XCTAssertEqual(p.value.scalars, expected, path)
            }
            assertMasksSurvive(m, mask, "rewind")
        }
        XCTAssertThrowsError(try TestSupport.builtInRegistry().finetune("rewind", options: ["epoch=5"])
            .finetune(m, step: 0, of: 1, context: context)) { XCTAssert("\($0)".contains("no checkpoint of epoch 5"), "\($0)") }
    }

    func testReinitSharesNoWeightWithThePrunedModel() throws {
        let m = try model()
        try m.fit(train, configuration: configuration(epochs: 1))
        try prune(m)
        let pruned = m.weightSnapshot(), mask = masks(m)
        // T = 0 epochs: the fresh initialisation itself, under the masks.
        try TestSupport.builtInRegistry().finetune("reinit").finetune(
            m, step: 0, of: 1, context: FinetuneContext(train: train, validation: nil, training: configuration(epochs: 0)))
        for (path, p) in m.namedParameters where path.hasSuffix(".weight") {
            let old = pruned[path]!.scalars, m = p.mask?.scalars ?? Array(repeating: 1, count: old.count)   // the classifier is unmasked
            let shared = zip(zip(p.value.scalars, old), m).filter { $1 != 0 && $0.0 == $0.1 }.count
            XCTAssertEqual(shared, 0, "\(path): \(shared) surviving weights equal the pruned model's")
        }
        XCTAssertNotEqual(m.weightSnapshot()["fc1.bias"], pruned["fc1.bias"], "trained biases are not kept either")
        assertMasksSurvive(m, mask, "reinit")
    }

    /// Scratch-E trains T epochs; Scratch-B T · MACs_original / MACs_pruned, rounded.
    func testReinitBudgets() throws {
        let m = try model()
        let dense = m.macs
        try prune(m)
        XCTAssertLessThan(m.maskedMACs, dense)
        XCTAssertEqual(Double(m.maskedMACs), Double(dense) / 2, accuracy: Double(dense) * 0.02,
                       "global magnitude at 50% (classifier kept) leaves about half the MACs")
        let mask = masks(m)
        for (budget, expected) in [("scratch-e", 1), ("scratch-b", Int((Double(dense) / Double(m.maskedMACs)).rounded()))] {
            var epochs = 0
            var context = FinetuneContext(train: train, validation: validation, training: configuration(epochs: 1))
            context.epochEnded = { _ in epochs += 1 }
            try TestSupport.builtInRegistry().finetune("reinit", options: ["budget=\(budget)"])
                .finetune(m, step: 0, of: 1, context: context)
            XCTAssertEqual(epochs, expected, budget)
            assertMasksSurvive(m, mask, "reinit \(budget)")
        }
        XCTAssertEqual(expected(originalMACs: 900, prunedMACs: 100, epochs: 10), 90)
    }

    private func expected(originalMACs: Int, prunedMACs: Int, epochs: Int) -> Int {
        Int((Double(epochs) * Double(originalMACs) / Double(prunedMACs)).rounded())
    }

    /// `finetune` with keep-best ends on the epoch with the best validation accuracy.
    func testFinetuneKeepsTheBestValidationEpoch() throws {
        let m = try model()
        try prune(m)
        let mask = masks(m)
        var records: [EpochRecord] = []
        var context = FinetuneContext(train: train, validation: validation, training: configuration(epochs: 1))
        context.epochEnded = { records.append($0) }
        try TestSupport.builtInRegistry().finetune("finetune", options: ["epochs=3", "learning-rate=0.2"])
            .finetune(m, step: 0, of: 1, context: context)
        XCTAssertEqual(records.count, 3)
        XCTAssertEqual(records.map(\.learningRate), [0.2, 0.2, 0.2], "the given rate, constant")
        let best = records.compactMap(\.validationAccuracy).max()!
        XCTAssertEqual(m.evaluate(validation).top1, best, accuracy: 1e-12, "restored the best validation epoch")
        assertMasksSurvive(m, mask, "finetune")
    }

    /// `lr-rewind` keeps the trained weights and replays the original schedule from epoch k.
    func testLearningRateRewindReplaysTheOriginalSchedule() throws {
        let m = try model()
        let original = configuration(epochs: 3)   // cosine decay over 3 epochs
        try prune(m)
        let mask = masks(m), before = m.weightSnapshot()
        var records: [EpochRecord] = []
        var context = FinetuneContext(train: train, validation: validation, training: original)
        context.epochEnded = { records.append($0) }
        try TestSupport.builtInRegistry().finetune("lr-rewind", options: ["epoch=1"]).finetune(m, step: 0, of: 1, context: context)
        XCTAssertEqual(records.map(\.epoch), [1, 2])
        XCTAssertEqual(records.map(\.learningRate), [original.schedule.rate(atEpoch: 1), original.schedule.rate(atEpoch: 2)])
        XCTAssertNotEqual(m.weightSnapshot(), before, "it trained")
        assertMasksSurvive(m, mask, "lr-rewind")
    }

    func testEveryStrategyKeepsTheMasksThroughAnIterativeSchedule() throws {
        let registry = try TestSupport.builtInRegistry()
        let schedule = try registry.schedule("iterative", options: ["steps=2"])
        let criterion = try registry.criterion("global-magnitude")
        for (id, options) in [("none", []), ("finetune", ["epochs=1"]), ("rewind", []), ("reinit", []), ("lr-rewind", [])] {
            let m = try model()
            let run = try m.fit(train, configuration: configuration(epochs: 1), checkpointEpochs: [0])
            let context = FinetuneContext(train: train, validation: validation, training: configuration(epochs: 1),
                                          checkpoints: run.checkpoints)
            let strategy = try registry.finetune(id, options: options)
            let sparsities = schedule.sparsities(toward: 0.75)
            for (step, s) in sparsities.enumerated() {
                try m.prune(with: criterion, toward: .sparsity(s), data: nil)
                let mask = masks(m)
                try strategy.finetune(m, step: step, of: sparsities.count, context: context)
                assertMasksSurvive(m, mask, "\(id) step \(step)")
            }
        }
    }

    func testBadOptionsAreRefused() throws {
        let registry = try TestSupport.builtInRegistry()
        for (id, options) in [("finetune", ["optimizer=rmsprop"]), ("finetune", ["learning-rate=0"]), ("finetune", ["epochs=-1"]),
                              ("reinit", ["budget=scratch-c"]), ("rewind", ["epoch=-1"]), ("lr-rewind", ["epoch=-2"])] {
            XCTAssertThrowsError(try registry.finetune(id, options: options), "\(id) \(options)")
        }
        let m = try model()
        XCTAssertThrowsError(try registry.finetune("lr-rewind", options: ["epoch=4"]).finetune(
            m, step: 0, of: 1, context: FinetuneContext(train: train, validation: nil, training: configuration(epochs: 3))))
    }

    func testStrategiesDeclareTheCheckpointsTheyNeed() throws {
        let registry = try TestSupport.builtInRegistry()
        XCTAssertEqual(try registry.finetune("rewind", options: ["epoch=2"]).checkpointEpochs, [2])
        XCTAssertEqual(try registry.finetune("rewind").checkpointEpochs, [0])
        for id in ["none", "finetune", "reinit", "lr-rewind"] { XCTAssertEqual(try registry.finetune(id).checkpointEpochs, [], id) }
        var c = configuration(epochs: 2)
        c.startEpoch = 3
        XCTAssertThrowsError(try model().fit(train, configuration: c)) { XCTAssert("\($0)".contains("start epoch"), "\($0)") }
    }
}
