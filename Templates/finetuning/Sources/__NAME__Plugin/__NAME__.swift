import PruneKit

/// Finetunes briefly between pruning steps and longer after the last one, at a fraction
/// of the original training's learning rate.
///
/// Replace this summary and ``finetune(_:step:of:context:)`` with your strategy; keep the
/// documentation in this form, which `prunekit` and the reports rely on.
///
/// After pruning step `step` of `stepCount`, trains the pruned model on `context.train`
/// for `epochs` epochs (`final-epochs` after the last step) with the original training's
/// settings (`context.training`: batch size, optimiser, weight decay, augmentation, seed),
/// except a constant learning rate of `learning-rate-scale` × the original one. Training
/// keeps pruned weights at zero, so the masks survive. It never looks at the test split.
///
/// Options (set as `key=value`):
/// - `epochs` (int, default 1): epochs after each pruning step but the last, 0…1000.
/// - `final-epochs` (int, default 2): epochs after the last pruning step, 0…1000.
/// - `learning-rate-scale` (double, default 0.1): multiplies the original learning rate,
///   in (0, 1].
///
/// Cost: `epochs` epochs per pruning step but the last, `final-epochs` after it.
///
/// References: Han, Pool, Tran & Dally, "Learning both Weights and Connections for
/// Efficient Neural Networks", NeurIPS 2015 (retraining at a lower learning rate).
public struct __NAME__: FinetuneStrategy, OptionConstructible {
    public static let id = "__ID__"
    public static let summary = "short finetuning between pruning steps, a longer one after the last, at a reduced learning rate (from the PruneKit template)"
    public static let options: [OptionSpec] = [
        .int("epochs", default: 1, help: "epochs after each pruning step but the last (0…1000)"),
        .int("final-epochs", default: 2, help: "epochs after the last pruning step (0…1000)"),
        .double("learning-rate-scale", default: 0.1, help: "multiplies the original learning rate, in (0, 1]"),
    ]

    public let epochs: Int
    public let finalEpochs: Int
    public let learningRateScale: Double

    public init(options: OptionValues) throws {
        epochs = options.int("epochs")
        finalEpochs = options.int("final-epochs")
        learningRateScale = options.double("learning-rate-scale")
        for (key, value) in [("epochs", epochs), ("final-epochs", finalEpochs)] where !(0...1000).contains(value) {
            throw PruneKitError(.invalidArgument, "option '\(key)' of '\(Self.id)' must be in 0…1000, got \(value)",
                                hint: "use an epoch count such as \(key)=1")
        }
        guard learningRateScale > 0 && learningRateScale <= 1 else {   // false for NaN too
            throw PruneKitError(.invalidArgument, "option 'learning-rate-scale' of '\(Self.id)' must be in (0, 1], got \(learningRateScale)",
                                hint: "use a scale such as learning-rate-scale=0.1")
        }
    }

    /// Trains `model` after pruning step `step` (0-based) of `stepCount`.
    ///
    /// - Throws: what training throws (a diverging loss, data that does not fit the model).
    public func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        let n = step + 1 < stepCount ? epochs : finalEpochs
        guard n > 0 else { return }
        var c = context.training
        c.epochs = n
        c.startEpoch = 0
        c.warmupEpochs = 0
        c.learningRate = context.training.learningRate * Float(learningRateScale)
        c.decay = .constant
        try model.fit(context.train, validation: context.validation, configuration: c,
                      epochEnded: { context.epochEnded?($0) })   // progress reports and logs in prunekit
    }

    // A strategy that resets weights to an epoch of the original training (weight
    // rewinding) also implements `checkpointEpochs`, and reads those weights from
    // `context.checkpoints` (see the built-in `rewind` and the article "Writing a schedule
    // or finetuning strategy"). This one keeps the default: none.
}

// MARK: - Plugin entry points (what `prunekit --plugin` looks up)

/// Registers this plugin's finetuning strategies with the host's registry.
final class __NAME__Entry: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(finetune: __NAME__.self)
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
