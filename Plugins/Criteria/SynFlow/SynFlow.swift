import PruneKit

/// Iterative Synaptic Flow: scores every weight by its share of the "synaptic flow" of the
/// network with all parameters replaced by their absolute values, with no data at all.
///
/// Formula, for the prunable weights θ (convolutions and linear layers):
///
///     R(θ) = 1ᵀ · f_{|θ|}(𝟙)                    the summed outputs of the |θ|-network on an all-ones input
///     S(θ_i) = |θ_i · ∂R/∂θ_i|
///
/// - f_{|θ|} is the model with every parameter and state tensor replaced by its absolute
///   value for the pass (weights, biases, BatchNorm's γ, β and running mean; the running
///   variance is already positive), in evaluation mode, as the authors' code linearises
///   the network (`param.abs_()` over the whole state dict). On such a network every
///   activation is positive, so R is the path sum Σ_paths Π |θ| (plus bias paths).
/// - 𝟙 is one example of ones, `[1] + model.inputShape`, given to the network directly
///   (no data normalisation).
/// - Pruned weights (masked) stay zero in the pass and score 0.
///
/// Scope: global — the paper ranks all parameters together. Iteration is the schedule's
/// job: the paper prunes in 100 rounds with the kept fraction falling exponentially and no
/// training in between, which is `--schedule "iterative steps=100 decay=geometric"
/// --finetune none` (each round re-scores the masked network). One-shot SynFlow is the
/// default schedule.
///
/// Evidence: its own pass (``Criterion/gather(_:into:)``), no calibration data: one forward
/// and one backward pass on a single example. The pass runs in float32 (the authors use
/// float64): on a very deep network R can overflow, which is reported as an error.
///
/// References: Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data
/// by iteratively conserving synaptic flow", NeurIPS 2020.
public struct SynFlow: Criterion, OptionConstructible {
    public static let id = "synflow"
    public static let summary = "|θ · ∂R/∂θ|, R the output sum of the |θ|-network on an all-ones input; data-free, global (Tanaka et al. 2020)"
    public let granularity = Granularity.weight
    public let evidence: Evidence = .ownPasses
    public let preferredScope = SelectionSettings.Scope.global

    /// The layer's scores, `outputs · fanIn` in row order, set by ``gather(_:into:)``.
    public struct State: Sendable {
        public var scores: [Float] = []
    }

    public init(options: OptionValues) {}

    public func makeState(for layer: PrunableLayer) -> State { State() }

    public func gather(_ session: CalibrationSession, into states: inout [State]) throws {
        let ones = Tensor(shape: [1] + session.model.inputShape, repeating: 1)
        let result = try session.pass(ones, objective: .sumOfOutputs, weightGradients: true,
                                      parameters: { _, value in Tensor(shape: value.shape, scalars: value.scalars.map { abs($0) }) })
        guard result.loss.isFinite else {
            throw PruneKitError(.numerical, "synflow: the synaptic flow R of the |θ|-network is not finite (\(result.loss))",
                                hint: "the network is too deep for R in float32; use a criterion that needs no such product (snip, global-magnitude)")
        }
        for (k, layer) in session.layers.enumerated() {
            let g = result.weightGradients[k]
            states[k].scores = layer.weights.withUnsafeBufferPointer { w in
                g.withUnsafeBufferPointer { gp in (0..<w.count).map { abs(w[$0] * gp[$0]) } }
            }
        }
    }

    /// - Returns: `outputs · fanIn` scores |θ · ∂R/∂θ| in row order (higher kept).
    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        guard state.scores.count == layer.weights.count else {
            throw PruneKitError(.plugin, "synflow: no synaptic-flow pass was run for layer '\(layer.path)'",
                                hint: "score through Model.score(with:data:settings:), which runs it")
        }
        return state.scores
    }
}

final class SynFlowPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: SynFlow.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "synflow", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(SynFlowPlugin()) }
