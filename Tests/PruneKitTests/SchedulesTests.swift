import Foundation
import PruneKit
import XCTest

/// The three shipped schedules, loaded from their plugin library: each sparsity sequence
/// against its formula.
final class SchedulesTests: XCTestCase {
    private func schedule(_ id: String, _ options: [String] = []) throws -> any Schedule {
        try TestSupport.builtInRegistry().schedule(id, options: options)
    }

    private func assertClose(_ a: [Double], _ b: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(a) vs \(b)", file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-12, "\(a) vs \(b)", file: file, line: line) }
    }

    func testOneShotPrunesToTheTargetInOneStep() throws {
        let s = try schedule("one-shot")
        XCTAssertEqual(s.sparsities(toward: 0.9), [0.9])
        XCTAssertNil(s.trainingSteps, "one-shot is separated by finetuning")
    }

    func testIterativeLinearRemovesTheSameShareEachStep() throws {
        // s_i = s·i/N: 0.8·{1,2,3,4}/4.
        let s = try schedule("iterative", ["steps=4", "decay=linear"])
        assertClose(s.sparsities(toward: 0.8), [0.2, 0.4, 0.6, 0.8])
        XCTAssertNil(s.trainingSteps)
    }

    func testIterativeGeometricKeepsTheSameFractionEachStep() throws {
        // kept_i = (1 − s)^(i/N): with s = 0.875 and N = 3, kept = 0.5, 0.25, 0.125.
        let s = try schedule("iterative", ["steps=3", "decay=geometric"])
        let sparsities = s.sparsities(toward: 0.875)
        assertClose(sparsities, [0.5, 0.75, 0.875])
        XCTAssertEqual(sparsities.last, 0.875, "ends exactly at the target")
        let kept = sparsities.map { 1 - $0 }
        for i in 1..<kept.count { XCTAssertEqual(kept[i] / kept[i - 1], 0.5, accuracy: 1e-12) }
        XCTAssertEqual(try schedule("iterative").sparsities(toward: 0.5).count, 5, "the default is 5 steps")
    }

    func testAGPFollowsTheCubic() throws {
        // s_t = s_f + (s_i − s_f)(1 − t/n)³, n = 10, k = 3: pruning at t = 3, 6, 9 and 10.
        let s = try schedule("agp", ["steps=10", "every=3"])
        XCTAssertEqual(s.trainingSteps, [3, 6, 9, 10])
        let f = 0.9
        assertClose(s.sparsities(toward: f), [3, 6, 9, 10].map { t in f + (0 - f) * pow(1 - Double(t) / 10, 3) })
        XCTAssertEqual(s.sparsities(toward: f).last, f)

        // With s_i > 0, t = 0 prunes to s_i first.
        let withInitial = try schedule("agp", ["steps=8", "every=4", "initial=0.2"])
        XCTAssertEqual(withInitial.trainingSteps, [0, 4, 8])
        assertClose(withInitial.sparsities(toward: 0.6), [0.2, 0.6 + (0.2 - 0.6) * 0.125, 0.6])
        let sequence = withInitial.sparsities(toward: 0.6)
        XCTAssertEqual(sequence, sequence.sorted(), "the sparsity never falls")
    }

    func testBadOptionsAreRefusedWithAMessage() throws {
        for (id, options) in [("iterative", ["steps=0"]), ("iterative", ["decay=cubic"]), ("agp", ["every=0"]),
                              ("agp", ["steps=0"]), ("agp", ["initial=1"]), ("one-shot", ["steps=2"])] {
            XCTAssertThrowsError(try schedule(id, options), "\(id) \(options)") {
                XCTAssertFalse("\($0)".isEmpty)
            }
        }
    }

    // MARK: The prune–finetune loop (Model.prune(with:schedule:finetune:…))

    private func tinyRun(epochs: Int) throws -> (Model, FinetuneContext) {
        let data = try DatasetCatalog.load().train.subset(Array(0..<96))
        var c = TrainingConfiguration()
        c.epochs = epochs; c.batchSize = 32; c.seed = 1
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        return (model, FinetuneContext(train: data, validation: nil, training: c))
    }

    /// The fraction of the non-classifier weights a plan prunes.
    private func sparsity(_ plan: PruningPlan) -> Double {
        let layers = plan.layers.filter { $0.path != "fc3" }
        let units = layers.reduce(0) { $0 + $1.units }
        return Double(units - layers.reduce(0) { $0 + $1.keptCount }) / Double(units)
    }

    func testIterativeRunPrunesEachStepThenFinetunes() throws {
        let registry = try TestSupport.builtInRegistry()
        var (model, context) = try tinyRun(epochs: 1)
        var epochs = 0
        context.epochEnded = { _ in epochs += 1 }
        let schedule = try registry.schedule("iterative", options: ["steps=3", "decay=linear"])
        let plans = try model.prune(with: registry.criterion("global-magnitude"), schedule: schedule,
                                    finetune: registry.finetune("finetune", options: ["epochs=1"]),
                                    toward: .sparsity(0.6), context: context, data: nil).map(\.plan)
        XCTAssertEqual(plans.count, 3)
        for (plan, s) in zip(plans, [0.2, 0.4, 0.6]) { XCTAssertEqual(sparsity(plan), s, accuracy: 0.01) }
        XCTAssertEqual(epochs, 3, "one finetuning epoch after each step")
    }

    func testAGPRunPrunesDuringTraining() throws {
        let registry = try TestSupport.builtInRegistry()
        var (model, context) = try tinyRun(epochs: 2)   // 3 batches an epoch: 6 training steps
        var epochs = 0
        context.epochEnded = { _ in epochs += 1 }
        let schedule = try registry.schedule("agp", options: ["steps=6", "every=2"])
        let plans = try model.prune(with: registry.criterion("global-magnitude"), schedule: schedule,
                                    finetune: registry.finetune("none"), toward: .sparsity(0.8), context: context, data: nil).map(\.plan)
        XCTAssertEqual(plans.count, 3, "at t = 2, 4, 6")
        for (plan, s) in zip(plans, schedule.sparsities(toward: 0.8)) { XCTAssertEqual(sparsity(plan), s, accuracy: 0.01) }
        XCTAssertEqual(epochs, 2, "one training run, pruned along the way")
        let fc1 = model.namedParameters.first { $0.path == "fc1.weight" }!.parameter
        XCTAssertEqual(Double(fc1.mask!.scalars.filter { $0 == 0 }.count) / Double(fc1.value.count), 0.8, accuracy: 0.05)

        XCTAssertThrowsError(try model.prune(with: registry.criterion("global-magnitude"),
                                             schedule: registry.schedule("agp", options: ["steps=7"]),
                                             finetune: registry.finetune("none"), toward: .sparsity(0.8), context: context, data: nil).map(\.plan)) {
            XCTAssert("\($0)".contains("only 6 batches"), "\($0)")
        }
    }
}
