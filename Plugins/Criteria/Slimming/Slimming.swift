import PruneKit

/// Network slimming: trains with an L1 penalty on every BatchNorm scale γ, then prunes the
/// output channels whose |γ| falls under one threshold shared by all layers.
///
/// Formula: training minimises L + s·Σ_γ |γ| over the γ of every BatchNorm in the model;
/// after each backward pass the subgradient s·sign(γ) (0 at γ = 0) is added to ∂L/∂γ
/// (``regularize(_:)``, called by `Model.fit(…, regularizer:)`). The score of output
/// channel j of a layer followed directly by a BatchNorm is |γ_j| of that BatchNorm;
/// selection is global (``preferredScope``): the lowest |γ| over all layers in scope are
/// pruned, so every pruned channel has |γ| ≤ every kept one.
/// No data needed to score. Cost: one pass over the γ to score; one pass over the γ of
/// every BatchNorm per training step to regularise.
///
/// Options: `s` (double, default 1e-4, the paper's default sparsity rate; ≥ 0).
///
/// Layers without a BatchNorm directly after them (the classifier, linear layers, any layer
/// of a model without BatchNorm) have no γ, and slimming only prunes channels that have
/// one: such layers score `Float.greatestFiniteMagnitude` on every channel, so a global
/// selection takes them last. (+∞ is not allowed — scores must be finite — and the
/// criterion cannot take a layer out of scope: `scores(for:context:)` is also called for
/// excluded layers, so throwing would make excluding them impossible.) Consequence for the
/// exact-count selection: the requested sparsity is a fraction of **all** in-scope
/// channels, and every pruned channel comes from a BatchNorm-scaled layer, so those lose
/// the larger fraction `sparsity · N_all / N_BN`; a request above `N_BN / N_all` would prune
/// un-scaled channels in layer order. For the paper's meaning ("percentage of channels
/// pruned", of the channels that have a γ) keep the un-scaled layers out of scope:
/// the classifier is out by default (`keepClassifier`), exclude the others
/// (`excluded:` / `--exclude`). In the zoo's BatchNorm models (VGG, ResNet) every
/// convolution has a BatchNorm and only the classifier lacks one, so the default scope is
/// exactly the paper's.
///
/// Removing a channel, as the paper does, removes its BatchNorm channel too: the SDK's
/// `PruningPlan.apply` masks the γ and β of a pruned channel in the BatchNorm that
/// directly follows the layer, so the channel outputs exactly zero. A masked γ stays
/// zero: the regulariser adds nothing to it and the optimisers respect masks.
///
/// Deviations: none in the criterion. The paper also prunes the next layer's input weights
/// of a pruned channel; with masks that is implied (the channel is zero), and physical
/// removal is surgery's job.
///
/// References: Liu, Li, Shen, Huang, Yan & Zhang, "Learning Efficient Convolutional
/// Networks through Network Slimming", ICCV 2017.
public struct Slimming: Criterion, OptionConstructible {
    public static let id = "slimming"
    public static let summary = "|γ| of the BatchNorm after each layer, trained with s·Σ|γ|; one global threshold (Liu et al. 2017)"
    public static let options: [OptionSpec] = [
        .double("s", default: 1e-4, help: "sparsity rate: s·sign(γ) is added to ∂L/∂γ of every BatchNorm during training"),
    ]
    public let granularity = Granularity.channel
    public let preferredScope = SelectionSettings.Scope.global
    /// The sparsity rate s.
    public let s: Float

    /// The score of every channel of a layer without a BatchNorm scale: the largest finite
    /// float, so a global selection prunes such channels last.
    public static let unscaledScore = Float.greatestFiniteMagnitude

    public init(options: OptionValues) throws {
        let s = options.double("s")
        guard s >= 0, s.isFinite else {
            throw PruneKitError(.invalidArgument, "option 's' of 'slimming' must be a finite number ≥ 0, got \(s)",
                                hint: "the paper uses s = 1e-4 (1e-5 on ImageNet); s = 0 trains without the penalty")
        }
        self.s = Float(s)
    }

    /// - Returns: |γ_j| `[outputs]` of the BatchNorm directly after `layer`, or
    ///   ``unscaledScore`` for every channel when there is none.
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        guard let gamma = layer.batchNormScale else {
            return [Float](repeating: Slimming.unscaledScore, count: layer.outputs)
        }
        guard gamma.count == layer.outputs else {
            throw PruneKitError(.shapeMismatch, "the BatchNorm '\(layer.batchNormPath ?? "?")' after '\(layer.path)' has \(gamma.count) scales for \(layer.outputs) channels")
        }
        return gamma.withUnsafeBufferPointer { g in g.map { abs($0) } }
    }

    /// Training changes with the penalty unless s = 0.
    public var regularizes: Bool { s != 0 }

    /// Adds s·sign(γ) to ∂L/∂γ of every BatchNorm in the model (sign(0) = 0; masked
    /// entries get nothing). Cost: one pass over all γ.
    public func regularize(_ model: Model) {
        guard s != 0 else { return }
        for node in model.nodes where node.layer.kind == .batchNorm {
            guard let gamma = node.layer.parameter(named: "weight") else { continue }
            addSignPenalty(gamma, rate: s)
        }
    }
}

/// g += rate · sign(γ) · mask, with sign(0) = 0.
func addSignPenalty(_ gamma: Parameter, rate: Float) {
    let mask = gamma.mask?.scalars
    gamma.value.withUnsafeBufferPointer { v in
        gamma.gradient.withUnsafeMutableBufferPointer { g in
            assert(g.count == v.count)
            for j in 0..<v.count {
                let sign: Float = v[j] > 0 ? 1 : (v[j] < 0 ? -1 : 0)
                let keep: Float = mask?[j] ?? 1
                g[j] += rate * sign * keep
            }
        }
    }
}

final class SlimmingPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: Slimming.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "slimming", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(SlimmingPlugin()) }
