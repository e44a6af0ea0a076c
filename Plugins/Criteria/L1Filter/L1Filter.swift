import PruneKit

/// Ranks the output channels of each layer by the ℓ1 norm of their filters and prunes
/// the same fraction in every layer.
///
/// Formula: s_j = Σ_i |W[j, i]| over the filter's `[C/g, kh, kw]` weights (a row of the
/// `[outputs, fanIn]` view). No data needed. Cost: one pass over the weights.
///
/// References: Li, Kadav, Durdanovic, Samet & Graf, "Pruning Filters for Efficient
/// ConvNets", ICLR 2017.
public struct L1Filter: Criterion, OptionConstructible {
    public static let id = "l1-filter"
    public static let summary = "Σ|W[j]| of each filter, the same fraction per layer (Li et al. 2017)"
    public let granularity = Granularity.channel
    public let preferredScope = SelectionSettings.Scope.perLayer

    public init(options: OptionValues) {}

    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        let (rows, cols) = (layer.outputs, layer.fanIn)
        return layer.weights.withUnsafeBufferPointer { w in
            (0..<rows).map { r in
                var s: Float = 0
                for i in 0..<cols { s += abs(w[r * cols + i]) }
                return s
            }
        }
    }
}

final class L1FilterPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: L1Filter.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "l1-filter", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(L1FilterPlugin()) }
