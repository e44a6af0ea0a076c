import Foundation
import PruneKit
import XCTest

/// `prunekit prune` end to end: tiny runs (lenet-5 untrained or one epoch) and bad input.
final class PruneCommandTests: XCTestCase {
    private func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try TestSupport.runPrunekit(arguments)
    }

    private func scratch() throws -> URL {
        try temporaryScratchDirectory("prunekit-prune")
    }

    private let quick = ["--epochs", "0", "--latency-runs", "1", "--batches", "1", "--validation", "100"]
    /// `quick` without the default short finetune.
    private var bare: [String] { quick + ["--finetune", "none"] }

    func testChannelCriterionRemovesChannelsAndReachesTheSpeedUp() throws {
        let out = try scratch().appendingPathComponent("pruned")
        let r = try run(["prune", "--model", "lenet-5", "--criterion", "l1-filter", "--speedup", "2", "--out", out.path] + bare)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("pruning the freshly initialised model"), r.out)
        for row in ["test accuracy (top-1)", "parameters", "MACs (FLOPs = 2·MACs)", "latency, batch 1", "latency, batch 64", "file size"] {
            XCTAssert(r.out.contains(row), "\(row) missing: \(r.out)")
        }
        XCTAssert(r.out.contains("features.0 6→"), r.out)
        let pruned = try Model.load(from: out.path)
        let dense = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        XCTAssertGreaterThanOrEqual(Double(dense.macs) / Double(pruned.macs), 2)
        XCTAssert(pruned.namedParameters.allSatisfy { $0.parameter.mask == nil })
        let widths = try XCTUnwrap(Model.savedMetadata(in: out.path)[SurgeryResult.originalWidthsKey])
        XCTAssert(widths.contains("\"features.3\":16"), widths)
        for file in ["plan.json", "pruning.json"] {
            XCTAssert(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), file)
        }
        // No staging folder is left beside the output.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path)
        XCTAssertEqual(siblings, ["pruned"])
    }

    func testWeightCriterionOnASavedModelWithFinetuning() throws {
        let dir = try scratch()
        let saved = dir.appendingPathComponent("lenet").path
        try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 3).save(to: saved)
        let out = dir.appendingPathComponent("pruned").path
        let r = try run(["prune", "--model", saved, "--criterion", "global-magnitude", "--compression", "4",
                         "--finetune", "finetune", "--finetune-option", "epochs=1", "--out", out] + quick)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("finetune epoch 1"), r.out)
        let pruned = try Model.load(from: out)
        // The classifier's 840 weights kept, so 61,470 · 3/4 / 60,630 = 76.04 % of the 60,630
        // in scope masked, leaving 14,527 + 840 = 15,367 (see TargetTests).
        XCTAssertEqual(pruned.compression.prunableRatio, 61_470 / 15_367, accuracy: 1e-12)
        XCTAssert(r.out.contains("compression 4×: sparsity 0.7604, achieved 4.000×"), r.out)
    }

    func testBadInputIsAClearErrorAndWritesNothing() throws {
        let dir = try scratch()
        let out = dir.appendingPathComponent("never").path
        let base = ["prune", "--model", "lenet-5", "--criterion", "l1-filter", "--out", out] + quick
        let cases: [([String], [String])] = [
            (["--sparsity", "1.5"], ["--sparsity 1.5 is outside [0, 1)"]),
            (["--compression", "1"], ["--compression 1.0 must be greater than 1"]),
            (["--speedup", "0.5"], ["--speedup 0.5 must be greater than 1"]),
            ([], ["no target given", "--compression R"]),
            (["--speedup", "2", "--sparsity", "0.5"], ["more than one target"]),
            (["--speedup", "2", "--exclude", "features.9"], ["--exclude features.9 names no prunable layer", "features.3"]),
            (["--compression", "1000"], ["can't be reached", "at most"]),
        ]
        for (extra, expected) in cases {
            let r = try run(base + extra)
            XCTAssertNotEqual(r.status, 0, "\(extra): \(r.out)")
            for text in expected { XCTAssert(r.err.contains(text), "\(extra): expected '\(text)' in \(r.err)") }
            XCTAssert(r.err.hasPrefix("error: "), r.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(extra) wrote \(out)")
        }
        // Enumerations are parsed by the argument parser, which lists the values.
        let policy = try run(base + ["--speedup", "2", "--residual-policy", "sideways"])
        XCTAssertNotEqual(policy.status, 0)
        XCTAssert(policy.err.contains("'sideways'") && policy.err.contains("within-blocks") && policy.err.contains("whole-stream"), policy.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    /// Issue 15, defect 11: slimming on a model without BatchNorm gives every channel the
    /// same score; `prune` refuses it as `compare` does (one rule: Model.channelRankingProblem).
    func testACriterionThatCantRankTheChannelsIsRefused() throws {
        let dir = try scratch()
        let out = dir.appendingPathComponent("pruned").path
        let r = try run(["prune", "--model", "lenet-5", "--criterion", "slimming", "--compression", "2", "--out", out] + quick)
        XCTAssertNotEqual(r.status, 0, r.out)
        XCTAssert(r.err.hasPrefix("error: criterion 'slimming' gives all channels of each prunable layer the same score"), r.err)
        XCTAssert(r.err.contains("can't rank the channels of lenet-5, which has no BatchNorm layer") && r.err.contains("hint: "), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testALayerSurgeryCantHandleIsNamed() throws {
        let dir = try scratch()
        var rng = RandomGenerator(seed: 0)
        var b = ModelBuilder(architecture: "grouped", inputShape: [1, 28, 28])
        let p = b.add("stem", Conv2d(inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1, rng: &rng))
        let q = b.add("stem2", Conv2d(inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1, rng: &rng), inputs: [Model.inputIndex])
        b.add("cat", Concat(), inputs: [p, q])
        b.add("grouped", Conv2d(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, groups: 2, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 4, outFeatures: 10, rng: &rng))
        let saved = dir.appendingPathComponent("grouped").path
        try b.build().save(to: saved)
        let out = dir.appendingPathComponent("out").path
        let r = try run(["prune", "--model", saved, "--criterion", "l1-filter", "--sparsity", "0.5", "--out", out] + bare)
        XCTAssertNotEqual(r.status, 0)
        // A grouped convolution that reads a concatenation is kept whole with what it reads,
        // which here leaves nothing.
        XCTAssert(r.err.contains("no channel group of the model can be pruned"), r.err)
        XCTAssert(r.err.contains("stem, stem2, grouped: tied to the grouped convolution 'grouped' (groups 2, 4→4 channels), which reads a concatenation"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// A grouped convolution is pruned with both its groups the same width: what it reads
    /// (stem) and what it writes, and the layer after it; it stays a grouped convolution.
    func testAGroupedConvolutionIsPrunedWithEveryGroupTheSameWidth() throws {
        let dir = try scratch()
        var rng = RandomGenerator(seed: 0)
        var b = ModelBuilder(architecture: "grouped", inputShape: [1, 28, 28])
        b.add("stem", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("grouped", Conv2d(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, groups: 2, rng: &rng))
        b.add("relu", ReLU())
        b.add("conv", Conv2d(inChannels: 4, outChannels: 8, kernelSize: 3, padding: 1, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 8, outFeatures: 10, rng: &rng))
        let saved = dir.appendingPathComponent("grouped").path
        try b.build().save(to: saved)
        let out = dir.appendingPathComponent("out").path
        let r = try run(["prune", "--model", saved, "--criterion", "l1-filter", "--sparsity", "0.5", "--out", out] + bare)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertFalse(r.out.contains("kept whole (tied to the grouped convolution"), r.out)
        let pruned = try Model.load(from: out)
        let conv = try XCTUnwrap(pruned.nodes.first { $0.name == "conv" }?.layer as? Conv2d)
        let grouped = try XCTUnwrap(pruned.nodes.first { $0.name == "grouped" }?.layer as? Conv2d)
        XCTAssertEqual(conv.outChannels, 4)
        XCTAssertEqual([grouped.inChannels, grouped.outChannels, grouped.groups], [2, 2, 2])
    }

    /// Two prunes to one --out: before, the second deleted the first's result and both said
    /// "saved"; now the second fails, leaves the first's files alone and keeps its own model.
    func testTwoPrunesToOneFolderLoseNothing() throws {
        let dir = try scratch()
        let out = dir.appendingPathComponent("shared").path
        let args = ["prune", "--model", "lenet-5", "--criterion", "l1-filter", "--speedup", "2", "--out", out] + bare
        var results: [(status: Int32, out: String, err: String)?] = [nil, nil]
        DispatchQueue.concurrentPerform(iterations: 2) { i in results[i] = try? run(args) }
        let done = results.compactMap { $0 }
        XCTAssertEqual(done.count, 2)
        let ok = done.filter { $0.status == 0 }, failed = done.filter { $0.status != 0 }
        XCTAssertEqual(ok.count, 1, done.map { $0.err }.joined(separator: "\n---\n"))
        let err = try XCTUnwrap(failed.first?.err)
        XCTAssert(err.contains("could not save the pruned model to \(out)") && err.contains("nothing in it was touched"), err)
        // The loser's model is kept where the hint says, whole and loadable.
        let kept = try XCTUnwrap(err.components(separatedBy: "the pruned model is kept in ").last?.components(separatedBy: ":").first)
        XCTAssertNoThrow(try Model.load(from: kept))
        XCTAssertNoThrow(try Model.load(from: out), "the winner's model is intact")
        XCTAssert(FileManager.default.fileExists(atPath: out + "/pruning.json"))
    }

    /// The hint of an unreachable compression names an option prune has.
    func testUnreachableCompressionHintNamesARealOption() throws {
        let dir = try scratch()
        let base = ["prune", "--model", "lenet-5", "--criterion", "global-magnitude", "--compression", "100"] + bare
        let refused = try run(base + ["--out", dir.appendingPathComponent("a").path])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssert(refused.err.contains("--prune-classifier") && !refused.err.contains("--keep-classifier"), refused.err)
        let out = dir.appendingPathComponent("b").path
        let pruned = try run(base + ["--prune-classifier", "--out", out])
        XCTAssertEqual(pruned.status, 0, pruned.err)
        XCTAssertEqual(try Model.load(from: out).compression.prunableRatio, 100, accuracy: 0.1, "615 of 61,470 weights kept")
    }

    /// Numbers are checked when the options are parsed: NaN and infinities never reach a run.
    func testNonFiniteAndOutOfRangeNumbersAreRefusedAtParseTime() throws {
        let out = try scratch().appendingPathComponent("never").path
        let base = ["prune", "--model", "lenet-5", "--criterion", "l1-filter", "--out", out] + quick
        for (extra, expected) in [(["--compression", "nan"], "--compression nan must be greater than 1"),
                                  (["--speedup", "inf"], "--speedup inf must be greater than 1"),
                                  (["--sparsity", "nan"], "--sparsity nan is outside [0, 1)"),
                                  (["--speedup", "2", "--batches", "0"], "--batches must be at least 1"),
                                  (["--speedup", "2", "--validation=-1"], "--validation must be 0 or more")] {
            let r = try run(base + extra)
            XCTAssertEqual(r.status, 64, "\(extra): \(r.out)")
            XCTAssert(r.err.hasPrefix("error: " + expected), "\(extra): \(r.err)")
            XCTAssertFalse(r.out.contains("pruning with"), "refused before anything ran: \(r.out)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// `--schedule "iterative steps=2"` carries its options, as compare's --criteria does.
    func testPluginIdsTakeOptionsAfterASpace() throws {
        let out = try scratch().appendingPathComponent("pruned").path
        let r = try run(["prune", "--model", "lenet-5", "--criterion", "random granularity=channel", "--speedup", "2",
                         "--schedule", "iterative steps=2", "--out", out] + bare)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssert(r.out.contains("pruning with random granularity=channel (channel)") && r.out.contains("schedule iterative"), r.out)
        XCTAssert(r.out.contains("step 2/2"), r.out)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/pruning.json"))) as? [String: Any])
        XCTAssertEqual(report["schedule"] as? String, "iterative")
        XCTAssertEqual(report["schedule_options"] as? [String], ["steps=2"])
        XCTAssertEqual(report["options"] as? [String], ["granularity=channel"])
        XCTAssertEqual(report["finetune"] as? String, "none")
    }

    /// By default the pruned model is finetuned briefly, visibly; a large accuracy drop is
    /// called out; a masked model's latency is "no change expected", not a speed-up.
    func testPruneFinetunesByDefaultAndWarnsOfADrop() throws {
        let dir = try scratch()
        let r = try run(["prune", "--model", "lenet-5", "--epochs", "1", "--criterion", "global-magnitude", "--compression", "40",
                         "--warn-drop", "0", "--latency-runs", "1", "--batches", "1", "--out", dir.appendingPathComponent("a").path])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssert(r.out.contains("finetuning finetune") && r.out.contains("finetune epoch 2"), "two epochs by default: \(r.out)")
        XCTAssert(r.out.contains("no change expected"), r.out)
        XCTAssertFalse(r.out.range(of: #"latency, batch 1 .*×"#, options: .regularExpression) != nil, r.out)
        let drop = try XCTUnwrap(r.out.components(separatedBy: "\n").first { $0.hasPrefix("warning: test accuracy fell by") } ?? Optional(nil),
                                 "with --warn-drop 0 any drop is reported: \(r.out)")
        XCTAssert(drop.contains("points (more than --warn-drop 0)"), drop)
        let none = try run(["prune", "--model", "lenet-5", "--criterion", "l1-filter", "--speedup", "2",
                            "--out", dir.appendingPathComponent("b").path] + bare)
        XCTAssertEqual(none.status, 0, none.err)
        XCTAssert(none.out.contains("finetuning none") && !none.out.contains("finetune epoch"), none.out)
    }
}
