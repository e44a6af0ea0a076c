import Foundation
import PruneKit

/// Prunes to the target in a single step.
///
/// Sparsities: `[target]`. Cost: one pruning step, one run of the finetuning strategy.
public struct OneShot: Schedule, OptionConstructible {
    public static let id = "one-shot"
    public static let summary = "prune to the target in one step"

    public init(options: OptionValues) {}

    public func sparsities(toward target: Double) -> [Double] { [target] }
}

/// Prunes in `steps` steps towards the target, the strategy finetuning between steps.
///
/// With N steps and target sparsity s, the kept fraction after step i (1…N) falls
/// - linearly: kept_i = 1 − s·i/N, so s_i = s·i/N (the same number of weights per step);
/// - geometrically: kept_i = (1 − s)^(i/N), so s_i = 1 − (1 − s)^(i/N) (the same fraction
///   of the survivors per step, as in iterative magnitude pruning; Han et al. 2015;
///   Frankle & Carbin 2019).
///
/// Both end exactly at s. Cost: N pruning steps and N runs of the strategy.
public struct Iterative: Schedule, OptionConstructible {
    public static let id = "iterative"
    public static let summary = "N steps towards the target, kept fraction falling linearly or geometrically, finetuning between steps"
    public static let options: [OptionSpec] = [
        .int("steps", default: 5, help: "the number of pruning steps N (≥ 1)"),
        .string("decay", default: "geometric", help: "how the kept fraction falls: linear or geometric"),
    ]

    public enum Decay: String { case linear, geometric }
    public let steps: Int
    public let decay: Decay

    public init(options: OptionValues) throws {
        steps = options.int("steps")
        guard steps >= 1 else {
            throw PruneKitError(.invalidArgument, "iterative: steps must be ≥ 1, got \(steps)")
        }
        guard let d = Decay(rawValue: options.string("decay")) else {
            throw PruneKitError(.invalidArgument, "iterative: decay must be linear or geometric, got '\(options.string("decay"))'")
        }
        decay = d
    }

    public func sparsities(toward target: Double) -> [Double] {
        (1...steps).map { i in
            if i == steps { return target }            // exactly the target, whatever the rounding
            let f = Double(i) / Double(steps)
            switch decay {
            case .linear: return target * f
            case .geometric: return 1 - pow(1 - target, f)
            }
        }
    }
}

/// Automated gradual pruning: the sparsity rises during training along a cubic.
///
/// Formula: s_t = s_f + (s_i − s_f)(1 − t/n)³ for training steps t in [0, n], pruning every
/// k steps: at t = k, 2k, … and at t = n (so the last step reaches s_f exactly even when k
/// does not divide n), and also at t = 0 when s_i > 0 (pruning to s_i before training; with
/// the default s_i = 0 that step would prune nothing and is left out). ``trainingSteps``
/// gives those t; the strategy runs once, after the training run. s_f is the target;
/// s_i is clamped to it.
///
/// Deviation: the paper's start step t₀ is not an option; the caller counts t from the
/// start of its pruning phase.
///
/// References: Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning
/// for model compression", ICLR Workshop 2018 (arXiv 2017).
public struct AGP: Schedule, OptionConstructible {
    public static let id = "agp"
    public static let summary = "s_t = s_f + (s_i − s_f)(1 − t/n)³ over n training steps, pruning every k (Zhu & Gupta 2017)"
    public static let options: [OptionSpec] = [
        .int("steps", default: 1000, help: "n: the training steps (batches) over which the sparsity rises (≥ 1)"),
        .int("every", default: 100, help: "k: prune every k training steps (≥ 1)"),
        .double("initial", default: 0, help: "s_i: the sparsity at t = 0, in [0, 1)"),
    ]

    public let steps: Int, every: Int
    public let initial: Double

    public init(options: OptionValues) throws {
        steps = options.int("steps"); every = options.int("every"); initial = options.double("initial")
        guard steps >= 1 else { throw PruneKitError(.invalidArgument, "agp: steps (n) must be ≥ 1, got \(steps)") }
        guard every >= 1 else { throw PruneKitError(.invalidArgument, "agp: every (k) must be ≥ 1, got \(every)") }
        guard initial >= 0 && initial < 1 else {
            throw PruneKitError(.invalidArgument, "agp: initial (s_i) must be in [0, 1), got \(initial)")
        }
    }

    /// The sparsity at training step `t` (clamped to [0, n]) for the final sparsity `target`.
    public func sparsity(atStep t: Int, toward target: Double) -> Double {
        let si = min(initial, target)
        let x = 1 - Double(min(max(t, 0), steps)) / Double(steps)
        return target + (si - target) * x * x * x
    }

    public var trainingSteps: [Int]? {
        var t = Array(stride(from: every, to: steps, by: every))
        t.append(steps)
        return initial > 0 ? [0] + t : t
    }

    public func sparsities(toward target: Double) -> [Double] {
        (trainingSteps ?? []).map { sparsity(atStep: $0, toward: target) }
    }
}

final class SchedulesPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(schedule: OneShot.self)
        try registry.register(schedule: Iterative.self)
        try registry.register(schedule: AGP.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "schedules", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(SchedulesPlugin()) }
