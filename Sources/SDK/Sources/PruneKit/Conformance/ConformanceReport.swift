
/// One property that ``checkCriterion(_:seed:skipping:)`` verifies.
public enum ConformanceCheck: String, CaseIterable, Sendable, CustomStringConvertible {
    /// `id` uses only letters, digits, `-`, `_` and `.`, and a registry accepts it.
    case identifier
    /// Every ``OptionSpec``'s default has the spec's type, names are unique, and
    /// `init(options:)` accepts the defaults.
    case defaultOptions
    /// `outputs` scores for ``Granularity/channel``, `outputs · fanIn` for ``Granularity/weight``.
    case scoreCount
    /// No score is NaN or infinite.
    case finiteScores
    /// The same layer, evidence and seed give bit-for-bit the same scores twice.
    case determinism
    /// Permuting a layer's output channels (with its bias, gradient and evidence)
    /// permutes the scores the same way: channel scores one by one, weight scores row block by row block.
    case permutationEquivariance
    /// All-zero weights, bias and evidence: no error, the right count, finite scores.
    case zeroWeights
    /// A criterion that runs passes of its own leaves the model as it found it: every
    /// parameter bit for bit, the masks, zero gradients and the mode.
    case modelUnchanged

    public var description: String { rawValue }
}

/// What ``checkCriterion(_:seed:skipping:)`` found: one result per check and synthetic layer.
public struct ConformanceReport: CustomStringConvertible, Sendable {
    /// Whether a check held, failed (and why, with the offending values), or did not apply.
    public enum Outcome: Equatable, Sendable {
        case passed
        case failed(String)
        case skipped(String)
    }

    /// The outcome of one check on one synthetic layer (`layer` is nil for checks of the type).
    public struct Result: Sendable, CustomStringConvertible {
        public let check: ConformanceCheck
        public let layer: String?
        public let outcome: Outcome

        public var description: String {
            let place = layer.map { " [\($0)]" } ?? ""
            switch outcome {
            case .passed: return "pass  \(check)\(place)"
            case let .failed(why): return "FAIL  \(check)\(place): \(why)"
            case let .skipped(why): return "skip  \(check)\(place): \(why)"
            }
        }
    }

    /// The criterion's ``Criterion/id``.
    public let criterionID: String
    /// Every result, in the order the checks ran.
    public internal(set) var results: [Result] = []

    init(criterionID: String) { self.criterionID = criterionID }

    /// True when no check failed (skipped checks do not count as failures).
    public var passed: Bool { failures.isEmpty }
    /// The failed results.
    public var failures: [Result] { results.filter { if case .failed = $0.outcome { return true }; return false } }
    /// The skipped results, each with its reason.
    public var skipped: [Result] { results.filter { if case .skipped = $0.outcome { return true }; return false } }
    /// The results of one check.
    public func results(of check: ConformanceCheck) -> [Result] { results.filter { $0.check == check } }

    /// A summary line, then one line per failed or skipped result.
    public var description: String {
        let passedCount = results.count - failures.count - skipped.count
        var lines = ["conformance of criterion '\(criterionID)': \(passed ? "passed" : "FAILED") "
                     + "(\(passedCount) passed, \(failures.count) failed, \(skipped.count) skipped)"]
        lines += results.filter { $0.outcome != .passed }.map { "  " + $0.description }
        return lines.joined(separator: "\n")
    }

    mutating func record(_ check: ConformanceCheck, _ layer: String?, _ outcome: Outcome) {
        results.append(Result(check: check, layer: layer, outcome: outcome))
    }
}
