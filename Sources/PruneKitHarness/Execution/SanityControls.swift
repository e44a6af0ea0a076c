import Foundation
import PruneKit

// The pieces a trial swaps in for pruning at initialisation (``PruningTime``) and for the
// sanity checks of a weight criterion (``SanityCheck``; Frankle, Dziugaite, Roy & Carbin,
// "Pruning Neural Networks at Initialization: Why are We Missing the Mark?", ICLR 2021).
// They are transformations of the criterion's scores and of the training after pruning,
// made inside the harness: the SDK's pruning pipeline (schedules, selection, masks) runs
// unchanged, so a control is pruned and trained exactly as its criterion is.

/// The transformations behind the sanity checks, as pure functions (tested on their own).
enum SanityControls {
    /// Layer-shuffle: the scores of the layer's unpruned positions permuted uniformly at
    /// random among those positions (Fisher–Yates with `rng`); pruned positions keep theirs.
    ///
    /// Why this keeps each layer's sparsity exactly: every layer keeps the same multiset of
    /// scores, so a global threshold (or a per-layer count) selects the same number of
    /// weights in each layer as it does for the criterion — at positions drawn uniformly at
    /// random. (Exact up to scores tied at the threshold.) Positions pruned by an earlier
    /// step of a schedule stay where they are, so the control never revives them.
    /// - Parameters:
    ///   - scores: the criterion's scores of one layer, `[outputs · fanIn]`.
    ///   - pruned: whether each position is already masked (empty: none is).
    /// Cost: O(n).
    static func layerShuffled(_ scores: [Float], pruned: [Bool], rng: inout RandomGenerator) -> [Float] {
        let free = pruned.isEmpty ? Array(scores.indices) : scores.indices.filter { !pruned[$0] }
        var values = free.map { scores[$0] }
        if values.count > 1 {
            for i in stride(from: values.count - 1, to: 0, by: -1) {
                values.swapAt(i, rng.nextInt(below: i + 1))
            }
        }
        var out = scores
        for (p, v) in zip(free, values) { out[p] = v }
        return out
    }

    /// Invert: the negated scores, so the highest-scoring weights are pruned first; an
    /// already pruned position gets the lowest finite score, so it stays pruned (and counts
    /// toward the sparsity, as it does for the criterion).
    static func inverted(_ scores: [Float], pruned: [Bool]) -> [Float] {
        scores.indices.map { i in !pruned.isEmpty && pruned[i] ? -Float.greatestFiniteMagnitude : -scores[i] }
    }

    /// Whether each weight of the layer at `path` is masked in `model` (empty: no mask).
    static func prunedPositions(of path: String, in model: Model) -> [Bool] {
        guard let i = model.nodeIndex(named: path), let mask = model.nodes[i].layer.parameter(named: "weight")?.mask else { return [] }
        return mask.withUnsafeBufferPointer { $0.map { $0 == 0 } }
    }

    /// The generator of a layer's shuffle: the trial's seed, the layer's path, and how many
    /// of its weights are already pruned (a later step of a schedule draws anew).
    static func shuffleGenerator(seed: UInt64, path: String, prunedCount: Int) -> RandomGenerator {
        RandomGenerator(seed: seed, stream: "sanity/layer-shuffle/\(path)/\(prunedCount)")
    }

    /// Reinit: every parameter and state tensor of `model` takes the value of a fresh
    /// initialisation of the same architecture, from a seed stream of its own (derived from
    /// `seed`, never equal to the baseline's initialisation); the masks stay, so pruned
    /// weights stay zero.
    static func reinitialize(_ model: Model, seed: UInt64) throws {
        var rng = RandomGenerator(seed: seed, stream: "sanity/reinit")
        let fresh = try model.freshlyInitialized(seed: rng.next())
        try model.restoreWeights(fresh.weightSnapshot())
    }
}

/// A weight criterion seen through a sanity check (``SanityCheck/layerShuffle`` or
/// ``SanityCheck/invert``): the inner criterion's evidence and scores, transformed by
/// ``SanityControls``. It reads the masks of the model being pruned, so that steps after
/// the first keep what earlier steps pruned.
extension SanityControls {
    /// `inner` with its scores inverted or shuffled within each layer, as `check` says.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a channel criterion or the reinit
    ///   check (which changes the weights after pruning, not the scores).
    static func controlCriterion(_ inner: any Criterion, check: SanityCheck, model: Model, seed: UInt64) throws -> any Criterion {
        guard inner.granularity == .weight else {
            throw PruneKitError(.invalidArgument, "the sanity check \(check.rawValue) is defined for weight criteria; '\(inner.id)' ranks channels",
                                hint: "compare a channel criterion with 'random granularity=channel' instead")
        }
        guard check != .reinit else {
            throw PruneKitError(.invalidArgument, "the reinit check keeps the criterion's scores; it changes the weights after pruning")
        }
        func wrap<C: Criterion>(_ c: C) -> any Criterion { SanityControlCriterion(inner: c, check: check, model: model, seed: seed) }
        return wrap(inner)
    }
}

struct SanityControlCriterion<Inner: Criterion>: Criterion {
    typealias State = Inner.State

    let inner: Inner
    let check: SanityCheck
    /// The model being pruned (its masks say what earlier steps pruned).
    let model: Model
    let seed: UInt64

    init(inner: Inner, check: SanityCheck, model: Model, seed: UInt64) {
        self.inner = inner; self.check = check; self.model = model; self.seed = seed
    }

    var id: String { inner.id }
    var granularity: Granularity { inner.granularity }
    var evidence: Evidence { inner.evidence }
    var preferredScope: SelectionSettings.Scope { inner.preferredScope }

    func makeState(for layer: PrunableLayer) throws -> State { try inner.makeState(for: layer) }

    func gather(_ session: CalibrationSession, into states: inout [State]) throws {
        try inner.gather(session, into: &states)
    }

    func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {
        try inner.observe(batch, layer: layer, state: &state)
    }

    func regularize(_ model: Model) { inner.regularize(model) }
    var regularizes: Bool { inner.regularizes }

    func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        let scores = try inner.scores(for: layer, state: state, context: context)
        var pruned = SanityControls.prunedPositions(of: layer.path, in: model)
        if pruned.count != scores.count { pruned = [] }
        switch check {
        case .invert:
            return SanityControls.inverted(scores, pruned: pruned)
        case .layerShuffle, .reinit:
            var rng = SanityControls.shuffleGenerator(seed: seed, path: layer.path, prunedCount: pruned.filter { $0 }.count)
            return SanityControls.layerShuffled(scores, pruned: pruned, rng: &rng)
        }
    }
}

/// The reinit check's training: before the training that follows the last pruning step,
/// the surviving weights are re-initialised (``SanityControls/reinitialize(_:seed:)``),
/// then `inner` trains as it would have.
struct ReinitializingStrategy: FinetuneStrategy {
    let inner: any FinetuneStrategy
    let seed: UInt64
    init(_ inner: any FinetuneStrategy, seed: UInt64) { self.inner = inner; self.seed = seed }

    var id: String { inner.id }
    var checkpointEpochs: Set<Int> { inner.checkpointEpochs }

    func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        if step == stepCount - 1 { try SanityControls.reinitialize(model, seed: seed) }
        try inner.finetune(model, step: step, of: stepCount, context: context)
    }
}

/// What an init trial trains with after pruning (``PruningTime/initialization``): the
/// baseline's whole recipe (`context.training`, the baseline's
/// ``BaselineConfiguration/trainingConfiguration``), from epoch 0, the masks kept, the last
/// epoch kept (as the baseline's own training does).
struct BaselineRecipeTraining: FinetuneStrategy {
    let id = "baseline-recipe"

    func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        var c = context.training
        c.startEpoch = 0
        _ = try model.fit(context.train, validation: context.validation, configuration: c, epochEnded: { context.epochEnded?($0) })
    }
}
