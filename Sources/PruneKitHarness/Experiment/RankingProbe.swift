import Foundation
import PruneKit

/// Whether a criterion can rank a model's channels (``Model/channelRankingProblem(with:beforeTraining:)``),
/// asked while a comparison is planned, so that one that can't (network slimming on a model
/// without BatchNorm) is left out of "every criterion", or refused when named.
///
/// Asking scores the criterion, which runs plugin code: `compare` asks in a child process
/// (``ChildProcessTrialRunner/probe(_:)``, `prunekit trial --probe`), so that a criterion
/// that crashes, throws, returns NaN or hangs while scoring fails only its own trials
/// (they fail with the reason), never the run.
public struct ChannelRankingProbe: Codable, Sendable {
    public var criterion: CriterionChoice
    /// A zoo name (built with seed 0 for `inputShape` and `classCount`, as the plan builds
    /// it) or the folder of a saved model.
    public var model: String
    public var inputShape: [Int]
    public var classCount: Int
    /// The model is freshly initialised and will be trained first (a zoo name).
    public var beforeTraining: Bool

    public init(criterion: CriterionChoice, model: String, inputShape: [Int], classCount: Int, beforeTraining: Bool) {
        self.criterion = criterion; self.model = model; self.inputShape = inputShape
        self.classCount = classCount; self.beforeTraining = beforeTraining
    }

    /// What the probe found.
    public enum Outcome: Sendable {
        case canRank
        /// The rule's error, with its message and hint.
        case cannotRank(PruneKitError)
        /// The probe itself failed (the criterion crashed, threw, returned NaN or hung):
        /// the criterion stays in the plan and its trials fail with the reason.
        case failed(String)
    }

    /// Runs the probe in this process: a criterion that crashes takes this process down.
    /// - Parameter loaded: the model, when the caller has it already.
    public func run(registry: Registry, model loaded: Model? = nil) -> Outcome {
        do {
            let criterion = try registry.criterion(self.criterion.id, options: self.criterion.options)
            let model = try loaded ?? ExperimentPlan.loadModel(self.model, inputShape: inputShape, classCount: classCount)
            return try model.channelRankingProblem(with: criterion, beforeTraining: beforeTraining).map(Outcome.cannotRank) ?? .canRank
        } catch let e as PruneKitError {
            return .failed(e.hint.map { "\(e.message) (hint: \($0))" } ?? e.message)
        } catch {
            return .failed("\(error)")
        }
    }

    /// What the child writes: the rule's message and hint when it can't rank; `failure`
    /// when the probe failed; all `nil` when it can rank.
    public struct Verdict: Codable, Sendable {
        public var message: String?
        public var hint: String?
        public var failure: String?

        public init(_ outcome: Outcome) {
            switch outcome {
            case .canRank: break
            case let .cannotRank(e): message = e.message; hint = e.hint
            case let .failed(f): failure = f
            }
        }

        public var outcome: Outcome {
            if let failure { return .failed(failure) }
            if let message { return .cannotRank(PruneKitError(.invalidArgument, message, hint: hint)) }
            return .canRank
        }
    }
}

/// Where ``ExperimentPlan/validated(_:registry:probe:)`` asks ``ChannelRankingProbe``s.
public protocol ChannelRankingProbing {
    func probe(_ p: ChannelRankingProbe) -> ChannelRankingProbe.Outcome
}

extension ChildProcessTrialRunner: ChannelRankingProbing {}
