import Foundation
import PruneKit

// What a trial measures on a model, and how it reaches a target: the one place that calls
// the SDK's surgery (`Model.prune(with:toward:…)`, `Model.removingPrunedChannels`) and
// measurement (`Model.cost`, `Model.measureLatency`, sparse storage, `ModelIO.savedSize`).

/// Measurements of a model the way every trial and `prunekit prune` take them.
public enum Measure {
    /// Everything a model is measured by, before or after pruning: ``figures(_:)``, the
    /// saved size with automatic storage (``savedBytes(_:scratch:)``), and the latency at
    /// batch 1 and 64 over `latencyRuns` passes (none when 0: a weight-masked model runs the
    /// same dense kernels as before pruning, so there is no change to measure).
    /// - Parameter scratch: a folder for the saved copy, which is removed.
    public static func model(_ model: Model, latencyRuns: Int, scratch: String) throws -> ModelFigures {
        try self.model(model, latencyRuns: latencyRuns, scratch: scratch, keeping: nil)
    }

    /// As ``model(_:latencyRuns:scratch:)``, the saved model kept where `kept` says.
    static func model(_ model: Model, latencyRuns: Int, scratch: String, keeping kept: Kept?) throws -> ModelFigures {
        var f = figures(model)
        f.fileBytes = try savedBytes(model, scratch: scratch, keeping: kept)
        f.latency = try latencies(model, runs: latencyRuns)
        return f
    }

    /// Parameters, prunable weights and MACs (`Model.cost`): non-zero parameters and the
    /// MACs of the non-zero weights only, so an unstructured model counts what it kept.
    public static func figures(_ model: Model) -> ModelFigures {
        let c = model.compression, cost = model.cost
        return ModelFigures(parameters: cost.parameters, nonzeroParameters: cost.nonZeroParameters,
                            prunableWeights: c.prunableWeights, remainingPrunableWeights: c.prunableWeights - c.prunedWeights,
                            macs: cost.sparseMACs)
    }

    /// Latency at batch 1 and 64 (`Model.measureLatency`: median, p10, p90 over `runs`
    /// timed forward passes after 3 untimed ones), or none when `runs` is 0.
    public static func latencies(_ model: Model, runs: Int) throws -> [Latency] {
        guard runs > 0 else { return [] }
        return try [1, 64].map { b in
            let m = try model.measureLatency(batchSize: b, runs: runs, warmup: 3)
            return Latency(batchSize: b, median: m.median, p10: m.p10, p90: m.p90, runs: m.runs)
        }
    }

    /// Where a trial's model is kept, and the metadata saved with it.
    struct Kept {
        var directory: String
        var metadata: [String: String]
    }

    /// The bytes of the model saved in `scratch` (removed afterwards) with automatic
    /// storage: the sparse storage of unstructured and N:M pruning where it is smaller,
    /// else dense (a dense or channel-pruned model).
    public static func savedBytes(_ model: Model, scratch: String) throws -> Int {
        try savedBytes(model, scratch: scratch, keeping: nil)
    }

    /// As ``savedBytes(_:scratch:)``, or saved where `kept` says (replacing what a previous
    /// run of the trial left there), and kept.
    static func savedBytes(_ model: Model, scratch: String, keeping kept: Kept?) throws -> Int {
        let dir = kept?.directory ?? "\(scratch)/size-\(UUID().uuidString.prefix(8))"
        if kept == nil {
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try model.save(to: dir, storage: .automatic)
            return try ModelIO.savedSize(of: dir)
        }
        try? FileManager.default.removeItem(atPath: dir)
        try model.save(to: dir, metadata: kept?.metadata ?? [:], storage: .automatic)
        return try ModelIO.savedSize(of: dir)
    }

    /// The residual policy a configuration names (`within-blocks`, `whole-stream`).
    static func residualPolicy(_ name: String) throws -> ResidualPolicy {
        guard let policy = ResidualPolicy(rawValue: name) else {
            throw PruneKitError(.invalidArgument, "unknown residual policy '\(name)'",
                                hint: "use \(ResidualPolicy.allCases.map(\.rawValue).joined(separator: " or "))")
        }
        return policy
    }

    /// The physically narrower model of a channel-masked one (`Model.removingPrunedChannels`).
    static func physicallyPruned(_ model: Model, policy: ResidualPolicy) throws -> SurgeryResult {
        try model.removingPrunedChannels(policy: policy)
    }
}

/// How a trial reaches its target.
enum TargetSearch {
    /// The SDK's target for a trial's: compression is prunable weights before / after over
    /// every conv and linear weight (what ``TrialResult/compression`` reports); speed-up is
    /// MACs before / after. The SDK's pruning entry point reaches it
    /// (``Model/prune(with:schedule:finetune:toward:context:settings:data:calibration:)``).
    ///
    /// With an N:M `pattern` the pattern is the target (sparsity 1 − N/M of the layers it
    /// covers, no search): `target` must be its nominal compression
    /// (``TrialTarget/init(nominalOf:)``), where the trial is reported; any other target, or
    /// a channel criterion, is refused by the SDK's own check, as `prunekit prune --pattern` is.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a target not above 1×.
    static func goal(for target: TrialTarget, pattern: NMPattern? = nil) throws -> PruningTarget {
        guard target.value.isFinite, target.value > 1 else {
            throw PruneKitError(.invalidArgument, "a target must be above 1×, got \(target)", hint: "2 means half the weights (compression) or half the MACs (speed-up)")
        }
        if let pattern, target == TrialTarget(nominalOf: pattern) { return .sparsity(pattern.sparsity) }
        return target.axis == .compression ? .compression(target.value) : .speedup(target.value)
    }
}
