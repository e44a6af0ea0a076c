import Foundation
import PruneKit
import XCTest

/// Small hand-built models with the structures of DenseNet, EfficientNet and ResNeXt.
enum GraphModels {
    /// DenseNet in miniature: conv(2→4) → BN → ReLU is concatenated with each later layer's
    /// output; every concatenation is normalised by a BatchNorm before the next conv:
    /// `cat1 = [s]` (4) → n1 → c1 (3); `cat2 = [s, c1]` (7) → n2 → c2 (3);
    /// `cat3 = [s, c1, c2]` (10) → n3 → t 1×1 (10→5) → GAP → fc(5→2).
    static func dense() throws -> Model {
        var rng = RandomGenerator(seed: 4)
        var b = ModelBuilder(architecture: "tiny-dense", inputShape: [2, 6, 6])
        b.add("c0", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("bn0", BatchNorm(featureCount: 4))
        let s = b.add("r0", ReLU())
        b.add("cat1", Concat(), inputs: [s])
        b.add("n1", BatchNorm(featureCount: 4))
        b.add("a1", ReLU())
        let c1 = b.add("c1", Conv2d(inChannels: 4, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng))
        b.add("cat2", Concat(), inputs: [s, c1])
        b.add("n2", BatchNorm(featureCount: 7))
        b.add("a2", ReLU())
        let c2 = b.add("c2", Conv2d(inChannels: 7, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng))
        b.add("cat3", Concat(), inputs: [s, c1, c2])
        b.add("n3", BatchNorm(featureCount: 10))
        b.add("a3", ReLU())
        b.add("t", Conv2d(inChannels: 10, outChannels: 5, kernelSize: 1, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 5, outFeatures: 2, rng: &rng))
        return TinyModels.randomized(try b.build())
    }

    /// EfficientNet's MBConv in miniature: stem conv(2→4) → BN → SiLU → expand 1×1 (4→8) → BN →
    /// SiLU → depthwise 3×3 → BN → SiLU = X; squeeze-and-excitation: GAP(X) → sq (8→2) → SiLU →
    /// ex (2→8) → Sigmoid → X · gate; project 1×1 (8→4) → BN → GAP → fc(4→2).
    static func squeezeExcitation() throws -> Model {
        var rng = RandomGenerator(seed: 5)
        var b = ModelBuilder(architecture: "tiny-se", inputShape: [2, 6, 6])
        b.add("stem", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("stem_bn", BatchNorm(featureCount: 4))
        b.add("stem_act", SiLU())
        b.add("expand", Conv2d(inChannels: 4, outChannels: 8, kernelSize: 1, rng: &rng))
        b.add("expand_bn", BatchNorm(featureCount: 8))
        b.add("expand_act", SiLU())
        b.add("dw", Conv2d(inChannels: 8, outChannels: 8, kernelSize: 3, padding: 1, groups: 8, rng: &rng))
        b.add("dw_bn", BatchNorm(featureCount: 8))
        let x = b.add("dw_act", SiLU())
        b.add("se.pool", GlobalAvgPool())
        b.add("se.sq", Linear(inFeatures: 8, outFeatures: 2, rng: &rng))
        b.add("se.act", SiLU())
        b.add("se.ex", Linear(inFeatures: 2, outFeatures: 8, rng: &rng))
        let gate = b.add("se.gate", Sigmoid())
        b.add("se.scale", ChannelMul(), inputs: [x, gate])
        b.add("project", Conv2d(inChannels: 8, outChannels: 4, kernelSize: 1, rng: &rng))
        b.add("project_bn", BatchNorm(featureCount: 4))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 4, outFeatures: 2, rng: &rng))
        return TinyModels.randomized(try b.build())
    }

    /// ResNeXt's bottleneck without the shortcut: stem conv(2→8) → BN → ReLU → a 1×1 (8→8) →
    /// BN → ReLU → grouped 3×3 (8→8, 4 groups) → BN → ReLU → c 1×1 (8→6) → BN → ReLU → GAP → fc(6→2).
    static func grouped() throws -> Model {
        var rng = RandomGenerator(seed: 6)
        var b = ModelBuilder(architecture: "tiny-grouped", inputShape: [2, 6, 6])
        b.add("stem", Conv2d(inChannels: 2, outChannels: 8, kernelSize: 3, padding: 1, rng: &rng))
        b.add("stem_bn", BatchNorm(featureCount: 8))
        b.add("stem_relu", ReLU())
        b.add("a", Conv2d(inChannels: 8, outChannels: 8, kernelSize: 1, rng: &rng))
        b.add("a_bn", BatchNorm(featureCount: 8))
        b.add("a_relu", ReLU())
        b.add("g", Conv2d(inChannels: 8, outChannels: 8, kernelSize: 3, padding: 1, groups: 4, rng: &rng))
        b.add("g_bn", BatchNorm(featureCount: 8))
        b.add("g_relu", ReLU())
        b.add("c", Conv2d(inChannels: 8, outChannels: 6, kernelSize: 1, rng: &rng))
        b.add("c_bn", BatchNorm(featureCount: 6))
        b.add("c_relu", ReLU())
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 6, outFeatures: 2, rng: &rng))
        return TinyModels.randomized(try b.build())
    }

    /// conv(2→4) → Sigmoid → conv(4→4) → a layer PruneKit does not know → conv(4→3) → ReLU →
    /// conv(3→4) → GAP → fc(4→2).
    static func unsafe() throws -> Model {
        var rng = RandomGenerator(seed: 7)
        var b = ModelBuilder(architecture: "tiny-unsafe", inputShape: [2, 6, 6])
        b.add("c1", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("sig", Sigmoid())
        b.add("c2", Conv2d(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("custom", Doubler())
        b.add("c3", Conv2d(inChannels: 4, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng))
        b.add("relu", ReLU())
        b.add("c4", Conv2d(inChannels: 3, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 4, outFeatures: 2, rng: &rng))
        return TinyModels.randomized(try b.build())
    }

    /// A layer of the user's own (y = 2x) that claims to be a ReLU: channel pruning must not
    /// take it for one.
    final class Doubler: Layer {
        let kind = LayerKind.relu
        func outputShape(for inputShapes: [[Int]]) throws -> [Int] { inputShapes[0] }
        func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor { inputs[0] * Tensor(shape: inputs[0].shape, repeating: 2) }
        func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] { [gradOutput * Tensor(shape: gradOutput.shape, repeating: 2)] }
    }
}

/// Dependency groups and surgery for concatenation, squeeze-and-excitation, grouped
/// convolution and the structures kept whole: each pruned model computes what the masked one does.
final class GraphStructureTests: XCTestCase {
    private func group(_ deps: ChannelDependencies, scoredBy path: String, file: StaticString = #filePath,
                       line: UInt = #line) throws -> ChannelGroup {
        try XCTUnwrap(deps.group(scoredBy: path), "no group scored by \(path)", file: file, line: line)
    }

    /// Masks a share of every prunable group's channels (l1 along groups), then removes them;
    /// returns the masked model's and the cut model's outputs on one random batch.
    private func maskAndCut(_ model: Model, policy: ResidualPolicy = .withinBlocks, sparsity: Double = 0.5) throws
        -> (cut: SurgeryResult, plan: PruningPlan, masked: [Float], pruned: [Float]) {
        let deps = try model.channelDependencies(policy: policy)
        let scores = try model.score(with: TestL1Channels(), data: nil)
        let plan = try selectGroupPruning(scores, dependencies: deps, settings: SelectionSettings(scope: .perLayer, sparsity: sparsity),
                                          criterion: "test-l1")
        try plan.apply(to: model, dependencies: deps)
        let cut = try model.removingPrunedChannels(policy: policy)
        var rng = RandomGenerator(seed: 7)
        let x = Tensor.randomNormal([3] + model.inputShape, using: &rng)
        model.mode = .inference; cut.model.mode = .inference
        return (cut, plan, model.forward(x).scalars, cut.model.forward(x).scalars)
    }

    private func assertSame(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let error = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThan(error, 1e-5, "pruned vs masked", file: file, line: line)
    }

    private func width(_ r: SurgeryResult, _ path: String) -> [Int] {
        r.widths.first { $0.path == path }.map { [$0.before, $0.after] } ?? []
    }

    // MARK: Concatenation

    func testConcatenatedProducersReachEveryConsumerAtTheirOffset() throws {
        let deps = try GraphModels.dense().channelDependencies()
        let stem = try group(deps, scoredBy: "c0")
        XCTAssertEqual(stem.channels, 4)
        XCTAssertEqual(stem.batchNormSlices, ["bn0", "n1", "n2", "n3"].map { ChannelSlice(path: $0, offset: 0) })
        XCTAssertEqual(stem.consumers, ["c1", "c2", "t"].map { ChannelConsumer(path: $0, inputsPerChannel: 1, offset: 0) })
        let c1 = try group(deps, scoredBy: "c1")
        XCTAssertEqual(c1.batchNormSlices, [ChannelSlice(path: "n2", offset: 4), ChannelSlice(path: "n3", offset: 4)])
        XCTAssertEqual(c1.consumers, [ChannelConsumer(path: "c2", inputsPerChannel: 1, offset: 4),
                                      ChannelConsumer(path: "t", inputsPerChannel: 1, offset: 4)])
        let c2 = try group(deps, scoredBy: "c2")
        XCTAssertEqual(c2.batchNormSlices, [ChannelSlice(path: "n3", offset: 7)])
        XCTAssertEqual(c2.consumers, [ChannelConsumer(path: "t", inputsPerChannel: 1, offset: 7)])
        XCTAssert(stem.isPrunable && c1.isPrunable && c2.isPrunable)
    }

    func testConcatenationSurgeryMatchesTheMaskedModel() throws {
        let model = try GraphModels.dense()
        let r = try maskAndCut(model)
        assertSame(r.masked, r.pruned)
        XCTAssertEqual(width(r.cut, "c0"), [4, 2])
        XCTAssertEqual(width(r.cut, "c1"), [3, 2])
        XCTAssertEqual(width(r.cut, "n3"), [10, 6])
        XCTAssertEqual(r.cut.model.shapes[try XCTUnwrap(r.cut.model.nodeIndex(named: "cat3"))], [6, 6, 6])
        // The masks went with the channels: a pruned model has none left.
        XCTAssert(r.cut.model.namedParameters.allSatisfy { $0.parameter.mask == nil })
    }

    // MARK: Squeeze-and-excitation

    func testTheExcitationIsTiedToTheGatedChannels() throws {
        let deps = try GraphModels.squeezeExcitation().channelDependencies()
        let gated = try group(deps, scoredBy: "expand")
        XCTAssertEqual(gated.producers, ["expand", "se.ex"])
        XCTAssertEqual(gated.depthwise, ["dw"])
        XCTAssertEqual(gated.scoredLayers, ["expand", "dw", "se.ex"])
        XCTAssertEqual(gated.batchNorms, ["expand_bn", "dw_bn"])
        XCTAssertEqual(gated.consumers.map(\.path), ["se.sq", "project"])
        XCTAssert(gated.isPrunable, gated.reason ?? "")
        let squeeze = try group(deps, scoredBy: "se.sq")
        XCTAssertEqual(squeeze.consumers.map(\.path), ["se.ex"])
        XCTAssert(squeeze.isPrunable)
    }

    func testSqueezeExcitationSurgeryMatchesTheMaskedModel() throws {
        let model = try GraphModels.squeezeExcitation()
        let r = try maskAndCut(model)
        assertSame(r.masked, r.pruned)
        XCTAssertEqual(width(r.cut, "expand"), [8, 4])
        XCTAssertEqual(width(r.cut, "se.ex"), [8, 4])
        XCTAssertEqual(width(r.cut, "se.sq"), [2, 1])
        let dw = try XCTUnwrap(r.cut.model.nodes.first { $0.name == "dw" }?.layer as? Conv2d)
        XCTAssertEqual([dw.inChannels, dw.outChannels, dw.groups], [4, 4, 4])
    }

    // MARK: Grouped convolution

    func testAGroupedConvolutionIsKeptWholeAndTheRestPruned() throws {
        let deps = try GraphModels.grouped().channelDependencies()
        for path in ["a", "g"] {
            let g = try group(deps, scoredBy: path)
            XCTAssertFalse(g.isPrunable, path)
            XCTAssert(g.reason?.contains("grouped convolution 'g' (groups 4") == true, g.reason ?? "")
        }
        XCTAssert(try group(deps, scoredBy: "stem").isPrunable)
        XCTAssert(try group(deps, scoredBy: "c").isPrunable)
    }

    func testGroupedConvolutionSurgeryMatchesTheMaskedModelAndNamesWhatIsWhole() throws {
        let model = try GraphModels.grouped()
        let r = try maskAndCut(model)
        assertSame(r.masked, r.pruned)
        XCTAssertEqual(width(r.cut, "stem"), [8, 4])
        XCTAssertEqual(width(r.cut, "c"), [6, 3])
        XCTAssertEqual(width(r.cut, "a"), [8, 8])
        XCTAssertEqual(width(r.cut, "g"), [8, 8])
        let g = try XCTUnwrap(r.cut.model.nodes.first { $0.name == "g" }?.layer as? Conv2d)
        XCTAssertEqual(g.groups, 4)
        XCTAssert(r.plan.notes.contains { $0.contains("a, g") && $0.contains("grouped convolution 'g'") }, "\(r.plan.notes)")
    }

    // MARK: Kept whole, never refused

    func testStructuresThatCantBePrunedSafelyAreKeptWholeWithANote() throws {
        let model = try GraphModels.unsafe()
        let deps = try model.channelDependencies()
        // Sigmoid maps a removed channel's zero to ½: what c2 reads through it stays.
        let c1 = try group(deps, scoredBy: "c1")
        XCTAssertFalse(c1.isPrunable)
        XCTAssert(c1.reason?.contains("'c2' reads these channels after 'sig'") == true, c1.reason ?? "")
        // The custom layer is not a ReLU, whatever kind it reports: both sides stay whole.
        let c2 = try group(deps, scoredBy: "c2")
        XCTAssertFalse(c2.isPrunable)
        XCTAssert(c2.reason?.contains("'custom'") == true, c2.reason ?? "")
        XCTAssert(try group(deps, scoredBy: "c3").isPrunable)
        let r = try maskAndCut(model)
        assertSame(r.masked, r.pruned)
        XCTAssertEqual(width(r.cut, "c3"), [3, 2])
        XCTAssertEqual(width(r.cut, "c1"), [4, 4])
        XCTAssert(r.plan.notes.contains { $0.contains("c1") && $0.contains("'sig'") }, "\(r.plan.notes)")
        XCTAssert(r.cut.notes.contains { $0.contains("'custom'") }, "\(r.cut.notes)")
        XCTAssert(r.cut.model.nodes.first { $0.name == "custom" }?.layer is GraphModels.Doubler)
    }

    /// Tensors added whose concatenations differ can't be tied channel by channel: kept whole.
    func testAddingDifferentlyConcatenatedTensorsKeepsThemWhole() throws {
        var rng = RandomGenerator(seed: 8)
        var b = ModelBuilder(architecture: "tiny-mixed", inputShape: [2, 4, 4])
        let p = b.add("p", Conv2d(inChannels: 2, outChannels: 2, kernelSize: 1, rng: &rng))
        let q = b.add("q", Conv2d(inChannels: 2, outChannels: 2, kernelSize: 1, rng: &rng))
        let cat = b.add("cat", Concat(), inputs: [p, q])
        let r = b.add("r", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 1, rng: &rng), inputs: [Model.inputIndex])
        b.add("sum", Add(), inputs: [cat, r])
        b.add("c", Conv2d(inChannels: 4, outChannels: 3, kernelSize: 1, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 3, outFeatures: 2, rng: &rng))
        let model = TinyModels.randomized(try b.build())
        let deps = try model.channelDependencies(policy: .wholeStream)
        for path in ["p", "q", "r"] {
            let g = try group(deps, scoredBy: path)
            XCTAssertFalse(g.isPrunable, path)
            XCTAssert(g.reason?.contains("'sum'") == true, g.reason ?? "")
        }
        XCTAssert(try group(deps, scoredBy: "c").isPrunable)
        let result = try maskAndCut(model, policy: .wholeStream)
        assertSame(result.masked, result.pruned)
    }

    /// model.json carries the new kinds and their many inputs: a saved and reloaded model
    /// (and a clone) computes what the original does.
    func testConcatAndSqueezeExcitationModelsSaveAndLoad() throws {
        let dir = try TestSupport.scratchDirectory("graph-layers")
        defer { try? FileManager.default.removeItem(at: dir) }
        for model in [try GraphModels.dense(), try GraphModels.squeezeExcitation()] {
            let path = dir.appendingPathComponent(model.architecture).path
            try model.save(to: path)
            let loaded = try Model.load(from: path), clone = try model.clone()
            XCTAssertEqual(loaded.nodes.map(\.layer.kind), model.nodes.map(\.layer.kind))
            XCTAssertEqual(loaded.nodes.map(\.inputs), model.nodes.map(\.inputs))
            var rng = RandomGenerator(seed: 9)
            let x = Tensor.randomNormal([2] + model.inputShape, using: &rng)
            for other in [loaded, clone] {
                model.mode = .inference; other.mode = .inference
                XCTAssertEqual(other.forward(x).scalars, model.forward(x).scalars, model.architecture)
            }
        }
    }

    /// The graph layers train: a model with concatenation and squeeze-and-excitation gives
    /// the gradients finite differences give, through Model.backward.
    func testGradientsFlowThroughConcatAndSqueezeExcitation() throws {
        for model in [try GraphModels.dense(), try GraphModels.squeezeExcitation()] {
            model.mode = .evaluationWithGradients
            var rng = RandomGenerator(seed: 3)
            let x = Tensor.randomNormal([2] + model.inputShape, using: &rng)
            func loss() -> Double { model.forward(x).scalars.enumerated().reduce(0) { $0 + Double($1.element) * Double($1.offset + 1) } }
            model.zeroGradients()
            let y = model.forward(x)
            model.backward(Tensor(shape: y.shape, scalars: (0..<y.count).map { Float($0 + 1) }))
            for (path, p) in model.namedParameters where p.isTrainable && path.hasSuffix("weight") {
                let i = p.value.count / 2, eps: Float = 1e-2
                p.value.withUnsafeMutableBufferPointer { $0[i] += eps }
                let plus = loss()
                p.value.withUnsafeMutableBufferPointer { $0[i] -= 2 * eps }
                let minus = loss()
                p.value.withUnsafeMutableBufferPointer { $0[i] += eps }
                let numeric = (plus - minus) / (2 * Double(eps))
                XCTAssertEqual(Double(p.gradient.scalars[i]), numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(model.architecture) \(path)")
            }
        }
    }
}
