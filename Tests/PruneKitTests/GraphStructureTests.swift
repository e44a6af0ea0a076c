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

    /// ResNeXt's bottleneck with its identity shortcut, `groups` groups in the 3×3:
    /// stem conv(2→16) → BN → ReLU = x; a 1×1 (16→16) → BN → ReLU → g 3×3 (16→16, `groups`
    /// groups) → BN → ReLU → c 1×1 (16→16) → BN; x + c → ReLU → GAP → fc(16→2).
    static func bottleneck(groups: Int) throws -> Model {
        var rng = RandomGenerator(seed: UInt64(10 + groups))
        var b = ModelBuilder(architecture: "tiny-resnext-g\(groups)", inputShape: [2, 6, 6])
        b.add("stem", Conv2d(inChannels: 2, outChannels: 16, kernelSize: 3, padding: 1, rng: &rng))
        b.add("stem_bn", BatchNorm(featureCount: 16))
        let x = b.add("stem_relu", ReLU())
        b.add("a", Conv2d(inChannels: 16, outChannels: 16, kernelSize: 1, bias: false, rng: &rng))
        b.add("a_bn", BatchNorm(featureCount: 16))
        b.add("a_relu", ReLU())
        b.add("g", Conv2d(inChannels: 16, outChannels: 16, kernelSize: 3, padding: 1, groups: groups, bias: false, rng: &rng))
        b.add("g_bn", BatchNorm(featureCount: 16))
        b.add("g_relu", ReLU())
        b.add("c", Conv2d(inChannels: 16, outChannels: 16, kernelSize: 1, bias: false, rng: &rng))
        let c = b.add("c_bn", BatchNorm(featureCount: 16))
        b.add("sum", Add(), inputs: [x, c])
        b.add("out_relu", ReLU())
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 16, outFeatures: 2, rng: &rng))
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

    /// The kept channels of `plan`'s layer at `path` in each of `blocks` equal blocks.
    private func keptPerBlock(_ plan: PruningPlan, _ path: String, blocks: Int) throws -> [Int] {
        let layer = try XCTUnwrap(plan.layers.first { $0.path == path }, path)
        let size = layer.units / blocks
        return (0..<blocks).map { b in layer.keptPositions.filter { $0 / size == b }.count }
    }

    /// The grouped convolution's input channels (what `a` writes) and output channels (what
    /// `c` reads) are groups of their own, pruned in 4 equal blocks; nothing is kept whole.
    func testAGroupedConvolutionsInputsAndOutputsArePrunedInEqualBlocks() throws {
        let deps = try GraphModels.grouped().channelDependencies()
        let input = try group(deps, scoredBy: "a"), output = try group(deps, scoredBy: "g")
        XCTAssertNotEqual(input.index, output.index)
        for g in [input, output] {
            XCTAssert(g.isPrunable, g.reason ?? "")
            XCTAssertEqual([g.channels, g.blocks, g.blockSize], [8, 4, 2])
            XCTAssertEqual(g.groupedConvolutions, ["g"])
        }
        XCTAssertEqual(input.consumers, [ChannelConsumer(path: "g", inputsPerChannel: 1)])
        XCTAssertEqual(input.batchNorms, ["a_bn"])
        XCTAssertEqual(output.producers, ["g"])
        XCTAssertEqual(output.batchNorms, ["g_bn"])
        XCTAssertEqual(output.consumers, [ChannelConsumer(path: "c", inputsPerChannel: 1)])
        for path in ["stem", "c"] {
            let g = try group(deps, scoredBy: path)
            XCTAssert(g.isPrunable && g.blocks == 1 && g.groupedConvolutions.isEmpty, path)
        }
        XCTAssert(deps.summary.contains("uniform over 4 blocks of 2"), deps.summary)
    }

    /// Selection keeps the same number of channels in every block, the best-scored of each
    /// block, ⌈k / blocks⌉ where the plain selection would keep k, at every sparsity, in both
    /// scopes, with G = 2 and G = 4; and the channel multiple rounds the total.
    func testSelectionKeepsTheSameBestScoredCountInEveryBlock() throws {
        for groups in [2, 4] {
            let model = try GraphModels.bottleneck(groups: groups)
            let deps = try model.channelDependencies()
            XCTAssertEqual(try group(deps, scoredBy: "a").blocks, groups)
            XCTAssertEqual(try group(deps, scoredBy: "g").blocks, groups)
            XCTAssertFalse(try group(deps, scoredBy: "stem").isPrunable, "tied to the addition")
            let scores = try model.score(with: TestL1Channels(), data: nil)
            let byPath = Dictionary(uniqueKeysWithValues: scores.map { ($0.layer.path, $0.scores) })
            for scope in [SelectionSettings.Scope.perLayer, .global] {
                for sparsity in [0.2, 0.5, 0.7, 0.9] {
                    let label = "G=\(groups) \(scope.rawValue) \(sparsity)"
                    let plan = try selectGroupPruning(scores, dependencies: deps,
                                                      settings: SelectionSettings(scope: scope, sparsity: sparsity), criterion: "test-l1")
                    for path in ["a", "g"] {
                        let counts = try keptPerBlock(plan, path, blocks: groups)
                        XCTAssertEqual(Set(counts).count, 1, "\(label) \(path): \(counts)")
                        XCTAssertGreaterThanOrEqual(counts[0], 1, label)
                        // The best-scored of each block: no pruned channel beats a kept one of its block.
                        let layer = try XCTUnwrap(plan.layers.first { $0.path == path })
                        let s = try XCTUnwrap(byPath[path]), size = 16 / groups
                        for b in 0..<groups {
                            let block = b * size..<(b + 1) * size
                            let kept = block.filter(layer.isKept).map { s[$0] }, pruned = block.filter { !layer.isKept($0) }.map { s[$0] }
                            XCTAssertLessThanOrEqual(pruned.max() ?? -.infinity, kept.min() ?? .infinity, "\(label) \(path) block \(b)")
                        }
                    }
                    if scope == .perLayer {
                        // k = round(16 · (1 − s)) by plain selection; every block keeps ⌈k / G⌉.
                        let k = Int((16 * (1 - sparsity)).rounded())
                        XCTAssertEqual(try keptPerBlock(plan, "a", blocks: groups)[0], (k + groups - 1) / groups, label)
                    }
                }
            }
            // The channel multiple applies to the total: 16 · 0.3 ≈ 5 → 6 with multiple 3; over G = 2
            // blocks 3 each; over G = 4 blocks ⌈6/4⌉ = 2 each, raised to 3 so that the total (12) is a multiple of 3.
            var settings = SelectionSettings(scope: .perLayer, sparsity: 0.7)
            settings.channelMultiple = 3
            let plan = try selectGroupPruning(scores, dependencies: deps, settings: settings, criterion: "test-l1")
            let counts = try keptPerBlock(plan, "a", blocks: groups)
            XCTAssertEqual(counts, Array(repeating: 3, count: groups), "G=\(groups) multiple 3")
            XCTAssertEqual(counts.reduce(0, +) % 3, 0)
        }
    }

    /// Masked along the groups, the bottleneck's grouped convolution is rebuilt with its
    /// groups, each narrower, and computes what the masked model does (G = 2, 4 and the
    /// model without a shortcut).
    func testGroupedConvolutionSurgeryMatchesTheMaskedModel() throws {
        for (model, groups) in [(try GraphModels.bottleneck(groups: 2), 2), (try GraphModels.bottleneck(groups: 4), 4),
                                (try GraphModels.grouped(), 4)] {
            let label = model.architecture
            let before = try XCTUnwrap(model.nodes.first { $0.name == "g" }?.layer as? Conv2d)
            let r = try maskAndCut(model)
            assertSame(r.masked, r.pruned)
            let g = try XCTUnwrap(r.cut.model.nodes.first { $0.name == "g" }?.layer as? Conv2d)
            XCTAssertEqual(g.groups, groups, label)
            XCTAssertEqual([g.inChannels, g.outChannels], [before.inChannels / 2, before.outChannels / 2], label)
            XCTAssertEqual(width(r.cut, "a"), [before.inChannels, before.inChannels / 2], label)
            XCTAssert(r.plan.notes.allSatisfy { !$0.contains("grouped") }, "\(r.plan.notes)")
            // MACs of the grouped convolution: out · (in / G) · kh · kw · H · W.
            XCTAssertEqual(r.cut.model.cost.layer("g")?.macs, g.outChannels * (g.inChannels / groups) * 9 * 36, label)
        }
        let r = try maskAndCut(try GraphModels.grouped())
        XCTAssertEqual(width(r.cut, "stem"), [8, 4])
        XCTAssertEqual(width(r.cut, "c"), [6, 3])
        XCTAssertEqual(width(r.cut, "g"), [8, 4])
    }

    /// Masks that remove more channels from one block than from another (set by hand) leave
    /// the extra ones in place, as zeros, with a note: the convolution stays grouped and the
    /// narrower model still computes what the masked one does.
    func testUnevenMasksKeepTheExtraChannelsSoEveryGroupIsTheSameWidth() throws {
        let model = try GraphModels.bottleneck(groups: 4)
        let deps = try model.channelDependencies()
        // g's outputs, blocks of 4: two channels of block 0, one of blocks 1–3.
        let plan = PruningPlan(criterion: "hand", granularity: .channel, scope: .perLayer, requestedSparsity: 0, layers: [
            PruningPlan.Layer(path: "g", granularity: .channel, units: 16, keepWords: [UInt64(0xffff & ~0b0001_0001_0001_0011)]),
        ])
        try plan.apply(to: model, dependencies: deps)
        let cut = try model.removingPrunedChannels()
        let g = try XCTUnwrap(cut.model.nodes.first { $0.name == "g" }?.layer as? Conv2d)
        XCTAssertEqual([g.inChannels, g.outChannels, g.groups], [16, 12, 4])
        XCTAssert(cut.notes.contains { $0.contains("1 masked channel(s) stay") && $0.contains("each of its 4 blocks of 4 keeps 3") }, "\(cut.notes)")
        var rng = RandomGenerator(seed: 7)
        let x = Tensor.randomNormal([3] + model.inputShape, using: &rng)
        model.mode = .inference; cut.model.mode = .inference
        assertSame(model.forward(x).scalars, cut.model.forward(x).scalars)
        // The minimum applies per block: 13 channels over 4 blocks keep ⌈13/4⌉ = 4 each, so none goes.
        let atMinimum = try model.removingPrunedChannels(minimumChannels: 13).model
        XCTAssertEqual((atMinimum.nodes.first { $0.name == "g" }?.layer as? Conv2d)?.outChannels, 16)
        XCTAssertEqual((try model.removingPrunedChannels(minimumChannels: 12).model.nodes.first { $0.name == "g" }?.layer as? Conv2d)?.outChannels, 12)
    }

    /// A 2× MACs speed-up of the bottleneck, counted exactly for the grouped convolution:
    /// the figure the search reports is the narrower model's, and the groups stay.
    func testAGroupedBottleneckReachesATwofoldSpeedUpExactly() throws {
        for groups in [2, 4] {
            let model = try GraphModels.bottleneck(groups: groups)
            let dense = model.macs
            let result = try model.prune(with: TestL1Channels(), toward: .speedup(2), data: nil)
            let cut = try model.removingPrunedChannels()
            XCTAssertGreaterThanOrEqual(Double(dense) / Double(cut.model.macs), 2, "G=\(groups)")
            XCTAssertEqual(result.achieved, Double(dense) / Double(cut.model.macs), accuracy: 1e-9, "G=\(groups)")
            let g = try XCTUnwrap(cut.model.nodes.first { $0.name == "g" }?.layer as? Conv2d)
            XCTAssertEqual(g.groups, groups)
            XCTAssertLessThan(g.inChannels, 16)
            for path in ["a", "g"] {
                XCTAssertEqual(Set(try keptPerBlock(result.plan, path, blocks: groups)).count, 1, "G=\(groups) \(path)")
            }
            var rng = RandomGenerator(seed: 3)
            let x = Tensor.randomNormal([2] + model.inputShape, using: &rng)
            model.mode = .inference; cut.model.mode = .inference
            assertSame(model.forward(x).scalars, cut.model.forward(x).scalars)
        }
    }

    /// What can't be made uniform stays whole, with a note: a grouped convolution that reads
    /// a concatenation, and channels whose blocks would be single channels.
    func testGroupedConvolutionsThatCantBeUniformAreKeptWhole() throws {
        var rng = RandomGenerator(seed: 12)
        var b = ModelBuilder(architecture: "tiny-grouped-cat", inputShape: [2, 4, 4])
        let p = b.add("p", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 1, rng: &rng))
        let q = b.add("q", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 1, rng: &rng), inputs: [Model.inputIndex])
        b.add("cat", Concat(), inputs: [p, q])
        b.add("g", Conv2d(inChannels: 8, outChannels: 8, kernelSize: 3, padding: 1, groups: 2, rng: &rng))
        b.add("r", ReLU())
        // 8 channels in 8 groups of one, 16 out: its inputs can't lose a channel from every group.
        b.add("m", Conv2d(inChannels: 8, outChannels: 16, kernelSize: 1, groups: 8, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 16, outFeatures: 2, rng: &rng))
        let model = TinyModels.randomized(try b.build())
        let deps = try model.channelDependencies()
        for path in ["p", "q"] {
            let g = try group(deps, scoredBy: path)
            XCTAssertFalse(g.isPrunable, path)
            XCTAssert(g.reason?.contains("grouped convolution 'g' (groups 2, 8→8 channels), which reads a concatenation") == true, g.reason ?? "")
        }
        let g = try group(deps, scoredBy: "g")
        XCTAssertFalse(g.isPrunable)
        XCTAssert(g.reason?.contains("'g'") == true, g.reason ?? "")
        let m = try group(deps, scoredBy: "m")
        XCTAssert(m.isPrunable && m.blocks == 8 && m.blockSize == 2, m.reason ?? "")
        let result = try maskAndCut(model)
        assertSame(result.masked, result.pruned)
        XCTAssertEqual(width(result.cut, "m"), [16, 8])
        XCTAssertEqual(width(result.cut, "g"), [8, 8])
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
