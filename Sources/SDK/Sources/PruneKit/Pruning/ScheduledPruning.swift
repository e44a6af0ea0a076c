import Foundation

extension Model {
    /// The prune–finetune loop of a schedule of several steps toward sparsity `target`,
    /// with `step` pruning to one sparsity (see
    /// ``prune(with:schedule:finetune:toward:context:settings:data:calibration:)``).
    func runSchedule(_ schedule: any Schedule, _ strategy: any FinetuneStrategy, target: Double, context: FinetuneContext,
                     step: @escaping (Double) throws -> Void) throws {
        let sparsities = schedule.sparsities(toward: target)
        guard let trainingSteps = schedule.trainingSteps else {
            for (i, s) in sparsities.enumerated() {
                try step(s)
                try strategy.finetune(self, step: i, of: sparsities.count, context: context)
            }
            return
        }
        guard trainingSteps.count == sparsities.count, trainingSteps == trainingSteps.sorted() else {
            throw PruneKitError(.plugin, "schedule '\(schedule.id)' gives \(sparsities.count) sparsities but \(trainingSteps.count) training steps, or steps out of order")
        }
        let c = context.training
        try c.validate()
        let batches = try DataLoader(context.train, batchSize: c.batchSize).batchCount * (c.epochs - c.startEpoch)
        if let last = trainingSteps.last, last > batches {
            throw PruneKitError(.invalidArgument, "schedule '\(schedule.id)' prunes until training step \(last), but the training run has only \(batches) batches",
                                hint: "train for more epochs, or shorten the schedule")
        }
        var next = 0, done = 0
        var failure: Error?
        func pruneDue() {
            while failure == nil, next < trainingSteps.count, trainingSteps[next] <= done {
                do { try step(sparsities[next]) } catch { failure = error }
                next += 1
            }
        }
        pruneDue()
        if let failure { throw failure }
        try fit(context.train, validation: context.validation, configuration: c,
                progress: { _ in done += 1; pruneDue() },
                epochEnded: { context.epochEnded?($0) })
        if let failure { throw failure }
        try strategy.finetune(self, step: 0, of: 1, context: context)
    }
}

extension Schedule {
    /// Whether the schedule prunes once, straight to the target, with no training-time
    /// steps (one-shot): `sparsities(toward: s) == [s]`.
    var isSingleStep: Bool {
        trainingSteps == nil && [0.25, 0.5, 0.9].allSatisfy { sparsities(toward: $0) == [$0] }
    }
}
