extension Model {
    /// The zoo models with a BatchNorm after every convolution: what a criterion that
    /// ranks BatchNorm scales (network slimming) needs.
    public static let batchNormZooModels = ["vgg-small", "vgg-11", "vgg-16", "resnet-20", "resnet-56"]

    /// Whether ``channelRankingProblem(with:beforeTraining:)`` scores anything for
    /// `criterion`: only a channel criterion that needs no data is checked (scoring it
    /// costs one pass over the weights), and, before training, only on a model without
    /// BatchNorm (a freshly initialised BatchNorm has every γ = 1, which training sets apart).
    public func channelRankingIsChecked(for criterion: any Criterion, beforeTraining: Bool) -> Bool {
        guard criterion.granularity == .channel, criterion.evidence.isEmpty else { return false }
        return !(beforeTraining && hasBatchNorm)
    }

    /// Whether any layer of the model is a BatchNorm.
    public var hasBatchNorm: Bool { nodes.contains { $0.layer.kind == .batchNorm } }

    /// Why `criterion` can't rank this model's channels, or `nil` if it can: the one rule
    /// that `prunekit prune`, `prunekit compare`'s plan and every trial apply.
    ///
    /// A channel criterion that needs no data and gives all channels of each prunable layer
    /// but the classifier the same score (per layer) would prune in layer order, silently
    /// (network slimming on a model without BatchNorm: every channel scores the same).
    /// Criteria that need data, and weight criteria, are not checked
    /// (``channelRankingIsChecked(for:beforeTraining:)``).
    /// - Parameter beforeTraining: the model is freshly initialised and will be trained
    ///   before pruning: a model with BatchNorm is then not checked.
    /// - Returns: a ``PruneKitError`` `.invalidArgument` naming the criterion and the model,
    ///   with a hint, for the caller to throw or report.
    /// - Throws: what scoring throws (the criterion's own error, a non-finite score).
    /// Cost: one scoring pass over the weights, when checked.
    public func channelRankingProblem(with criterion: any Criterion, beforeTraining: Bool = false) throws -> PruneKitError? {
        guard channelRankingIsChecked(for: criterion, beforeTraining: beforeTraining) else { return nil }
        let scores = try score(with: criterion, data: nil).filter { !$0.layer.isClassifier }
        guard let first = scores.first?.scores.first,
              scores.allSatisfy({ s in s.scores.allSatisfy { $0 == s.scores.first } }) else { return nil }
        let bn = hasBatchNorm
        return PruneKitError(
            .invalidArgument,
            "criterion '\(criterion.id)' gives all channels of each prunable layer the same score (\(first) in '\(scores[0].layer.path)'), so it can't rank the channels of \(architecture)"
                + (bn ? "" : ", which has no BatchNorm layer"),
            hint: bn ? "check the criterion's options, or use another criterion"
                : "a criterion that ranks BatchNorm scales (slimming) needs a model with BatchNorm: \(Self.batchNormZooModels.joined(separator: ", "))")
    }
}
