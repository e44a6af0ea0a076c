import Foundation

/// What to prune toward: a sparsity, a compression ratio or a theoretical speed-up.
///
/// - `sparsity(s)`: the fraction of the in-scope weights (weight criteria) or of the
///   in-scope group channels (channel criteria) to prune, in [0, 1).
/// - `compression(r)`: prunable weights before / after, r ≥ 1 — the weights of every
///   convolution and linear layer (no biases, no BatchNorm), as ``Model/compression``
///   counts them. For channel criteria "after" counts the weights left once the pruned
///   channels are removed (their filters and the next layers' input channels).
/// - `speedup(s)`: multiply–accumulates of one example before / after, s ≥ 1 (the
///   theoretical speed-up ShrinkBench reports). Weight criteria count the MACs of
///   non-zero weights only; channel criteria the MACs of the narrower model.
///
/// "Before" is the model as it is (its dense architecture).
public enum PruningTarget: Sendable, Equatable, CustomStringConvertible {
    case sparsity(Double)
    case compression(Double)
    case speedup(Double)

    /// The requested figure.
    public var value: Double {
        switch self { case let .sparsity(v), let .compression(v), let .speedup(v): return v }
    }

    public var description: String {
        switch self {
        case let .sparsity(s): return String(format: "sparsity %.4g", s)
        case let .compression(r): return String(format: "compression %.4g×", r)
        case let .speedup(s): return String(format: "speed-up %.4g×", s)
        }
    }

    /// The target's figure, formatted as its axis reads (`0.5`, `4.00×`).
    func format(_ v: Double) -> String {
        if case .sparsity = self { return String(format: "%.4f", v) }
        return v.isInfinite ? "∞×" : String(format: "%.3f×", v)
    }

    /// Throws unless the value is meaningful for the axis.
    func validate() throws {
        switch self {
        case let .sparsity(s):
            guard s.isFinite, s >= 0, s < 1 else {
                throw PruneKitError(.invalidArgument, "sparsity \(s) is outside [0, 1)", hint: "give the fraction to prune, such as 0.5")
            }
        case let .compression(r):
            guard r.isFinite, r >= 1 else {
                throw PruneKitError(.invalidArgument, "compression \(r) is below 1", hint: "give a ratio of weights before / after, such as 4 (a quarter of the weights left)")
            }
        case let .speedup(s):
            guard s.isFinite, s >= 1 else {
                throw PruneKitError(.invalidArgument, "speed-up \(s) is below 1", hint: "give a ratio of MACs before / after, such as 2")
            }
        }
    }
}

/// Settings of ``Model/prune(with:toward:settings:data:calibration:)``.
public struct TargetedPruningSettings: Sendable, Equatable {
    /// Global or per-layer selection; `nil`: the criterion's ``Criterion/preferredScope``.
    public var scope: SelectionSettings.Scope?
    /// Dotted paths of layers never pruned (for channel criteria: their whole group).
    public var excluded: Set<String>
    /// Keep the last prunable layer whole, as ShrinkBench does.
    public var keepClassifier: Bool
    /// Channels every group keeps at least (channel criteria).
    public var minimumChannels: Int
    /// Kept channel counts rounded up to a multiple of this (channel criteria; see
    /// ``SelectionSettings/channelMultiple``). A speed-up or compression target is still
    /// met: the search prunes further elsewhere to make up for the rounding.
    public var channelMultiple = 1
    /// How channels tied by residual additions are pruned (channel criteria).
    public var policy: ResidualPolicy
    /// How a channel group's score is made from its layers' scores (channel criteria).
    public var reduction: GroupScoreReduction
    /// An N:M pattern (weight criteria): every layer in scope keeps the N best-scored
    /// weights of each group of M input channels (``SelectionSettings/pattern``). The
    /// pattern alone fixes the masks, so the only target it takes is its own,
    /// `.sparsity(pattern.sparsity)` (1 − N/M); any other is an error. Layers it can't
    /// cover stay dense (noted), so the sparsity achieved over the whole scope may be lower.
    public var pattern: NMPattern? = nil

    public init(scope: SelectionSettings.Scope? = nil, excluded: Set<String> = [], keepClassifier: Bool = true,
                minimumChannels: Int = 1, policy: ResidualPolicy = .withinBlocks, reduction: GroupScoreReduction = .mean) {
        self.scope = scope; self.excluded = excluded; self.keepClassifier = keepClassifier
        self.minimumChannels = minimumChannels; self.policy = policy; self.reduction = reduction
    }

    /// The selection settings these imply (scope `.global` where none is given; sparsity 0).
    var selection: SelectionSettings {
        var s = SelectionSettings(scope: scope ?? .global, sparsity: 0, excluded: excluded, keepClassifier: keepClassifier,
                                  minimumChannels: minimumChannels)
        s.channelMultiple = channelMultiple
        return s
    }
}

/// The outcome of pruning toward a ``PruningTarget``.
public struct TargetedPruning {
    /// The plan that was applied (channel plans follow the dependency groups).
    public var plan: PruningPlan
    /// What was asked.
    public var target: PruningTarget
    /// The selection sparsity used: of the in-scope weights, or of the in-scope group channels.
    public var sparsity: Double
    /// The figure reached on the target's axis, measured on the masked model (for channel
    /// criteria: as the model will be once ``Model/removingPrunedChannels(policy:minimumChannels:)`` removes them).
    public var achieved: Double
    /// Where the result differs from the request (clipped ratios, layers kept whole).
    public var notes: [String]

    public init(plan: PruningPlan, target: PruningTarget, sparsity: Double, achieved: Double, notes: [String]) {
        self.plan = plan; self.target = target; self.sparsity = sparsity; self.achieved = achieved; self.notes = notes
    }

    /// One line: the target, the sparsity used and the figure achieved.
    public var summary: String {
        "\(target): sparsity \(String(format: "%.4f", sparsity)), achieved \(target.format(achieved))"
    }
}

extension Model {
    /// Scores once, then prunes just enough to reach `target`, and masks the model.
    ///
    /// - Weight criteria: a sparsity is used as is; a compression r as the in-scope
    ///   sparsity that gives r over every prunable weight (closed form);
    ///   a speed-up by bisection of the sparsity (each step one streaming selection)
    ///   until the MACs of the non-zero weights fall far enough.
    /// - Channel criteria: the channels are selected along the dependency groups
    ///   (``selectGroupPruning(_:dependencies:settings:reduction:criterion:)``); a
    ///   compression or speed-up by bisection of the channel fraction, counting the
    ///   weights or MACs of the narrower model. Then ``Criterion/adjustWeights(of:keeping:model:state:context:)``
    ///   runs for every pruned layer, and the plan is applied with
    ///   ``PruningPlan/apply(to:dependencies:)``, ready for surgery.
    ///
    /// The bisection finds the smallest pruning that reaches the target (to one weight or
    /// channel in 10⁶ of the fraction); pruning is monotone in it.
    ///
    /// With an N:M ``TargetedPruningSettings/pattern`` the pattern alone chooses the masks
    /// (one selection, no bisection): the target must be `.sparsity(1 − N/M)` and the
    /// criterion a weight criterion.
    /// - Returns: the plan, the sparsity used and the figure achieved.
    /// - Throws: ``PruneKitError`` for a target outside its axis' range, one that can't
    ///   be reached (naming the closest reachable figure), and what scoring and selection throw.
    /// Cost: one scoring pass; then about 25 selections for a bisection (channel
    /// selections are over a few thousand group scores; weight selections stream over the weights).
    @discardableResult
    public func prune(with criterion: any Criterion, toward target: PruningTarget,
                      settings: TargetedPruningSettings = TargetedPruningSettings(), data: Dataset?,
                      calibration: CalibrationSettings = CalibrationSettings()) throws -> TargetedPruning {
        try target.validate()
        var selection = settings.selection
        selection.scope = settings.scope ?? criterion.preferredScope
        if let pattern = settings.pattern {
            try pattern.check(target, criterion: criterion)
            selection.pattern = pattern
        }
        if criterion.granularity == .weight {
            let sources = try scoreSources(with: criterion, data: data, settings: calibration)
            let counter = WeightCounter(self)
            let inScope = Set(sources.filter { selection.isInScope($0.path, isClassifier: $0.isClassifier) }.map(\.path))
            func planAt(_ s: Double) throws -> PruningPlan {
                selection.sparsity = s
                return try selectPruning(sources, granularity: .weight, settings: selection, criterion: criterion.id)
            }
            func figure(_ plan: PruningPlan) -> Double { counter.figure(target, plan: plan, inScope: inScope) }
            // A compression r is a sparsity of the in-scope weights, in closed form.
            var direct = target
            if case let .compression(r) = target { direct = .sparsity(try weightSparsity(forCompression: r, settings: settings)) }
            let (s, plan) = try reach(direct, criterion: criterion.id, units: sources.reduce(0) { $0 + $1.count },
                                      plan: planAt, figure: figure)
            try plan.apply(to: self)
            return TargetedPruning(plan: plan, target: target, sparsity: s,
                                   achieved: counter.measured(target, model: self, inScope: inScope), notes: plan.notes)
        }
        let deps = try channelDependencies(policy: settings.policy)
        let scores = try score(with: criterion, data: data, settings: calibration)
        let selector = try GroupSelector(scores: scores, dependencies: deps, settings: selection,
                                         reduction: settings.reduction, criterion: criterion.id)
        let counter = StructureCounter(self, deps)
        let inScope = Set(selector.groups)
        func figure(_ groupPlan: PruningPlan) -> Double {
            counter.figure(target, kept: selector.keptCounts(groupPlan), inScope: inScope)
        }
        let channels = selector.groups.reduce(0) { $0 + deps.groups[$1].channels }
        let (s, groupPlan) = try reach(target, criterion: criterion.id, units: channels,
                                       plan: selector.groupPlan(sparsity:), figure: figure)
        let plan = selector.plan(from: groupPlan, sparsity: s)
        for (layerPlan, layerScores) in zip(plan.layers, scores) where layerPlan.keptCount < layerPlan.units {
            try layerScores.adjustWeights(with: criterion, keeping: layerPlan.keptPositions, model: self, seed: calibration.seed)
        }
        try plan.apply(to: self, dependencies: deps)
        return TargetedPruning(plan: plan, target: target, sparsity: s,
                               achieved: counter.figure(target, kept: keptChannels(deps), inScope: inScope), notes: plan.notes)
    }

    /// Prunes toward `target` along a schedule with a finetuning strategy: the whole
    /// prune–finetune loop for one criterion, each step pruning as
    /// ``prune(with:toward:settings:data:calibration:)`` does (channel criteria along
    /// dependency groups).
    ///
    /// - A schedule whose only step is the target itself (one-shot): one
    ///   ``prune(with:toward:settings:data:calibration:)`` toward `target` (one scoring
    ///   pass, whatever the target's axis), then `strategy` as step 0 of 1.
    /// - Any other schedule without ``Schedule/trainingSteps`` (iterative): a compression
    ///   or speed-up is first turned into the sparsity that reaches it on the model as given
    ///   (``sparsity(toward:with:settings:data:calibration:)``, one scoring pass, no masks);
    ///   for each sparsity sᵢ of ``Schedule/sparsities(toward:)`` the model is pruned to sᵢ
    ///   (re-scored), then `strategy` runs for step i.
    /// - A schedule with ``Schedule/trainingSteps`` (AGP): one training run with
    ///   `context.training` on `context.train`, pruning to sᵢ once `trainingSteps[i]` batches
    ///   are done (step 0: before the first batch); then `strategy` once, as step 0 of 1.
    ///   The run must be long enough: at least the last training step's batches.
    ///
    /// With an N:M ``TargetedPruningSettings/pattern`` the schedule must prune in one step
    /// (one-shot): the pattern fixes every step's sparsity. `context.epochEnded` hears every
    /// epoch trained, the pruning run's and the strategy's.
    /// - Returns: every step's outcome; the last one's ``TargetedPruning/achieved`` is
    ///   measured on the target's axis once finetuning is done.
    /// - Throws: what pruning, training or the strategy throws; `.invalidArgument`, before any
    ///   pruning, for a pattern with a schedule of several steps, or a training-time
    ///   schedule whose run is too short. A pruning step that fails during training stops
    ///   further pruning and is thrown once that run ends (training can't be interrupted
    ///   from its per-batch hook).
    @discardableResult
    public func prune(with criterion: any Criterion, schedule: any Schedule, finetune strategy: any FinetuneStrategy,
                      toward target: PruningTarget, context: FinetuneContext,
                      settings: TargetedPruningSettings = TargetedPruningSettings(), data: Dataset?,
                      calibration: CalibrationSettings = CalibrationSettings()) throws -> [TargetedPruning] {
        try target.validate()
        try settings.pattern?.check(schedule)
        var outcomes: [TargetedPruning] = []
        if schedule.isSingleStep {
            outcomes = [try prune(with: criterion, toward: target, settings: settings, data: data, calibration: calibration)]
            try strategy.finetune(self, step: 0, of: 1, context: context)
        } else {
            var final = try sparsity(toward: target, with: criterion, settings: settings, data: data, calibration: calibration)
            final = min(final, 1 - 1e-9)
            try runSchedule(schedule, strategy, target: final, context: context) { s in
                outcomes.append(try self.prune(with: criterion, toward: .sparsity(s), settings: settings, data: data, calibration: calibration))
            }
        }
        if var last = outcomes.popLast() {
            last.target = target
            last.achieved = try measured(target, criterion: criterion, settings: settings, calibration: calibration)
            outcomes.append(last)
        }
        return outcomes
    }

    /// The sparsity that reaches `target` on this model as it is, found without changing it:
    /// a sparsity as given; a weight criterion's compression in closed form
    /// (``weightSparsity(forCompression:settings:)``); otherwise
    /// ``prune(with:toward:settings:data:calibration:)`` on a copy (one scoring pass, then a
    /// bisection).
    /// - Throws: ``PruneKitError`` for a target outside its axis' range or one that can't be
    ///   reached (naming the closest reachable figure), and what scoring throws.
    public func sparsity(toward target: PruningTarget, with criterion: any Criterion,
                         settings: TargetedPruningSettings = TargetedPruningSettings(), data: Dataset?,
                         calibration: CalibrationSettings = CalibrationSettings()) throws -> Double {
        try target.validate()
        if let pattern = settings.pattern { try pattern.check(target, criterion: criterion) }
        switch target {
        case let .sparsity(s): return s
        case let .compression(r) where criterion.granularity == .weight:
            return try weightSparsity(forCompression: r, settings: settings)
        default:
            return try clone().prune(with: criterion, toward: target, settings: settings, data: data, calibration: calibration).sparsity
        }
    }

    /// The in-scope sparsity that makes compression `r` over every prunable weight (what
    /// ``Model/compression`` and ``PruningTarget/compression(_:)`` count): with the
    /// classifier kept whole or layers excluded, `total · (1 − 1/r) / inScope`, more than
    /// the 1 − 1/r of ``SelectionSettings/sparsity(forCompression:)``.
    /// - Throws: `.invalidArgument` when even pruning every in-scope weight can't reach `r`,
    ///   naming the most that can be reached.
    public func weightSparsity(forCompression r: Double, settings: TargetedPruningSettings) throws -> Double {
        let layers = prunableLayers()
        let total = layers.reduce(0) { $0 + $1.weights.count }
        let inScope = layers.filter { settings.selection.isInScope($0.path, isClassifier: $0.isClassifier) }
            .reduce(0) { $0 + $1.weights.count }
        let s = Double(total) * (1 - 1 / r) / Double(max(inScope, 1))
        guard s < 1 else {
            let most = Double(total) / Double(max(total - inScope, 1))
            throw PruneKitError(.invalidArgument, String(format: "compression %.4g× can't be reached: pruning every weight in scope gives at most %.3f× (the classifier and excluded layers stay whole)", r, most),
                                hint: "ask for a smaller compression, or let more layers be pruned: the classifier too (`prunekit prune --prune-classifier`; keepClassifier = false in the SDK), or fewer excluded layers")
        }
        return s
    }

    /// The figure on the target's axis for this (masked) model.
    func measured(_ target: PruningTarget, criterion: any Criterion, settings: TargetedPruningSettings,
                  calibration: CalibrationSettings) throws -> Double {
        if criterion.granularity == .weight {
            let layers = prunableLayers()
            let inScope = Set(layers.filter { settings.selection.isInScope($0.path, isClassifier: $0.isClassifier) }.map(\.path))
            return WeightCounter(self).measured(target, model: self, inScope: inScope)
        }
        let deps = try channelDependencies(policy: settings.policy)
        let classifier = prunableLayers().last?.path
        let inScope = Set(deps.groups.filter { g in
            g.isPrunable && !g.scoredLayers.isEmpty && !g.scoredLayers.contains(where: settings.excluded.contains)
                && !(settings.keepClassifier && classifier.map(g.scoredLayers.contains) == true)
        }.map(\.index))
        return StructureCounter(self, deps).figure(target, kept: keptChannels(deps), inScope: inScope)
    }

    /// Per dependency group, the channels left once the masked ones are removed (`nil`:
    /// none is removable).
    func keptChannels(_ deps: ChannelDependencies) -> [Int?] {
        let removable = removableChannels(deps).0
        return deps.groups.map { g in removable[g.index].isEmpty ? nil : g.channels - removable[g.index].count }
    }
}

/// The smallest sparsity whose plan reaches the target (one plan for a sparsity target
/// or a weight compression), by bisection; throws naming the closest reachable figure.
private func reach(_ target: PruningTarget, criterion: String, units: Int, plan: (Double) throws -> PruningPlan,
                   figure: (PruningPlan) -> Double) throws -> (Double, PruningPlan) {
    switch target {
    case let .sparsity(s): return (s, try plan(s))
    case .compression, .speedup:
        let wanted = target.value
        let zero = try plan(0)
        if figure(zero) >= wanted { return (0, zero) }
        // Everything in scope pruned (down to the channel minimum).
        var hi = 1 - 0.25 / Double(max(units, 1))
        let most = try plan(hi)
        let best = figure(most)
        guard best >= wanted else {
            throw PruneKitError(.invalidArgument, "\(target) can't be reached with '\(criterion)': pruning everything it may prune gives \(target.format(best))",
                                hint: "ask for at most \(target.format(best)), or let more layers be pruned (fewer exclusions, the classifier, a lower channel minimum, the whole-stream policy)")
        }
        var lo = 0.0, hiPlan = most
        while hi - lo > 1e-6 {
            let mid = (lo + hi) / 2
            let p = try plan(mid)
            if figure(p) >= wanted { hi = mid; hiPlan = p } else { lo = mid }
        }
        return (hi, hiPlan)
    }
}

/// Counts for weight plans: non-zero prunable weights and their MACs.
private struct WeightCounter {
    var paths: [String] = []
    var weights: [Int] = []
    /// MACs per weight for one example: Ho·Wo for a convolution, 1 for a linear layer.
    var macsPerWeight: [Int] = []
    /// 1 where the current mask keeps a weight (all ones without a mask).
    var maskWords: [[UInt64]?] = []

    init(_ model: Model) {
        for i in model.prunableNodeIndices {
            let w = model.nodes[i].layer.parameter(named: "weight")!
            paths.append(model.nodes[i].name)
            weights.append(w.value.count)
            macsPerWeight.append(model.nodes[i].layer.macs(inputShapes: model.inputShapes(ofNode: i)) / max(w.value.count, 1))
            maskWords.append(w.mask.map { m in
                var words = [UInt64](repeating: 0, count: (m.count + 63) / 64)
                m.withUnsafeBufferPointer { mp in for j in 0..<mp.count where mp[j] != 0 { words[j >> 6] |= 1 << UInt64(j & 63) } }
                return words
            })
        }
    }

    /// Kept weights of each layer under a plan and the current masks.
    func kept(_ plan: PruningPlan) -> [Int] {
        let byPath = Dictionary(plan.layers.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        return paths.indices.map { k in
            guard let l = byPath[paths[k]] else { return weights[k] }
            guard let m = maskWords[k] else { return l.keptCount }
            return zip(l.keepWords, m).reduce(0) { $0 + ($1.0 & $1.1).nonzeroBitCount }
        }
    }

    func figure(_ target: PruningTarget, kept: [Int], inScope: Set<String>) -> Double {
        switch target {
        case .sparsity:
            let ks = paths.indices.filter { inScope.contains(paths[$0]) }
            let total = ks.reduce(0) { $0 + weights[$1] }
            return total == 0 ? 0 : Double(total - ks.reduce(0) { $0 + kept[$1] }) / Double(total)
        case .compression:
            return ratio(weights.reduce(0, +), kept.reduce(0, +))
        case .speedup:
            return ratio(zip(weights, macsPerWeight).reduce(0) { $0 + $1.0 * $1.1 },
                         zip(kept, macsPerWeight).reduce(0) { $0 + $1.0 * $1.1 })
        }
    }

    func figure(_ target: PruningTarget, plan: PruningPlan, inScope: Set<String>) -> Double {
        figure(target, kept: kept(plan), inScope: inScope)
    }

    /// The figure from the model's masks alone.
    func measured(_ target: PruningTarget, model: Model, inScope: Set<String>) -> Double {
        let current = WeightCounter(model)
        let kept = current.paths.indices.map { k in current.maskWords[k].map { $0.reduce(0) { $0 + $1.nonzeroBitCount } } ?? current.weights[k] }
        return figure(target, kept: kept, inScope: inScope)
    }
}

/// before / after, infinite when nothing is left.
private func ratio(_ before: Int, _ after: Int) -> Double {
    after == 0 ? .infinity : Double(before) / Double(after)
}

/// Counts for channel plans: the weights and MACs of the model once the pruned channels
/// are removed, from the kept channel count of each group.
private struct StructureCounter {
    struct Entry {
        /// The node's output and input tensors (``ChannelDependencies/layout(ofTensor:)``).
        var outTensor: Int, inTensor: Int
        var out: Int, inChannels: Int, inBlock: Int
        var depthwise: Bool
        /// Convolution groups (1 for linear layers). A grouped convolution keeps the same
        /// number of channels in each of its groups (``ChannelGroup/blocks``), so its
        /// weights are exactly `out′ · (in′ / groups) · kh · kw` and its MACs that times Ho·Wo.
        var groups: Int
        /// Weights per (output, input-channel-feature) pair: kh·kw (1 for linear).
        var perPair: Int
        /// MACs per weight for one example.
        var macsPerWeight: Int
    }
    var entries: [Entry] = []
    var groupChannels: [Int]
    let deps: ChannelDependencies

    init(_ model: Model, _ deps: ChannelDependencies) {
        self.deps = deps
        groupChannels = deps.groups.map(\.channels)
        for i in model.prunableNodeIndices {
            let node = model.nodes[i], w = node.layer.parameter(named: "weight")!.value
            let inTensor = node.inputs[0]
            let conv = node.layer as? Conv2d
            let depthwise = conv.map { $0.groups > 1 && $0.groups == $0.inChannels && $0.outChannels == $0.inChannels } ?? false
            let perPair = w.count / max(w.shape[0] * w.shape[1], 1)
            let macs = node.layer.macs(inputShapes: model.inputShapes(ofNode: i))
            entries.append(Entry(outTensor: i, inTensor: inTensor, out: w.shape[0],
                                 inChannels: deps.keptCount(ofTensor: inTensor, Array(repeating: nil, count: deps.groups.count)),
                                 inBlock: deps.block(ofTensor: inTensor), depthwise: depthwise, groups: conv?.groups ?? 1,
                                 perPair: perPair, macsPerWeight: macs / max(w.count, 1)))
        }
    }

    /// Weights and MACs with `kept[g]` channels in group g (`nil`: all).
    func counts(_ kept: [Int?]) -> (weights: Int, macs: Int) {
        var weights = 0, macs = 0
        for e in entries {
            let out = deps.keptCount(ofTensor: e.outTensor, kept)
            let inputs = deps.keptCount(ofTensor: e.inTensor, kept)
            let w = e.depthwise ? out * e.perPair : out * (inputs / max(e.groups, 1)) * e.inBlock * e.perPair
            weights += w; macs += w * e.macsPerWeight
        }
        return (weights, macs)
    }

    func figure(_ target: PruningTarget, kept: [Int?], inScope: Set<Int>) -> Double {
        switch target {
        case .sparsity:
            let total = inScope.reduce(0) { $0 + groupChannels[$1] }
            let left = inScope.reduce(0) { $0 + (kept[$1] ?? groupChannels[$1]) }
            return total == 0 ? 0 : Double(total - left) / Double(total)
        case .compression:
            return ratio(counts(Array(repeating: nil, count: kept.count)).weights, counts(kept).weights)
        case .speedup:
            return ratio(counts(Array(repeating: nil, count: kept.count)).macs, counts(kept).macs)
        }
    }
}

extension NMPattern {
    /// Throws unless `schedule` prunes in one step: the pattern can't be reached
    /// gradually, it fixes the sparsity of every step at 1 − N/M.
    public func check(_ schedule: any Schedule) throws {
        let steps = schedule.sparsities(toward: sparsity)
        guard steps.count == 1 else {
            throw PruneKitError(.invalidArgument, "schedule '\(schedule.id)' prunes in \(steps.count) steps, but the N:M pattern \(self) fixes the sparsity of every step at \(sparsity)",
                                hint: "use the one-shot schedule with an N:M pattern")
        }
    }

    /// Throws unless the pattern can prune toward `target` with `criterion`: a weight
    /// criterion, and the pattern's own sparsity 1 − N/M as the target.
    func check(_ target: PruningTarget, criterion: any Criterion) throws {
        guard criterion.granularity == .weight else {
            throw PruneKitError(.invalidArgument, "the N:M pattern \(self) selects single weights, but '\(criterion.id)' is a \(criterion.granularity.rawValue) criterion",
                                hint: "use a weight criterion (global-magnitude, layer-magnitude, …) with an N:M pattern")
        }
        guard case let .sparsity(s) = target, abs(s - sparsity) < 1e-9 else {
            throw PruneKitError(.invalidArgument, "the N:M pattern \(self) fixes the sparsity of the layers it covers at \(sparsity); it can't prune toward \(target)",
                                hint: "ask for sparsity \(sparsity) (1 − N/M) with the pattern, or prune without a pattern to reach \(target)")
        }
    }
}
