import Foundation
import PruneKit
import XCTest

/// NaN and infinity never read as a result: a model whose outputs are not finite has no
/// accuracy (issue 15, defect 2), and calibration evidence that is not finite is an error
/// naming the layer, never all-zero scores (defect 5).
final class NonFiniteTests: XCTestCase {
    /// lenet-5 as initialised, with one NaN in `features.0.weight` (or `value` where given).
    private func poisoned(_ value: Float = .nan) throws -> Model {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let weight = try XCTUnwrap(model.namedParameters.first { $0.path == "features.0.weight" }).parameter
        var w = weight.value
        w.withUnsafeMutableBufferPointer { $0[3] = value }
        weight.value = w
        return model
    }

    func testTopKNeverCountsANonFiniteRowAsCorrect() {
        // Before: `row[j] >= v` is false for NaN, so a NaN row ranked its label first.
        let logits = Tensor(shape: [4, 3], scalars: [.nan, .nan, .nan,
                                                     0, .nan, 1,
                                                     0, 0, .infinity,
                                                     0, 0, 1])
        let (top1, top5) = topKCorrect(logits: logits, labels: [0, 2, 2, 2])
        XCTAssertEqual(top1, 1, "only the finite row counts")
        XCTAssertEqual(top5, 1)
        XCTAssertEqual(nonFiniteRows(logits), 3)
    }

    func testAnEvaluationOfNaNOutputsIsRefused() throws {
        let data = try DatasetCatalog.load().test
        let e = try poisoned().evaluate(data)
        XCTAssertEqual(e.nonFiniteCount, e.count, "a NaN in the first conv reaches every output")
        XCTAssertEqual(e.top1, 0, "counted wrong, never right")
        XCTAssertThrowsError(try e.requiringFiniteOutputs("lenet-5 on mnist-5k")) { error in
            let p = error as? PruneKitError
            XCTAssertEqual(p?.kind, .numerical)
            XCTAssertEqual(p?.message, "lenet-5 on mnist-5k gives NaN or infinite outputs for \(e.count) of \(e.count) images, so it has no accuracy")
        }
        let clean = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0).evaluate(data)
        XCTAssertEqual(clean.nonFiniteCount, 0)
        XCTAssertEqual(try clean.requiringFiniteOutputs("x"), clean)
    }

    /// Every criterion that gathers evidence refuses NaN evidence with the layer's name.
    func testNonFiniteCalibrationEvidenceIsAnErrorNamingTheLayer() throws {
        let registry = try TestSupport.builtInRegistry()
        let data = try DatasetCatalog.load().train
        let settings = CalibrationSettings(batches: 1, batchSize: 16, seed: 0)
        for id in ["taylor", "apoz", "thinet", "global-gradient-magnitude"] {
            for value in [Float.nan, .infinity] {
                XCTAssertThrowsError(try poisoned(value).score(with: registry.criterion(id), data: data, settings: settings), id) { error in
                    let p = error as? PruneKitError
                    XCTAssert(p?.message.contains("NaN or infinite") == true && p?.message.contains("layer 'features.") == true,
                              "\(id): \(error)")
                }
            }
        }
    }

    /// Taylor's own guard: an accumulated sum that is not finite is not "every channel scores 0"
    /// (evidence handed to it directly, past the SDK's own check).
    func testTaylorRefusesANonFiniteSum() throws {
        let taylor = try TestSupport.builtInRegistry().criterion("taylor")
        let layer = TestSupport.layer([[1, 2], [3, 4]], path: "features.3")
        let batch = LayerBatch(activations: Tensor(shape: [1, 2], scalars: [.nan, 1]),
                               activationGradients: Tensor(shape: [1, 2], scalars: [1, 1]), exampleCount: 1)
        XCTAssertThrowsError(try observeAndScore(taylor, layer: layer, batches: [batch, batch])) { error in
            XCTAssert("\(error)".contains("features.3"), "\(error)")
        }
    }

    /// `eval`, `prune` and `score` on a model holding NaN: an error, never "top-1 100.00 %".
    func testCommandsRefuseAModelWithNaNWeights() throws {
        let dir = try temporaryScratchDirectory("prunekit-nan")
        let saved = dir.appendingPathComponent("nan").path
        try poisoned().save(to: saved)
        let eval = try TestSupport.runPrunekit(["eval", "--model", saved])
        XCTAssertNotEqual(eval.status, 0, eval.out)
        XCTAssertFalse(eval.out.contains("top-1"), eval.out)
        XCTAssert(eval.err.hasPrefix("error: ") && eval.err.contains("NaN or infinite outputs"), eval.err)

        let out = dir.appendingPathComponent("pruned").path
        // A weight criterion reaches the accuracy of the model before pruning; a channel
        // criterion's scores are checked first (the ranking probe), and are NaN too.
        for (criterion, expected) in [("global-magnitude", "NaN or infinite outputs"), ("l1-filter", "non-finite score (nan)")] {
            let prune = try TestSupport.runPrunekit(["prune", "--model", saved, "--criterion", criterion, "--compression", "2",
                                                     "--latency-runs", "1", "--validation", "100", "--finetune", "none", "--out", out])
            XCTAssertNotEqual(prune.status, 0, prune.out)
            XCTAssert(prune.err.hasPrefix("error: ") && prune.err.contains(expected), "\(criterion): \(prune.err)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing saved")
        }

        let score = try TestSupport.runPrunekit(["score", "--criterion", "taylor", "--model", saved])
        XCTAssertNotEqual(score.status, 0, score.out)
        XCTAssert(score.err.contains("NaN or infinite") && score.err.contains("features."), score.err)
    }
}
