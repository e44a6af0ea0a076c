import Foundation
import PruneKit
import PruneKitONNX
import XCTest

/// `prunekit import`, `prunekit export` and `--model FILE.onnx` end to end.
final class ONNXCommandTests: XCTestCase {
    private func run(_ arguments: [String], in directory: URL) throws -> (status: Int32, out: String, err: String) {
        try TestSupport.runPrunekit(arguments, in: directory)
    }

    private let mnistCNN = ONNXTests.path("mnist_cnn")

    func testImportSavesTheModelAndPrintsTheInspectTable() throws {
        let dir = try temporaryScratchDirectory("prunekit-onnx")
        let r = try run(["import", ONNXTests.path("tiny_resnet"), "--out", "resnet"], in: dir)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssert(r.out.contains("opset 17, written by pytorch"), r.out)
        let lines = r.out.split(separator: "\n").map(String.init)
        let shortcut = try XCTUnwrap(lines.first { $0.hasPrefix("layer2.0.downsample.0 ") }, r.out)
        XCTAssert(shortcut.contains("conv2d") && shortcut.contains("32 → 32") && shortcut.contains("512"), shortcut)
        // The saved model is an ordinary one, and it remembers the initialiser names.
        let saved = try Model.load(from: dir.appendingPathComponent("resnet").path)
        let metadata = try Model.savedMetadata(in: dir.appendingPathComponent("resnet").path)
        XCTAssertEqual(ONNX.initializerNames(fromMetadata: metadata)["layer1.0.bn1.running_mean"], "layer1.0.bn1.running_mean")
        let ref = try ONNXTests.reference("tiny_resnet")
        ONNXTests.assertClose(ONNXTests.outputs(saved, ref.inputTensor), ref.output, "saved")
    }

    func testBadImportsWriteNothing() throws {
        let dir = try temporaryScratchDirectory("prunekit-onnx")
        for (file, text) in [("bad_unsupported_op", "Softsign"), ("bad_nan_weight", "nan"), ("bad_two_inputs", "2 inputs"),
                             ("bad_dynamic_shape", "--input-shape")] {
            let r = try run(["import", ONNXTests.path(file), "--out", "x"], in: dir)
            XCTAssertNotEqual(r.status, 0, file)
            XCTAssert(r.err.hasPrefix("error: ") && r.err.contains(text) && r.err.contains("\nhint: "), "\(file): \(r.err)")
            XCTAssertEqual(r.err.split(separator: "\n").count, 2, r.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x").path), file)
        }
        let shape = try run(["import", ONNXTests.path("bad_dynamic_shape"), "--out", "x", "--input-shape", "3x0x8"], in: dir)
        XCTAssertEqual(shape.status, 64, shape.err)
        XCTAssert(shape.err.contains("--input-shape '3x0x8'"), shape.err)
    }

    /// A PyTorch user's path on the command line: prune the .onnx file directly (on the bundled
    /// MNIST subset), export the narrower model, and find the original names in it.
    func testPruneAnONNXFileAndExportItNarrower() throws {
        let dir = try temporaryScratchDirectory("prunekit-onnx")
        let inspect = try run(["inspect", "--model", mnistCNN], in: dir)
        XCTAssertEqual(inspect.status, 0, inspect.err)
        XCTAssert(inspect.out.contains("mnist_cnn, input 1×28×28"), inspect.out)
        let prune = try run(["prune", "--model", mnistCNN, "--criterion", "l1-filter", "--speedup", "2", "--finetune", "none",
                             "--out", "pruned"], in: dir)
        XCTAssertEqual(prune.status, 0, prune.err)
        let export = try run(["export", "--model", "pruned", "--onnx", "pruned.onnx"], in: dir)
        XCTAssertEqual(export.status, 0, export.err)
        XCTAssert(export.out.contains("wrote pruned.onnx: opset 17"), export.out)

        let original = try ONNX.importModel(contentsOf: mnistCNN)
        let back = try ONNX.importModel(contentsOf: dir.appendingPathComponent("pruned.onnx").path)
        XCTAssertGreaterThanOrEqual(Double(original.model.macs) / Double(back.model.macs), 2)
        XCTAssertEqual(Set(back.initializerNames.values), Set(original.initializerNames.values))
        let saved = try Model.load(from: dir.appendingPathComponent("pruned").path)
        let input = try ONNXTests.reference("mnist_cnn").inputTensor
        ONNXTests.assertClose(ONNXTests.outputs(back.model, input), ONNXTests.outputs(saved, input), tolerance: 1e-6, "exported")
    }

    /// `prune --out FILE.onnx` writes the pruned, narrower model straight to ONNX, with the
    /// original initialiser names, and never replaces a file that is already there.
    func testPruneWritesAnONNXFile() throws {
        let dir = try temporaryScratchDirectory("prunekit-onnx")
        let prune = try run(["prune", "--model", mnistCNN, "--criterion", "l1-filter", "--speedup", "2", "--finetune", "none",
                             "--out", "pruned.onnx"], in: dir)
        XCTAssertEqual(prune.status, 0, prune.err)
        XCTAssert(prune.out.contains("saved to pruned.onnx (ONNX opset 17)"), prune.out)
        let original = try ONNX.importModel(contentsOf: mnistCNN)
        let written = try ONNX.importModel(contentsOf: dir.appendingPathComponent("pruned.onnx").path)
        XCTAssertGreaterThanOrEqual(Double(original.model.macs) / Double(written.model.macs), 2)
        XCTAssertEqual(Set(written.initializerNames.values), Set(original.initializerNames.values))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("partial") }, [])

        let again = try run(["prune", "--model", mnistCNN, "--criterion", "l1-filter", "--speedup", "2", "--finetune", "none",
                             "--out", "pruned.onnx"], in: dir)
        XCTAssertNotEqual(again.status, 0)
        XCTAssert(again.err.contains("already exists"), again.err)
        let unchanged = try ONNX.importModel(contentsOf: dir.appendingPathComponent("pruned.onnx").path)
        XCTAssertEqual(unchanged.model.macs, written.model.macs)
    }

    /// The harness compares criteria on an ONNX model from its own weights (no baseline
    /// training), and refuses one whose input does not fit the data, naming both shapes.
    func testCompareTakesAnONNXModel() throws {
        let dir = try temporaryScratchDirectory("prunekit-onnx")
        let r = try run(["compare", "--model", mnistCNN, "--criteria", "l1-filter", "--speedups", "2", "--finetune", "none",
                         "--store", "r/results.sqlite"], in: dir)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("its weights are the baseline (no training)"), r.out)
        XCTAssertFalse(r.out.contains("training baseline"), r.out)
        XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r/onnx-imports/mnist_cnn/model.json").path))
        let misfit = try run(["compare", "--model", ONNXTests.path("tiny_vgg_bn"), "--criteria", "l1-filter", "--speedups", "2",
                              "--store", "m/results.sqlite"], in: dir)
        XCTAssertNotEqual(misfit.status, 0)
        XCTAssert(misfit.err.contains("[1, 28, 28]") && misfit.err.contains("[3, 16, 16]"), misfit.err)
    }

    func testExportRefusesWhatItCannotRead() throws {
        let dir = try temporaryScratchDirectory("prunekit-onnx")
        let missing = try run(["export", "--model", "nowhere", "--onnx", "x.onnx"], in: dir)
        XCTAssertEqual(missing.status, 64, missing.err)
        XCTAssert(missing.err.contains("'nowhere' is neither a saved model folder, an ONNX file (.onnx) nor a zoo model"), missing.err)
        let unwritable = try run(["export", "--model", "lenet-5", "--onnx", "no/such/folder/x.onnx"], in: dir)
        XCTAssertEqual(unwritable.status, 1, unwritable.err)
        XCTAssert(unwritable.err.contains("cannot write 'no/such/folder/x.onnx'"), unwritable.err)
    }
}
