import Foundation

/// The result of one optimisation step.
public struct StepResult: Sendable {
    /// The mean loss over the batch (before the update).
    public var loss: Float
    /// Examples whose top-1 prediction was right (before the update).
    public var correct: Int
    public var count: Int
}

/// Runs optimisation steps on a model: forward, loss, backward, update.
///
/// A loss that is not finite stops training with a ``PruneKitError`` of kind
/// `.numerical` that says where it happened and suggests a lower learning rate.
public final class Trainer {
    public let model: Model
    public let optimizer: Optimizer
    /// Extra gradient terms added after backward and before the update (for example
    /// network slimming's L1 penalty on BatchNorm γ).
    public var regularizers: [(Model) -> Void] = []
    private let parameters: [Parameter]

    public init(model: Model, optimizer: Optimizer) {
        self.model = model
        self.optimizer = optimizer
        self.parameters = model.trainableParameters
    }

    /// One step on a batch.
    /// - Parameters:
    ///   - images: `[N] + model.inputShape` (or the same elements per example).
    ///   - labels: N class indices.
    ///   - position: where in training this step is, for the error message.
    /// - Throws: ``PruneKitError`` `.numerical` when the loss is NaN or infinite.
    @discardableResult
    public func step(images: Tensor, labels: [Int], position: (epoch: Int, batch: Int) = (0, 0)) throws -> StepResult {
        model.mode = .training
        for p in parameters { p.zeroGradient() }
        let logits = model.forward(images)
        let (loss, grad) = softmaxCrossEntropy(logits: logits, labels: labels)
        guard loss.isFinite else {
            throw PruneKitError(.numerical,
                                "the loss became \(loss) at epoch \(position.epoch + 1), batch \(position.batch + 1)",
                                hint: "training diverged: lower the learning rate (now \(optimizer.learningRate)), for example to \(optimizer.learningRate / 10)")
        }
        let correct = topKCorrect(logits: logits, labels: labels).top1
        model.backward(grad)
        for r in regularizers { r(model) }
        optimizer.step(parameters)
        return StepResult(loss: loss, correct: correct, count: labels.count)
    }
}

/// Accuracy and loss of a model on a labelled set.
public struct Evaluation: Sendable, Equatable {
    public var loss: Float
    public var top1: Double
    public var top5: Double
    public var count: Int
    /// Examples whose outputs held a NaN or an infinity (counted wrong in `top1`, `top5`).
    public var nonFiniteCount = 0

    public init(loss: Float, top1: Double, top5: Double, count: Int) {
        self.loss = loss; self.top1 = top1; self.top5 = top5; self.count = count
    }

    /// This evaluation, if every output was finite.
    /// - Parameter what: the model and data, for the message ("the pruned model on mnist-5k's test split").
    /// - Throws: ``PruneKitError`` `.numerical` when some outputs were NaN or infinite: an
    ///   accuracy computed from them means nothing.
    public func requiringFiniteOutputs(_ what: String) throws -> Evaluation {
        guard nonFiniteCount == 0 else {
            throw PruneKitError(.numerical, "\(what) gives NaN or infinite outputs for \(nonFiniteCount) of \(count) images, so it has no accuracy",
                                hint: "its weights hold NaN or infinite values, or its training diverged: retrain it, or finetune with a lower learning rate")
        }
        return self
    }
}

extension Model {
    /// Evaluates the model in inference mode on `images` `[N, …]` with `labels`, `batchSize`
    /// examples at a time. Restores the previous mode afterwards.
    public func evaluate(images: Tensor, labels: [Int], batchSize: Int = 256) -> Evaluation {
        let saved = mode
        mode = .inference
        defer { mode = saved }
        let n = labels.count, per = images.count / max(n, 1)
        var tally = EvaluationTally()
        var start = 0
        while start < n {
            let end = min(n, start + max(1, batchSize))
            tally.add(logits: forward(images.slice(examples: start..<end, perExample: per)), labels: Array(labels[start..<end]))
            start = end
        }
        return tally.evaluation
    }
}

/// Loss, top-1 and top-5 counts summed over batches: one place for both evaluations.
struct EvaluationTally {
    private var lossSum: Double = 0, top1 = 0, top5 = 0, nonFinite = 0, count = 0

    /// Adds one batch: `logits` `[B, classes]`, `labels` `[B]`.
    mutating func add(logits: Tensor, labels: [Int]) {
        lossSum += Double(softmaxCrossEntropy(logits: logits, labels: labels).loss) * Double(labels.count)
        let (a, b) = topKCorrect(logits: logits, labels: labels)
        top1 += a; top5 += b
        nonFinite += nonFiniteRows(logits)
        count += labels.count
    }

    /// The mean loss and the accuracies over everything added.
    var evaluation: Evaluation {
        let d = Double(max(count, 1))
        var e = Evaluation(loss: Float(lossSum / d), top1: Double(top1) / d, top5: Double(top5) / d, count: count)
        e.nonFiniteCount = nonFinite
        return e
    }
}

extension Tensor {
    /// Examples `range` of a batch-major tensor `[N, …]` with `perExample` elements each.
    public func slice(examples range: Range<Int>, perExample: Int) -> Tensor {
        var out = Tensor(uninitializedShape: [range.count] + shape.dropFirst())
        withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            dst.baseAddress!.update(from: src.baseAddress! + range.lowerBound * perExample, count: range.count * perExample)
        } }
        return out
    }
}
