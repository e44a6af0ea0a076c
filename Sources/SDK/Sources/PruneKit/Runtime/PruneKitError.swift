import Foundation

/// The one error type PruneKit throws: what went wrong, and what a person can do about it.
///
/// Every error that user input can cause (a file, an option, a plugin) is one of these;
/// user input never reaches `fatalError`, `precondition` or a force-unwrap.
public struct PruneKitError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// A broad category, for callers that branch on the kind of failure.
    public enum Kind: String, Sendable {
        /// A file that is missing, truncated, corrupt or of the wrong format.
        case invalidFile
        /// An option, name or value the caller gave that is not valid.
        case invalidArgument
        /// Tensors or weights whose shapes do not fit together.
        case shapeMismatch
        /// Training diverged (a loss or weight became NaN or infinite).
        case numerical
        /// A plugin that could not be loaded or that failed.
        case plugin
        /// Reading or writing failed at the operating-system level.
        case io
    }

    public let kind: Kind
    /// What is wrong, in one sentence.
    public let message: String
    /// What to do about it, where there is something to suggest.
    public let hint: String?

    public init(_ kind: Kind, _ message: String, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.hint = hint
    }

    public var description: String {
        hint.map { "\(message)\n  hint: \($0)" } ?? message
    }

    public var errorDescription: String? { description }
}
