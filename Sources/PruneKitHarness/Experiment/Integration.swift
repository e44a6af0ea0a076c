import Foundation
import PruneKit

// The one place where the experiment code meets the store, the trial runner, the
// baseline cache and the reports.

/// The parts an experiment run is made of, behind one façade so that the command line
/// stays thin.
public enum ExperimentParts {
    /// Opens (or creates) the result store, refusing an incompatible file without touching it.
    public static func openStore(_ path: String) throws -> ExperimentStore { try ResultStore(path: path) }

    /// Creates the folder where trials keep their pruned models (``ExperimentSpec/models``),
    /// before any trial runs, or says why it can't (the system's reason).
    /// - Throws: `PruneKitError(.io)` with a hint.
    public static func makeModelsDirectory(_ path: String) throws {
        _ = try FileSystem.makeDirectories(path, for: "the pruned models (--models)",
                                           hint: "give --models a folder you can write to (it is created if missing)")
    }

    /// Opens a store that must already exist.
    public static func openExistingStore(_ path: String) throws -> ExperimentStore {
        try ResultStore.openExisting(path: path, readOnly: true)
    }

    /// Runs trials (and probes, ``ChannelRankingProbe``) as `prunekit trial` child processes
    /// of `executable`, so a crashing or hanging plugin takes down only its own trial.
    /// Removes the work folders of earlier runs that were killed; call
    /// ``ChildProcessTrialRunner/removeWorkDirectory()`` when the run ends.
    public static func childRunner(executable: String, cacheDirectory: String, threads: Int,
                                   pluginFiles: [String], pluginDirectories: [String],
                                   timeLimit: TrialTimeLimit = .none, modelsDirectory: String? = nil) -> ChildProcessTrialRunner {
        ChildProcessTrialRunner.removeStaleWorkDirectories()
        var runner = ChildProcessTrialRunner(executable: executable, cacheDirectory: cacheDirectory, pluginFiles: pluginFiles,
                                             pluginDirectories: pluginDirectories, threads: threads, timeLimit: timeLimit)
        runner.modelsDirectory = modelsDirectory
        return runner
    }

    /// Trains baselines in this process, cached in `directory`, and notes each in `store`.
    public static func baselineCache(_ directory: String, store: ExperimentStore,
                                     log: ((String) -> Void)? = nil) -> BaselinePreparing {
        CachedBaselines(directory: directory, store: store, log: log)
    }

    /// The terminal table of a set of records.
    public static func terminalTable(_ records: [TrialRecord]) -> String { Report.terminalTable(Analysis(records)) }

    /// Writes report.md, trials.csv, results.json and report.html; returns the files written.
    public static func writeReports(_ records: [TrialRecord], to directory: String, title: String) throws -> [String] {
        try Report.write(records, to: directory, title: title)
    }

    /// What a store's report shows: every trial in the store, whichever run last added to
    /// it (a `compare` of some criteria against a store holding more reports them all), and
    /// its title. `compare` and `report` both use this, so they write the same report.
    public struct StoreReport {
        public var records: [TrialRecord]
        public var title: String
    }

    /// The report of the store at `path`: all its records, titled `title` or else by
    /// ``reportTitle(of:path:)``.
    public static func storeReport(_ store: ExperimentStore, path: String, title: String? = nil) throws -> StoreReport {
        StoreReport(records: try store.allRecords(), title: try title ?? reportTitle(of: store, path: path))
    }

    /// The title of a store's report: the names of the experiments that wrote to it, in
    /// the order they first did (`name:` in their specs; `default`, the name of an unnamed
    /// experiment, left out), joined by " + "; without any, the store's file name.
    public static func reportTitle(of store: ExperimentStore, path: String) throws -> String {
        var names: [String] = []
        for experiment in try (store as? ResultStore)?.experiments() ?? [] {
            let object = try? JSONSerialization.jsonObject(with: Data(experiment.specification.utf8)) as? [String: Any]
            if let name = object?["name"] as? String, !name.isEmpty, name != ExperimentSpec().name, !names.contains(name) {
                names.append(name)
            }
        }
        return names.isEmpty ? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent : names.joined(separator: " + ")
    }

    /// Merges shard stores into one; returns a one-line summary.
    public static func merge(_ sources: [String], into destination: String) throws -> String {
        try ResultStore.merge(sources, into: destination).description
    }

    private struct CachedBaselines: BaselinePreparing {
        let directory: String
        let store: ExperimentStore
        let log: ((String) -> Void)?
        func prepare(_ baseline: BaselineConfiguration) throws -> Bool {
            let artifact = try BaselineCache.ensure(baseline, cacheDirectory: directory, log: log)
            if let store = store as? ResultStore {
                try store.recordBaseline(hash: artifact.hash, configuration: baseline, accuracy: artifact.testAccuracy,
                                         seconds: artifact.seconds, path: artifact.directory)
            }
            return !artifact.trainedNow
        }
    }
}

extension ChildProcessTrialRunner: TrialRunning {}

extension ResultStore: ExperimentStore {
    public func doneTrialIDs(includingFailed: Bool) throws -> Set<String> { try completedTrialIDs(includingFailed: includingFailed) }
    public func add(_ record: TrialRecord) throws { try self.record(record) }
    public func allRecords() throws -> [TrialRecord] { try records() }
    public func remember(experimentID: String, specification: String) throws {
        try saveExperiment(id: experimentID, specification: specification)
    }
}
