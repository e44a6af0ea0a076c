import PruneKit
import XCTest
@testable import __NAME__Plugin

final class __NAME__Tests: XCTestCase {
    /// 64 training and 32 validation images of the bundled mnist-5k (no download).
    private static let splits = Result { try DatasetCatalog.load(validationCount: 32) }

    private func strategy(_ options: [String] = []) throws -> __NAME__ {
        try __NAME__(options: OptionValues(parsing: options, specs: __NAME__.options, owner: __NAME__.id))
    }

    private func context() throws -> FinetuneContext {
        let splits = try Self.splits.get()
        var training = TrainingConfiguration()
        training.epochs = 2; training.batchSize = 32; training.learningRate = 0.05; training.seed = 1
        return FinetuneContext(train: splits.train.subset(Array(0..<64)), validation: splits.validation, training: training)
    }

    /// A small model with every other weight of every layer pruned (masked), as a pruning
    /// step leaves it.
    private func prunedModel() throws -> Model {
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        for (path, parameter) in model.namedParameters where path.hasSuffix(".weight") {
            let n = parameter.value.scalars.count
            parameter.mask = Tensor(shape: parameter.value.shape, scalars: (0..<n).map { Float($0 % 2) })
        }
        return model
    }

    /// Trains the number of epochs the step asks for, changes the weights, and keeps every
    /// pruned weight at zero.
    func testTrainsAndKeepsTheMasks() throws {
        let model = try prunedModel()
        var context = try context()
        var epochs = 0
        context.epochEnded = { _ in epochs += 1 }
        let before = model.weightSnapshot()
        let strategy = try strategy()

        try strategy.finetune(model, step: 0, of: 2, context: context)
        XCTAssertEqual(epochs, strategy.epochs, "between steps: `epochs` epochs")
        try strategy.finetune(model, step: 1, of: 2, context: context)
        XCTAssertEqual(epochs, strategy.epochs + strategy.finalEpochs, "after the last step: `final-epochs` epochs")

        XCTAssertNotEqual(model.weightSnapshot(), before, "finetuning changed no weight")
        for (path, parameter) in model.namedParameters {
            guard let mask = parameter.mask else { continue }
            let revived = zip(parameter.value.scalars, mask.scalars).filter { $1 == 0 && $0 != 0 }.count
            XCTAssertEqual(revived, 0, "\(revived) pruned weights of \(path) are non-zero")
            XCTAssertTrue(parameter.value.scalars.allSatisfy(\.isFinite), "non-finite weights in \(path)")
        }
    }

    func testZeroEpochsLeavesTheWeights() throws {
        let model = try prunedModel()
        let before = model.weightSnapshot()
        try strategy(["epochs=0"]).finetune(model, step: 0, of: 3, context: try context())
        XCTAssertEqual(model.weightSnapshot(), before)
    }

    func testRejectsBadOptions() {
        for bad in ["epochs=-1", "final-epochs=1001", "learning-rate-scale=0", "learning-rate-scale=2", "learning-rate-scale=nan"] {
            XCTAssertThrowsError(try strategy([bad]), bad)
        }
    }

    /// The test links the SDK's shared library, not a copy of it (as `prunekit` and the plugin do).
    func testOneCopyOfTheSDK() {
        XCTAssertEqual(SDKLinkage.sdkImagePath.map { $0.hasSuffix("/libPruneKit.so") }, true,
                       "PruneKit's types come from \(SDKLinkage.sdkImagePath ?? "?"), not libPruneKit.so")
    }

    /// The entry point registers the strategy (the host calls it the same way).
    func testEntryRegisters() throws {
        let registry = Registry()
        try __NAME__Entry().register(into: registry)
        XCTAssertEqual(registry.ids(of: .finetune), ["__ID__"])
        XCTAssertNoThrow(try registry.finetune("__ID__", options: ["final-epochs=3"]))
        XCTAssertEqual(String(cString: prunekitPluginInfo()), #"{"name":"__ID__","version":"0.1.0"}"#)
    }
}
