import Foundation
import PruneKit

// What a trial measures on a model, and how it reaches a target: the one place that calls
// the SDK's surgery (`Model.prune(with:toward:…)`, `Model.removingPrunedChannels`) and
// measurement (`Model.cost`, `Model.measureLatency`, sparse storage, `ModelIO.savedSize`).

/// Measurements of a model the way every trial takes them.
enum Measure {
    /// Parameters, prunable weights and MACs (`Model.cost`): non-zero parameters and the
    /// MACs of the non-zero weights only, so an unstructured model counts what it kept.
    static func figures(_ model: Model) -> ModelFigures {
        let c = model.compression, cost = model.cost
        return ModelFigures(parameters: cost.parameters, nonzeroParameters: cost.nonZeroParameters,
                            prunableWeights: c.prunableWeights, remainingPrunableWeights: c.prunableWeights - c.prunedWeights,
                            macs: cost.sparseMACs)
    }

    /// Latency at batch 1 and 64 (`Model.measureLatency`: median, p10, p90 over `runs`
    /// timed forward passes after 3 untimed ones), or none when `runs` is 0.
    static func latencies(_ model: Model, runs: Int) throws -> [Latency] {
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

    /// The bytes of the model saved in `scratch` (removed afterwards), or where `kept` says
    /// (replacing what a previous run of the trial left there): `sparse`, with the sparse
    /// storage of unstructured and N:M pruning (`.automatic`: sparse where smaller), else dense.
    static func savedBytes(_ model: Model, sparse: Bool, scratch: String, keeping kept: Kept? = nil) throws -> Int {
        let dir = kept?.directory ?? "\(scratch)/size-\(UUID().uuidString.prefix(8))"
        if kept == nil {
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try model.save(to: dir, storage: sparse ? .automatic : .dense)
            return try ModelIO.savedSize(of: dir)
        }
        try? FileManager.default.removeItem(atPath: dir)
        try model.save(to: dir, metadata: kept?.metadata ?? [:], storage: sparse ? .automatic : .dense)
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
    /// The selection sparsity to prune to so that the model reaches `target`, found
    /// without changing `model` (``Model/sparsity(toward:with:settings:data:calibration:)``):
    /// compression is prunable weights before / after over every conv and linear weight
    /// (what ``TrialResult/compression`` reports); speed-up is MACs before / after.
    ///
    /// With an N:M `settings.pattern` the pattern is the target (sparsity 1 − N/M of the
    /// layers it covers, no search): `target` must be its nominal compression
    /// (``TrialTarget/init(nominalOf:)``), where the trial is reported; any other target, or
    /// a channel criterion, is refused by the SDK's own check, as `prunekit prune --pattern` is.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a target not above 1×, one that
    ///   can't be reached (naming the closest reachable figure), or one a pattern fixes.
    static func sparsity(for target: TrialTarget, criterion: any Criterion, model: Model, settings: TargetedPruningSettings,
                         data: Dataset, calibration: CalibrationSettings) throws -> Double {
        guard target.value.isFinite, target.value > 1 else {
            throw PruneKitError(.invalidArgument, "a target must be above 1×, got \(target)", hint: "2 means half the weights (compression) or half the MACs (speed-up)")
        }
        var goal: PruningTarget = target.axis == .compression ? .compression(target.value) : .speedup(target.value)
        if let pattern = settings.pattern, target == TrialTarget(nominalOf: pattern) { goal = .sparsity(pattern.sparsity) }
        return try model.sparsity(toward: goal, with: criterion, settings: settings, data: data, calibration: calibration)
    }
}
