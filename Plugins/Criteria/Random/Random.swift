import PruneKit

/// Scores every weight (or every output channel) of a layer with a seeded uniform random
/// number: the baseline every other criterion has to beat.
///
/// The scores of a layer are a random permutation of `(0.5, 1.5, …, n − 0.5) / n`, drawn
/// from ``ScoringContext/rng`` (derived from the run's seed and the layer's path), so they
/// are uniform on (0, 1), reproducible for a seed, independent across layers and never
/// tied: pruning the lowest k removes exactly k (not a Bernoulli draw with k expected).
///
/// Options: `granularity=weight|channel` (default `weight`).
///
/// References: the random baseline of Blalock et al., "What is the State of Neural
/// Network Pruning?", MLSys 2020.
///
/// Cost: O(n) for n scores; no data, no gradients.
public struct RandomCriterion: Criterion, OptionConstructible {
    public static let id = "random"
    public static let summary = "seeded uniform random scores, exact count (baseline; Blalock et al. 2020)"
    public static let options: [OptionSpec] = [
        .string("granularity", default: "weight", help: "weight (one score per weight) or channel (one per output channel)"),
    ]

    public let granularity: Granularity

    /// - Throws: ``PruneKitError`` `.invalidArgument` if `granularity` is not `weight` or `channel`.
    public init(options: OptionValues) throws {
        let text = options.string("granularity")
        guard let g = Granularity(rawValue: text) else {
            throw PruneKitError(.invalidArgument, "option 'granularity' of 'random' must be weight or channel, got '\(text)'")
        }
        granularity = g
    }

    /// - Returns: `outputs · fanIn` scores (row order) for `.weight`, `outputs` for `.channel`.
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        let n = granularity == .weight ? layer.outputs * layer.fanIn : layer.outputs
        var rng = context.rng
        let scale = 1 / Float(max(n, 1))
        return rng.permutation(n).map { (Float($0) + 0.5) * scale }
    }
}

final class RandomPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: RandomCriterion.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "random", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(RandomPlugin()) }
