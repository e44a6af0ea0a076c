import Foundation

/// What a training run that saves checkpoints returns.
public struct TrainingRun {
    /// One record per epoch run.
    public var records: [EpochRecord]
    /// The weights saved, by epoch: `k` holds every parameter and state tensor (by dotted
    /// path) after `k` epochs of training; 0 is the weights before training.
    public var checkpoints: [Int: [String: Tensor]]

    public init(records: [EpochRecord], checkpoints: [Int: [String: Tensor]]) {
        self.records = records; self.checkpoints = checkpoints
    }
}

extension Model {
    /// A deep copy of every parameter and state tensor, by dotted path (masks are not
    /// included: a snapshot is values only).
    ///
    /// Cost: one copy of the model's weights.
    public func weightSnapshot() -> [String: Tensor] {
        var snapshot: [String: Tensor] = [:]
        for (path, p) in namedParameters { snapshot[path] = Tensor(shape: p.value.shape, scalars: p.value.scalars) }
        return snapshot
    }

    /// Sets the weights to a snapshot (``weightSnapshot()``, a checkpoint), keeping the
    /// current masks: each tensor is copied in and multiplied by its parameter's mask, so
    /// pruned weights stay zero.
    ///
    /// - Throws: ``PruneKitError`` `.invalidArgument` naming the first parameter the
    ///   snapshot lacks or holds with another shape; nothing is assigned then.
    public func restoreWeights(_ snapshot: [String: Tensor]) throws {
        for (path, p) in namedParameters {
            guard let t = snapshot[path] else {
                throw PruneKitError(.invalidArgument, "the snapshot has no tensor '\(path)'",
                                    hint: "a snapshot must come from a model of the same architecture")
            }
            guard t.shape == p.value.shape else {
                throw PruneKitError(.invalidArgument, "the snapshot's '\(path)' is \(t.shape), the model's is \(p.value.shape)",
                                    hint: "a snapshot must come from a model of the same architecture (before any surgery)")
            }
        }
        for (path, p) in namedParameters {
            let t = snapshot[path]!
            p.assign(Tensor(shape: t.shape, scalars: t.scalars))
            p.applyMask()
        }
    }

    /// A model of the same architecture and node names with weights freshly initialised
    /// from `seed` (as a zoo model or a loaded architecture is), no masks, in training mode.
    ///
    /// - Throws: ``PruneKitError`` `.invalidArgument` when a layer cannot be rebuilt from
    ///   its kind and configuration (see ``clone()``).
    public func freshlyInitialized(seed: UInt64) throws -> Model {
        try ArchitectureSpec(self).build(seed: seed, source: nil)
    }

    /// Multiply–accumulates of one example's forward pass counting only kept weights: each
    /// layer's MACs times the kept fraction of its `weight` mask (an unmasked layer counts
    /// in full). Equals ``macs`` for a model without masks; for a channel-pruned model it
    /// counts the removed filters as removed, as surgery would (up to the next layer's
    /// inputs, which its own mask counts only if that was pruned too).
    public var maskedMACs: Int {
        var total = 0
        for (i, node) in nodes.enumerated() {
            let m = node.layer.macs(inputShapes: inputShapes(ofNode: i))
            guard m > 0, let mask = node.layer.parameter(named: "weight")?.mask, mask.count > 0 else { total += m; continue }
            let kept = mask.withUnsafeBufferPointer { b in b.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
            total += Int((Double(m) * Double(kept) / Double(mask.count)).rounded())
        }
        return total
    }

    /// Trains as ``fit(_:validation:configuration:regularizer:progress:epochEnded:)`` and
    /// saves the weights at the epochs asked for: what rewinding strategies need.
    ///
    /// - Parameter checkpointEpochs: epochs `k` at which to save the weights after `k`
    ///   epochs (0: before training; `configuration.epochs`: at the end). Epochs outside
    ///   `configuration.startEpoch...configuration.epochs` are ignored.
    /// - Returns: the epoch records and the checkpoints, by epoch.
    /// - Throws: as ``fit(_:validation:configuration:regularizer:progress:epochEnded:)``.
    /// Cost: one copy of the weights per checkpoint, in memory.
    public func fit(_ train: Dataset, validation: Dataset? = nil, configuration c: TrainingConfiguration,
                    checkpointEpochs: Set<Int>,
                    regularizer: ((Model) -> Void)? = nil,
                    progress: ((TrainingProgress) -> Void)? = nil,
                    epochEnded: ((EpochRecord) throws -> Void)? = nil) throws -> TrainingRun {
        var checkpoints: [Int: [String: Tensor]] = [:]
        try c.validate()
        if checkpointEpochs.contains(c.startEpoch) { checkpoints[c.startEpoch] = weightSnapshot() }
        let records = try fit(train, validation: validation, configuration: c, regularizer: regularizer,
                              progress: progress) { record in
            if checkpointEpochs.contains(record.epoch + 1) { checkpoints[record.epoch + 1] = self.weightSnapshot() }
            try epochEnded?(record)
        }
        return TrainingRun(records: records, checkpoints: checkpoints)
    }
}
