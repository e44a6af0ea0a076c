import Foundation

extension Model {
    /// Prunes to `target` along a schedule, with a finetuning strategy: the whole
    /// prune–finetune loop for one criterion.
    ///
    /// - A schedule without ``Schedule/trainingSteps`` (one-shot, iterative): for each
    ///   sparsity sᵢ of ``Schedule/sparsities(toward:)``, prune to sᵢ (as
    ///   ``prune(with:sparsity:scope:excluded:keepClassifier:data:calibration:)``), then run
    ///   `strategy` for step i.
    /// - A schedule with ``Schedule/trainingSteps`` (AGP): one training run with
    ///   `context.training` on `context.train`, pruning to sᵢ once `trainingSteps[i]` batches
    ///   are done (step 0: before the first batch); then `strategy` once, as step 0 of 1.
    ///   The run must be long enough: at least the last training step's batches.
    ///
    /// `context.epochEnded` hears every epoch trained, the pruning run's and the strategy's.
    /// - Returns: the plan of each pruning step, in order.
    /// - Throws: what pruning, training or the strategy throws; for a training-time
    ///   schedule, `.invalidArgument` before any training when the run is too short. A
    ///   pruning step that fails during training stops further pruning and is thrown once
    ///   that run ends (training can't be interrupted from its per-batch hook).
    @discardableResult
    public func prune(with criterion: any Criterion, schedule: any Schedule, finetune strategy: any FinetuneStrategy,
                      target: Double, context: FinetuneContext, scope: SelectionSettings.Scope? = nil,
                      excluded: Set<String> = [], keepClassifier: Bool = true, data: Dataset?,
                      calibration: CalibrationSettings = CalibrationSettings()) throws -> [PruningPlan] {
        try runSchedule(schedule, strategy, target: target, context: context) { s in
            try self.prune(with: criterion, sparsity: s, scope: scope, excluded: excluded, keepClassifier: keepClassifier,
                      data: data, calibration: calibration)
        }
    }

    /// The prune–finetune loop of a schedule, with `step` pruning to a sparsity (shared by
    /// the sparsity and the ``PruningTarget`` versions).
    func runSchedule(_ schedule: any Schedule, _ strategy: any FinetuneStrategy, target: Double, context: FinetuneContext,
                     step: @escaping (Double) throws -> PruningPlan) throws -> [PruningPlan] {
        let sparsities = schedule.sparsities(toward: target)
        guard let trainingSteps = schedule.trainingSteps else {
            var plans: [PruningPlan] = []
            for (i, s) in sparsities.enumerated() {
                plans.append(try step(s))
                try strategy.finetune(self, step: i, of: sparsities.count, context: context)
            }
            return plans
        }
        guard trainingSteps.count == sparsities.count, trainingSteps == trainingSteps.sorted() else {
            throw PruneKitError(.plugin, "schedule '\(type(of: schedule).id)' gives \(sparsities.count) sparsities but \(trainingSteps.count) training steps, or steps out of order")
        }
        let c = context.training
        try c.validate()
        let batches = try DataLoader(context.train, batchSize: c.batchSize).batchCount * (c.epochs - c.startEpoch)
        if let last = trainingSteps.last, last > batches {
            throw PruneKitError(.invalidArgument, "schedule '\(type(of: schedule).id)' prunes until training step \(last), but the training run has only \(batches) batches",
                                hint: "train for more epochs, or shorten the schedule")
        }
        var plans: [PruningPlan] = []
        var next = 0, done = 0
        var failure: Error?
        func pruneDue() {
            while failure == nil, next < trainingSteps.count, trainingSteps[next] <= done {
                do { plans.append(try step(sparsities[next])) } catch { failure = error }
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
        return plans
    }
}
