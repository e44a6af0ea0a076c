/// Which weights or channels to prune, given scores.
///
/// Counts are exact: of the `n` prunable weights (or channels) in scope, exactly
/// `n − round(n · (1 − sparsity))` are pruned — the lowest scores, ties broken by layer
/// order then position, so the same scores always give the same plan. "Compression" is
/// `1 / (1 − sparsity)` over the **prunable** weights: the weights of the convolutions
/// and linear layers in scope, without biases or BatchNorm parameters. Reports also give
/// the whole-model ratio (every trainable parameter, biases included, as ShrinkBench
/// defines it).
public struct SelectionSettings: Sendable, Equatable {
    public enum Scope: String, Sendable, Codable {
        /// One threshold over every layer in scope.
        case global
        /// The same fraction in every layer.
        case perLayer = "layer"
    }

    public var scope: Scope
    /// The fraction of the in-scope weights (or channels) to prune, in [0, 1).
    public var sparsity: Double
    /// Dotted paths of layers never pruned (`features.0`).
    public var excluded: Set<String> = []
    /// Keep the last prunable layer (the classifier) whole, as ShrinkBench does.
    public var keepClassifier = true
    /// Channels kept in every layer at least (channel granularity).
    public var minimumChannels = 1

    public init(scope: Scope, sparsity: Double, excluded: Set<String> = [], keepClassifier: Bool = true,
                minimumChannels: Int = 1) {
        self.scope = scope; self.sparsity = sparsity; self.excluded = excluded
        self.keepClassifier = keepClassifier; self.minimumChannels = minimumChannels
    }

    /// Sparsity for a compression ratio: 1 − 1/ratio.
    public static func sparsity(forCompression ratio: Double) -> Double { 1 - 1 / ratio }
}

/// Chooses what to prune from per-layer scores.
/// - Throws: ``PruneKitError`` for a sparsity outside [0, 1), an excluded path that names
///   no layer, or nothing left in scope.
public func selectPruning(_ scores: [LayerScores], granularity: Granularity, settings: SelectionSettings,
                          criterion: String) throws -> PruningPlan {
    guard settings.sparsity >= 0, settings.sparsity < 1, settings.sparsity.isFinite else {
        throw PruneKitError(.invalidArgument, "sparsity \(settings.sparsity) is outside [0, 1)",
                            hint: "a compression ratio r corresponds to sparsity 1 − 1/r; r must be ≥ 1")
    }
    let paths = Set(scores.map(\.layer.path))
    if let unknown = settings.excluded.first(where: { !paths.contains($0) }) {
        throw PruneKitError(.invalidArgument, "excluded layer '\(unknown)' is not a prunable layer of the model",
                            hint: "prunable layers: \(scores.map(\.layer.path).joined(separator: ", "))")
    }
    let inScope = scores.map { s in
        !settings.excluded.contains(s.layer.path) && !(settings.keepClassifier && s.layer.isClassifier)
    }
    guard inScope.contains(true) else {
        throw PruneKitError(.invalidArgument, "no prunable layer is left in scope",
                            hint: "exclude fewer layers, or allow the classifier to be pruned")
    }
    var plans = scores.map { PruningPlan.Layer(path: $0.layer.path, granularity: granularity, units: $0.scores.count) }
    switch settings.scope {
    case .perLayer:
        for k in scores.indices where inScope[k] {
            let units = scores[k].scores.count
            let prune = units - Int((Double(units) * (1 - settings.sparsity)).rounded())
            plans[k].prune(lowestScores([(k, scores[k].scores)], count: prune)[k] ?? [])
        }
    case .global:
        let candidates = scores.indices.filter { inScope[$0] }.map { ($0, scores[$0].scores) }
        let total = candidates.reduce(0) { $0 + $1.1.count }
        let prune = total - Int((Double(total) * (1 - settings.sparsity)).rounded())
        for (k, positions) in lowestScores(candidates, count: prune) { plans[k].prune(positions) }
    }
    return finish(plans, scores, granularity, settings, criterion)
}

/// Enforces the channel minimum, noting layers whose requested ratio was clipped.
private func finish(_ plans: [PruningPlan.Layer], _ scores: [LayerScores], _ granularity: Granularity,
                    _ settings: SelectionSettings, _ criterion: String) -> PruningPlan {
    var plans = plans, notes: [String] = []
    if granularity == .channel {
        let minimum = max(settings.minimumChannels, 1)
        for k in plans.indices where plans[k].keptCount < min(minimum, plans[k].units) {
            // Restore the best-scored pruned channels until the minimum is met.
            let need = min(minimum, plans[k].units) - plans[k].keptCount
            let pruned = plans[k].prunedPositions.sorted { scores[k].scores[$0] > scores[k].scores[$1] || (scores[k].scores[$0] == scores[k].scores[$1] && $0 < $1) }
            plans[k].restore(Array(pruned.prefix(need)))
            notes.append("layer '\(plans[k].path)' keeps \(plans[k].keptCount) of \(plans[k].units) channels: the requested ratio would have removed all but \(plans[k].keptCount - need)")
        }
    }
    return PruningPlan(criterion: criterion, granularity: granularity, scope: settings.scope,
                       requestedSparsity: settings.sparsity, layers: plans, notes: notes)
}

/// The positions of the `count` lowest scores over several layers, as (layer → positions).
///
/// Ties are broken by layer order, then position. Never sorts or copies all the scores:
/// a three-pass radix select over the scores' bit patterns (11, 11 and 10 bits) finds
/// the threshold with a 2,048-bucket histogram per pass, then one more pass collects.
/// Cost: four reads of the scores, O(buckets) memory besides the result.
public func lowestScores(_ layers: [(Int, [Float])], count: Int) -> [Int: [Int]] {
    guard count > 0 else { return [:] }
    let total = layers.reduce(0) { $0 + $1.1.count }
    if count >= total {
        return Dictionary(uniqueKeysWithValues: layers.map { ($0.0, Array($0.1.indices)) })
    }
    // Find the key of the count-th smallest (1-based) by refining a prefix of the bits.
    var prefix: UInt32 = 0, prefixBits = 0, remaining = count
    for width in [11, 11, 10] {
        let shift = 32 - prefixBits - width
        var histogram = [Int](repeating: 0, count: 1 << width)
        for (_, s) in layers {
            s.withUnsafeBufferPointer { p in
                for v in p {
                    let key = sortableKey(v)
                    if prefixBits == 0 || key >> (32 - prefixBits) == prefix {
                        histogram[Int((key >> shift) & UInt32((1 << width) - 1))] += 1
                    }
                }
            }
        }
        var bucket = 0
        while remaining > histogram[bucket] { remaining -= histogram[bucket]; bucket += 1 }
        prefix = (prefix << width) | UInt32(bucket)
        prefixBits += width
    }
    let threshold = prefix   // the full key; `remaining` of the elements equal to it are taken
    var result: [Int: [Int]] = [:]
    var equalTaken = 0
    for (k, s) in layers {
        var positions: [Int] = []
        s.withUnsafeBufferPointer { p in
            for i in 0..<p.count {
                let key = sortableKey(p[i])
                if key < threshold || (key == threshold && equalTaken < remaining) {
                    if key == threshold { equalTaken += 1 }
                    positions.append(i)
                }
            }
        }
        if !positions.isEmpty { result[k] = positions }
    }
    return result
}

/// Maps a float to an unsigned key with the same order (negative numbers below positive).
@inline(__always)
func sortableKey(_ v: Float) -> UInt32 {
    let b = v.bitPattern
    return b & 0x8000_0000 != 0 ? ~b : b | 0x8000_0000
}
