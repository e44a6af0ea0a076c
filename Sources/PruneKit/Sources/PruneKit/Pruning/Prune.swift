extension Model {
    /// Scores, selects and masks in one call: what `prunekit prune` and the harness do
    /// for one pruning step.
    ///
    /// 1. ``score(with:data:settings:)`` gathers the criterion's evidence and scores every layer;
    /// 2. ``selectPruning(_:granularity:settings:criterion:)`` chooses exact counts, in
    ///    `scope` or else the criterion's ``Criterion/preferredScope``;
    /// 3. for channel criteria, ``Criterion/adjustWeights(of:keeping:model:state:context:)`` runs
    ///    for every pruned layer (ThiNet's least-squares rescaling of the next layer);
    /// 4. the plan is applied as masks (physical removal is the job of surgery).
    ///
    /// - Returns: the plan that was applied.
    @discardableResult
    public func prune(with criterion: any Criterion, sparsity: Double, scope: SelectionSettings.Scope? = nil,
                      excluded: Set<String> = [], keepClassifier: Bool = true, data: Dataset?,
                      calibration: CalibrationSettings = CalibrationSettings()) throws -> PruningPlan {
        let settings = SelectionSettings(scope: scope ?? criterion.preferredScope, sparsity: sparsity,
                                         excluded: excluded, keepClassifier: keepClassifier)
        if criterion.granularity == .weight {
            // Streamed: a chunked criterion's scores never exist all at once.
            let sources = try scoreSources(with: criterion, data: data, settings: calibration)
            let plan = try selectPruning(sources, granularity: .weight, settings: settings, criterion: criterion.id)
            try plan.apply(to: self)
            return plan
        }
        let scores = try score(with: criterion, data: data, settings: calibration)
        let plan = try selectPruning(scores, granularity: criterion.granularity, settings: settings, criterion: criterion.id)
        if criterion.granularity == .channel {
            for (layerPlan, s) in zip(plan.layers, scores) where layerPlan.keptCount < layerPlan.units {
                try s.adjustWeights(with: criterion, keeping: layerPlan.keptPositions, model: self, seed: calibration.seed)
            }
        }
        try plan.apply(to: self)
        return plan
    }
}
