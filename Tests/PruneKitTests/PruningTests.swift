import PruneKit
import XCTest

/// |w| per weight: the simplest criterion, defined here so these tests need no plugin.
private struct AbsoluteWeight: Criterion, OptionConstructible {
    static let id = "test-abs"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.scalars.map(abs)
    }
}

/// Records the evidence it receives, so tests can check what the SDK gathers.
private final class Recorder {
    var batches: [(path: String, batch: LayerBatch)] = []
}

private struct EvidenceProbe: Criterion, OptionConstructible {
    static let id = "test-probe"
    static var recorder = Recorder()
    let granularity = Granularity.channel
    let evidence: Evidence = [.weightGradients, .activations, .activationGradients, .nextLayerInputs]
    init(options: OptionValues) {}
    func makeState(for layer: PrunableLayer) -> Int { 0 }
    func observe(_ batch: LayerBatch, layer: PrunableLayer, state batches: inout Int) throws {
        EvidenceProbe.recorder.batches.append((layer.path, batch))
        batches += 1
    }
    func scores(for layer: PrunableLayer, state batches: Int, context: ScoringContext) throws -> [Float] {
        XCTAssertEqual(batches, context.batchCount)
        return context.weightGradient!.rows.map { $0.reduce(0) { $0 + abs($1) } }
    }
}

private struct WrongCount: Criterion, OptionConstructible {
    static let id = "test-wrong-count"
    static let options: [OptionSpec] = [.bool("nan", default: false, help: "return NaN instead")]
    let nan: Bool
    let granularity = Granularity.channel
    init(options: OptionValues) { nan = options.bool("nan") }
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        nan ? [Float](repeating: .nan, count: layer.outputs) : [1, 2]
    }
}

final class PruningTests: XCTestCase {
    private func lenet() throws -> Model { try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0) }

    func testPrunableLayerViews() throws {
        let layers = try lenet().prunableLayers()
        XCTAssertEqual(layers.map(\.path), ["features.0", "features.3", "classifier.0", "classifier.2", "classifier.4"])
        XCTAssertEqual(layers[1].weights.shape, [16, 150])
        XCTAssertEqual(layers[1].weightShape, [16, 6, 5, 5])
        XCTAssertEqual(layers[1].macs, 16 * 100 * 150)
        XCTAssertEqual(layers.map(\.isClassifier), [false, false, false, false, true])
    }

    func testRadixSelectMatchesASortWithTiesAndNegatives() {
        var rng = RandomGenerator(seed: 5)
        // Few distinct values, both signs, zeros and negative zeros: many ties.
        let layers: [(Int, [Float])] = (0..<3).map { k in
            (k, (0..<(200 + 37 * k)).map { _ in Float(rng.nextInt(below: 21) - 10) / 4 * (rng.nextInt(below: 2) == 0 ? 1 : -1) })
        }
        let all = layers.flatMap { k, s in s.enumerated().map { (score: $0.element, layer: k, pos: $0.offset) } }
        for count in [0, 1, 57, 300, all.count - 1, all.count] {
            let expected = all.sorted { ($0.score, $0.layer, $0.pos) < ($1.score, $1.layer, $1.pos) }.prefix(count)
            let got = lowestScores(layers, count: count)
            XCTAssertEqual(got.values.reduce(0) { $0 + $1.count }, count)
            // Same multiset of scores (ties may be broken the same way: by layer, then position).
            var expectedSet = Set(expected.map { "\($0.layer):\($0.pos)" })
            for (k, positions) in got { for p in positions { XCTAssertNotNil(expectedSet.remove("\(k):\(p)"), "count \(count): \(k):\(p)") } }
            XCTAssert(expectedSet.isEmpty, "count \(count): missing \(expectedSet.prefix(3))")
        }
    }

    func testGlobalAndPerLayerSelectionKeepExactCounts() throws {
        let model = try lenet()
        let scores = try model.score(with: AbsoluteWeight(options: OptionValues(defaultsOf: [])), data: nil)
        let layers = model.prunableLayers()
        let prunable = layers.dropLast().reduce(0) { $0 + $1.weights.count }   // classifier kept
        for scope in [SelectionSettings.Scope.global, .perLayer] {
            let plan = try selectPruning(scores, granularity: .weight, settings: .init(scope: scope, sparsity: 0.9), criterion: "test-abs")
            let kept = plan.layers.dropLast().reduce(0) { $0 + $1.keptCount }
            if scope == .global {
                XCTAssertEqual(kept, Int((Double(prunable) * 0.1).rounded()))
            } else {
                for l in plan.layers.dropLast() { XCTAssertEqual(l.keptCount, Int((Double(l.units) * 0.1).rounded()), l.path) }
            }
            XCTAssertEqual(plan.layers.last!.keptCount, plan.layers.last!.units, "the classifier is kept by default")
        }
        // Global selection prunes exactly the smallest magnitudes: every kept |w| ≥ every pruned |w|.
        let plan = try selectPruning(scores, granularity: .weight, settings: .init(scope: .global, sparsity: 0.5), criterion: "test-abs")
        var maxPruned: Float = 0, minKept = Float.infinity
        for (l, s) in zip(plan.layers.dropLast(), scores) {
            for p in l.prunedPositions { maxPruned = max(maxPruned, s.scores[p]) }
            for p in l.keptPositions { minKept = min(minKept, s.scores[p]) }
        }
        XCTAssertLessThanOrEqual(maxPruned, minKept)
    }

    func testSelectionRefusesBadSettingsAndClipsChannelsWithANote() throws {
        let model = try lenet()
        let channelScores = model.prunableLayers().map { LayerScores(layer: $0, scores: (0..<$0.outputs).map(Float.init)) }
        XCTAssertThrowsError(try selectPruning(channelScores, granularity: .channel, settings: .init(scope: .global, sparsity: 1), criterion: "x")) {
            XCTAssert("\($0)".contains("outside [0, 1)"))
        }
        XCTAssertThrowsError(try selectPruning(channelScores, granularity: .channel,
                                               settings: .init(scope: .global, sparsity: 0.5, excluded: ["features.9"]), criterion: "x")) {
            XCTAssert("\($0)".contains("'features.9' is not a prunable layer"))
        }
        // Global channel selection with layer-0 scores all lowest: the minimum keeps one channel there.
        var skewed = channelScores
        skewed[0] = LayerScores(layer: skewed[0].layer, scores: [Float](repeating: -100, count: 6))
        let plan = try selectPruning(skewed, granularity: .channel, settings: .init(scope: .global, sparsity: 0.05), criterion: "x")
        XCTAssertEqual(plan.layers[0].keptCount, 1)
        XCTAssert(plan.notes.contains { $0.contains("features.0") }, "\(plan.notes)")
    }

    func testPlanAppliesSavesAndLoads() throws {
        let model = try lenet()
        let scores = try model.score(with: AbsoluteWeight(options: OptionValues(defaultsOf: [])), data: nil)
        let plan = try selectPruning(scores, granularity: .weight, settings: .init(scope: .global, sparsity: 0.8), criterion: "test-abs")
        try plan.apply(to: model)
        // Both compression axes, counted by hand: 80 % of the non-classifier weights are masked.
        let inScope = model.prunableLayers().dropLast().reduce(0) { $0 + $1.weights.count }
        let kept = plan.layers.dropLast().reduce(0) { $0 + $1.keptCount }
        let figures = model.compression
        XCTAssertEqual(figures.prunedWeights, inScope - kept)
        XCTAssertEqual(figures.prunableWeights, model.prunableLayers().reduce(0) { $0 + $1.weights.count })
        XCTAssertEqual(figures.parameters, model.parameterCount)
        XCTAssertEqual(figures.wholeModelRatio, Double(model.parameterCount) / Double(model.parameterCount - (inScope - kept)), accuracy: 1e-12)
        XCTAssertLessThan(figures.wholeModelRatio, figures.prunableRatio)
        let w = model.nodes[0].layer.parameter(named: "weight")!
        XCTAssertEqual(w.value.scalars.filter { $0 == 0 }.count, plan.layers[0].units - plan.layers[0].keptCount)
        // One training step does not revive pruned weights.
        var rng = RandomGenerator(seed: 1)
        let trainer = Trainer(model: model, optimizer: SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 1e-3))
        try trainer.step(images: .randomNormal([4, 1, 28, 28], using: &rng), labels: [0, 1, 2, 3])
        XCTAssertEqual(w.value.scalars.filter { $0 == 0 }.count, plan.layers[0].units - plan.layers[0].keptCount)

        let dir = try TestSupport.scratchDirectory("plan")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("plan.json").path
        try plan.save(to: path)
        XCTAssertEqual(try PruningPlan.load(from: path), plan)
        // Channel plans round-trip too.
        let channels = model.prunableLayers().map { LayerScores(layer: $0, scores: (0..<$0.outputs).map { Float($0 % 3) }) }
        let cplan = try selectPruning(channels, granularity: .channel, settings: .init(scope: .perLayer, sparsity: 0.5), criterion: "x")
        try cplan.save(to: path)
        XCTAssertEqual(try PruningPlan.load(from: path), cplan)
        // A plan file that lies about a layer's size is refused, not trusted.
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"units\" : 6", with: "\"units\" : -6")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PruningPlan.load(from: path)) { XCTAssert("\($0)".contains("-6 units"), "\($0)") }
        try Data("{\"format\": \"other\"}".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PruningPlan.load(from: path)) { XCTAssertEqual(($0 as? PruneKitError)?.kind, .invalidFile) }
    }

    /// A pruned channel of a conv followed by BatchNorm outputs exactly zero: the plan masks
    /// the channel's γ and β too, not only its filter.
    func testChannelPlanSilencesTheFollowingBatchNorm() throws {
        let model = try ModelZoo.make("vgg-small", inputShape: [1, 12, 12], classCount: 4, seed: 2)
        for node in model.nodes where node.layer.kind == .batchNorm {
            let bn = node.layer as! BatchNorm
            bn.bias.assign(Tensor(shape: [bn.featureCount], repeating: 0.5))      // would leak ReLU(β) otherwise
        }
        let layers = model.prunableLayers()
        let scores = layers.map { LayerScores(layer: $0, scores: (0..<$0.outputs).map(Float.init)) }
        let plan = try selectPruning(scores, granularity: .channel, settings: .init(scope: .perLayer, sparsity: 0.5), criterion: "x")
        try plan.apply(to: model)
        var rng = RandomGenerator(seed: 4)
        let x = Tensor.randomNormal([3, 1, 12, 12], using: &rng)
        let relu = model.nodeIndex(named: "features.2")!            // conv → BN → ReLU
        for mode in [ForwardMode.training, .inference] {
            var captured: Tensor?
            model.mode = mode
            model.forwardObserver = { i, y in if i == relu { captured = y } }
            _ = model.forward(x)
            let y = try XCTUnwrap(captured), perChannel = y.count / y.shape[0]
            for c in plan.layers[0].prunedPositions {
                XCTAssert(y.scalars[(c * perChannel)..<((c + 1) * perChannel)].allSatisfy { $0 == 0 }, "channel \(c) leaks in \(mode)")
            }
            XCTAssert(plan.layers[0].keptPositions.contains { c in y.scalars[(c * perChannel)..<((c + 1) * perChannel)].contains { $0 != 0 } })
        }
    }

    /// The gathered weight gradient equals the sum of the calibration batches' gradients,
    /// computed here directly; activations come after the ReLU; next-layer inputs fit.
    func testEvidenceMatchesADirectComputation() throws {
        let data = try DatasetCatalog.load().train.subset(Array(0..<96))
        let model = try lenet()
        let settings = CalibrationSettings(batches: 2, batchSize: 32, seed: 3)
        EvidenceProbe.recorder = Recorder()
        let scores = try model.score(with: EvidenceProbe(options: OptionValues(defaultsOf: [])), data: data, settings: settings)

        let reference = try lenet()
        reference.mode = .evaluationWithGradients
        reference.zeroGradients()
        let loader = try DataLoader(data, batchSize: 32, shuffle: true, seed: 3)
        for b in 0..<2 {
            let batch = loader.batch(b)
            reference.backward(softmaxCrossEntropy(logits: reference.forward(batch.images), labels: batch.labels).gradient)
        }
        let g = reference.nodes[3].layer.parameter(named: "weight")!.gradient.reshaped([16, 150])
        let expected = g.rows.map { $0.reduce(0) { $0 + abs($1) } }
        for (a, e) in zip(scores[1].scores, expected) { XCTAssertEqual(a, e, accuracy: 1e-5 * max(1, abs(e))) }

        let conv1 = EvidenceProbe.recorder.batches.filter { $0.path == "features.3" }
        XCTAssertEqual(conv1.count, 2)
        let act = conv1[0].batch.activations!
        XCTAssertEqual(act.shape, [16, 32, 10, 10])                         // channel-major, after the ReLU
        XCTAssert(act.scalars.allSatisfy { $0 >= 0 })
        XCTAssertEqual(conv1[0].batch.activationGradients!.shape, act.shape)
        XCTAssertEqual(conv1[0].batch.nextLayer?.path, "classifier.0")
        XCTAssertEqual(conv1[0].batch.nextLayerInputs?.shape, [32, 400])   // after pool and flatten
        XCTAssert(model.trainableParameters.allSatisfy { $0.gradient.maxAbs() == 0 }, "scoring leaves gradients at zero")
    }

    func testBadCriterionOutputIsAClearError() throws {
        let model = try lenet()
        XCTAssertThrowsError(try model.score(with: WrongCount(options: OptionValues(defaultsOf: WrongCount.options)), data: nil)) {
            XCTAssert("\($0)".contains("returned 2 scores for layer 'features.0', expected 6"), "\($0)")
        }
        let nan = try WrongCount(options: OptionValues(parsing: ["nan=true"], specs: WrongCount.options, owner: WrongCount.id))
        XCTAssertThrowsError(try model.score(with: nan, data: nil)) { XCTAssert("\($0)".contains("non-finite")) }
        XCTAssertThrowsError(try model.score(with: EvidenceProbe(options: OptionValues(defaultsOf: [])), data: nil)) {
            XCTAssert("\($0)".contains("needs calibration data"))
        }
    }

    func testRegistryAndTypedOptions() throws {
        let registry = Registry()
        try registry.register(criterion: WrongCount.self)
        XCTAssertThrowsError(try registry.register(criterion: WrongCount.self)) {
            XCTAssert("\($0)".contains("registered twice"), "\($0)")
        }
        XCTAssertThrowsError(try registry.criterion("nope")) { XCTAssert("\($0)".contains("test-wrong-count")) }
        XCTAssertThrowsError(try registry.criterion("test-wrong-count", options: ["nan=maybe"])) {
            XCTAssert("\($0)".contains("needs a value of type bool"))
            XCTAssert((($0 as? PruneKitError)?.hint ?? "").contains("nan=bool (default false)"))
        }
        XCTAssertThrowsError(try registry.criterion("test-wrong-count", options: ["depth=3"])) {
            XCTAssert("\($0)".contains("has no option 'depth'"))
        }
        XCTAssertThrowsError(try registry.criterion("test-wrong-count", options: ["nan"])) { XCTAssert("\($0)".contains("key=value")) }
        XCTAssertNotNil(try registry.criterion("test-wrong-count", options: ["nan=yes"]))
        // A failing registration is rolled back.
        XCTAssertThrowsError(try registry.registering(from: "/tmp/x.so", version: "1", sdkVersion: "1.0") {
            try registry.register(criterion: AbsoluteWeight.self)
            throw PruneKitError(.plugin, "boom")
        })
        XCTAssertFalse(registry.ids(of: .criterion).contains("test-abs"))
    }
}
