import PruneKit
import XCTest

/// Σ|w| of each output channel: l1-filter's formula, defined here so these tests need no plugin.
struct TestL1Channels: Criterion, OptionConstructible {
    static let id = "test-l1"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    init() {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } }
    }
}

/// Tiny hand-built models for the dependency and surgery tests.
enum TinyModels {
    /// conv(2→4) → BN → ReLU → maxpool → conv(4→3) → BN → ReLU → flatten → linear(3·2·2 → 5) → ReLU → linear(5 → 2).
    static func chain() throws -> Model {
        var rng = RandomGenerator(seed: 1)
        var b = ModelBuilder(architecture: "tiny-chain", inputShape: [2, 8, 8])
        b.add("c1", Conv2d(inChannels: 2, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("bn1", BatchNorm(featureCount: 4))
        b.add("r1", ReLU())
        b.add("pool", MaxPool2d(kernelSize: 2))
        b.add("c2", Conv2d(inChannels: 4, outChannels: 3, kernelSize: 3, stride: 2, padding: 1, rng: &rng))
        b.add("bn2", BatchNorm(featureCount: 3))
        b.add("r2", ReLU())
        b.add("flatten", Flatten())
        b.add("fc1", Linear(inFeatures: 12, outFeatures: 5, rng: &rng))
        b.add("r3", ReLU())
        b.add("fc2", Linear(inFeatures: 5, outFeatures: 2, rng: &rng))
        return try randomized(b.build())
    }

    /// A residual block with an identity shortcut: stem conv(1→4) → BN → ReLU, then
    /// conv(4→3) → BN → ReLU → conv(3→4) → BN, added to the stem, ReLU → GAP → linear(4 → 2).
    static func residual() throws -> Model {
        var rng = RandomGenerator(seed: 2)
        var b = ModelBuilder(architecture: "tiny-residual", inputShape: [1, 6, 6])
        b.add("stem", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("stem_bn", BatchNorm(featureCount: 4))
        let entry = b.add("stem_relu", ReLU())
        b.add("a", Conv2d(inChannels: 4, outChannels: 3, kernelSize: 3, padding: 1, rng: &rng))
        b.add("a_bn", BatchNorm(featureCount: 3))
        b.add("a_relu", ReLU())
        b.add("b", Conv2d(inChannels: 3, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        let branch = b.add("b_bn", BatchNorm(featureCount: 4))
        b.add("add", Add(), inputs: [branch, entry])
        b.add("relu", ReLU())
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 4, outFeatures: 2, rng: &rng))
        return try randomized(b.build())
    }

    /// conv(1→4) → BN → ReLU → depthwise conv(4, groups 4) → BN → ReLU → conv 1×1 (4→3) → GAP → linear(3 → 2).
    static func depthwise() throws -> Model {
        var rng = RandomGenerator(seed: 3)
        var b = ModelBuilder(architecture: "tiny-depthwise", inputShape: [1, 6, 6])
        b.add("c", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("c_bn", BatchNorm(featureCount: 4))
        b.add("c_relu", ReLU())
        b.add("dw", Conv2d(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 1, groups: 4, rng: &rng))
        b.add("dw_bn", BatchNorm(featureCount: 4))
        b.add("dw_relu", ReLU())
        b.add("pw", Conv2d(inChannels: 4, outChannels: 3, kernelSize: 1, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 3, outFeatures: 2, rng: &rng))
        return try randomized(b.build())
    }

    /// Gives every BatchNorm non-trivial γ, β and running statistics, so that a removed
    /// channel that was not exactly zero would show in the outputs.
    static func randomized(_ model: Model) -> Model {
        var rng = RandomGenerator(seed: 99)
        for node in model.nodes {
            guard let bn = node.layer as? BatchNorm else { continue }
            let n = bn.featureCount
            bn.weight.assign(.randomUniform([n], low: 0.5, high: 1.5, using: &rng))
            bn.bias.assign(.randomUniform([n], low: -0.5, high: 0.5, using: &rng))
            bn.runningMean.assign(.randomUniform([n], low: -0.2, high: 0.2, using: &rng))
            bn.runningVar.assign(.randomUniform([n], low: 0.5, high: 2, using: &rng))
        }
        model.mode = .inference
        return model
    }
}

/// Dependency groups: one test per rule, on hand-built models and the zoo.
final class DependencyTests: XCTestCase {
    private func group(_ deps: ChannelDependencies, scoredBy path: String, file: StaticString = #filePath,
                       line: UInt = #line) throws -> ChannelGroup {
        try XCTUnwrap(deps.group(scoredBy: path), "no group scored by \(path)", file: file, line: line)
    }

    func testConvBatchNormPoolConvIsOneGroup() throws {
        let deps = try TinyModels.chain().channelDependencies()
        let g = try group(deps, scoredBy: "c1")
        XCTAssertEqual(g.channels, 4)
        XCTAssertEqual(g.producers, ["c1"])
        XCTAssertEqual(g.batchNorms, ["bn1"])
        XCTAssertEqual(g.consumers, [ChannelConsumer(path: "c2", inputsPerChannel: 1)])
        XCTAssert(g.isPrunable)
        // The input's channels are never pruned.
        XCTAssertFalse(deps.groups[0].isPrunable)
        XCTAssertEqual(deps.groups[0].consumers.map(\.path), ["c1"])
    }

    func testFlattenMakesBlocksOfTheLinearInputs() throws {
        let deps = try TinyModels.chain().channelDependencies()
        let g = try group(deps, scoredBy: "c2")
        // c2's output is 3 × 2 × 2: each channel is 4 consecutive inputs of fc1.
        XCTAssertEqual(g.consumers, [ChannelConsumer(path: "fc1", inputsPerChannel: 4)])
        XCTAssertEqual(g.batchNorms, ["bn2"])
        let lenet = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0).channelDependencies()
        // 16 channels of 5 × 5 after the second pool.
        XCTAssertEqual(try group(lenet, scoredBy: "features.3").consumers,
                       [ChannelConsumer(path: "classifier.0", inputsPerChannel: 25)])
    }

    func testLinearToLinearAndTheOutputKeptWhole() throws {
        let deps = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0).channelDependencies()
        XCTAssertEqual(try group(deps, scoredBy: "fc1").consumers, [ChannelConsumer(path: "fc2", inputsPerChannel: 1)])
        XCTAssertEqual(try group(deps, scoredBy: "fc2").consumers, [ChannelConsumer(path: "fc3", inputsPerChannel: 1)])
        XCTAssert(try group(deps, scoredBy: "fc2").isPrunable)
        let out = try group(deps, scoredBy: "fc3")
        XCTAssertFalse(out.isPrunable)
        XCTAssertEqual(out.reason, "the model's outputs")
    }

    func testResidualAdditionsWithinBlocks() throws {
        let deps = try TinyModels.residual().channelDependencies(policy: .withinBlocks)
        let stream = try group(deps, scoredBy: "stem")
        XCTAssertEqual(stream.producers, ["stem", "b"])
        XCTAssertEqual(stream.batchNorms, ["stem_bn", "b_bn"])
        XCTAssertEqual(Set(stream.consumers.map(\.path)), ["a", "fc"])
        XCTAssertFalse(stream.isPrunable)
        XCTAssert(stream.reason?.contains("residual addition") == true, stream.reason ?? "")
        XCTAssert(try group(deps, scoredBy: "a").isPrunable)

        // resnet-20: the first conv of each block is prunable, the stream is not.
        let resnet = try ModelZoo.make("resnet-20", inputShape: [3, 32, 32], classCount: 10, seed: 0).channelDependencies()
        let inner = try group(resnet, scoredBy: "layer2.1.conv1")
        XCTAssert(inner.isPrunable)
        XCTAssertEqual(inner.batchNorms, ["layer2.1.bn1"])
        XCTAssertEqual(inner.consumers.map(\.path), ["layer2.1.conv2"])
        let stage1 = try group(resnet, scoredBy: "conv1")
        XCTAssertEqual(stage1.producers, ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"])
        XCTAssertFalse(stage1.isPrunable)
        let prunable = resnet.groups.filter(\.isPrunable).flatMap(\.scoredLayers)
        XCTAssertEqual(prunable, (1...3).flatMap { s in (0..<3).map { "layer\(s).\($0).conv1" } })
    }

    func testWholeStreamPrunesTheStreamAsOneGroup() throws {
        let deps = try TinyModels.residual().channelDependencies(policy: .wholeStream)
        let stream = try group(deps, scoredBy: "b")
        XCTAssert(stream.isPrunable)
        XCTAssertEqual(stream.scoredLayers, ["stem", "b"])
        XCTAssertEqual(stream.consumers.map(\.path), ["a", "fc"])
        // Option-A shortcuts place channels by position: refused, with the layer named.
        let resnet = try ModelZoo.make("resnet-20", inputShape: [3, 32, 32], classCount: 10, seed: 0)
        XCTAssertThrowsError(try resnet.channelDependencies(policy: .wholeStream)) { error in
            let e = error as? PruneKitError
            XCTAssert(e?.message.contains("layer2.0.shortcut") == true, "\(error)")
            XCTAssert(e?.hint?.contains("within-blocks") == true, "\(error)")
        }
    }

    func testDepthwiseTiesInputAndOutputChannels() throws {
        let deps = try TinyModels.depthwise().channelDependencies()
        let g = try group(deps, scoredBy: "dw")
        XCTAssertEqual(g.producers, ["c"])
        XCTAssertEqual(g.depthwise, ["dw"])
        XCTAssertEqual(g.scoredLayers, ["c", "dw"])
        XCTAssertEqual(g.batchNorms, ["c_bn", "dw_bn"])
        XCTAssertEqual(g.consumers.map(\.path), ["pw"])
        XCTAssert(g.isPrunable)
    }

    /// A grouped convolution (not depthwise) produces a group of its own, pruned uniformly
    /// across its groups; it used to make the whole model refuse channel pruning, then to be
    /// kept whole. Two grouped convolutions on one group take the least common multiple of
    /// their groups.
    func testGroupedConvolutionIsPrunedAcrossEqualBlocks() throws {
        var rng = RandomGenerator(seed: 0)
        var b = ModelBuilder(architecture: "grouped", inputShape: [4, 4, 4])
        b.add("g", Conv2d(inChannels: 4, outChannels: 12, kernelSize: 3, padding: 1, groups: 2, rng: &rng))
        b.add("h", Conv2d(inChannels: 12, outChannels: 12, kernelSize: 3, padding: 1, groups: 3, rng: &rng))
        b.add("pool", GlobalAvgPool())
        b.add("fc", Linear(inFeatures: 12, outFeatures: 2, rng: &rng))
        let deps = try b.build().channelDependencies()
        let g = try group(deps, scoredBy: "g")
        XCTAssert(g.isPrunable, g.reason ?? "")
        XCTAssertEqual([g.channels, g.blocks, g.blockSize], [12, 6, 2])
        XCTAssertEqual(g.groupedConvolutions, ["g", "h"])
        XCTAssertEqual(g.consumers.map(\.path), ["h"])
        let h = try group(deps, scoredBy: "h")
        XCTAssertEqual([h.channels, h.blocks], [12, 3])
        XCTAssertEqual(h.groupedConvolutions, ["h"])
        // The model's input stays whole (as always), whatever g reads it as.
        XCTAssertFalse(deps.groups[0].isPrunable)
    }

    func testVGGGroupsAreOnePerConvolution() throws {
        let deps = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0).channelDependencies()
        let prunable = deps.groups.filter(\.isPrunable)
        XCTAssertEqual(prunable.map(\.scoredLayers), [["features.0"], ["features.3"], ["features.7"], ["features.10"], ["features.14"]])
        XCTAssertEqual(prunable.map(\.channels), [32, 32, 64, 64, 128])
        // The last conv is read by the classifier through global average pooling: one input per channel.
        XCTAssertEqual(prunable[4].consumers, [ChannelConsumer(path: "classifier", inputsPerChannel: 1)])
    }

    func testGroupScoreReductions() throws {
        let model = try TinyModels.residual()
        let deps = try model.channelDependencies(policy: .wholeStream)
        let layers = model.prunableLayers()
        let hand: [String: [Float]] = ["stem": [1, 2, 3, 4], "a": [1, 1, 1], "b": [3, 0, 5, -4], "fc": [0, 0]]
        let scores = layers.map { LayerScores(layer: $0, scores: hand[$0.path]!) }
        let stream = try XCTUnwrap(deps.group(scoredBy: "stem")).index
        XCTAssertEqual(try deps.groupScores(scores, reduction: .mean)[stream], [2, 1, 4, 0])
        XCTAssertEqual(try deps.groupScores(scores, reduction: .max)[stream], [3, 2, 5, 4])
        XCTAssertEqual(try deps.groupScores(scores, reduction: .sum)[stream], [4, 2, 8, 0])
        // The output group is kept whole: no scores.
        XCTAssertNil(try deps.groupScores(scores)[try XCTUnwrap(deps.group(scoredBy: "fc")).index])
    }

    func testGroupSelectionMatchesLayerSelectionWhereGroupsAreLayers() throws {
        let model = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let scores = try model.score(with: TestL1Channels(), data: nil)
        let settings = SelectionSettings(scope: .perLayer, sparsity: 0.5)
        let grouped = try selectGroupPruning(scores, dependencies: model.channelDependencies(), settings: settings, criterion: "test-l1")
        let plain = try selectPruning(scores, granularity: .channel, settings: settings, criterion: "test-l1")
        XCTAssertEqual(grouped.layers, plain.layers)
        XCTAssertEqual(grouped.layers.map(\.keptCount), [16, 16, 32, 32, 64, 10])
    }

    func testGroupSelectionKeepsTheResidualStreamWhole() throws {
        let model = try ModelZoo.make("resnet-20", inputShape: [3, 32, 32], classCount: 10, seed: 0)
        let scores = try model.score(with: TestL1Channels(), data: nil)
        let plan = try selectGroupPruning(scores, dependencies: model.channelDependencies(),
                                          settings: SelectionSettings(scope: .perLayer, sparsity: 0.5), criterion: "test-l1")
        for layer in plan.layers {
            let inner = layer.path.hasSuffix(".conv1") && layer.path != "conv1"
            XCTAssertEqual(layer.keptCount, inner ? layer.units / 2 : layer.units, layer.path)
        }
        XCTAssert(plan.notes.contains { $0.contains("residual addition") && $0.contains("layer3.2.conv2") }, "\(plan.notes)")
        // The kept channels are each group's best by score.
        let conv1 = try XCTUnwrap(scores.first { $0.layer.path == "layer1.0.conv1" }).scores
        let best = conv1.indices.sorted { conv1[$0] > conv1[$1] }.prefix(8).sorted()
        XCTAssertEqual(plan.layers.first { $0.path == "layer1.0.conv1" }?.keptPositions, Array(best))
    }

    func testGroupSelectionRejectsAnUnknownExclusion() throws {
        let model = try TinyModels.chain()
        let scores = try model.score(with: TestL1Channels(), data: nil)
        XCTAssertThrowsError(try selectGroupPruning(scores, dependencies: model.channelDependencies(),
                                                    settings: SelectionSettings(scope: .perLayer, sparsity: 0.5, excluded: ["features.9"]),
                                                    criterion: "test-l1")) { error in
            XCTAssert((error as? PruneKitError)?.message.contains("features.9") == true, "\(error)")
        }
    }
}
