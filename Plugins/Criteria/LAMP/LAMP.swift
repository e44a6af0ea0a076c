import PruneKit

/// Layer-adaptive magnitude-based pruning (LAMP): each weight's squared magnitude divided
/// by the sum of the squares of the weights of its layer that are not smaller, with one
/// threshold over all layers.
///
/// Formula, for weight u of a layer (all `outputs · fanIn` weights of the layer together):
///
///     score(u) = w_u² / Σ_{v : w_v² ≥ w_u²} w_v²        (u itself included)
///
/// With the layer's weights sorted by w² ascending, this is the paper's
/// w_u² / Σ_{v ≥ u} w_v². Every non-zero weight scores in (0, 1], zeros score 0; the
/// largest weight of each layer scores 1, so a global threshold below 1 never empties a
/// layer, and the per-layer sparsities follow from the scores alone (the paper's point:
/// no per-layer budget).
///
/// Ties (weights of equal magnitude, such as the zeros of an already pruned layer): all
/// of them are in each other's denominator, so tied weights share one score, whatever
/// their positions — the order among them does not matter. (Sorting and breaking ties by
/// position, as a plain suffix sum over a sort does, would give equal weights different
/// scores that depend on where they lie in the tensor; this definition keeps the scores a
/// function of the values, equivariant under any permutation.) One consequence: when the
/// largest magnitude of a layer is shared by k weights (quantised weights; never for
/// weights of distinct values) they score 1/k, not 1, and a global threshold above 1/k
/// can prune them all. A layer whose weights are all zero scores 0 throughout (0/0 is
/// taken as 0).
///
/// Scope: global, as in the paper. Options: none.
///
/// Deviations from the paper: none in the score. The paper prunes iteratively with
/// retraining between steps; that is the schedule's and finetuning's job.
///
/// Non-finite weights are an error naming the layer.
///
/// Cost: one sort of the layer's weights, O(n log n) for n = outputs · fanIn, and one pass
/// in `Double`; memory 8n bytes of sort keys.
///
/// References: Lee, Park, Mo, Ahn & Shin, "Layer-adaptive Sparsity for the Magnitude-based
/// Pruning", ICLR 2021.
public struct LAMP: Criterion, OptionConstructible {
    public static let id = "lamp"
    public static let summary = "w_u² / Σ of w_v² over the layer's weights not smaller than u, one threshold over all layers (Lee et al. 2021)"
    public let granularity = Granularity.weight
    public let preferredScope = SelectionSettings.Scope.global

    public init(options: OptionValues) {}

    /// - Returns: `outputs · fanIn` scores in row order, each in [0, 1] (higher kept).
    /// - Throws: ``PruneKitError`` `.numerical` naming the layer when a weight is NaN or
    ///   infinite; `.invalidArgument` for a layer of 2³² weights or more.
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        let n = layer.weights.count
        guard n <= Int(UInt32.max) else {
            throw PruneKitError(.invalidArgument, "lamp: layer '\(layer.path)' has \(n) weights; at most 2³² − 1 can be sorted")
        }
        guard layer.weights.withUnsafeBufferPointer({ $0.allSatisfy(\.isFinite) }) else {
            throw PruneKitError(.numerical, "lamp: the weights of layer '\(layer.path)' hold NaN or infinite values",
                                hint: "check the model's weights (`prunekit inspect`); training may have diverged")
        }
        var scores = [Float](repeating: 0, count: n)
        layer.weights.withUnsafeBufferPointer { w in
            scores.withUnsafeMutableBufferPointer { s in lampScores(w, into: s) }
        }
        return scores
    }
}

/// Writes score(u) = w_u² / Σ_{v : |w_v| ≥ |w_u|} w_v² for every weight of `w` into `scores`.
///
/// Sort keys pack |w|'s bit pattern (monotone in |w| for finite floats, with −0 read as +0)
/// above the index, so one integer sort orders the weights by magnitude. Walking down from
/// the largest, each group of equal magnitudes is added to the running sum whole before
/// its members are scored, so ties share one score. Squares and sums are in `Double`
/// (a float's square is exact there). `w` must be finite and hold fewer than 2³² values.
func lampScores(_ w: UnsafeBufferPointer<Float>, into scores: UnsafeMutableBufferPointer<Float>) {
    assert(w.count == scores.count && w.count <= Int(UInt32.max))
    let n = w.count
    var keys = [UInt64](repeating: 0, count: n)
    for i in 0..<n { keys[i] = UInt64(abs(w[i]).bitPattern) << 32 | UInt64(i) }
    keys.sort()
    var sum = 0.0
    var end = n   // keys[start..<end] is the next group, walking down
    while end > 0 {
        let magnitude = keys[end - 1] >> 32
        var start = end - 1
        while start > 0 && keys[start - 1] >> 32 == magnitude { start -= 1 }
        let v = Double(Float(bitPattern: UInt32(truncatingIfNeeded: magnitude)))
        let square = v * v
        sum += square * Double(end - start)
        let score = sum > 0 ? Float(square / sum) : 0   // sum is 0 only for an all-zero layer
        for k in start..<end { scores[Int(truncatingIfNeeded: keys[k] & 0xFFFF_FFFF)] = score }
        end = start
    }
}

final class LAMPPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: LAMP.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "lamp", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(LAMPPlugin()) }
