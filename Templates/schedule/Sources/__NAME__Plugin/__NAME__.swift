import PruneKit

/// Prunes in N steps whose sparsities follow a cubic ramp: large steps while many weights
/// remain, small ones near the target.
///
/// Replace this summary and ``sparsities(toward:)`` with your schedule; keep the
/// documentation in this form, which `prunekit` and the reports rely on.
///
/// With N steps and target sparsity s, step i (1…N) prunes to
///
///     s_i = s · (1 − (1 − i/N)³)
///
/// and the last step reaches s exactly. The finetuning strategy runs after every step.
/// This is the cubic of automated gradual pruning, taken over pruning steps separated by
/// finetuning instead of over training batches (the built-in `agp` does the latter).
///
/// Options (set as `key=value`):
/// - `steps` (int, default 3): the number of pruning steps N, 1…1000.
///
/// Cost: N pruning steps and N runs of the finetuning strategy.
///
/// References: Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning
/// for model compression", ICLR Workshop 2018 (the cubic ramp).
public struct __NAME__: Schedule, OptionConstructible {
    public static let id = "__ID__"
    public static let summary = "N steps along a cubic ramp towards the target (after Zhu & Gupta 2017), from the PruneKit template"
    public static let options: [OptionSpec] = [
        .int("steps", default: 3, help: "the number of pruning steps N (1…1000)"),
    ]

    public let steps: Int

    public init(options: OptionValues) throws {
        let steps = options.int("steps")
        guard (1...1000).contains(steps) else {
            throw PruneKitError(.invalidArgument, "option 'steps' of '\(Self.id)' must be in 1…1000, got \(steps)",
                                hint: "use a step count such as steps=3")
        }
        self.steps = steps
    }

    /// - Parameter target: the final sparsity, the fraction of prunable weights (or
    ///   channels) removed, in [0, 1).
    /// - Returns: the sparsity to reach at each pruning step, non-decreasing, ending
    ///   exactly at `target`.
    public func sparsities(toward target: Double) -> [Double] {
        (1...steps).map { i in
            if i == steps { return target }          // exactly the target, whatever the rounding
            let x = 1 - Double(i) / Double(steps)
            return target * (1 - x * x * x)
        }
    }

    // A schedule that prunes *during* a training run, every k batches, also implements
    // `trainingSteps`: the batch after which each pruning step happens (see the `agp`
    // schedule and the article "Writing a schedule or finetuning strategy"). This one
    // keeps the default, `nil`: steps separated by finetuning.
}

// MARK: - Plugin entry points (what `prunekit --plugin` looks up)

/// Registers this plugin's schedules with the host's registry.
final class __NAME__Entry: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(schedule: __NAME__.self)
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
