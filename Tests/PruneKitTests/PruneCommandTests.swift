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

    func testChannelCriterionRemovesChannelsAndReachesTheSpeedUp() throws {
        let out = try scratch().appendingPathComponent("pruned")
        let r = try run(["prune", "--model", "lenet-5", "--criterion", "l1-filter", "--speedup", "2", "--out", out.path] + quick)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("pruning the freshly initialised model"), r.out)
        for row in ["test accuracy (top-1)", "parameters", "FLOPs (2·MACs)", "latency, batch 1", "latency, batch 64", "file size"] {
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
            (["--speedup", "2", "--residual-policy", "sideways"], ["--residual-policy 'sideways'", "whole-stream"]),
            (["--compression", "1000"], ["can't be reached", "at most"]),
        ]
        for (extra, expected) in cases {
            let r = try run(base + extra)
            XCTAssertNotEqual(r.status, 0, "\(extra): \(r.out)")
            for text in expected { XCTAssert(r.err.contains(text), "\(extra): expected '\(text)' in \(r.err)") }
            XCTAssert(r.err.hasPrefix("error: "), r.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(extra) wrote \(out)")
        }
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
        b.add("stem", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("grouped", Conv2d(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, groups: 2, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 4, outFeatures: 10, rng: &rng))
        let saved = dir.appendingPathComponent("grouped").path
        try b.build().save(to: saved)
        let out = dir.appendingPathComponent("out").path
        let r = try run(["prune", "--model", saved, "--criterion", "l1-filter", "--sparsity", "0.5", "--out", out] + quick)
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.err.contains("layer 'grouped'") && r.err.contains("groups 2"), r.err)
        XCTAssert(r.err.contains("surgery supports"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
