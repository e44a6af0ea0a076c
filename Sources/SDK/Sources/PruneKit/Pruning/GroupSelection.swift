import Foundation

/// Chooses channels to prune along dependency groups, so that a group's channels go
/// together from every layer they tie (see ``Model/channelDependencies(policy:)``).
///
/// Each prunable group's score is the reduction of its scored layers' scores (the mean by
/// default); selection then works on groups exactly as
/// ``selectPruning(_:granularity:settings:criterion:)`` works on layers (exact counts,
/// `settings.scope`, ties by group order then channel, at least
/// `settings.minimumChannels` kept per group). Every scored layer of a group gets the
/// group's kept channels; layers in groups kept whole (the policy, the model's output, an
/// excluded or classifier layer in the group) keep every channel, and the notes say why.
///
/// A group pruned across equal blocks (``ChannelGroup/blocks`` > 1: it is read or written
/// by a grouped convolution) keeps the same number of channels in every block: if the
/// selection above keeps `k` of its channels (after the minimum and the multiple), every
/// block keeps `⌈k / blocks⌉`, raised until the group's total is a multiple of
/// `settings.channelMultiple` (the rounding applies to the total width, which is what the
/// next layers read, not to each block), at most the whole block — its best-scored
/// channels by group score, ties to the lower channel. The group may so keep a few more
/// channels than its share; a speed-up or compression target makes up for it elsewhere.
///
/// - Parameters:
///   - scores: channel scores of every prunable layer, as ``Model/score(with:data:settings:)`` gives them.
///   - dependencies: the model's groups.
/// - Returns: a channel plan with one entry per prunable layer, in model order.
/// - Throws: ``PruneKitError`` for a sparsity outside [0, 1), an excluded path that names
///   no prunable layer, or no group left to prune.
/// Cost: one pass over the scores and a radix selection over the groups' channels.
public func selectGroupPruning(_ scores: [LayerScores], dependencies: ChannelDependencies, settings: SelectionSettings,
                               reduction: GroupScoreReduction = .mean, criterion: String) throws -> PruningPlan {
    let selector = try GroupSelector(scores: scores, dependencies: dependencies, settings: settings,
                                     reduction: reduction, criterion: criterion)
    return try selector.plan(sparsity: settings.sparsity)
}

/// Group scores prepared once; selection at any sparsity is then cheap (for bisection).
struct GroupSelector {
    let dependencies: ChannelDependencies
    let layers: [PrunableLayer]
    /// In-scope groups and their score sources (path: a name for notes).
    let groups: [Int]
    let sources: [ScoreSource]
    let settings: SelectionSettings
    let criterion: String
    let wholeNotes: [String]
    /// The blocks of each in-scope group (``ChannelGroup/blocks``), parallel to ``groups``.
    let blocks: [Int]
    /// The group scores of each in-scope group, parallel to ``groups``.
    let groupScores: [[Float]]

    init(scores: [LayerScores], dependencies: ChannelDependencies, settings: SelectionSettings,
         reduction: GroupScoreReduction, criterion: String) throws {
        self.dependencies = dependencies; self.settings = settings; self.criterion = criterion
        layers = scores.map(\.layer)
        let paths = Set(layers.map(\.path))
        if let unknown = settings.excluded.sorted().first(where: { !paths.contains($0) }) {
            throw PruneKitError(.invalidArgument, "excluded layer '\(unknown)' is not a prunable layer of the model",
                                hint: "prunable layers: \(layers.map(\.path).joined(separator: ", "))")
        }
        let classifier = layers.last(where: \.isClassifier)?.path
        let reduced = try dependencies.groupScores(scores, reduction: reduction)
        var groups: [Int] = [], sources: [ScoreSource] = [], blocks: [Int] = [], groupScores: [[Float]] = []
        var whole: [String: [String]] = [:]
        for g in dependencies.groups where !g.scoredLayers.isEmpty {
            var reason = g.reason
            if reason == nil, let e = g.scoredLayers.first(where: settings.excluded.contains) { reason = "excluded ('\(e)')" }
            if reason == nil, settings.keepClassifier, let c = classifier, g.scoredLayers.contains(c) { reason = "the classifier" }
            if let reason {
                whole[reason, default: []].append(contentsOf: g.scoredLayers)
                continue
            }
            groups.append(g.index)
            sources.append(ScoreSource(path: GroupSelector.name(g), scores: reduced[g.index]!))
            blocks.append(g.blocks)
            groupScores.append(reduced[g.index]!)
        }
        guard !groups.isEmpty else {
            let reasons = whole.keys.sorted().map { "\(whole[$0]!.joined(separator: ", ")): \($0)" }
            throw PruneKitError(.invalidArgument, "no channel group of the model can be pruned (policy \(dependencies.policy.rawValue)); kept whole: \(reasons.joined(separator: "; "))",
                                hint: "exclude fewer layers, or try the whole-stream residual policy")
        }
        self.groups = groups; self.sources = sources; self.blocks = blocks; self.groupScores = groupScores
        wholeNotes = whole.keys.sorted().map { "kept whole (\($0)): \(whole[$0]!.joined(separator: ", "))" }
    }

    /// A group's name in notes: its one scored layer, or the first and how many more.
    static func name(_ g: ChannelGroup) -> String {
        g.scoredLayers.count == 1 ? g.scoredLayers[0] : "\(g.scoredLayers[0]) + \(g.scoredLayers.count - 1) tied layers"
    }

    /// The plan over the in-scope groups alone (one entry per group), uniform across the
    /// blocks of each group that has several.
    func groupPlan(sparsity: Double) throws -> PruningPlan {
        var s = settings
        s.sparsity = sparsity; s.excluded = []; s.keepClassifier = false
        var plan = try selectPruning(sources, granularity: .channel, settings: s, criterion: criterion)
        for k in plan.layers.indices where blocks[k] > 1 {
            plan.layers[k] = GroupSelector.uniform(plan.layers[k], blocks: blocks[k], scores: groupScores[k],
                                                   multiple: max(settings.channelMultiple, 1))
        }
        return plan
    }

    /// A group's selection made the same in each of its `blocks` equal blocks: every block
    /// keeps `⌈kept / blocks⌉` channels, raised until `blocks ·` that is a multiple of
    /// `multiple`, at most the block size — its best-scored channels, ties to the lower one.
    ///
    /// - Parameters:
    ///   - layer: the group's selection, `[channels]` keep bits.
    ///   - scores: the group's scores, `[channels]`; higher is kept.
    /// - Returns: keep bits with the same count in every block, at least as many as `layer` keeps.
    /// Cost: one sort of each block's scores.
    static func uniform(_ layer: PruningPlan.Layer, blocks: Int, scores: [Float], multiple: Int) -> PruningPlan.Layer {
        let size = layer.units / blocks
        guard blocks > 1, size * blocks == layer.units, layer.keptCount < layer.units else { return layer }
        let step = multiple / gcd(multiple, blocks)            // blocks · per is a multiple of `multiple`
        var per = (layer.keptCount + blocks - 1) / blocks
        per = min((per + step - 1) / step * step, size)
        guard per < size else { return PruningPlan.Layer(path: layer.path, granularity: layer.granularity, units: layer.units) }
        var out = PruningPlan.Layer(path: layer.path, granularity: layer.granularity, units: layer.units,
                                    keepWords: [UInt64](repeating: 0, count: layer.keepWords.count))
        for b in 0..<blocks {
            let best = (b * size..<(b + 1) * size).sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            out.restore(Array(best.prefix(per)))
        }
        return out
    }

    /// Kept channels per group (`nil`: whole) of a group plan.
    func keptCounts(_ groupPlan: PruningPlan) -> [Int?] {
        var kept = [Int?](repeating: nil, count: dependencies.groups.count)
        for (g, l) in zip(groups, groupPlan.layers) { kept[g] = l.keptCount }
        return kept
    }

    /// The layer plan for a group plan: each scored layer of an in-scope group gets its bits.
    func plan(from groupPlan: PruningPlan, sparsity: Double) -> PruningPlan {
        var bits: [String: PruningPlan.Layer] = [:]
        for (g, l) in zip(groups, groupPlan.layers) {
            for path in dependencies.groups[g].scoredLayers { bits[path] = l }
        }
        let layerPlans = layers.map { layer in
            bits[layer.path].map { PruningPlan.Layer(path: layer.path, granularity: .channel, units: $0.units, keepWords: $0.keepWords) }
                ?? PruningPlan.Layer(path: layer.path, granularity: .channel, units: layer.outputs)
        }
        return PruningPlan(criterion: criterion, granularity: .channel, scope: settings.scope, requestedSparsity: sparsity,
                           layers: layerPlans, notes: groupPlan.notes + wholeNotes)
    }

    func plan(sparsity: Double) throws -> PruningPlan {
        plan(from: try groupPlan(sparsity: sparsity), sparsity: sparsity)
    }
}

extension PruningPlan {
    /// Masks the model as ``apply(to:)`` does, and also masks γ and β of every BatchNorm
    /// in a pruned channel's group (not only one that directly follows a layer), so that
    /// every pruned channel is exactly zero everywhere and surgery can remove it.
    /// - Throws: as ``apply(to:)``.
    public func apply(to model: Model, dependencies: ChannelDependencies) throws {
        try apply(to: model)
        guard granularity == .channel else { return }
        let byPath = Dictionary(layers.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for g in dependencies.groups where !g.batchNormSlices.isEmpty {
            // A channel is pruned in the group when every scored layer prunes it.
            let plans = g.scoredLayers.compactMap { byPath[$0] }
            guard plans.count == g.scoredLayers.count, let first = plans.first else { continue }
            let pruned = first.prunedPositions.filter { c in plans.allSatisfy { !$0.isKept(c) } }
            guard !pruned.isEmpty else { continue }
            for slice in g.batchNormSlices {
                guard let i = model.nodeIndex(named: slice.path) else { continue }
                let per = slice.featuresPerChannel
                for name in ["weight", "bias"] {
                    guard let p = model.nodes[i].layer.parameter(named: name), (slice.offset + g.channels) * per <= p.value.count else { continue }
                    var m = p.mask ?? Tensor(shape: p.value.shape, repeating: 1)
                    m.withUnsafeMutableBufferPointer { mp in
                        for c in pruned { for f in 0..<per { mp[(slice.offset + c) * per + f] = 0 } }
                    }
                    p.mask = m
                }
            }
        }
    }
}
