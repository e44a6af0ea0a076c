import Foundation

/// Which optimiser a training run uses, with its settings.
public enum OptimizerChoice: Sendable, Equatable {
    /// SGD with momentum (PyTorch's formulation), optional Nesterov momentum.
    case sgd(momentum: Float = 0.9, nesterov: Bool = false)
    /// Adam with bias correction.
    case adam(beta1: Float = 0.9, beta2: Float = 0.999)
}

/// Everything that determines a training run besides the model and the data.
///
/// The defaults train the zoo's MNIST models well in 10 epochs: SGD with momentum 0.9,
/// learning rate 0.05 with cosine decay, weight decay 5·10⁻⁴, batch 64.
public struct TrainingConfiguration: Sendable, Equatable {
    public var epochs: Int = 10
    public var batchSize: Int = 64
    public var optimizer: OptimizerChoice = .sgd()
    public var learningRate: Float = 0.05
    public var decay: LearningRateSchedule.Decay = .cosine(minimum: 0)
    public var warmupEpochs: Double = 0
    public var weightDecay: Float = 5e-4
    /// Seeds the data order, augmentation and dropout (initial weights come from the model).
    public var seed: UInt64 = 0
    public var augmentation: Augmentation = .none
    /// The first epoch to run (0: from the start). Training runs epochs
    /// `startEpoch..<epochs` with the learning-rate schedule of the whole `epochs`-long run
    /// replayed from `startEpoch` (and the same data order as those epochs of the full run):
    /// what weight rewinding and learning-rate rewinding need (Frankle et al. 2020; Renda
    /// et al. 2020).
    public var startEpoch: Int = 0

    public init() {}

    /// The learning-rate schedule these settings describe.
    public var schedule: LearningRateSchedule {
        LearningRateSchedule(base: learningRate, decay: decay, totalEpochs: Double(epochs), warmupEpochs: warmupEpochs)
    }

    /// A fresh optimiser with these settings.
    public func makeOptimizer() -> Optimizer {
        switch optimizer {
        case let .sgd(momentum, nesterov):
            return SGD(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        case let .adam(beta1, beta2):
            return Adam(learningRate: learningRate, beta1: beta1, beta2: beta2, weightDecay: weightDecay)
        }
    }

    /// Checks the settings, throwing an error that names the bad one.
    public func validate() throws {
        guard epochs >= 0 else { throw PruneKitError(.invalidArgument, "epochs must be ≥ 0, got \(epochs)") }
        guard startEpoch >= 0 && startEpoch <= epochs else {
            throw PruneKitError(.invalidArgument, "the start epoch must be in 0...\(epochs) (the number of epochs), got \(startEpoch)")
        }
        guard batchSize >= 1 else { throw PruneKitError(.invalidArgument, "the batch size must be ≥ 1, got \(batchSize)") }
        guard learningRate.isFinite && learningRate > 0 else {
            throw PruneKitError(.invalidArgument, "the learning rate must be a positive number, got \(learningRate)")
        }
        guard weightDecay.isFinite && weightDecay >= 0 else {
            throw PruneKitError(.invalidArgument, "weight decay must be ≥ 0, got \(weightDecay)")
        }
        guard warmupEpochs.isFinite && warmupEpochs >= 0 else {
            throw PruneKitError(.invalidArgument, "the warm-up must be 0 or more epochs, got \(warmupEpochs)")
        }
        switch optimizer {
        case let .sgd(momentum, _):
            guard momentum.isFinite && momentum >= 0 && momentum < 1 else {
                throw PruneKitError(.invalidArgument, "SGD momentum must be in [0, 1), got \(momentum)", hint: "0.9 is usual")
            }
        case let .adam(beta1, beta2):
            for (name, beta) in [("beta1", beta1), ("beta2", beta2)] where !(beta.isFinite && beta >= 0 && beta < 1) {
                throw PruneKitError(.invalidArgument, "Adam's \(name) must be in [0, 1), got \(beta)", hint: "0.9 and 0.999 are usual")
            }
        }
        switch decay {
        case let .step(every, gamma):
            guard every >= 1 else { throw PruneKitError(.invalidArgument, "a step decay needs at least 1 epoch between steps, got \(every)") }
            guard gamma.isFinite && gamma > 0 && gamma <= 1 else {
                throw PruneKitError(.invalidArgument, "the step decay factor must be in (0, 1], got \(gamma)", hint: "0.1 is usual")
            }
        case let .cosine(minimum):
            guard minimum.isFinite && minimum >= 0 else {
                throw PruneKitError(.invalidArgument, "the cosine schedule's minimum learning rate must be 0 or more, got \(minimum)")
            }
        case .constant: break
        }
    }
}

/// Where a training run is, reported after every batch.
public struct TrainingProgress: Sendable {
    public var epoch: Int, epochs: Int
    public var batch: Int, batches: Int
    /// Mean loss and top-1 accuracy over the epoch so far.
    public var loss: Float, accuracy: Double
    public var imagesPerSecond: Double
    /// Seconds since training started, and the estimate of what is left.
    public var elapsed: Double, remaining: Double
}

/// One epoch's figures.
public struct EpochRecord: Sendable, Codable, Equatable {
    public var epoch: Int
    public var learningRate: Float
    public var trainLoss: Float
    public var trainAccuracy: Double
    public var validationLoss: Float?
    public var validationAccuracy: Double?
    public var seconds: Double
    public var imagesPerSecond: Double
}

extension Model {
    /// Trains the model on `train` for `configuration.epochs` epochs (from
    /// `configuration.startEpoch`, 0 unless a run is replayed from a later epoch).
    ///
    /// After each epoch the model is evaluated on `validation`, if given (never on the
    /// test split: selecting on test data would bias every comparison).
    /// - Parameters:
    ///   - regularizer: adds a penalty's gradient after each backward pass, before the
    ///     update (a criterion's ``Criterion/regularize(_:)``, e.g. network slimming's L1 on γ).
    ///   - epochEnded: called after each epoch with its record; a run can checkpoint here.
    ///   - progress: called after every batch.
    /// - Throws: ``PruneKitError`` `.numerical` if the loss becomes NaN or infinite,
    ///   naming the epoch and batch; `.invalidArgument` for bad settings or data that do
    ///   not fit the model.
    @discardableResult
    public func fit(_ train: Dataset, validation: Dataset? = nil, configuration c: TrainingConfiguration,
                    regularizer: ((Model) -> Void)? = nil,
                    progress: ((TrainingProgress) -> Void)? = nil,
                    epochEnded: ((EpochRecord) throws -> Void)? = nil) throws -> [EpochRecord] {
        try c.validate()
        try checkFits(train)
        if let validation { try checkFits(validation) }
        let optimizer = c.makeOptimizer()
        let trainer = Trainer(model: self, optimizer: optimizer)
        if let regularizer { trainer.regularizers.append(regularizer) }
        for node in nodes { (node.layer as? Dropout)?.reseed(c.seed) }
        let schedule = c.schedule
        var records: [EpochRecord] = []
        let start = Date()
        let batchesPerEpoch = try DataLoader(train, batchSize: c.batchSize).batchCount
        let totalBatches = max(1, batchesPerEpoch * (c.epochs - c.startEpoch))
        for epoch in c.startEpoch..<c.epochs {
            let loader = try DataLoader(train, batchSize: c.batchSize, shuffle: true, seed: c.seed,
                                        epoch: epoch, augmentation: c.augmentation)
            let epochStart = Date()
            var lossSum: Double = 0, correct = 0, seen = 0
            for (b, batch) in loader.enumerated() {
                optimizer.learningRate = schedule.rate(atEpoch: Double(epoch) + Double(b) / Double(max(loader.batchCount, 1)))
                let r = try trainer.step(images: batch.images, labels: batch.labels, position: (epoch, b))
                lossSum += Double(r.loss) * Double(r.count); correct += r.correct; seen += r.count
                if let progress {
                    let elapsed = Date().timeIntervalSince(start)
                    let done = (epoch - c.startEpoch) * batchesPerEpoch + b + 1
                    progress(TrainingProgress(
                        epoch: epoch, epochs: c.epochs, batch: b, batches: loader.batchCount,
                        loss: Float(lossSum / Double(seen)), accuracy: Double(correct) / Double(seen),
                        imagesPerSecond: Double(seen) / max(Date().timeIntervalSince(epochStart), 1e-9),
                        elapsed: elapsed, remaining: elapsed / Double(done) * Double(totalBatches - done)))
                }
            }
            let seconds = Date().timeIntervalSince(epochStart)
            var record = EpochRecord(epoch: epoch, learningRate: schedule.rate(atEpoch: Double(epoch)),
                                     trainLoss: Float(lossSum / Double(max(seen, 1))),
                                     trainAccuracy: Double(correct) / Double(max(seen, 1)),
                                     seconds: seconds, imagesPerSecond: Double(seen) / max(seconds, 1e-9))
            if let validation {
                let e = evaluate(validation)
                record.validationLoss = e.loss; record.validationAccuracy = e.top1
            }
            records.append(record)
            try epochEnded?(record)
        }
        mode = .inference
        return records
    }

    /// Accuracy and loss on a data set, in inference mode, `batchSize` images at a time
    /// (the evaluation view of an image folder: resized and centre-cropped). Memory stays
    /// at one batch of images, whatever the size of the data set.
    public func evaluate(_ data: Dataset, batchSize: Int = 256) -> Evaluation {
        let saved = mode
        mode = .inference
        defer { mode = saved }
        var tally = EvaluationTally()
        for batch in DataLoader(unchecked: data, batchSize: max(1, batchSize)) {
            tally.add(logits: forward(batch.images), labels: batch.labels)
        }
        return tally.evaluation
    }

    /// Throws unless the data set's images and classes fit the model.
    public func checkFits(_ data: Dataset) throws {
        // A model that reads images ([C, H, W]) needs that shape; one that reads flat rows, the size.
        guard inputShape.count == 3 ? data.imageShape == inputShape : data.imageSize == inputShape.reduce(1, *) else {
            throw PruneKitError(.shapeMismatch,
                                "data set '\(data.name)' has images \(data.imageShape), but the model expects \(inputShape)",
                                hint: "build the model for this data set's image shape")
        }
        // Training and evaluation read one row of class scores per example.
        guard outputShape.count == 1 else {
            throw PruneKitError(.shapeMismatch,
                                "the model's output is \(outputShape) per example, not a vector of class scores",
                                hint: "end the model with a classifier (a linear layer, or a global average pool) giving one score per class")
        }
        guard data.classCount <= outputShape.reduce(1, *) else {
            throw PruneKitError(.shapeMismatch,
                                "data set '\(data.name)' has \(data.classCount) classes, but the model has \(outputShape.reduce(1, *)) outputs")
        }
    }
}
