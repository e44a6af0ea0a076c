import PruneKit
import XCTest

/// Network slimming (Liu et al. 2017), loaded from its plugin library: scores are |γ|, the
/// regulariser adds s·sign(γ) to every BatchNorm γ's gradient, training with it shrinks
/// Σ|γ|, and pruning uses one global threshold over |γ|.
final class SlimmingTests: XCTestCase {
    private func slimming(_ options: [String] = []) throws -> any Criterion {
        try TestSupport.builtInRegistry().criterion("slimming", options: options)
    }

    /// A small vgg-small on 12×12 input (BatchNorm after every convolution).
    private func smallVGG(seed: UInt64 = 0) throws -> Model {
        try ModelZoo.make("vgg-small", inputShape: [1, 12, 12], classCount: 10, seed: seed)
    }

    /// The BatchNorm γ parameters of `model`, in node order, with their paths.
    private func gammas(_ model: Model) -> [(String, Parameter)] {
        model.nodes.filter { $0.layer.kind == .batchNorm }.map { ($0.name, $0.layer.parameter(named: "weight")!) }
    }

    /// `count` bundled MNIST training images, downsampled to 12×12: every other pixel of
    /// the 28×28 image (14×14), less a one-pixel border.
    private func mnist12(count: Int) throws -> Dataset {
        let train = try DatasetCatalog.load().train
        var pixels: [UInt8] = [], labels: [Int32] = []
        for i in 0..<count {
            let image = Array(train.image(at: i))
            for y in 0..<12 { for x in 0..<12 { pixels.append(image[(2 * y + 2) * 28 + 2 * x + 2]) } }
            labels.append(Int32(train.intLabels[i]))
        }
        return try Dataset(name: "mnist-12", imageShape: [1, 12, 12], classCount: 10, pixels: pixels,
                           labels: labels, normalization: .mnist)
    }

    /// Sets every γ to a seeded uniform value in ±(0.8 + 0.2·k) for the k-th BatchNorm:
    /// overlapping ranges, so a global threshold prunes different fractions per layer.
    private func setDistinctScales(_ model: Model) {
        var rng = RandomGenerator(seed: 11)
        for (k, (_, g)) in gammas(model).enumerated() {
            g.assign(Tensor(shape: g.value.shape, scalars: (0..<g.value.count).map { _ in
                (rng.nextFloat() * 2 - 1) * (0.8 + 0.2 * Float(k)) }))
        }
    }

    func testRegisteredWithGlobalScopeAndOptions() throws {
        let c = try slimming()
        XCTAssertEqual(c.id, "slimming")
        XCTAssertEqual(c.granularity, .channel)
        XCTAssertEqual(c.preferredScope, .global)
        XCTAssertTrue(c.evidence.isEmpty, "scoring needs no data")
        XCTAssertThrowsError(try slimming(["s=-1"])) { XCTAssert("\($0)".contains("≥ 0")) }
        XCTAssertThrowsError(try slimming(["s=abc"]))
        XCTAssertNoThrow(try slimming(["s=0"]))
    }

    /// (1) |γ| by hand; a layer without a BatchNorm scores the largest finite float.
    func testScoresAreAbsoluteBatchNormScales() throws {
        let gamma = Tensor(shape: [4], scalars: [0.5, -2, 0, 1e-3])
        let base = TestSupport.layer([[1, 2], [3, 4], [5, 6], [7, 8]], kind: .conv2d)
        let layer = PrunableLayer(path: base.path, kind: base.kind, weights: base.weights, weightShape: base.weightShape,
                                  bias: nil, macs: base.macs, index: 0, isClassifier: false,
                                  batchNormScale: gamma, batchNormPath: "test.1")
        let context = ScoringContext(rng: RandomGenerator(seed: 0))
        XCTAssertEqual(try slimming().scores(for: layer, context: context), [0.5, 2, 0, 1e-3])
        XCTAssertEqual(try slimming().scores(for: base, context: context),
                       [Float](repeating: .greatestFiniteMagnitude, count: 4))
    }

    /// (2) regularize adds exactly s·sign(γ) (0 at γ = 0, nothing where γ is masked) to
    /// every BatchNorm γ gradient, and touches no other gradient.
    func testRegularizerAddsScaledSignToEveryBatchNormScale() throws {
        let model = try smallVGG()
        let s: Float = 0.25
        let bns = gammas(model)
        XCTAssertEqual(bns.count, 5)
        var rng = RandomGenerator(seed: 7)
        for (k, (_, g)) in bns.enumerated() {
            var v = (0..<g.value.count).map { _ in rng.nextNormal() }
            v[0] = 0; v[1] = -abs(v[1]); v[2] = abs(v[2]) + 0.1
            g.assign(Tensor(shape: g.value.shape, scalars: v))
            g.gradient = Tensor(shape: g.value.shape, scalars: (0..<v.count).map { Float($0 % 7) - 3 + Float(k) })
        }
        // Mask channel 3 of the first BatchNorm: it is zero and must stay without gradient.
        var mask = Tensor(shape: bns[0].1.value.shape, repeating: 1)
        mask.withUnsafeMutableBufferPointer { $0[3] = 0 }
        bns[0].1.mask = mask
        let others = model.namedParameters.filter { p in !bns.contains { $0.1 === p.parameter } }
        let othersBefore = others.map { $0.parameter.gradient.scalars }
        let before = bns.map { ($0.1.value.scalars, $0.1.gradient.scalars) }

        try slimming(["s=\(s)"]).regularize(model)

        for ((path, g), (value, grad)) in zip(bns, before) {
            let added = zip(g.gradient.scalars, grad).map { $0 - $1 }
            let expected = value.map { $0 > 0 ? s : ($0 < 0 ? -s : 0) }
            XCTAssertEqual(added, expected, path)
        }
        XCTAssertEqual(bns[0].1.value.scalars[3], 0)
        XCTAssertEqual(bns[0].1.gradient.scalars[3], before[0].1[3], "a masked γ gets no penalty")
        XCTAssertEqual(others.map { $0.parameter.gradient.scalars }, othersBefore, "only γ gradients change")
    }

    /// (3) Training with the penalty (s = 1e-2, 100× the paper's 1e-4 so that the effect is
    /// visible in 2 short epochs) ends with a smaller Σ|γ| than the same run without it, by
    /// what the penalty alone predicts: with SGD (momentum μ = 0.9) and no γ changing sign,
    /// the penalty moves each γ toward zero by s·Σ_t η_t·Σ_{i≤t} μ^(t−i) (η_t the step's
    /// learning rate); the loss's response to that small change is second order.
    func testSparsityTrainingShrinksTheScales() throws {
        let data = try mnist12(count: 128)
        var config = TrainingConfiguration()
        config.epochs = 2; config.batchSize = 16; config.seed = 3
        XCTAssertEqual(config.optimizer, .sgd(momentum: 0.9))
        let s: Float = 1e-2
        func sumAbsGamma(regularized: Bool) throws -> (Float, Float) {
            let model = try smallVGG(seed: 1)
            let criterion = try slimming(["s=\(s)"])
            let records = try model.fit(data, configuration: config, regularizer: regularized ? { criterion.regularize($0) } : nil)
            let total = gammas(model).reduce(Float(0)) { $0 + $1.1.value.scalars.reduce(0) { $0 + abs($1) } }
            return (total, records.last!.trainLoss)
        }
        let (plain, plainLoss) = try sumAbsGamma(regularized: false)
        let (slim, slimLoss) = try sumAbsGamma(regularized: true)
        let batches = 128 / 16
        var velocity: Float = 0, shrink: Float = 0
        for t in 0..<(config.epochs * batches) {
            velocity = 0.9 * velocity + s
            shrink += config.schedule.rate(atEpoch: Double(t) / Double(batches)) * velocity
        }
        let predicted = 320 * shrink
        print("slimming: Σ|γ| over 320 BatchNorm channels after 2 epochs: \(plain) without, \(slim) with s=\(s) "
              + "(difference \(plain - slim), predicted \(predicted); train loss \(plainLoss) / \(slimLoss))")
        XCTAssertLessThan(slim, plain)
        XCTAssertEqual(plain - slim, predicted, accuracy: 0.02 * predicted)
        XCTAssert(slimLoss.isFinite)
    }

    /// (4) Model.prune: one global threshold over |γ| (every pruned |γ| ≤ every kept |γ|,
    /// across layers), an exact count, the classifier whole, and the pruned channels'
    /// BatchNorm γ and β masked to zero — and kept at zero by regularised training.
    func testPruneUsesOneGlobalThreshold() throws {
        let model = try smallVGG()
        setDistinctScales(model)
        let absGamma = gammas(model).map { $0.1.value.scalars.map(abs) }
        let plan = try model.prune(with: try slimming(), toward: .sparsity(0.5), data: nil).plan

        XCTAssertEqual(plan.scope, .global)
        let bnLayers = plan.layers.filter { $0.path != "classifier" }
        XCTAssertEqual(bnLayers.count, 5)
        var pruned: [Float] = [], kept: [Float] = []
        for (layer, g) in zip(bnLayers, absGamma) {
            pruned += layer.prunedPositions.map { g[$0] }
            kept += layer.keptPositions.map { g[$0] }
        }
        XCTAssertEqual(pruned.count + kept.count, 320)
        XCTAssertEqual(pruned.count, 160, "exact count: half of the 320 BatchNorm channels")
        XCTAssertLessThanOrEqual(pruned.max()!, kept.min()!, "one threshold across layers")
        let perLayer = bnLayers.map { Double($0.units - $0.keptCount) / Double($0.units) }
        XCTAssertGreaterThan(perLayer.max()! - perLayer.min()!, 0.1, "global, not the same fraction per layer: \(perLayer)")
        XCTAssertEqual(plan.layers.last!.path, "classifier")
        XCTAssertEqual(plan.layers.last!.keptCount, 10, "the classifier is kept whole")

        // The pruned channels' BatchNorm scale and shift are masked to zero.
        for (layer, (path, g)) in zip(bnLayers, gammas(model)) {
            let beta = model.nodes[model.nodeIndex(named: path)!].layer.parameter(named: "bias")!
            for j in layer.prunedPositions {
                XCTAssertEqual(g.value.scalars[j], 0, "\(path) γ[\(j)]"); XCTAssertEqual(beta.value.scalars[j], 0)
            }
        }
        for (k, (layer, (_, g))) in zip(bnLayers, gammas(model)).enumerated() {
            XCTAssertEqual(layer.keptPositions.map { abs(g.value.scalars[$0]) }, layer.keptPositions.map { absGamma[k][$0] })
        }

        // Regularised training keeps them at zero.
        var config = TrainingConfiguration()
        config.epochs = 1; config.batchSize = 32
        let criterion = try slimming(["s=1e-2"])
        try model.fit(try mnist12(count: 64), configuration: config, regularizer: { criterion.regularize($0) })
        for (layer, (path, g)) in zip(bnLayers, gammas(model)) {
            XCTAssertEqual(layer.prunedPositions.map { g.value.scalars[$0] }, [Float](repeating: 0, count: layer.units - layer.keptCount), path)
        }
    }

    /// The documented consequence of un-scaled layers in a layer-by-layer selection: with the
    /// classifier in scope its 10 channels count in the total but score the largest finite
    /// float, so all the pruned channels come from BatchNorm layers. (Pruning along
    /// dependency groups never prunes the classifier's outputs, the model's own.)
    func testUnscaledLayersInScopeAreTakenLast() throws {
        let model = try smallVGG()
        setDistinctScales(model)
        let criterion = try slimming()
        let plan = try selectPruning(try model.score(with: criterion, data: nil), granularity: .channel,
                                     settings: SelectionSettings(scope: criterion.preferredScope, sparsity: 0.5, keepClassifier: false),
                                     criterion: criterion.id)
        let total = 320 + 10
        let expectedPruned = total - Int((Double(total) * 0.5).rounded())
        XCTAssertEqual(plan.layers.last!.keptCount, 10)
        XCTAssertEqual(plan.layers.reduce(0) { $0 + $1.units - $1.keptCount }, expectedPruned)
    }
}
