import PruneKit

/// Ranks the output channels of each layer by the ℓ1 norm of their filters.
///
/// Replace this summary and ``scores(for:context:)`` with your criterion; keep the
/// documentation in this form, which `prunekit` and the reports rely on.
///
/// Score of output channel `j` of a layer with weights `W` `[outputs, fanIn]`
/// (a convolution's `[O, C/g, kh, kw]` flattened per filter):
///
///     s_j = Σ_k |W[j, k]|
///
/// Higher scores are kept; the lowest are pruned first.
///
/// Options (set as `key=value`):
/// - `scale` (double, default 1): multiplies every score. An example of a typed option;
///   it does not change the ranking.
///
/// Evidence: none (weights only). Cost: one pass over the weights, O(outputs · fanIn).
///
/// References: Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient
/// ConvNets", ICLR 2017.
public struct __NAME__: Criterion, OptionConstructible {
    public static let id = "__ID__"
    public static let summary = "ℓ1 norm of each filter (Li et al. 2017), from the PruneKit template"
    public static let options: [OptionSpec] = [
        .double("scale", default: 1, help: "multiplies every score (does not change the ranking)"),
    ]

    public let granularity = Granularity.channel
    /// The data to gather before scoring: none. Add `.weightGradients`, `.activations`, …
    /// and read them in `scores` (or accumulate them into a `State` of your own in
    /// `observe`, and score in `scores(for:state:context:)`).
    public let evidence: Evidence = []

    let scale: Float

    public init(options: OptionValues) throws {
        let scale = options.double("scale")
        guard scale > 0 else {
            throw PruneKitError(.invalidArgument, "option 'scale' of '\(Self.id)' must be positive, got \(scale)",
                                hint: "use a scale such as scale=1")
        }
        self.scale = Float(scale)
    }

    /// - Returns: one score per output channel of `layer` (`layer.outputs` of them).
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.rows.map { row in scale * row.reduce(0) { $0 + abs($1) } }
    }
}

// MARK: - Plugin entry points (what `prunekit --plugin` looks up)

/// Registers this plugin's criteria with the host's registry.
final class __NAME__Entry: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: __NAME__.self)
    }
}

/// The plugin's entry object, retained once, for the host.
@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(__NAME__Entry()) }

/// The plugin's name and version as a static, NUL-terminated C string of JSON
/// (a Swift string literal is stored NUL-terminated in the binary).
@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> {
    exportPluginInfo(name: "__ID__", version: "0.1.0")
}
