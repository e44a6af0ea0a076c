import PruneKit

/// Gradient-magnitude pruning: each weight scored by |w · ∂L/∂w|, the first-order
/// estimate of the loss change from removing it.
///
/// The gradient is summed over the calibration batches (the number of batches and their
/// size are calibration settings). Deliberate deviation: ShrinkBench uses a single
/// batch; PruneKit lets the caller choose, 10 by default, because one batch of 64 gives
/// a noisy ranking.
///
/// - `global-gradient-magnitude`: one threshold over all prunable layers.
/// - `layer-gradient-magnitude`: the same fraction in every layer.
///
/// Cost: one forward and backward pass per calibration batch, one pass over the weights.
///
/// References: Blalock, Gonzalez Ortiz, Frankle & Guttag, "What is the State of Neural
/// Network Pruning?", MLSys 2020 (ShrinkBench's GlobalMagGrad and LayerMagGrad).
public struct GlobalGradientMagnitude: GradientMagnitudeScoring {
    public static let id = "global-gradient-magnitude"
    public static let summary = "|w·∂L/∂w| over calibration batches, one threshold (Blalock et al. 2020)"
    public let granularity = Granularity.weight
    public let evidence: Evidence = .weightGradients
    public let preferredScope = SelectionSettings.Scope.global

    public init(options: OptionValues) {}
}

/// `layer-gradient-magnitude`: |w·∂L/∂w| with the same fraction in every layer. See ``GlobalGradientMagnitude``.
public struct LayerGradientMagnitude: GradientMagnitudeScoring {
    public static let id = "layer-gradient-magnitude"
    public static let summary = "|w·∂L/∂w| over calibration batches, the same fraction per layer (Blalock et al. 2020)"
    public let granularity = Granularity.weight
    public let evidence: Evidence = .weightGradients
    public let preferredScope = SelectionSettings.Scope.perLayer

    public init(options: OptionValues) {}
}

/// The scoring both gradient-magnitude criteria share: |w · ∂L/∂w|.
public protocol GradientMagnitudeScoring: Criterion, OptionConstructible {}

extension GradientMagnitudeScoring {
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        try weightTimesGradient(layer, context)
    }
}

func weightTimesGradient(_ layer: PrunableLayer, _ context: ScoringContext) throws -> [Float] {
    guard let g = context.weightGradient, g.count == layer.weights.count else {
        throw PruneKitError(.plugin, "no weight gradient was gathered for layer '\(layer.path)'")
    }
    return layer.weights.withUnsafeBufferPointer { w in
        g.withUnsafeBufferPointer { gp in (0..<w.count).map { abs(w[$0] * gp[$0]) } }
    }
}

final class GradientMagnitudePlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: GlobalGradientMagnitude.self)
        try registry.register(criterion: LayerGradientMagnitude.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "gradient-magnitude", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(GradientMagnitudePlugin()) }
