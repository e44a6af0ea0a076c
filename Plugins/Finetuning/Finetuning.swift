import Foundation
import PruneKit

// Five finetuning strategies: what happens to the weights after each pruning step. All
// keep the masks: every weight they set is multiplied by its mask, and training keeps
// masked weights at zero. Where a strategy keeps the best epoch (`keep-best=true`), it
// chooses on `context.validation`, held out from the training data, never on the test
// split; without a validation split it keeps the last epoch.

/// Trains `model` with `configuration` and, when asked and a validation split exists,
/// restores the weights of the epoch with the best validation accuracy (ties: the lower
/// validation loss, then the earlier epoch).
func train(_ model: Model, configuration: TrainingConfiguration, context: FinetuneContext, keepBest: Bool) throws {
    var best: (accuracy: Double, loss: Float, weights: [String: Tensor])?
    let keeping = keepBest && context.validation != nil
    try model.fit(context.train, validation: context.validation, configuration: configuration) { record in
        context.epochEnded?(record)
        guard keeping, let accuracy = record.validationAccuracy else { return }
        let loss = record.validationLoss ?? .infinity
        if best == nil || accuracy > best!.accuracy || (accuracy == best!.accuracy && loss < best!.loss) {
            best = (accuracy, loss, model.weightSnapshot())
        }
    }
    if let best { try model.restoreWeights(best.weights) }
}

/// Leaves the weights as pruning left them.
public struct NoFinetuning: FinetuneStrategy, OptionConstructible {
    public static let id = "none"
    public static let summary = "no training after pruning"

    public init(options: OptionValues) {}

    public func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {}
}

/// Trains the pruned model for E epochs at a given learning rate and optimiser, keeping
/// the best epoch on the validation split (if there is one, and `keep-best` is on).
///
/// Batch size, weight decay, augmentation and seed are the original training's. Cost: E
/// epochs per pruning step.
///
/// References: Han, Pool, Tran & Dally, "Learning both Weights and Connections for
/// Efficient Neural Networks", NeurIPS 2015 (prune, then retrain at a lower rate).
public struct Finetune: FinetuneStrategy, OptionConstructible {
    public static let id = "finetune"
    public static let summary = "train E epochs at a given learning rate and optimiser, keeping the best validation epoch"
    public static let options: [OptionSpec] = [
        .int("epochs", default: 5, help: "E: epochs of finetuning per pruning step (≥ 0)"),
        .double("learning-rate", default: 0.01, help: "the learning rate (> 0)"),
        .string("optimizer", default: "sgd", help: "sgd (momentum 0.9) or adam"),
        .string("decay", default: "constant", help: "learning-rate decay over the E epochs: constant or cosine"),
        .bool("keep-best", default: true, help: "restore the epoch with the best validation accuracy (needs a validation split)"),
    ]

    public let epochs: Int
    public let learningRate: Double
    public let optimizer: OptimizerChoice
    public let decay: LearningRateSchedule.Decay
    public let keepBest: Bool

    public init(options: OptionValues) throws {
        epochs = options.int("epochs"); learningRate = options.double("learning-rate"); keepBest = options.bool("keep-best")
        guard epochs >= 0 else { throw PruneKitError(.invalidArgument, "finetune: epochs must be ≥ 0, got \(epochs)") }
        guard learningRate > 0 else { throw PruneKitError(.invalidArgument, "finetune: learning-rate must be > 0, got \(learningRate)") }
        switch options.string("optimizer") {
        case "sgd": optimizer = .sgd()
        case "adam": optimizer = .adam()
        case let other: throw PruneKitError(.invalidArgument, "finetune: optimizer must be sgd or adam, got '\(other)'")
        }
        switch options.string("decay") {
        case "constant": decay = .constant
        case "cosine": decay = .cosine(minimum: 0)
        case let other: throw PruneKitError(.invalidArgument, "finetune: decay must be constant or cosine, got '\(other)'")
        }
    }

    public func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        var c = context.training
        c.epochs = epochs; c.startEpoch = 0; c.learningRate = Float(learningRate)
        c.optimizer = optimizer; c.decay = decay; c.warmupEpochs = 0
        try train(model, configuration: c, context: context, keepBest: keepBest)
    }
}

/// Weight rewinding: keeps the mask, resets the surviving weights to their values at
/// epoch k of the original training (k = 0: at initialisation, the lottery ticket), then
/// trains for the original run's remaining epochs k..<T with its learning-rate schedule
/// replayed from epoch k.
///
/// Needs `context.checkpoints[k]`: train the original model with
/// ``Model/fit(_:validation:configuration:checkpointEpochs:regularizer:progress:epochEnded:)``
/// and `checkpointEpochs: [k]`. Every parameter and state tensor (biases, BatchNorm
/// statistics) is reset. Cost: T − k epochs per pruning step.
///
/// References: Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019; Frankle,
/// Dziugaite, Roy & Carbin, "Linear Mode Connectivity and the Lottery Ticket Hypothesis",
/// ICML 2020 (rewinding to an early epoch k).
public struct Rewind: FinetuneStrategy, OptionConstructible {
    public static let id = "rewind"
    public static let summary = "reset the surviving weights to epoch k of the original training, then train (Frankle & Carbin 2019; Frankle et al. 2020)"
    public static let options: [OptionSpec] = [
        .int("epoch", default: 0, help: "k: the epoch to rewind to (0: initialisation); its checkpoint must have been saved"),
        .bool("keep-best", default: false, help: "restore the epoch with the best validation accuracy (needs a validation split)"),
    ]

    public let epoch: Int
    public let keepBest: Bool

    public init(options: OptionValues) throws {
        epoch = options.int("epoch"); keepBest = options.bool("keep-best")
        guard epoch >= 0 else { throw PruneKitError(.invalidArgument, "rewind: epoch must be ≥ 0, got \(epoch)") }
    }

    /// The checkpoint of epoch k.
    public var checkpointEpochs: Set<Int> { [epoch] }

    public func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        guard let weights = context.checkpoints[epoch] else {
            let saved = context.checkpoints.keys.sorted().map(String.init).joined(separator: ", ")
            throw PruneKitError(.invalidArgument, "rewind: no checkpoint of epoch \(epoch) (saved: \(saved.isEmpty ? "none" : saved))",
                                hint: "train the original model with fit(…, checkpointEpochs: [\(epoch)])")
        }
        guard epoch <= context.training.epochs else {
            throw PruneKitError(.invalidArgument, "rewind: epoch \(epoch) is past the original training's \(context.training.epochs) epochs")
        }
        try model.restoreWeights(weights)
        var c = context.training
        c.startEpoch = epoch
        try train(model, configuration: c, context: context, keepBest: keepBest)
    }
}

/// Keeps only the pruned architecture (the masks): initialises the weights afresh and
/// trains from scratch with the original training's settings.
///
/// Budgets (Liu et al. 2019):
/// - `scratch-e`: the original number of epochs T;
/// - `scratch-b`: the same computation, counted as epochs × MACs of one forward pass:
///   T_B = round(T · MACs_original / MACs_pruned), never fewer than T, where MACs_pruned is
///   ``Model/maskedMACs`` (each layer's MACs times its kept weight fraction) and
///   MACs_original is `context.originalMACs`, or the model's dense ``Model/macs``. The
///   learning-rate schedule is stretched to T_B (cosine over T_B epochs; a step decay's
///   period scaled by T_B / T).
///
/// The fresh weights come from ``Model/freshlyInitialized(seed:)`` with the `seed` option
/// mixed with the step, and are copied into new tensors: the result shares no weight with
/// the pruned model. Cost: T (or T_B) epochs per pruning step.
///
/// References: Liu, Sun, Zhou, Huang & Darrell, "Rethinking the Value of Network
/// Pruning", ICLR 2019.
public struct Reinit: FinetuneStrategy, OptionConstructible {
    public static let id = "reinit"
    public static let summary = "keep the pruned architecture, initialise afresh and train: scratch-e or scratch-b (Liu et al. 2019)"
    public static let options: [OptionSpec] = [
        .string("budget", default: "scratch-e", help: "scratch-e (the original epochs) or scratch-b (the original computation)"),
        .int("seed", default: 1_000_003, help: "seeds the fresh initialisation; must differ from the original model's"),
        .bool("keep-best", default: false, help: "restore the epoch with the best validation accuracy (needs a validation split)"),
    ]

    public enum Budget: String { case scratchE = "scratch-e", scratchB = "scratch-b" }
    public let budget: Budget
    public let seed: Int
    public let keepBest: Bool

    public init(options: OptionValues) throws {
        guard let b = Budget(rawValue: options.string("budget")) else {
            throw PruneKitError(.invalidArgument, "reinit: budget must be scratch-e or scratch-b, got '\(options.string("budget"))'")
        }
        budget = b; seed = options.int("seed"); keepBest = options.bool("keep-best")
    }

    /// Scratch-B's epochs for a run of `epochs` epochs: round(epochs · original / pruned), at least `epochs`.
    public static func scratchBEpochs(epochs: Int, originalMACs: Int, prunedMACs: Int) -> Int {
        guard prunedMACs > 0 else { return epochs }
        return max(epochs, Int((Double(epochs) * Double(originalMACs) / Double(prunedMACs)).rounded()))
    }

    public func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        let fresh = try model.freshlyInitialized(seed: UInt64(bitPattern: Int64(seed)) &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15)
        let mine = model.namedParameters, theirs = fresh.namedParameters
        guard mine.count == theirs.count, zip(mine, theirs).allSatisfy({ $0.path == $1.path && $0.parameter.value.shape == $1.parameter.value.shape }) else {
            throw PruneKitError(.invalidArgument, "reinit: '\(model.architecture)' does not rebuild with the same parameters")
        }
        for (m, t) in zip(mine, theirs) {
            m.parameter.assign(Tensor(shape: t.parameter.value.shape, scalars: t.parameter.value.scalars))
            m.parameter.applyMask()
        }
        var c = context.training
        c.startEpoch = 0
        if budget == .scratchB {
            let pruned = model.maskedMACs
            guard pruned > 0 else {
                throw PruneKitError(.invalidArgument, "reinit: the pruned model has no multiply–accumulates left, so scratch-b has no budget to match")
            }
            let epochs = Reinit.scratchBEpochs(epochs: c.epochs, originalMACs: context.originalMACs ?? model.macs, prunedMACs: pruned)
            if case let .step(every, gamma) = c.decay, c.epochs > 0 {
                c.decay = .step(every: max(1, Int((Double(every) * Double(epochs) / Double(c.epochs)).rounded())), gamma: gamma)
            }
            c.epochs = epochs
        }
        try train(model, configuration: c, context: context, keepBest: keepBest)
    }
}

/// Learning-rate rewinding: keeps the pruned, trained weights and finetunes them with the
/// original training's learning-rate schedule replayed from epoch k, for the remaining
/// T − k epochs (the original optimiser and settings).
///
/// References: Renda, Frankle & Carbin, "Comparing Rewinding and Fine-tuning in Neural
/// Network Pruning", ICLR 2020.
public struct LearningRateRewind: FinetuneStrategy, OptionConstructible {
    public static let id = "lr-rewind"
    public static let summary = "finetune with the original learning-rate schedule replayed from epoch k (Renda et al. 2020)"
    public static let options: [OptionSpec] = [
        .int("epoch", default: 0, help: "k: the epoch of the original schedule to replay from (0 ≤ k ≤ T)"),
        .bool("keep-best", default: false, help: "restore the epoch with the best validation accuracy (needs a validation split)"),
    ]

    public let epoch: Int
    public let keepBest: Bool

    public init(options: OptionValues) throws {
        epoch = options.int("epoch"); keepBest = options.bool("keep-best")
        guard epoch >= 0 else { throw PruneKitError(.invalidArgument, "lr-rewind: epoch must be ≥ 0, got \(epoch)") }
    }

    public func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        guard epoch <= context.training.epochs else {
            throw PruneKitError(.invalidArgument, "lr-rewind: epoch \(epoch) is past the original training's \(context.training.epochs) epochs")
        }
        var c = context.training
        c.startEpoch = epoch
        try train(model, configuration: c, context: context, keepBest: keepBest)
    }
}

final class FinetuningPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(finetune: NoFinetuning.self)
        try registry.register(finetune: Finetune.self)
        try registry.register(finetune: Rewind.self)
        try registry.register(finetune: Reinit.self)
        try registry.register(finetune: LearningRateRewind.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "finetuning", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(FinetuningPlugin()) }
