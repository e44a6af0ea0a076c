import PruneKit

/// Optimal Brain Damage: the second-order estimate of the increase in loss when a weight is
/// set to zero, with the Hessian's diagonal estimated by the empirical Fisher information.
///
/// Formula, for weight w_i of a prunable layer, over the calibration examples n = 1…N:
///
///     F_ii = 1/N · Σ_n (∂ℓ_n/∂w_i)²             ℓ_n: example n's own cross-entropy
///     s_i  = ½ · F_ii · w_i²
///
/// - The paper's saliency is ½·H_ii·w_i², assuming a trained network (gradient ≈ 0) and a
///   diagonal Hessian; LeCun et al. compute H_ii with a second-order backward pass and the
///   Levenberg–Marquardt approximation (dropping the terms in the second derivative of the
///   network). For the cross-entropy loss that Gauss–Newton diagonal is, in expectation over
///   the model's own predictions, the Fisher information; here the empirical Fisher (the
///   true labels' per-example gradients) estimates it, which is always ≥ 0 and needs only
///   first derivatives.
/// - Per-example gradients come from one forward and backward pass per calibration example
///   (in evaluation mode, so an example's gradient does not depend on its batch): N passes
///   of one example — the cost of this criterion (640 passes with the default 10 batches
///   of 64).
///
/// Scope: global, as the paper deletes the lowest-saliency weights of the whole network.
///
/// Evidence: its own passes over the calibration data (``Evidence/calibrationData``).
/// State: Σ_n g² per weight, in Double.
///
/// References: LeCun, Denker & Solla, "Optimal Brain Damage", NIPS 1989 (1990);
/// the empirical Fisher as a Hessian estimate: Martens, "New insights and perspectives on
/// the natural gradient method", JMLR 2020, section 11.
public struct OBD: Criterion, OptionConstructible {
    public static let id = "obd"
    public static let summary = "½ · H_ii · w² with H_ii the empirical Fisher diagonal (mean squared per-example gradient); global (LeCun et al. 1990)"
    public let granularity = Granularity.weight
    public let evidence: Evidence = [.ownPasses, .calibrationData]
    public let preferredScope = SelectionSettings.Scope.global

    /// Σ_n (∂ℓ_n/∂w)² per weight of the layer, and the examples summed.
    public struct State: Sendable {
        public var squaredGradients: [Double]
        public var examples = 0
    }

    public init(options: OptionValues) {}

    public func makeState(for layer: PrunableLayer) -> State {
        State(squaredGradients: Array(repeating: 0, count: layer.weights.count))
    }

    public func gather(_ session: CalibrationSession, into states: inout [State]) throws {
        let perExample = session.model.inputShape.reduce(1, *)
        for b in 0..<session.batchCount {
            let batch = try session.batch(b)
            let pixels = batch.images.scalars
            for n in 0..<batch.count {
                let x = Tensor(shape: [1] + session.model.inputShape,
                               scalars: Array(pixels[(n * perExample)..<((n + 1) * perExample)]))
                let result = try session.pass(x, objective: .crossEntropy(labels: [batch.labels[n]]), weightGradients: true)
                for k in states.indices {
                    result.weightGradients[k].withUnsafeBufferPointer { g in
                        for i in 0..<g.count { states[k].squaredGradients[i] += Double(g[i]) * Double(g[i]) }
                    }
                    states[k].examples += 1
                }
            }
        }
    }

    /// - Returns: `outputs · fanIn` saliencies ½ · F_ii · w² in row order (higher kept).
    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        guard state.examples > 0, state.squaredGradients.count == layer.weights.count else {
            throw PruneKitError(.plugin, "obd: no per-example gradients were gathered for layer '\(layer.path)'",
                                hint: "score through Model.score(with:data:settings:) with calibration data")
        }
        let n = Double(state.examples)
        return layer.weights.withUnsafeBufferPointer { w in
            (0..<w.count).map { i in Float(0.5 * state.squaredGradients[i] / n * Double(w[i]) * Double(w[i])) }
        }
    }
}

final class OBDPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: OBD.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "obd", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(OBDPlugin()) }
