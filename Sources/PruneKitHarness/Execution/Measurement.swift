import Foundation
import PruneKit

// What a trial measures on a model, and how it reaches a target: the one place that calls
// the SDK's surgery (`Model.prune(with:toward:…)`, `Model.removingPrunedChannels`) and
// measurement (`Model.cost`, `Model.measureLatency`, sparse storage) APIs.

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

    /// The bytes of the model saved in `scratch` (removed afterwards): `sparse`, with the
    /// sparse storage of unstructured pruning (`.automatic`: sparse where smaller), else dense.
    static func savedBytes(_ model: Model, sparse: Bool, scratch: String) throws -> Int {
        let dir = "\(scratch)/size-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try model.save(to: dir, storage: sparse ? .automatic : .dense)
        return try ModelIO.savedSize(of: dir)
    }

    /// Whether the SDK stores unstructured models sparsely (file size shrinks with sparsity).
    static let hasSparseStorage = true

    /// Whether the SDK removes masked channels physically (`Model.removingPrunedChannels`).
    static let hasSurgery = false

    /// The physically narrower model of a channel-masked one, or `nil` where the SDK has
    /// no surgery yet.
    static func physicallyPruned(_ model: Model, residualPolicy: String) throws -> Model? {
        nil
    }
}

/// How a trial reaches its target.
enum TargetSearch {
    /// The in-scope sparsity to prune to so that the model reaches `target`, found on a
    /// copy of `model` (which is not changed), with notes where the target could only be
    /// approached.
    ///
    /// - Weight criteria, compression R: closed form. Compression is prunable weights
    ///   before / after over every conv and linear weight; with the classifier kept whole
    ///   the in-scope fraction is `total · (1 − 1/R) / inScope`.
    /// - Channel criteria, and any speed-up: the criterion scores once; the smallest
    ///   sparsity whose selection reaches the target is found by bisection (selection and
    ///   masking a copy are cheap next to scoring).
    /// - Throws: ``PruneKitError`` `.invalidArgument` when the target can't be reached,
    ///   naming the closest reachable figure.
    static func sparsity(for target: TrialTarget, criterion: any Criterion, model: Model, data: Dataset,
                         calibration: CalibrationSettings, notes: inout [String]) throws -> Double {
        guard target.value.isFinite, target.value > 1 else {
            throw PruneKitError(.invalidArgument, "a target must be above 1×, got \(target)", hint: "2 means half the weights (compression) or half the MACs (speed-up)")
        }
        let layers = model.prunableLayers()
        let total = layers.reduce(0) { $0 + $1.weights.count }
        let inScope = layers.filter { !$0.isClassifier }.reduce(0) { $0 + $1.weights.count }
        if criterion.granularity == .weight, target.axis == .compression {
            let s = Double(total) * (1 - 1 / target.value) / Double(max(inScope, 1))
            guard s < 1 else {
                throw PruneKitError(.invalidArgument, "\(target) can't be reached with the classifier kept whole: at most \(String(format: "%.1f", Double(total) / Double(max(total - inScope, 1))))× by pruning every other weight",
                                    hint: "ask for a smaller compression")
            }
            return s
        }
        // Score once; bisect the sparsity on copies.
        let sources: [ScoreSource] = criterion.granularity == .weight
            ? try model.scoreSources(with: criterion, data: data, settings: calibration)
            : try model.score(with: criterion, data: data, settings: calibration).map(ScoreSource.init)
        let before = Measure.figures(model)
        func achieved(_ s: Double) throws -> Double {
            let plan = try selectPruning(sources, granularity: criterion.granularity,
                                         settings: SelectionSettings(scope: criterion.preferredScope, sparsity: s), criterion: criterion.id)
            let copy = try model.clone()
            try plan.apply(to: copy)
            let after = Measure.figures(copy)
            return target.axis == .compression
                ? Double(before.prunableWeights) / Double(max(after.remainingPrunableWeights, 1))
                : Double(before.macs) / Double(max(after.macs, 1))
        }
        var lo = 0.0, hi = 1 - 1e-9
        let best = try achieved(hi)
        guard best >= target.value else {
            throw PruneKitError(.invalidArgument, "\(target) can't be reached by '\(criterion.id)' on this model: the most it can prune gives \(String(format: "%.2f", best))×",
                                hint: "ask for at most \(String(format: "%.2f", best))×")
        }
        for _ in 0..<40 where hi - lo > 1e-6 {
            let mid = (lo + hi) / 2
            if try achieved(mid) >= target.value { hi = mid } else { lo = mid }
        }
        return hi
    }
}
