import PruneKit

/// Single-shot network pruning (SNIP): each weight scored by its connection sensitivity,
/// |∂L/∂c · 1| for a multiplicative gate c on the weight, which is |g ⊙ w| — the
/// first-order change in loss when the connection is removed — with one threshold over
/// all prunable layers.
///
/// Formula, for weight j of any prunable layer:
///
///     score_j = | w_j · ḡ_j |,   ḡ = (1/B) · Σ_b ∂C_b/∂w    (C_b: mean cross-entropy of batch b)
///     paper:  s_j = score_j / Σ_k score_k                    (k over every prunable weight)
///
/// ḡ is the mean of the B calibration batches' gradients (``ScoringContext/weightGradient``
/// is their sum); with one batch, as in the paper, it is that batch's gradient. When the
/// batches differ in size (a short last batch) it is the mean of the batch means, which
/// weighs the short batch's examples more than the others'.
///
/// Normalisation (a deliberate, order-preserving deviation): the paper divides every
/// score by Σ_k score_k over all prunable weights of the network. That sum is a single
/// positive number shared by every weight, so it changes no ranking, no global threshold
/// and no selection — but a criterion sees one layer at a time (``ScoringContext`` carries
/// no other layer), so it cannot compute it. The scores are therefore |w · ḡ|; divide them
/// by their total over all layers to read them as the paper's s_j (the tests do). An
/// all-zero gradient gives all-zero scores (the paper's s_j would be 0/0).
///
/// Scope: global, as in the paper. Options: none.
///
/// Other deviations: the paper scores a freshly initialised network (variance-scaling
/// initialisation) before any training and prunes once; this criterion scores whatever
/// model it is given — pruning at initialisation is the harness's choice of model, not
/// the criterion's. The calibration settings (10 batches of 64 by default) replace the
/// paper's single batch. The ranking equals `global-gradient-magnitude`'s (Blalock et
/// al.'s form of the same product), which sums the batches' gradients instead of
/// averaging them.
///
/// Non-finite weights or gradients are an error naming the layer.
///
/// Cost: one forward and backward pass per calibration batch (the SDK's), then one pass
/// over the weights.
///
/// References: Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on
/// Connection Sensitivity", ICLR 2019.
public struct SNIP: Criterion, OptionConstructible {
    public static let id = "snip"
    public static let summary = "connection sensitivity |g·w| on calibration batches, one threshold over all layers (Lee et al. 2019)"
    public let granularity = Granularity.weight
    public let evidence: Evidence = .weightGradients
    public let preferredScope = SelectionSettings.Scope.global

    public init(options: OptionValues) {}

    /// - Returns: `outputs · fanIn` scores |w · ḡ| in row order (higher kept).
    /// - Throws: ``PruneKitError`` naming the layer when no gradient was gathered, or
    ///   `.numerical` when a weight or gradient is NaN or infinite.
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        guard let g = context.weightGradient, g.count == layer.weights.count else {
            throw PruneKitError(.plugin, "snip: no weight gradient of \(layer.weights.count) values was gathered for layer '\(layer.path)'")
        }
        guard layer.weights.withUnsafeBufferPointer({ $0.allSatisfy(\.isFinite) }) else {
            throw PruneKitError(.numerical, "snip: the weights of layer '\(layer.path)' hold NaN or infinite values",
                                hint: "check the model's weights (`prunekit inspect`); training may have diverged")
        }
        guard g.withUnsafeBufferPointer({ $0.allSatisfy(\.isFinite) }) else {
            throw PruneKitError(.numerical, "snip: the weight gradient of layer '\(layer.path)' holds NaN or infinite values",
                                hint: "the calibration pass diverged: check the model's weights and the data")
        }
        // Batches as the SDK counts them; a caller that gathered a gradient without
        // counting batches gave one.
        let scale = 1 / Double(max(context.batchCount, 1))
        return layer.weights.withUnsafeBufferPointer { w in
            g.withUnsafeBufferPointer { gp in
                (0..<w.count).map { Float(abs(Double(w[$0]) * Double(gp[$0]) * scale)) }
            }
        }
    }
}

final class SNIPPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: SNIP.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "snip", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(SNIPPlugin()) }
