import Foundation
import GRDB
import PruneKit

/// What ``ResultStore/merge(_:into:)`` did.
public struct MergeSummary: Sendable, Equatable, CustomStringConvertible {
    /// The source stores, in the order given.
    public var sources: [String]
    /// Trials that were not in the destination (nor in an earlier source).
    public var added: Int
    /// Records already there, identical: skipped.
    public var identical: Int
    /// Failures replaced by a success (a retry in another shard) or by a later failure.
    public var replacedFailures: Int
    /// Failures skipped because a success (or a later failure) of the same trial was there.
    public var skippedFailures: Int
    /// Trials that succeeded in two places with different results: the first one kept
    /// (the destination's, then the sources' in order). Ids, sorted.
    public var conflicts: [String]
    /// Experiment specifications and baselines that were new to the destination.
    public var experimentsAdded: Int
    public var baselinesAdded: Int
    /// Trials in the destination afterwards.
    public var totalTrials: Int

    public var description: String {
        var text = "merged \(sources.count) store\(sources.count == 1 ? "" : "s"): \(added) trial\(added == 1 ? "" : "s") added, "
            + "\(identical) identical duplicate\(identical == 1 ? "" : "s") skipped, "
            + "\(replacedFailures) failure\(replacedFailures == 1 ? "" : "s") replaced, "
            + "\(skippedFailures) failure\(skippedFailures == 1 ? "" : "s") skipped; "
            + "\(experimentsAdded) experiment\(experimentsAdded == 1 ? "" : "s") and \(baselinesAdded) baseline\(baselinesAdded == 1 ? "" : "s") added; "
            + "\(totalTrials) trial\(totalTrials == 1 ? "" : "s") in the destination"
        if !conflicts.isEmpty {
            text += "\n\(conflicts.count) trial\(conflicts.count == 1 ? "" : "s") succeeded twice with different results (the first kept): "
                + conflicts.prefix(5).joined(separator: ", ") + (conflicts.count > 5 ? ", …" : "")
        }
        return text
    }
}

extension ResultStore {
    /// Combines the stores of several shards (a Slurm job array, a Kubernetes indexed job)
    /// into `destination`, which may be new or an existing store.
    ///
    /// Every source is checked before anything is written: a missing file, a file that is
    /// not a store, or a store of another format version is refused and the destination is
    /// left as it was. The merge is one transaction: it happens entirely or not at all. The
    /// sources are opened read-only and never modified. Precedence, as in ``record(_:)``: a
    /// success is never replaced; a failure is replaced by a success or a later failure;
    /// identical duplicates are counted and skipped.
    ///
    /// Cost: one pass over every source's records; one fsync at the end.
    /// - Returns: what was added, skipped and replaced.
    /// - Throws: `PruneKitError` naming the file at fault.
    public static func merge(_ sources: [String], into destination: String) throws -> MergeSummary {
        guard !sources.isEmpty else {
            throw PruneKitError(.invalidArgument, "no source stores to merge into \(destination).",
                                hint: "give the shards' store files, e.g. prunekit merge shard-*.sqlite --into all.sqlite")
        }
        func canonical(_ path: String) -> String {
            URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        }
        let destinationKey = canonical(destination)
        var seen: [String: String] = [:]
        for source in sources {
            let key = canonical(source)
            if key == destinationKey {
                throw PruneKitError(.invalidArgument, "\(source) is both a source and the destination of the merge.",
                                    hint: "merge into a new file, or leave the destination out of the sources")
            }
            if let earlier = seen[key] {
                throw PruneKitError(.invalidArgument, "\(source) is given twice (as \(earlier) and \(source)).",
                                    hint: "give each shard's store once")
            }
            seen[key] = source
        }

        // Check everything before writing anything.
        for source in sources {
            switch try ResultStoreFormat.inspect(source) {
            case .absent:
                throw PruneKitError(.invalidFile, "there is no result store at \(source); nothing was merged.",
                                    hint: "check the path of each shard's store")
            case .blank:
                throw PruneKitError(.invalidFile, "\(source) is empty: it holds no PruneKit results; nothing was merged.",
                                    hint: "leave it out of the merge, or check the path")
            case .store:
                break
            }
        }
        let destinationContents = try ResultStoreFormat.inspect(destination)

        // Read and decode every source (a record that can't be decoded stops the merge here).
        struct Source {
            var trials: [StoredTrial]
            var experiments: [Experiment]
            var baselines: [Baseline]
        }
        let loaded: [Source] = try sources.map { path in
            let store = try ResultStore.openExisting(path: path, readOnly: true)
            let rows = try store.read { db in try Row.fetchAll(db, sql: "SELECT id, record FROM trials ORDER BY finished_at, id") }
            return Source(trials: try rows.map { try StoredTrial(json: $0["record"], id: $0["id"], path: path) },
                          experiments: try store.experiments(), baselines: try store.baselines())
        }

        let store = try ResultStore(path: destination)
        var summary = MergeSummary(sources: sources, added: 0, identical: 0, replacedFailures: 0, skippedFailures: 0,
                                   conflicts: [], experimentsAdded: 0, baselinesAdded: 0, totalTrials: 0)
        do {
            var conflicts = Set<String>()
            try store.write { db in
                for source in loaded {
                    for trial in source.trials {
                        switch try apply(trial, in: db) {
                        case .insert: summary.added += 1
                        case .replace: summary.replacedFailures += 1
                        case .identical: summary.identical += 1
                        case .keepSuccess, .keepLaterFailure: summary.skippedFailures += 1
                        case .conflict: conflicts.insert(trial.id)
                        }
                    }
                    for experiment in source.experiments {
                        try db.execute(sql: "INSERT OR IGNORE INTO experiments (id, specification, created_at) VALUES (?, ?, ?)",
                                       arguments: [experiment.id, experiment.specification, experiment.createdAt])
                        summary.experimentsAdded += db.changesCount
                    }
                    for baseline in source.baselines {
                        try insertBaseline(baseline, replacing: false, in: db)
                        summary.baselinesAdded += db.changesCount
                    }
                }
            }
            summary.conflicts = conflicts.sorted()
            summary.totalTrials = try store.trialCount()
            try? store.checkpoint()
        } catch {
            if destinationContents == .absent {
                // Leave no half-made file behind: the destination did not exist before.
                try? store.close()
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: destination + suffix) }
            }
            throw error
        }
        return summary
    }
}
