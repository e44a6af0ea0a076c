import Foundation
import PruneKit
import XCTest

/// Surgery: the physically narrower model computes what the masked one does.
final class SurgeryTests: XCTestCase {
    /// Masks half of every prunable group's channels (l1 along groups), then removes them.
    private func maskAndCut(_ model: Model, policy: ResidualPolicy = .withinBlocks, sparsity: Double = 0.5,
                            file: StaticString = #filePath, line: UInt = #line) throws -> SurgeryResult {
        let deps = try model.channelDependencies(policy: policy)
        let scores = try model.score(with: TestL1Channels(), data: nil)
        let plan = try selectGroupPruning(scores, dependencies: deps, settings: SelectionSettings(scope: .perLayer, sparsity: sparsity),
                                          criterion: "test-l1")
        try plan.apply(to: model, dependencies: deps)
        return try model.removingPrunedChannels(policy: policy)
    }

    /// The largest difference between the two models' outputs on random input.
    private func maxDifference(_ a: Model, _ b: Model, batch: Int = 3) -> Float {
        var rng = RandomGenerator(seed: 7)
        let x = Tensor.randomNormal([batch] + a.inputShape, using: &rng)
        a.mode = .inference; b.mode = .inference
        let (ya, yb) = (a.forward(x), b.forward(x))
        XCTAssertEqual(ya.shape, yb.shape)
        return zip(ya.scalars, yb.scalars).map { abs($0 - $1) }.max() ?? .infinity
    }

    private func width(_ r: SurgeryResult, _ path: String) -> (Int, Int)? {
        r.widths.first { $0.path == path }.map { ($0.before, $0.after) }
    }

    func testLeNet5() throws {
        let model = TinyModels.randomized(try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0))
        let r = try maskAndCut(model)
        XCTAssertLessThan(maxDifference(model, r.model), 1e-5)
        XCTAssert(width(r, "features.0")! == (6, 3) && width(r, "features.3")! == (16, 8) && width(r, "classifier.0")! == (120, 60))
        XCTAssert(width(r, "classifier.4")! == (10, 10))
        // 8 channels of 5 × 5 feed the first linear layer.
        let fc = try XCTUnwrap(r.model.nodes.first { $0.name == "classifier.0" }?.layer as? Linear)
        XCTAssertEqual(fc.inFeatures, 200)
        // No mask is left: everything masked went.
        XCTAssert(r.model.namedParameters.allSatisfy { $0.parameter.mask == nil })
        XCTAssertEqual(r.model.macs, [(3 * 25 * 784), (8 * 3 * 25 * 100), (60 * 200), (42 * 60), (10 * 42)].reduce(0, +))
    }

    /// Convolutions with non-square kernels, per-axis strides, dilation and asymmetric padding,
    /// with the element-wise activations and a zero pad between them: the narrower model
    /// computes what the masked one does, its MACs follow the general formula, and it saves
    /// and loads (model.json) unchanged.
    func testGeneralWindowsAndActivations() throws {
        var rng = RandomGenerator(seed: 4)
        let layers: [(String, Layer)] = [
            ("conv1", Conv2d(inChannels: 3, outChannels: 8, kernel: (3, 2),
                             window: ConvWindow(strideHeight: 2, strideWidth: 1, padTop: 0, padLeft: 1, padBottom: 1, padRight: 0), rng: &rng)),
            ("act1", LeakyReLU(alpha: 0.1)), ("pad", ZeroPad2d(top: 1, left: 0, bottom: 0, right: 1)),
            ("conv2", Conv2d(inChannels: 8, outChannels: 8, kernel: (3, 3),
                             window: ConvWindow(dilationHeight: 2, dilationWidth: 2, padTop: 2, padLeft: 2, padBottom: 2, padRight: 2), rng: &rng)),
            ("act2", GELU()), ("act3", Tanh()),
            ("conv3", Conv2d(inChannels: 8, outChannels: 6, kernel: (1, 3), window: ConvWindow(padLeft: 1, padRight: 1), rng: &rng)),
            ("act4", HardSwish()), ("pool", GlobalAvgPool()), ("fc", Linear(inFeatures: 6, outFeatures: 3, rng: &rng)),
        ]
        let nodes = layers.enumerated().map { i, l in Model.Node(name: l.0, layer: l.1, inputs: [i == 0 ? Model.inputIndex : i - 1]) }
        let model = try Model(architecture: "general", inputShape: [3, 9, 8], nodes: nodes)
        // conv1: 9×8 → ⌊(9 + 1 − 3)/2⌋ + 1 = 4 × (8 + 1 − 2) + 1 = 8; pad → 5×9; conv2 (dilated, same) → 5×9; conv3 → 5×9.
        XCTAssertEqual(model.shapes.map { $0 }, [[8, 4, 8], [8, 4, 8], [8, 5, 9], [8, 5, 9], [8, 5, 9], [8, 5, 9], [6, 5, 9], [6, 5, 9], [6], [3]])
        XCTAssertEqual(model.macs, 8 * 32 * 3 * 6 + 8 * 45 * 8 * 9 + 6 * 45 * 8 * 3 + 18)
        let r = try maskAndCut(model)
        XCTAssertLessThan(maxDifference(model, r.model), 1e-5)
        XCTAssert(width(r, "conv1")! == (8, 4) && width(r, "conv2")! == (8, 4) && width(r, "conv3")! == (6, 3))
        XCTAssertEqual(r.model.macs, 4 * 32 * 3 * 6 + 4 * 45 * 4 * 9 + 3 * 45 * 4 * 3 + 9)
        let cut = try XCTUnwrap(r.model.nodes[0].layer as? Conv2d)
        XCTAssertEqual(cut.window, (model.nodes[0].layer as? Conv2d)?.window)
        XCTAssertEqual(cut.kernelSize.height, 3); XCTAssertEqual(cut.kernelSize.width, 2)
        let dir = try temporaryScratchDirectory("prunekit-general-windows")
        try r.model.save(to: dir.path)
        let loaded = try Model.load(from: dir.path)
        XCTAssertEqual(maxDifference(r.model, loaded), 0)
        XCTAssertEqual(loaded.nodes.map(\.layer.configuration), r.model.nodes.map(\.layer.configuration))
    }

    func testVGGSmallAndTheSavedFileShrinks() throws {
        let model = TinyModels.randomized(try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0))
        let r = try maskAndCut(model)
        XCTAssertLessThan(maxDifference(model, r.model), 1e-5)
        XCTAssertEqual(r.widths.filter { $0.kind == .conv2d }.map(\.after), [16, 16, 32, 32, 64])
        XCTAssertEqual(r.widths.filter { $0.kind == .batchNorm }.map(\.after), [16, 16, 32, 32, 64])
        let dir = try TestSupport.scratchDirectory("surgery")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (masked, cut) = (dir.appendingPathComponent("masked").path, dir.appendingPathComponent("cut").path)
        try model.save(to: masked)
        try r.model.save(to: cut, metadata: r.metadata)
        func size(_ d: String) throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: d).reduce(0) { total, f in
                total + ((try FileManager.default.attributesOfItem(atPath: d + "/" + f)[.size] as? Int) ?? 0)
            }
        }
        XCTAssertLessThan(try size(cut), try size(masked) / 3)
        // The pruned model loads back, computes the same, and remembers the original widths.
        let loaded = try Model.load(from: cut)
        XCTAssertLessThan(maxDifference(model, loaded), 1e-5)
        let json = try XCTUnwrap(Model.savedMetadata(in: cut)[SurgeryResult.originalWidthsKey])
        let widths = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Int]
        XCTAssertEqual(widths?["features.14"], 128)
        XCTAssertEqual(widths?["classifier"], 10)
    }

    func testResNet20WithinBlocks() throws {
        let model = TinyModels.randomized(try ModelZoo.make("resnet-20", inputShape: [3, 32, 32], classCount: 10, seed: 0))
        let r = try maskAndCut(model)
        XCTAssertLessThan(maxDifference(model, r.model, batch: 2), 1e-5)
        XCTAssert(width(r, "layer3.1.conv1")! == (64, 32) && width(r, "layer3.1.bn1")! == (64, 32))
        XCTAssert(width(r, "layer3.1.conv2")! == (64, 64))
        let conv2 = try XCTUnwrap(r.model.nodes.first { $0.name == "layer3.1.conv2" }?.layer as? Conv2d)
        XCTAssertEqual(conv2.inChannels, 32)
    }

    func testDepthwiseAndWholeStream() throws {
        let dw = try TinyModels.depthwise()
        let r = try maskAndCut(dw)
        XCTAssertLessThan(maxDifference(dw, r.model), 1e-5)
        let conv = try XCTUnwrap(r.model.nodes.first { $0.name == "dw" }?.layer as? Conv2d)
        XCTAssertEqual([conv.inChannels, conv.outChannels, conv.groups], [2, 2, 2])

        let res = try TinyModels.residual()
        let s = try maskAndCut(res, policy: .wholeStream)
        XCTAssertLessThan(maxDifference(res, s.model), 1e-5)
        XCTAssert(width(s, "stem")! == (4, 2) && width(s, "b")! == (4, 2) && width(s, "a")! == (3, 2))
        let fc = try XCTUnwrap(s.model.nodes.first { $0.name == "fc" }?.layer as? Linear)
        XCTAssertEqual(fc.inFeatures, 2)
    }

    func testMinimumChannelsAndANote() throws {
        let model = try TinyModels.chain()
        // A plan that prunes every channel of c1 (selection would refuse; surgery must cope).
        let layers = model.prunableLayers().map { PruningPlan.Layer(path: $0.path, granularity: .channel, units: $0.outputs) }
        var plan = PruningPlan(criterion: "hand", granularity: .channel, scope: .perLayer, requestedSparsity: 1, layers: layers)
        plan.layers[0] = PruningPlan.Layer(path: "c1", granularity: .channel, units: 4, keepWords: [0])
        try plan.apply(to: model, dependencies: model.channelDependencies())
        let r = try model.removingPrunedChannels(minimumChannels: 2)
        XCTAssert(width(r, "c1")! == (4, 2))
        XCTAssert(r.notes.contains { $0.contains("'c1' keeps 2 of 4 channels") }, "\(r.notes)")
        // The kept channels are still zero: the outputs agree.
        XCTAssertLessThan(maxDifference(model, r.model), 1e-5)
        XCTAssertNotNil(r.model.nodes[0].layer.parameter(named: "weight")?.mask)
        XCTAssertThrowsError(try model.removingPrunedChannels(minimumChannels: 0))
    }

    func testLayerPlansOnResidualStreamsStayMasked() throws {
        // A per-layer selection (no dependency groups) masks conv2 outputs that feed additions:
        // surgery keeps them, as zeros, and says so.
        let model = TinyModels.randomized(try ModelZoo.make("resnet-20", inputShape: [3, 16, 16], classCount: 10, seed: 0))
        let scores = try model.score(with: TestL1Channels(), data: nil)
        try selectPruning(scores, granularity: .channel, settings: SelectionSettings(scope: .perLayer, sparsity: 0.25),
                          criterion: "test").apply(to: model)
        let r = try model.removingPrunedChannels()
        XCTAssertLessThan(maxDifference(model, r.model, batch: 2), 1e-5)
        XCTAssert(width(r, "layer1.0.conv2")! == (16, 16) && width(r, "layer1.0.conv1")! == (16, 12))
        XCTAssert(r.notes.contains { $0.hasPrefix("'conv1 + 3 tied layers': 10 masked channel(s) stay, as zeros") }, "\(r.notes)")
        XCTAssertNotNil(r.model.nodes.first { $0.name == "layer1.0.conv2" }?.layer.parameter(named: "weight")?.mask)
    }

    func testUnmaskedModelIsCopiedWhole() throws {
        let model = try TinyModels.chain()
        let r = try model.removingPrunedChannels()
        XCTAssertEqual(r.removedChannels, 0)
        XCTAssertEqual(maxDifference(model, r.model), 0)
        XCTAssertFalse(r.model.nodes[0].layer === model.nodes[0].layer)
    }
}
