import Foundation
import PruneKit
import PruneKitONNX
import XCTest

/// The graph families of issue 11 through ONNX: torchvision's DenseNet (concatenation),
/// EfficientNet (MBConv: depthwise, squeeze-and-excitation, SiLU) and ResNeXt bottlenecks
/// (grouped 3×3) at small widths (Tests/Fixtures/ONNX, `make_fixtures.py graphs`).
final class ONNXGraphTests: XCTestCase {
    static let graphModels = ["tiny_densenet", "tiny_efficientnet", "tiny_resnext"]

    func testTheFamiliesImportAsConcatSiLUAndSqueezeExcitation() throws {
        let dense = try ONNX.importModel(contentsOf: ONNXTests.path("tiny_densenet")).model
        let concats = dense.nodes.filter { $0.layer is Concat }
        XCTAssertEqual(concats.map(\.inputs.count), [1, 2, 3, 1, 2, 3])
        let efficient = try ONNX.importModel(contentsOf: ONNXTests.path("tiny_efficientnet"))
        let kinds = efficient.model.nodes.map(\.layer.kind)
        // One SiLU per stem, expand, depthwise, excitation and head (no Sigmoid·Mul pairs left).
        XCTAssertEqual(kinds.filter { $0 == .channelMul }.count, 4)
        XCTAssertEqual(kinds.filter { $0 == .sigmoid }.count, 4, "the gates")
        XCTAssertEqual(kinds.filter { $0 == .silu }.count, 1 + 3 + 4 + 4 + 1)
        // The excitation's 1×1 convolutions on the pooled [C, 1, 1] are linear layers with their names.
        let fc1 = try XCTUnwrap(efficient.model.nodes.first { $0.name == "features.2.0.block.2.fc1" }?.layer as? Linear)
        XCTAssertEqual([fc1.inFeatures, fc1.outFeatures], [32, 2])
        XCTAssertEqual(efficient.initializerNames["features.2.0.block.2.fc1.weight"], "features.2.0.block.2.fc1.weight")
        let resnext = try ONNX.importModel(contentsOf: ONNXTests.path("tiny_resnext")).model
        XCTAssertEqual(resnext.nodes.compactMap { ($0.layer as? Conv2d)?.groups }.filter { $0 > 1 }, [4, 4])
    }

    /// Each family: prune to a 2× MACs speed-up with l1-filter and with Taylor (on random
    /// 3×16×16 data), remove the channels — the narrower model computes what the masked one
    /// does — export, and read the file back with equal outputs.
    func testTheFamiliesPruneTwiceFasterWithL1AndTaylorAndReimportEqual() throws {
        let registry = try TestSupport.builtInRegistry()
        let data = try Self.randomImages(count: 64)
        // The three families, and the earlier fixtures (a ResNet, a VGG with BN, a MobileNet-like
        // net), so that every family of the issue's round trip prunes with both criteria.
        for name in Self.graphModels + ["tiny_resnet", "tiny_vgg_bn", "tiny_mobilenet"] {
            for id in ["l1-filter", "taylor"] {
                let label = "\(name) \(id)"
                let imported = try ONNX.importModel(contentsOf: ONNXTests.path(name))
                let model = imported.model
                let dense = model.macs
                let policy = ONNXTests.pruningPolicy[name] ?? .withinBlocks
                let result = try model.prune(with: registry.criterion(id), toward: .speedup(2),
                                             settings: TargetedPruningSettings(policy: policy), data: data,
                                             calibration: CalibrationSettings(batches: 2, batchSize: 16, seed: 0))
                let cut = try model.removingPrunedChannels(policy: policy)
                XCTAssertGreaterThanOrEqual(Double(dense) / Double(cut.model.macs), 2, label)
                XCTAssertEqual(result.achieved, Double(dense) / Double(cut.model.macs), accuracy: 1e-9, label)
                let input = try ONNXTests.reference(name).inputTensor
                ONNXTests.assertClose(ONNXTests.outputs(cut.model, input), ONNXTests.outputs(model, input), tolerance: 1e-5,
                                      "\(label): pruned vs masked")
                let data = try ONNX.exportData(cut.model, initializerNames: imported.initializerNames)
                let back = try ONNX.importModel(serialized: data, source: label + " (pruned)")
                XCTAssertEqual(back.model.macs, cut.model.macs, label)
                XCTAssertEqual(back.model.nodes.map(\.layer.kind), cut.model.nodes.map(\.layer.kind), label)
                ONNXTests.assertClose(ONNXTests.outputs(back.model, input), ONNXTests.outputs(cut.model, input), tolerance: 1e-6, label)
            }
        }
    }

    /// ResNeXt within blocks (the default policy): the bottlenecks' insides are pruned —
    /// conv1's outputs and the grouped conv2's outputs, each uniformly across conv2's 4
    /// groups — to a 2× MACs speed-up with l1-filter and with Taylor; conv2 stays a grouped
    /// convolution with 4 equal, narrower groups, the narrower model computes what the masked
    /// one does, and it exports and reads back with equal outputs.
    func testResNeXtPrunesInsideItsBottlenecksWithEveryGroupTheSameWidth() throws {
        let registry = try TestSupport.builtInRegistry()
        let data = try Self.randomImages(count: 64)
        for id in ["l1-filter", "taylor"] {
            let imported = try ONNX.importModel(contentsOf: ONNXTests.path("tiny_resnext"))
            let model = imported.model
            let deps = try model.channelDependencies()
            for path in ["layer1.conv1", "layer1.conv2", "layer2.conv1", "layer2.conv2"] {
                let g = try XCTUnwrap(deps.group(scoredBy: path), path)
                XCTAssert(g.isPrunable, "\(path): \(g.reason ?? "")")
                XCTAssertEqual(g.blocks, 4, path)
            }
            let dense = model.macs
            let result = try model.prune(with: registry.criterion(id), toward: .speedup(2), data: data,
                                         calibration: CalibrationSettings(batches: 2, batchSize: 16, seed: 0))
            XCTAssert(result.notes.allSatisfy { !$0.contains("grouped") }, result.notes.joined(separator: "\n"))
            let cut = try model.removingPrunedChannels()
            XCTAssertGreaterThanOrEqual(Double(dense) / Double(cut.model.macs), 2, id)
            XCTAssertEqual(result.achieved, Double(dense) / Double(cut.model.macs), accuracy: 1e-9, id)
            var narrowed = 0
            for path in ["layer1.conv2", "layer2.conv2"] {
                let before = try XCTUnwrap(model.nodes.first { $0.name == path }?.layer as? Conv2d)
                let conv = try XCTUnwrap(cut.model.nodes.first { $0.name == path }?.layer as? Conv2d)
                XCTAssertEqual(conv.groups, 4, path)
                XCTAssertEqual(conv.inChannels % 4, 0, path)
                XCTAssertEqual(conv.outChannels % 4, 0, path)
                XCTAssertLessThanOrEqual(conv.inChannels, before.inChannels, path)
                XCTAssertLessThanOrEqual(conv.outChannels, before.outChannels, path)
                if conv.inChannels < before.inChannels || conv.outChannels < before.outChannels { narrowed += 1 }
                // The plan keeps the same count in each of the 4 blocks.
                let layer = try XCTUnwrap(result.plan.layers.first { $0.path == path })
                let size = layer.units / 4
                XCTAssertEqual(Set((0..<4).map { b in layer.keptPositions.filter { $0 / size == b }.count }).count, 1, "\(id) \(path)")
            }
            XCTAssertGreaterThan(narrowed, 0, "\(id): no grouped convolution was narrowed")
            let input = try ONNXTests.reference("tiny_resnext").inputTensor
            ONNXTests.assertClose(ONNXTests.outputs(cut.model, input), ONNXTests.outputs(model, input), tolerance: 1e-5,
                                  "\(id): pruned vs masked")
            let exported = try ONNX.exportData(cut.model, initializerNames: imported.initializerNames)
            let back = try ONNX.importModel(serialized: exported, source: "tiny_resnext \(id) (pruned)")
            XCTAssertEqual(back.model.macs, cut.model.macs, id)
            XCTAssertEqual(back.model.nodes.compactMap { ($0.layer as? Conv2d)?.groups }.filter { $0 > 1 }, [4, 4], id)
            ONNXTests.assertClose(ONNXTests.outputs(back.model, input), ONNXTests.outputs(cut.model, input), tolerance: 1e-6, id)
        }
    }

    func testAMulThatIsNotAGateOrSiLUIsAClearError() {
        XCTAssertThrowsError(try ONNX.importModel(contentsOf: ONNXTests.path("bad_elementwise_mul"))) { error in
            guard let e = error as? PruneKitError else { return XCTFail("\(error)") }
            for text in ["node '/gate/Mul'", "(Mul, opset 17)", "[2, 4, 4] and [2, 4, 4]"] {
                XCTAssert(e.message.contains(text), "'\(text)' not in: \(e.message)")
            }
            XCTAssert(e.hint?.contains("squeeze-and-excitation") == true && e.hint?.contains("SiLU") == true, e.hint ?? "")
            XCTAssertEqual(e.kind, .invalidArgument)
        }
    }

    /// Random 3×16×16 images in 10 classes (Taylor needs activations and gradients, not meaning).
    static func randomImages(count: Int) throws -> Dataset {
        var rng = RandomGenerator(seed: 21)
        let pixels = (0..<(count * 3 * 16 * 16)).map { _ in UInt8(truncatingIfNeeded: rng.nextInt(below: 256)) }
        let labels = (0..<count).map { Int32($0 % 10) }
        return try Dataset(name: "random-3x16x16", imageShape: [3, 16, 16], classCount: 10, pixels: pixels, labels: labels,
                           normalization: Normalization(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]))
    }
}
