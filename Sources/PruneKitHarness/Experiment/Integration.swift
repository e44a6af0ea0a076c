import Foundation
import PruneKit

// The one place where the experiment code meets the store, the trial runner, the
// baseline cache and the reports. Temporary stand-ins until those land in main.

/// The parts an experiment run is made of, behind one façade so that the command line
/// stays thin.
public enum ExperimentParts {
    /// Opens (or creates) the result store, refusing an incompatible file without touching it.
    public static func openStore(_ path: String) throws -> ExperimentStore { try ResultStore(path: path) }

    /// Opens a store that must already exist.
    public static func openExistingStore(_ path: String) throws -> ExperimentStore {
        try ResultStore.openExisting(path: path, readOnly: true)
    }

    /// Runs trials as `prunekit trial` child processes of `executable`.
    public static func childRunner(executable: String, cacheDirectory: String, threads: Int,
                                   pluginArguments: [String]) -> TrialRunning {
        Unavailable()
    }

    /// Trains baselines in this process, cached in `directory`.
    public static func baselineCache(_ directory: String) -> BaselinePreparing { Unavailable() }

    /// The terminal table of a set of records.
    public static func terminalTable(_ records: [TrialRecord]) -> String { "" }

    /// Writes every report; returns the files written.
    public static func writeReports(_ records: [TrialRecord], to directory: String, title: String) throws -> [String] { [] }

    /// Merges shard stores into one; returns a one-line summary.
    public static func merge(_ sources: [String], into destination: String) throws -> String {
        try ResultStore.merge(sources, into: destination).description
    }

    private struct Unavailable: TrialRunning, BaselinePreparing {
        func run(_ trial: TrialConfiguration) -> TrialResult { .failed("trials can't run in this build") }
        func prepare(_ baseline: BaselineConfiguration) throws -> Bool {
            throw PruneKitError(.invalidArgument, "baselines can't be trained in this build")
        }
    }
}

extension ResultStore: ExperimentStore {
    public func doneTrialIDs(includingFailed: Bool) throws -> Set<String> { try completedTrialIDs(includingFailed: includingFailed) }
    public func add(_ record: TrialRecord) throws { try self.record(record) }
    public func allRecords() throws -> [TrialRecord] { try records() }
    public func remember(experimentID: String, specification: String) throws {
        try saveExperiment(id: experimentID, specification: specification)
    }
}
