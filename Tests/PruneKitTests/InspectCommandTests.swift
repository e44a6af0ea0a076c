import Foundation
import PruneKit
import XCTest

/// `prunekit inspect` end to end: the table, the JSON, channels before → after from the
/// saved metadata, file size and storage, latency, and bad input.
final class InspectCommandTests: XCTestCase {
    private func run(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        try TestSupport.runPrunekit(arguments)
    }

    private func json(_ arguments: [String]) throws -> [String: Any] {
        let r = try run(arguments + ["--json"])
        XCTAssertEqual(r.status, 0, r.err)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any], r.out)
    }

    private func scratch() throws -> URL {
        try temporaryScratchDirectory("prunekit-inspect")
    }

    func testZooModelTableAndJSON() throws {
        let table = try run(["inspect", "--model", "lenet-5"])
        XCTAssertEqual(table.status, 0, table.err)
        let lines = table.out.split(separator: "\n").map(String.init)
        let conv2 = try XCTUnwrap(lines.first { $0.hasPrefix("features.3 ") }, table.out)
        for field in ["conv2d", "16 → 16", "2,416", "240,000", "480,000"] {
            XCTAssert(conv2.contains(field), "'\(field)' not in: \(conv2)")
        }
        let total = try XCTUnwrap(lines.first { $0.hasPrefix("total") }, table.out)
        XCTAssert(total.contains("61,706") && total.contains("416,520") && total.contains("833,040"), total)
        XCTAssert(table.out.contains("file: not saved"), table.out)

        let j = try json(["inspect", "--model", "vgg-small"])
        let totals = try XCTUnwrap(j["totals"] as? [String: Any])
        XCTAssertEqual(totals["macs"] as? Int, 21_903_104)
        XCTAssertEqual(totals["flops"] as? Int, 43_806_208)
        XCTAssertEqual(totals["parameters"] as? Int, 140_458)
        let layers = try XCTUnwrap(j["layers"] as? [[String: Any]])
        XCTAssertEqual(layers.count, 11)
        XCTAssertEqual(layers.first?["path"] as? String, "features.0")
        // CIFAR shapes for a zoo model come from --dataset.
        let cifar = try json(["inspect", "--model", "vgg-small", "--dataset", "cifar-100"])
        XCTAssertEqual(cifar["input_shape"] as? [Int], [3, 32, 32])
        XCTAssertEqual((cifar["layers"] as? [[String: Any]])?.last?["output_channels"] as? Int, 100)
    }

    func testSavedPrunedModelShowsWidthsBeforeStorageAndSize() throws {
        let dir = try scratch().appendingPathComponent("pruned").path
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let w = try XCTUnwrap(model.nodes[0].layer.parameter(named: "weight"))
        w.mask = Tensor(shape: w.value.shape, scalars: (0..<150).map { $0 % 3 == 0 ? 1 : 0 })   // 50 of 150 kept
        try model.save(to: dir, metadata: ["prunekit.original-widths": #"{"features.0": 12, "classifier.0": 240}"#],
                       storage: .automatic)
        let j = try json(["inspect", "--model", dir])
        let layers = try XCTUnwrap(j["layers"] as? [[String: Any]])
        let c0 = try XCTUnwrap(layers.first { $0["path"] as? String == "features.0" })
        XCTAssertEqual(c0["output_channels_before"] as? Int, 12)
        XCTAssertEqual(c0["output_channels"] as? Int, 6)
        XCTAssertEqual(c0["non_zero_parameters"] as? Int, 50 + 6)
        XCTAssertEqual(c0["sparse_macs"] as? Int, 50 * 28 * 28)
        let c3 = try XCTUnwrap(layers.first { $0["path"] as? String == "features.3" })
        XCTAssertEqual(c3["output_channels_before"] as? Int, 16, "no record: before = after")
        let file = try XCTUnwrap(j["file"] as? [String: Any])
        XCTAssertEqual(file["bytes"] as? Int, try ModelIO.savedSize(of: dir))
        XCTAssertEqual(file["storage"] as? String, "mixed")
        XCTAssertEqual(file["sparse_tensors"] as? [String], ["features.0.weight"])

        let table = try run(["inspect", "--model", dir])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssert(table.out.contains("12 → 6"), table.out)
        XCTAssert(table.out.contains("240 → 120"), table.out)
        XCTAssert(table.out.contains("storage: mixed (1 of 10 tensors sparse)"), table.out)
        XCTAssert(table.out.contains("nz MACs"), table.out)
    }

    func testLatencyAtBatchOneAndSixtyFour() throws {
        let j = try json(["inspect", "--model", "lenet-300-100", "--latency", "--runs", "3", "--warmup", "1", "--threads", "1"])
        let latency = try XCTUnwrap(j["latency"] as? [[String: Any]])
        XCTAssertEqual(latency.map { $0["batch_size"] as? Int }, [1, 64])
        for m in latency {
            XCTAssertEqual(m["runs"] as? Int, 3)
            XCTAssertEqual(m["threads"] as? Int, 1)
            let (p10, median, p90) = (m["p10_seconds"] as? Double ?? -1, m["median_seconds"] as? Double ?? -1, m["p90_seconds"] as? Double ?? -1)
            XCTAssert(0 < p10 && p10 <= median && median <= p90, "\(m)")
        }
        let table = try run(["inspect", "--model", "lenet-300-100", "--latency", "--runs", "2", "--warmup", "0"])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssert(table.out.contains("latency, batch 1: median") && table.out.contains("latency, batch 64: median"), table.out)
    }

    func testBadInputIsAClearError() throws {
        let unknown = try run(["inspect", "--model", "alexnet"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssert(unknown.err.contains("'alexnet' is neither a saved model folder, an ONNX file (.onnx) nor a zoo model") && unknown.err.contains("hint: zoo models"), unknown.err)
        let dataset = try run(["inspect", "--model", "lenet-5", "--dataset", "imagenet"])
        XCTAssertNotEqual(dataset.status, 0)
        XCTAssert(dataset.err.contains("unknown data set 'imagenet'"), dataset.err)
        let runs = try run(["inspect", "--model", "lenet-5", "--latency", "--runs", "0"])
        XCTAssertNotEqual(runs.status, 0)
        XCTAssert(runs.err.contains("--latency-runs must be at least 1"), "the old spelling still works, the message uses the new: \(runs.err)")

        let dir = try scratch().appendingPathComponent("m").path
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        try model.save(to: dir, metadata: ["prunekit.original-widths": #"{"features.9": 4}"#])
        let stale = try run(["inspect", "--model", dir])
        XCTAssertNotEqual(stale.status, 0)
        XCTAssert(stale.err.contains("'features.9'") && stale.err.contains("hint:"), stale.err)
        XCTAssertFalse(stale.err.contains("Fatal error"))
    }
}
