import PruneKit

/// Magnitude pruning: each weight scored by |w|.
///
/// - `global-magnitude`: one threshold over all prunable layers (Han et al. 2015, as
///   evaluated in Blalock et al. 2020).
/// - `layer-magnitude`: the same fraction pruned in every layer (Blalock et al. 2020).
///
/// Formula: s(w) = |w|. No data needed. Cost: one pass over the weights.
///
/// References:
/// - Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient
///   Neural Networks", NeurIPS 2015.
/// - Blalock, Gonzalez Ortiz, Frankle & Guttag, "What is the State of Neural Network
///   Pruning?", MLSys 2020.
public struct GlobalMagnitude: Criterion {
    public static let id = "global-magnitude"
    public static let summary = "|w|, one threshold over all prunable layers (Han et al. 2015)"
    public let granularity = Granularity.weight
    public let preferredScope = SelectionSettings.Scope.global

    public init(options: OptionValues) {}

    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        magnitudes(layer.weights)
    }
}

/// `layer-magnitude`: |w| with the same fraction pruned in every layer. See ``GlobalMagnitude``.
public struct LayerMagnitude: Criterion {
    public static let id = "layer-magnitude"
    public static let summary = "|w|, the same fraction in every layer (Blalock et al. 2020)"
    public let granularity = Granularity.weight
    public let preferredScope = SelectionSettings.Scope.perLayer

    public init(options: OptionValues) {}

    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        magnitudes(layer.weights)
    }
}

func magnitudes(_ w: Tensor) -> [Float] {
    w.withUnsafeBufferPointer { p in p.map { abs($0) } }
}

final class MagnitudePlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: GlobalMagnitude.self)
        try registry.register(criterion: LayerMagnitude.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "magnitude", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(MagnitudePlugin()) }
