import Foundation
import GRDB
import PruneKit

/// The harness's result store: an SQLite database (through GRDB) that keeps every finished
/// trial, the experiment specifications that produced them and the baselines they started from.
///
/// - Each trial is written in its own transaction as it finishes; a process killed at any
///   moment (kill -9 included) leaves a database that opens and holds every trial committed
///   before. Write-ahead logging, `synchronous = FULL`: a commit is on disk (fsync of the
///   log) when ``record(_:)`` returns, so even a power cut loses no finished trial; the cost,
///   one fsync per trial, is nothing next to a trial's seconds of training.
/// - Several processes may write the same file at once (shards on one machine) and readers
///   may read during writes: writes take SQLite's write lock up front (`BEGIN IMMEDIATE`)
///   and wait for it up to ``busyTimeout`` seconds. Keep the file on a local disk: SQLite's
///   locking is not reliable on network file systems; there, give each shard its own file
///   and combine them with ``merge(_:into:)``.
/// - Thread-safe: one `DatabasePool` (one writer, concurrent readers) per store.
///
/// A trial is identified by its configuration hash (``TrialConfiguration/id``). A succeeded
/// record is never overwritten; a failed one is replaced by a later success (a retry) or a
/// later failure.
public final class ResultStore: Sendable {
    /// How long a write waits for another process's write to finish, in seconds.
    public static let busyTimeout: TimeInterval = 60

    /// The database file.
    public let path: String
    /// Whether the store was opened read-only (``openExisting(path:readOnly:)``).
    public let isReadOnly: Bool
    private let writer: any DatabaseWriter

    /// Opens the store at `path`, or creates it (and its parent directories) if there is none.
    ///
    /// The file is checked before anything is written to it: a file that is not an SQLite
    /// database, a database of another application, or a store of another format version is
    /// refused and left as it is. A file of zero bytes or an SQLite database with no tables
    /// becomes a new store. A directory that can't be written (read-only media, no
    /// permission) is refused with the system's reason. If creating the store fails, the
    /// directories made for it are removed again.
    /// - Throws: `PruneKitError` saying what the file is and what to do.
    public convenience init(path: String) throws {
        try self.init(path: path, directoryWritable: nil)
    }

    /// ``init(path:)`` with the directory's writability given (`nil`: ask `access(2)`), for
    /// tests, which run as root.
    convenience init(path: String, directoryWritable: Bool?) throws {
        let directory = ResultStoreFormat.directory(of: path)
        let contents = try ResultStoreFormat.inspect(path)
        var created: [String] = []
        if contents == .absent {
            created = try FileSystem.makeDirectories(directory, for: "the result store \(path)",
                                                     hint: "give --store a path in a directory you can write to")
        }
        do {
            try self.init(checkedPath: path, readOnly: false, directoryWritable: directoryWritable ?? FileSystem.isWritableDirectory(directory))
        } catch {
            // Take away what this call made: a file that is still blank (never one that
            // another process has meanwhile made a store), and the directories made for it.
            if contents == .absent, (try? ResultStoreFormat.inspect(path)) == .blank {
                for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
            }
            FileSystem.removeCreated(created)
            throw error
        }
    }

    /// Opens a store that must already exist: for `prunekit report` and `prunekit merge`.
    ///
    /// Read-only, it reads a store in a directory this process can't write (read-only
    /// media, a colleague's folder) without creating anything beside it
    /// (``ResultStoreFormat/readAccess(for:directoryWritable:)``).
    /// - Parameter readOnly: open without write access (``record(_:)`` and the other writes throw).
    /// - Throws: `PruneKitError` if there is no file at `path`, if it is empty, or if it is not
    ///   a store this PruneKit reads.
    public static func openExisting(path: String, readOnly: Bool = false) throws -> ResultStore {
        try openExisting(path: path, readOnly: readOnly,
                         directoryWritable: FileSystem.isWritableDirectory(ResultStoreFormat.directory(of: path)))
    }

    /// ``openExisting(path:readOnly:)`` with the directory's writability given (tests run
    /// as root, whom permission bits don't stop, so they pass `false` here).
    static func openExisting(path: String, readOnly: Bool, directoryWritable: Bool) throws -> ResultStore {
        switch try ResultStoreFormat.inspect(path, directoryWritable: directoryWritable) {
        case .absent:
            throw PruneKitError(.invalidFile, "there is no result store at \(path).",
                                hint: "check the path; `prunekit compare --store \(path)` creates one")
        case .blank:
            throw PruneKitError(.invalidFile, "\(path) is empty: it holds no PruneKit results.",
                                hint: "check the path; `prunekit compare --store \(path)` writes results into it")
        case .store:
            return try ResultStore(checkedPath: path, readOnly: readOnly, directoryWritable: directoryWritable)
        }
    }

    /// Opens a path that ``ResultStoreFormat/inspect(_:directoryWritable:)`` accepted.
    private init(checkedPath path: String, readOnly: Bool, directoryWritable: Bool) throws {
        self.path = path
        self.isReadOnly = readOnly
        if readOnly {
            writer = try ResultStoreFormat.readOnlyQueue(path, directoryWritable: directoryWritable, label: "prunekit-results")
            return
        }
        if !directoryWritable {
            let directory = ResultStoreFormat.directory(of: path)
            let reason = FileSystem.whyNotWritable(directory) ?? "not writable"
            let exists = FileManager.default.fileExists(atPath: path)
            throw PruneKitError(.io, "can't \(exists ? "write to the result store" : "create a result store at") \(path): the directory \(directory) is not writable (\(reason)).",
                                hint: exists ? "give --store a path in a writable directory, or copy the store there; `prunekit report --store \(path)` still reads it"
                                             : "give --store a path in a directory you can write to")
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(Self.busyTimeout)
        configuration.label = "prunekit-results"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            writer = try Self.openPool(path: path, configuration: configuration)
        } catch let error as PruneKitError {
            throw error
        } catch {
            throw PruneKitError(.io, "could not open the result store \(path): \(ResultStoreFormat.sqliteMessage(error)).",
                                hint: "check that the directory is writable, the disk is not full, and it is a local disk")
        }
    }

    /// Opens the pool and creates the schema if the file has none. Two processes opening a
    /// new file at once race to switch it to write-ahead logging and to create its log and
    /// index files; SQLite then answers "database is locked" (or, while the other process
    /// sizes the shared-memory index, an I/O error) without waiting for its busy timeout. So
    /// the opening is retried: on "locked" or "busy" for up to ``busyTimeout`` seconds, on an
    /// I/O error a few times, and what persists is the error.
    private static func openPool(path: String, configuration: Configuration) throws -> DatabasePool {
        let deadline = Date().addingTimeInterval(busyTimeout)
        var ioErrors = 0
        while true {
            do {
                let pool = try DatabasePool(path: path, configuration: configuration)
                try pool.writeWithoutTransaction { db in
                    try db.inTransaction(.immediate) {
                        try ResultStoreFormat.createIfNeeded(db, path: path)
                        return .commit
                    }
                }
                return pool
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
                                                    || (error.resultCode == .SQLITE_IOERR && ioErrors < 5) {
                if error.resultCode == .SQLITE_IOERR { ioErrors += 1 }
                guard Date() < deadline else { throw error }
                usleep(20_000)
            }
        }
    }

    // MARK: Trials

    /// What ``record(_:)`` did with a record.
    public enum RecordOutcome: String, Sendable, Equatable {
        /// The trial was not in the store.
        case inserted
        /// The store held a failure of this trial; the new record replaced it.
        case replaced
        /// The store kept what it had: a success (never overwritten), the same record, or a
        /// failure that finished later than the new one.
        case keptExisting
    }

    /// Writes one finished trial, in its own transaction.
    ///
    /// A succeeded record already in the store is never overwritten; a failed one is replaced
    /// by a success, or by a failure that finished later.
    /// - Returns: what happened.
    /// - Throws: `PruneKitError` if the store is read-only or the write fails.
    @discardableResult
    public func record(_ record: TrialRecord) throws -> RecordOutcome {
        try requireWritable()
        let incoming = try StoredTrial(record)
        let decision = try write { db in try Self.apply(incoming, in: db) }
        switch decision {
        case .insert: return .inserted
        case .replace: return .replaced
        case .identical, .keepSuccess, .conflict, .keepLaterFailure: return .keptExisting
        }
    }

    /// The ids of the trials in the store: what a resumed run skips.
    /// - Parameter includingFailed: count failed trials as done (the default); `false` lists
    ///   only succeeded trials, so that a run retries the failed ones.
    public func completedTrialIDs(includingFailed: Bool = true) throws -> Set<String> {
        try read { db in
            Set(try String.fetchAll(db, sql: includingFailed ? "SELECT id FROM trials"
                                                             : "SELECT id FROM trials WHERE status = 'succeeded'"))
        }
    }

    /// Which records ``records(matching:)`` returns; `nil` fields match everything.
    public struct Filter: Sendable, Equatable {
        public var kind: TrialKind?
        public var status: TrialResult.Status?
        public var criterion: String?
        public var model: String?
        public var dataset: String?
        public var seed: UInt64?
        public init(kind: TrialKind? = nil, status: TrialResult.Status? = nil, criterion: String? = nil,
                    model: String? = nil, dataset: String? = nil, seed: UInt64? = nil) {
            self.kind = kind; self.status = status; self.criterion = criterion
            self.model = model; self.dataset = dataset; self.seed = seed
        }
    }

    /// The records in the store, ordered by finish time, then id.
    /// - Throws: `PruneKitError` if a record can't be decoded (a damaged or hand-edited file).
    public func records(matching filter: Filter = Filter()) throws -> [TrialRecord] {
        var clauses: [String] = []
        var arguments = StatementArguments()
        func match(_ column: String, _ value: (any DatabaseValueConvertible)?) {
            guard let value else { return }
            clauses.append("\(column) = ?")
            arguments += [value]
        }
        match("kind", filter.kind?.rawValue)
        match("status", filter.status?.rawValue)
        match("criterion", filter.criterion)
        match("model", filter.model)
        match("dataset", filter.dataset)
        match("seed", filter.seed.map { Int64(bitPattern: $0) })
        let condition = clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
        let rows = try read { db in
            try Row.fetchAll(db, sql: "SELECT id, record FROM trials\(condition) ORDER BY finished_at, id", arguments: arguments)
        }
        return try rows.map { row in try StoredTrial.decode(row["record"], id: row["id"], path: path) }
    }

    /// The record of one trial, or `nil` if the store does not hold it.
    public func record(id: String) throws -> TrialRecord? {
        guard let json = try read({ db in try String.fetchOne(db, sql: "SELECT record FROM trials WHERE id = ?", arguments: [id]) })
        else { return nil }
        return try StoredTrial.decode(json, id: id, path: path)
    }

    /// How many trials the store holds, of one status or of any.
    public func trialCount(status: TrialResult.Status? = nil) throws -> Int {
        try read { db in
            if let status {
                return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM trials WHERE status = ?", arguments: [status.rawValue]) ?? 0
            }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM trials") ?? 0
        }
    }

    // MARK: Experiments

    /// An experiment specification kept for provenance.
    public struct Experiment: Sendable, Equatable {
        public var id: String
        /// The YAML or JSON text that produced the trials.
        public var specification: String
        /// Seconds since 1970.
        public var createdAt: Double
    }

    /// Keeps the specification of an experiment. Saving the same id and text again does
    /// nothing; a different text under the same id is kept as well (both are provenance).
    public func saveExperiment(id: String, specification: String, createdAt: Double = Date().timeIntervalSince1970) throws {
        try requireWritable()
        _ = try write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO experiments (id, specification, created_at) VALUES (?, ?, ?)",
                           arguments: [id, specification, createdAt])
        }
    }

    /// The experiments in the store, oldest first.
    public func experiments() throws -> [Experiment] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, specification, created_at FROM experiments ORDER BY created_at, rowid").map {
                Experiment(id: $0["id"], specification: $0["specification"], createdAt: $0["created_at"])
            }
        }
    }

    // MARK: Baselines

    /// A baseline checkpoint the harness trained, by the hash of its configuration.
    public struct Baseline: Sendable, Equatable {
        public var hash: String
        public var configuration: BaselineConfiguration
        /// Its accuracy on the test split, where it was measured.
        public var accuracy: Accuracy?
        /// Training time, in seconds.
        public var seconds: Double
        /// Where the checkpoint was saved.
        public var path: String
        /// Seconds since 1970.
        public var recordedAt: Double
    }

    /// Records a trained baseline (the latest record of a hash wins: the checkpoint may
    /// have been trained again or moved).
    public func recordBaseline(hash: String, configuration: BaselineConfiguration, accuracy: Accuracy?,
                               seconds: Double, path: String, recordedAt: Double = Date().timeIntervalSince1970) throws {
        try requireWritable()
        let entry = Baseline(hash: hash, configuration: configuration, accuracy: accuracy, seconds: seconds,
                             path: path, recordedAt: recordedAt)
        _ = try write { db in try Self.insertBaseline(entry, replacing: true, in: db) }
    }

    /// The baseline of a configuration hash, or `nil` if none was recorded.
    public func baseline(hash: String) throws -> Baseline? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM baselines WHERE hash = ?", arguments: [hash])
        }.map { try Self.baseline(from: $0, path: path) }
    }

    /// Every recorded baseline, oldest first.
    public func baselines() throws -> [Baseline] {
        try read { db in try Row.fetchAll(db, sql: "SELECT * FROM baselines ORDER BY recorded_at, hash") }
            .map { try Self.baseline(from: $0, path: path) }
    }

    // MARK: Maintenance

    /// Copies the write-ahead log into the database file and empties it, so that the `.sqlite`
    /// file alone holds everything (before copying it to another machine). Cheap; the
    /// harness calls it at the end of a run.
    public func checkpoint() throws {
        try requireWritable()
        do {
            _ = try writer.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        } catch {
            throw PruneKitError(.io, "could not checkpoint the result store \(path): \(ResultStoreFormat.sqliteMessage(error)).",
                                hint: "another process may be reading it; the results are safe in \(path)-wal")
        }
    }

    /// SQLite's `PRAGMA integrity_check`: `["ok"]` for a sound file, otherwise the problems found.
    public func integrityCheck() throws -> [String] {
        try read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
    }

    // MARK: Internals shared with merge

    /// Closes the database connections; the store can't be used afterwards.
    func close() throws { try writer.close() }

    private func requireWritable() throws {
        if isReadOnly {
            throw PruneKitError(.invalidArgument, "the result store \(path) was opened read-only.",
                                hint: "open it with ResultStore(path:) to write to it")
        }
    }

    /// Runs `body` in an immediate transaction (the write lock taken up front, so that two
    /// processes never deadlock upgrading a read to a write), mapping database errors.
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try writer.writeWithoutTransaction { db in
                var value: T?
                try db.inTransaction(.immediate) {
                    value = try body(db)
                    return .commit
                }
                guard let value else {
                    throw PruneKitError(.io, "the write to \(path) was rolled back.")
                }
                return value
            }
        } catch let error as PruneKitError {
            throw error
        } catch {
            throw PruneKitError(.io, "could not write to the result store \(path): \(ResultStoreFormat.sqliteMessage(error)).",
                                hint: "check the disk space and that no other program holds the file locked for over \(Int(Self.busyTimeout)) s")
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try writer.read { db in try body(db) }
        } catch let error as PruneKitError {
            throw error
        } catch {
            throw PruneKitError(.io, "could not read the result store \(path): \(ResultStoreFormat.sqliteMessage(error)).",
                                hint: "check that the file is readable")
        }
    }

    /// What happens when a record meets the store.
    enum Decision: Equatable {
        case insert, replace, identical, keepSuccess, conflict, keepLaterFailure
    }

    /// Applies the precedence rules to one incoming record, inside the caller's transaction:
    /// nothing there → insert; the same record → nothing; a success there → kept (a success
    /// coming in is then a conflict); a failure there → replaced by a success, or by a failure
    /// that finished no earlier.
    static func apply(_ incoming: StoredTrial, in db: Database) throws -> Decision {
        let decision: Decision
        let lookup = try db.cachedStatement(sql: "SELECT status, finished_at, record FROM trials WHERE id = ?")
        if let existing = try Row.fetchOne(lookup, arguments: [incoming.id]) {
            let existingJSON: String = existing["record"]
            let existingStatus: String = existing["status"]
            let existingFinish: Double = existing["finished_at"]
            if existingJSON == incoming.json
                || (try? StoredTrial.decoder.decode(TrialRecord.self, from: Data(existingJSON.utf8))) == incoming.record {
                decision = .identical
            } else if existingStatus == TrialResult.Status.succeeded.rawValue {
                decision = incoming.record.result.status == .succeeded ? .conflict : .keepSuccess
            } else if incoming.record.result.status == .succeeded || incoming.record.finishedAt >= existingFinish {
                decision = .replace
            } else {
                decision = .keepLaterFailure
            }
        } else {
            decision = .insert
        }
        if decision == .insert || decision == .replace { try incoming.write(in: db) }
        return decision
    }

    static func insertBaseline(_ entry: Baseline, replacing: Bool, in db: Database) throws {
        let accuracyJSON = try entry.accuracy.map { String(decoding: try StoredTrial.encoder.encode($0), as: UTF8.self) }
        let configurationJSON = String(decoding: try StoredTrial.encoder.encode(entry.configuration), as: UTF8.self)
        try db.execute(sql: """
            INSERT OR \(replacing ? "REPLACE" : "IGNORE") INTO baselines
                (hash, model, dataset, seed, configuration, top1, accuracy, seconds, path, recorded_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [entry.hash, entry.configuration.model, entry.configuration.dataset,
                             Int64(bitPattern: entry.configuration.seed), configurationJSON, entry.accuracy?.top1,
                             accuracyJSON, entry.seconds, entry.path, entry.recordedAt])
    }

    static func baseline(from row: Row, path: String) throws -> Baseline {
        let hash: String = row["hash"]
        do {
            let configuration = try StoredTrial.decoder.decode(BaselineConfiguration.self, from: Data((row["configuration"] as String).utf8))
            let accuracy = try (row["accuracy"] as String?).map { try StoredTrial.decoder.decode(Accuracy.self, from: Data($0.utf8)) }
            return Baseline(hash: hash, configuration: configuration, accuracy: accuracy, seconds: row["seconds"],
                            path: row["path"], recordedAt: row["recorded_at"])
        } catch {
            throw PruneKitError(.invalidFile, "the baseline \(hash) in \(path) could not be decoded: \(error).",
                                hint: "the file was edited or damaged")
        }
    }
}

/// A trial record as a row: the whole record as JSON plus the columns people query.
struct StoredTrial {
    let record: TrialRecord
    let id: String
    let json: String

    /// Sorted keys (the same record always gives the same text); NaN and infinities as
    /// strings, since a diverged run may leave them in a result.
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "+inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }()
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "+inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }()

    init(_ record: TrialRecord) throws {
        self.record = record
        self.id = record.id
        do {
            self.json = String(decoding: try Self.encoder.encode(record), as: UTF8.self)
        } catch {
            throw PruneKitError(.invalidArgument, "the record of trial \(record.id) could not be encoded: \(error).")
        }
    }

    /// A record read from another store: its JSON is kept as it is.
    init(json: String, id: String, path: String) throws {
        self.record = try Self.decode(json, id: id, path: path)
        self.id = id
        self.json = json
    }

    static func decode(_ json: String, id: String, path: String) throws -> TrialRecord {
        do {
            return try decoder.decode(TrialRecord.self, from: Data(json.utf8))
        } catch {
            throw PruneKitError(.invalidFile, "the record of trial \(id) in \(path) could not be decoded: \(error).",
                                hint: "the file was edited, damaged, or written by an incompatible prunekit")
        }
    }

    /// Inserts or replaces the row.
    func write(in db: Database) throws {
        let c = record.configuration, r = record.result, plugin = c.criterionBuild
        try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO trials (id, kind, criterion, target_axis, target_value, seed, model, dataset,
                schedule, finetune, baseline_hash, status, failure, baseline_top1, pruned_top1, finetuned_top1,
                finetuned_top5, sparsity, compression, whole_model_compression, theoretical_speedup,
                oracle_correlation, finished_at, host, record,
                criterion_file, criterion_version, criterion_build, plugin_sdk_version, sdk_version)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [
                id, c.kind.rawValue, c.criterion, c.target?.axis.rawValue, c.target?.value,
                Int64(bitPattern: c.seed), c.baseline.model, c.baseline.dataset, c.schedule, c.finetune,
                c.baseline.hash, r.status.rawValue, r.failure, r.baselineAccuracy?.top1, r.prunedAccuracy?.top1,
                r.finetunedAccuracy?.top1, r.finetunedAccuracy?.top5, r.sparsity, r.compression,
                r.wholeModelCompression, r.theoreticalSpeedup, r.oracleCorrelation, record.finishedAt, record.host, json,
                plugin?.file, plugin?.version, plugin?.contentHash, plugin?.sdkVersion, record.sdkVersion,
            ])
    }
}
