import Foundation
import PruneKit
import XCTest

/// The `prunekit` executable end to end: exit status and messages for good and bad input.
final class CLITests: XCTestCase {
    private func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try TestSupport.runPrunekit(arguments)
    }

    private func temporaryDirectory() throws -> URL {
        try temporaryScratchDirectory("prunekit-cli")
    }

    func testTrainThenEvaluate() throws {
        let dir = try temporaryDirectory().appendingPathComponent("model")
        let train = try run(["train", "--model", "lenet-300-100", "--epochs", "1", "--out", dir.path])
        XCTAssertEqual(train.status, 0, train.err)
        XCTAssert(train.out.contains("test accuracy: top-1"), train.out)
        XCTAssert(train.out.contains("epoch 1/1"), "plain per-epoch lines when not on a terminal: \(train.out)")
        for file in ["model.json", "model.safetensors", "training.json"] {
            XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), file)
        }
        let eval = try run(["eval", "--model", dir.path])
        XCTAssertEqual(eval.status, 0, eval.err)
        XCTAssert(eval.out.contains("lenet-300-100 on mnist-5k/test: top-1"), eval.out)
    }

    /// A saved model whose output is a feature map, not a vector of class scores, is refused
    /// with an error naming its output (it used to reach the loss's precondition).
    func testAModelWithoutAClassifierOutputIsAClearError() throws {
        var rng = RandomGenerator(seed: 0)
        var b = ModelBuilder(architecture: "conv-only", inputShape: [1, 28, 28])
        b.add("features.0", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        let model = try b.build()
        XCTAssertThrowsError(try model.checkFits(try DatasetCatalog.load().train)) { error in
            XCTAssert("\(error)".contains("not a vector of class scores"), "\(error)")
        }
        let dir = try temporaryDirectory().appendingPathComponent("conv-only")
        try model.save(to: dir.path)
        for command in [["eval", "--model", dir.path], ["train", "--model", dir.path, "--epochs", "1"]] {
            let r = try run(command)
            XCTAssertNotEqual(r.status, 0, command.joined(separator: " "))
            XCTAssert(r.err.contains("[4, 28, 28] per example, not a vector of class scores") && r.err.contains("hint:"), r.err)
            XCTAssertFalse(r.err.contains("Fatal error"), r.err)
        }
    }

    func testUnknownModelAndDataSetAreClearErrors() throws {
        let model = try run(["train", "--model", "alexnet", "--epochs", "1"])
        XCTAssertNotEqual(model.status, 0)
        XCTAssert(model.err.contains("'alexnet' is neither a saved model folder") && model.err.contains("hint: zoo models: lenet-300-100"), model.err)
        let data = try run(["train", "--dataset", "imagenet", "--epochs", "1"])
        XCTAssertNotEqual(data.status, 0)
        XCTAssert(data.err.contains("imagenet"), data.err)
        XCTAssertFalse(data.err.contains("Fatal error") || model.err.contains("Fatal error"))
    }

    func testMissingDataFilesAndModelsAreClearErrors() throws {
        let empty = try temporaryDirectory()
        let data = try run(["train", "--dataset", "mnist", "--data-dir", empty.path, "--epochs", "1"])
        XCTAssertNotEqual(data.status, 0)
        XCTAssert(data.err.contains("train-images-idx3-ubyte"), data.err)
        let model = try run(["eval", "--model", empty.appendingPathComponent("nothing").path])
        XCTAssertNotEqual(model.status, 0)
        XCTAssert(model.err.hasPrefix("error: "), model.err)
    }

    func testCorruptWeightsFileIsAClearError() throws {
        let dir = try temporaryDirectory().appendingPathComponent("model")
        XCTAssertEqual(try run(["train", "--model", "lenet-300-100", "--epochs", "0", "--out", dir.path]).status, 0)
        let weights = dir.appendingPathComponent("model.safetensors")
        let bytes = try Data(contentsOf: weights)
        try bytes.prefix(bytes.count / 2).write(to: weights)
        let eval = try run(["eval", "--model", dir.path])
        XCTAssertNotEqual(eval.status, 0)
        XCTAssert(eval.err.contains("model.safetensors"), eval.err)
    }

    func testDivergenceStopsWithEpochBatchAndAHint() throws {
        let r = try run(["train", "--model", "lenet-300-100", "--epochs", "1", "--lr", "1e12", "--out", try temporaryDirectory().path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.err.contains("the loss became") && r.err.contains("epoch 1, batch"), r.err)
        XCTAssert(r.err.contains("lower the learning rate"), r.err)
    }

    /// `bench criteria` times several criteria side by side (the figures themselves are not
    /// checked: timings are machine-dependent); `bench taylor` still runs; bad input is refused.
    func testBenchCriteriaTimesEachCriterionAndRefusesBadInput() throws {
        let r = try run(["bench", "criteria", "--criteria", "l1-filter,apoz,snip", "--model", "lenet-5", "--batches", "1", "--batch-size", "8"])
        XCTAssertEqual(r.status, 0, r.err)
        let rows = r.out.split(separator: "\n").filter { $0.hasPrefix("  1   ") }
        XCTAssertEqual(rows.map { $0.split(separator: " ")[1] }, ["l1-filter", "apoz", "snip"], r.out)
        XCTAssert(rows[0].hasSuffix("weights only") && rows[1].hasSuffix("activations") && rows[2].hasSuffix("weight-gradients"), r.out)
        XCTAssert(rows[0].contains(" 0.000 s "), "a weights-only criterion needs no passes: \(rows[0])")
        XCTAssertFalse(r.out.contains("reference: PyTorch"), "the Taylor reference only with taylor")
        let taylor = try run(["bench", "taylor", "--model", "lenet-5", "--batches", "1", "--batch-size", "8"])
        XCTAssertEqual(taylor.status, 0, taylor.err)
        XCTAssert(taylor.out.contains("  1   taylor ") && taylor.out.contains("reference: PyTorch"), taylor.out)
        let unknown = try run(["bench", "criteria", "--criteria", "magnitood", "--model", "lenet-5", "--batches", "1"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssert(unknown.err.contains("unknown criterion 'magnitood'"), unknown.err)
        let repeats = try run(["bench", "criteria", "--repeats", "0"])
        XCTAssertEqual(repeats.status, 64, repeats.err)
        XCTAssert(repeats.err.contains("--repeats must be at least 1"), repeats.err)
    }

    func testBadOptionValuesAreRefused() throws {
        let r = try run(["train", "--threads", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.err.contains("--threads"), r.err)
        let lr = try run(["train", "--lr=-1", "--epochs", "1"])   // the old spelling, kept as a hidden alias
        XCTAssertNotEqual(lr.status, 0)
        XCTAssert(lr.err.contains("learning rate"), lr.err)
    }

    /// Every floating-point option of train is checked, finite and in range, before training
    /// (before: `--gamma nan` trained and then "diverged" with the hint "lower it to nan").
    func testNonFiniteTrainingOptionsAreRefusedAtParseTime() throws {
        let out = try temporaryDirectory().appendingPathComponent("never").path
        for (extra, expected) in [(["--gamma", "nan", "--lr-schedule", "step"], "the step decay factor must be in (0, 1], got nan"),
                                  (["--gamma", "0", "--schedule", "step"], "the step decay factor must be in (0, 1], got 0.0"),
                                  (["--momentum", "nan"], "SGD momentum must be in [0, 1), got nan"),
                                  (["--momentum", "1.5"], "SGD momentum must be in [0, 1), got 1.5"),
                                  (["--learning-rate", "inf"], "the learning rate must be a positive number, got inf"),
                                  (["--weight-decay", "nan"], "weight decay must be ≥ 0, got nan"),
                                  (["--warmup-epochs=-1"], "the warm-up must be 0 or more epochs, got -1.0"),
                                  (["--warmup", "nan"], "the warm-up must be 0 or more epochs, got nan")] {
            let r = try run(["train", "--model", "lenet-300-100", "--out", out] + extra)
            XCTAssertEqual(r.status, 64, "\(extra): \(r.out)")
            XCTAssert(r.err.hasPrefix("error: " + expected), "\(extra): \(r.err)")
            XCTAssertFalse(r.out.contains("training"), "\(extra): nothing ran: \(r.out)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// `--version` names the tool, the SDK and the plugin ABI a plugin must match.
    func testVersionNamesToolSDKAndABI() throws {
        let r = try run(["--version"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssert(r.out.hasPrefix("prunekit 1.") && r.out.contains("· SDK 1.") && r.out.contains("plugin ABI format 1, compiler clang "), r.out)
    }
}
