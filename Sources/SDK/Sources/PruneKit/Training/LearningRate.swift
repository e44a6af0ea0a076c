import Foundation

/// A learning rate as a function of training progress, in (fractional) epochs.
///
/// `warmupEpochs` of linear warm-up from `base·warmupStartFactor` to `base`, then the
/// chosen decay over the remaining epochs.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Decay: Sendable, Equatable {
        /// The same rate throughout.
        case constant
        /// Multiplied by `gamma` every `every` epochs.
        case step(every: Int, gamma: Float)
        /// Cosine annealing from the base rate to `minimum` at the last epoch
        /// (Loshchilov & Hutter 2017, without restarts).
        case cosine(minimum: Float)
    }

    public var base: Float
    public var decay: Decay
    public var warmupEpochs: Double
    public var warmupStartFactor: Float
    /// The length of training, in epochs (cosine decays over it).
    public var totalEpochs: Double

    public init(base: Float, decay: Decay = .constant, totalEpochs: Double,
                warmupEpochs: Double = 0, warmupStartFactor: Float = 0.1) {
        self.base = base; self.decay = decay; self.totalEpochs = totalEpochs
        self.warmupEpochs = warmupEpochs; self.warmupStartFactor = warmupStartFactor
    }

    /// The rate at `epoch` (0 at the start of training; 1.5 halfway through the second epoch).
    public func rate(atEpoch epoch: Double) -> Float {
        if epoch < warmupEpochs {
            let t = Float(epoch / warmupEpochs)
            return base * (warmupStartFactor + (1 - warmupStartFactor) * t)
        }
        switch decay {
        case .constant:
            return base
        case let .step(every, gamma):
            return base * powf(gamma, Float(Int(epoch) / max(every, 1)))
        case let .cosine(minimum):
            let span = max(totalEpochs - warmupEpochs, 1e-9)
            let t = min(max((epoch - warmupEpochs) / span, 0), 1)
            return minimum + (base - minimum) * Float(0.5 * (1 + cos(Double.pi * t)))
        }
    }
}
