import Foundation
import PruneKit

/// Gradient Signal Preservation: keeps the weights whose removal would most reduce the
/// gradient flow ‖∇L‖² at initialisation, from a Hessian–gradient product.
///
/// Formula, for the prunable weights θ (convolutions and linear layers, not biases):
///
///     g  = Σ_b ∇_θ L_b(θ)                       L_b: batch b's mean cross-entropy of logits / T
///     Hg = Σ_b ∇²_θ L_b(θ) · g
///     S(−θ) = −θ ⊙ Hg                             the paper's score: the largest are removed
///     score_i = θ_i · (Hg)_i                      PruneKit keeps the highest: the same order
///
/// - T is the option `temperature` (default 200, as in the authors' code; 1 is the plain loss).
/// - Hg is computed without second derivatives, by central differences of the gradient along g:
///
///       Hg ≈ Σ_b [∇L_b(θ + εg) − ∇L_b(θ − εg)] / 2ε,   ε = `step` · ‖θ‖ / ‖g‖
///
///   (the perturbation is `step` of the weights' norm, default 10⁻³), exact for a quadratic
///   loss and with an error of order ε² otherwise; the authors use double back-propagation,
///   which PruneKit's layers don't provide. Pruned weights stay zero in every pass and score 0.
/// - The authors divide every score by |Σ S| + ε; a positive global factor changes no
///   ranking, so scores here are not normalised.
///
/// Scope: global, as the paper. Meant for pruning at initialisation (`compare --when init`).
///
/// Evidence: its own passes over the calibration data (``Evidence/calibrationData``):
/// three forward and backward passes per batch. State: the layer's scores.
///
/// References: Wang, Zhang & Grosse, "Picking Winning Tickets Before Training by Preserving
/// Gradient Flow", ICLR 2020.
public struct GraSP: Criterion, OptionConstructible {
    public static let id = "grasp"
    public static let summary = "θ · Hg (Hessian–gradient product by central differences), keeping the gradient flow; global (Wang et al. 2020)"
    public static let options: [OptionSpec] = [
        .double("temperature", default: 200, help: "T: the loss is the cross-entropy of logits / T (the authors' code uses 200)"),
        .double("step", default: 1e-3, help: "the finite-difference perturbation ε·g, as a fraction of the weights' norm ‖θ‖"),
    ]
    public let granularity = Granularity.weight
    public let evidence: Evidence = [.ownPasses, .calibrationData]
    public let preferredScope = SelectionSettings.Scope.global
    public let temperature: Double
    public let step: Double

    /// The layer's scores θ ⊙ Hg, `outputs · fanIn` in row order.
    public struct State: Sendable {
        public var scores: [Float] = []
    }

    public init(options: OptionValues) throws {
        temperature = options.double("temperature")
        step = options.double("step")
        guard temperature > 0, temperature.isFinite else {
            throw PruneKitError(.invalidArgument, "grasp: temperature must be positive, got \(temperature)",
                                hint: "the authors use 200; 1 is the plain cross-entropy")
        }
        guard step > 0, step < 1 else {
            throw PruneKitError(.invalidArgument, "grasp: step must be in (0, 1), got \(step)",
                                hint: "the default 0.001 perturbs the weights by 0.1 % of their norm")
        }
    }

    public func makeState(for layer: PrunableLayer) -> State { State() }

    public func gather(_ session: CalibrationSession, into states: inout [State]) throws {
        let layers = session.layers
        let t = Float(temperature)
        func loss(_ labels: [Int]) -> CalibrationSession.Objective {
            .custom { logits in
                let scaled = Tensor(shape: logits.shape, scalars: logits.scalars.map { $0 / t })
                let ce = softmaxCrossEntropy(logits: scaled, labels: labels)
                return (Double(ce.loss), Tensor(shape: logits.shape, scalars: ce.gradient.scalars.map { $0 / t }))
            }
        }
        /// Σ_b ∇L_b with the prunable weights moved by `shift` · direction (none when nil);
        /// the moved weights are made once, for every batch's pass.
        func gradient(along direction: [[Double]]?, shift: Double) throws -> [[Double]] {
            var moved: [String: Tensor] = [:]
            if let direction {
                for (k, layer) in layers.enumerated() {
                    let v = layer.weights.scalars, d = direction[k]
                    moved[layer.path + ".weight"] = Tensor(shape: layer.weightShape,
                                                           scalars: (0..<v.count).map { Float(Double(v[$0]) + shift * d[$0]) })
                }
            }
            var sum = layers.map { [Double](repeating: 0, count: $0.weights.count) }
            for b in 0..<session.batchCount {
                let batch = try session.batch(b)
                let result = try session.pass(batch.images, objective: loss(batch.labels), weightGradients: true,
                                              parameters: { path, _ in moved[path] })
                for k in layers.indices {
                    result.weightGradients[k].withUnsafeBufferPointer { g in
                        for i in 0..<g.count { sum[k][i] += Double(g[i]) }
                    }
                }
            }
            return sum
        }
        let g = try gradient(along: nil, shift: 0)
        let gNorm = g.reduce(0) { $0 + $1.reduce(0) { $0 + $1 * $1 } }.squareRoot()
        let thetaNorm = layers.reduce(0.0) { acc, layer in
            acc + layer.weights.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }
        }.squareRoot()
        guard gNorm > 0, thetaNorm > 0 else {
            // No gradient flows (or no weights): Hg = 0, every weight scores 0.
            for k in layers.indices { states[k].scores = [Float](repeating: 0, count: layers[k].weights.count) }
            return
        }
        let epsilon = step * thetaNorm / gNorm
        let plus = try gradient(along: g, shift: epsilon)
        let minus = try gradient(along: g, shift: -epsilon)
        for (k, layer) in layers.enumerated() {
            let w = layer.weights.scalars
            states[k].scores = (0..<w.count).map { i in
                Float(Double(w[i]) * (plus[k][i] - minus[k][i]) / (2 * epsilon))
            }
        }
    }

    /// - Returns: `outputs · fanIn` scores θ · Hg in row order (higher kept).
    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        guard state.scores.count == layer.weights.count else {
            throw PruneKitError(.plugin, "grasp: no Hessian–gradient product was computed for layer '\(layer.path)'",
                                hint: "score through Model.score(with:data:settings:) with calibration data")
        }
        return state.scores
    }
}

final class GraSPPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: GraSP.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "grasp", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(GraSPPlugin()) }
