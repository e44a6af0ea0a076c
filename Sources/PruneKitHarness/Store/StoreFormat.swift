import Foundation
import GRDB
import PruneKit

// The on-disk format of a result store, and the checks that run before anything is
// written: a file that is not an SQLite database, a database of another application or a
// store of a newer format is refused with a clear error and left exactly as it was.

/// What a store file is made of: its format name, its version and its tables.
///
/// Version 1:
/// - `meta(key, value)`: `format` = `prunekit-results`, `version` = `1`, `created_at`,
///   `created_by` (the SDK version). `PRAGMA user_version` mirrors the version and
///   `PRAGMA application_id` is ``applicationID`` ("PKRS"), so `file(1)` and other tools
///   can tell the file apart.
/// - `trials`: one row per trial id (the configuration hash), with the columns people
///   query and the whole ``TrialRecord`` as JSON (`record`) for a lossless round trip.
/// - `experiments`: the specifications that produced the trials (provenance).
/// - `baselines`: the baseline checkpoints trained for the trials, by configuration hash.
///
/// Version 2 (issue 15): trial ids include the builds of the plugins that ran them
/// (``TrialConfiguration/plugins``), and `trials` has five more columns, for the criterion's
/// plugin and the SDK: `criterion_file`, `criterion_version`, `criterion_build` (its content
/// hash), `plugin_sdk_version` (the SDK it was built against) and `sdk_version` (the SDK of
/// the PruneKit that ran the trial). The whole record keeps every plugin's build.
///
/// Older stores: a version-1 store is read as it is (its records decode, without plugin
/// builds), and migrated in place the first time it is opened for writing (`compare`, or
/// `merge` into it): the columns are added, empty for its old trials, whose builds were
/// never recorded, and `meta` notes `migrated_from` = `1`. Its old trials are not reused
/// by a new run (their ids lack the builds), and reports show their builds as not
/// recorded. A PruneKit that writes version 1 refuses a version-2 store as newer, so it
/// can't add trials without builds to it.
public enum ResultStoreFormat {
    /// The format name kept in `meta`.
    public static let name = "prunekit-results"
    /// The version this PruneKit writes (and the newest it reads).
    public static let version = 2
    /// The oldest version this PruneKit reads (and migrates when writing).
    public static let oldestReadableVersion = 1
    /// `PRAGMA application_id`: the ASCII bytes "PKRS".
    public static let applicationID: Int32 = 0x504B_5253

    static let schema = """
        CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
        CREATE TABLE trials (
            id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            criterion TEXT NOT NULL,
            target_axis TEXT,
            target_value REAL,
            seed INTEGER NOT NULL,
            model TEXT NOT NULL,
            dataset TEXT NOT NULL,
            schedule TEXT NOT NULL,
            finetune TEXT NOT NULL,
            baseline_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            failure TEXT,
            baseline_top1 REAL,
            pruned_top1 REAL,
            finetuned_top1 REAL,
            finetuned_top5 REAL,
            sparsity REAL,
            compression REAL,
            whole_model_compression REAL,
            theoretical_speedup REAL,
            oracle_correlation REAL,
            finished_at REAL NOT NULL,
            host TEXT NOT NULL,
            record TEXT NOT NULL,
            criterion_file TEXT,
            criterion_version TEXT,
            criterion_build TEXT,
            plugin_sdk_version TEXT,
            sdk_version TEXT
        );
        CREATE INDEX trials_by_criterion ON trials (criterion, target_axis, target_value);
        CREATE INDEX trials_by_finish ON trials (finished_at, id);
        CREATE TABLE experiments (
            id TEXT NOT NULL,
            specification TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (id, specification)
        );
        CREATE TABLE baselines (
            hash TEXT PRIMARY KEY NOT NULL,
            model TEXT NOT NULL,
            dataset TEXT NOT NULL,
            seed INTEGER NOT NULL,
            configuration TEXT NOT NULL,
            top1 REAL,
            accuracy TEXT,
            seconds REAL NOT NULL,
            path TEXT NOT NULL,
            recorded_at REAL NOT NULL
        );
        """

    /// What a path holds, found without writing to it.
    enum Contents: Equatable {
        /// No file: a store may be created there.
        case absent
        /// A file of zero bytes, or an SQLite database with no tables: nothing to lose.
        case blank
        /// A store of this format and a version this PruneKit reads.
        case store
    }

    /// Looks at `path` without modifying it: reads its first bytes, then opens it read-only
    /// (``readOnlyQueue(_:directoryWritable:label:)``).
    /// - Parameter directoryWritable: whether the file's directory is writable; `nil`: ask
    ///   `access(2)` (``FileSystem/isWritableDirectory(_:)``).
    /// - Throws: `PruneKitError` (`.invalidFile`, `.invalidArgument` or `.io`) for anything
    ///   that is not absent, blank, or a store this PruneKit reads.
    static func inspect(_ path: String, directoryWritable: Bool? = nil) throws -> Contents {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return .absent }
        if isDirectory.boolValue {
            throw PruneKitError(.invalidArgument, "\(path) is a directory, not a result store file.",
                                hint: "give a file path, such as \(path)/results.sqlite")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw PruneKitError(.io, "\(path) could not be opened for reading.",
                                hint: "check the file's permissions")
        }
        let head = (try? handle.read(upToCount: 16)) ?? nil
        try? handle.close()
        guard let head, !head.isEmpty else { return .blank }
        guard head == Data("SQLite format 3\u{0}".utf8) else {
            let printable = String(decoding: head.prefix(12), as: UTF8.self)
                .unicodeScalars.map { $0.isASCII && $0.value >= 32 && $0.value < 127 ? String($0) : "." }.joined()
            throw PruneKitError(.invalidFile,
                                "\(path) is not an SQLite database (it begins with \"\(printable)\"), so it is not a PruneKit result store.",
                                hint: "give --store the path of a store that prunekit wrote, or a new file name; \(path) was left as it is")
        }
        let queue = try readOnlyQueue(path, directoryWritable: directoryWritable ?? FileSystem.isWritableDirectory(directory(of: path)),
                                      label: "prunekit-results (inspection)")
        defer { try? queue.close() }
        do {
            return try queue.read { db in try check(db, path: path) }
        } catch let error as PruneKitError {
            throw error
        } catch {
            throw openingError(error, path: path)
        }
    }

    /// The directory a store file is in (`.` for a bare file name).
    static func directory(of path: String) -> String {
        let parent = FileSystem.parent(of: path)
        return parent.isEmpty ? "." : parent
    }

    /// How a store is opened for reading.
    enum ReadAccess: Equatable {
        /// An ordinary read-only connection, which shares the writers' locks: SQLite may
        /// create the `-shm` file beside the store.
        case shared
        /// SQLite's `immutable=1`: the file is read as it is, with no locks and no `-wal` or
        /// `-shm` file created. For a store on read-only media or in a directory this process
        /// may not write, where nothing can be writing to it.
        case immutable
    }

    /// How to read the store at `path`: ``ReadAccess/shared`` where its directory is
    /// writable; otherwise ``ReadAccess/immutable``, unless results are still in its
    /// write-ahead log (a non-empty `-wal` file), which immutable reading would skip: then
    /// shared reading, which SQLite can do only if the `-shm` file is there too.
    /// - Throws: `PruneKitError(.io)` when the log holds results that can't be read here.
    static func readAccess(for path: String, directoryWritable: Bool) throws -> ReadAccess {
        if directoryWritable { return .shared }
        let wal = path + "-wal"
        let walBytes = ((try? FileManager.default.attributesOfItem(atPath: wal))?[.size] as? NSNumber)?.intValue ?? 0
        if walBytes == 0 { return .immutable }
        if FileManager.default.fileExists(atPath: path + "-shm") { return .shared }
        throw PruneKitError(.io, "\(path) is in a directory this process can't write to, and some of its results are still in \(wal), which SQLite can read there only with \(path)-shm beside it.",
                            hint: "copy \(path) and \(wal) together into a writable directory and read the copy (prunekit report --store COPY)")
    }

    /// A read-only connection to `path`, opened as ``readAccess(for:directoryWritable:)`` decides.
    static func readOnlyQueue(_ path: String, directoryWritable: Bool, label: String) throws -> DatabaseQueue {
        let access = try readAccess(for: path, directoryWritable: directoryWritable)
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(ResultStore.busyTimeout)
        configuration.label = label
        do {
            switch access {
            case .shared:
                return try DatabaseQueue(path: path, configuration: configuration)
            case .immutable:
                guard sqliteReadsURIs else {
                    throw PruneKitError(.io, "\(path) is in a directory this process can't write to, and this SQLite library (built without URI file names) can't open a store read-only there.",
                                        hint: "copy \(path) into a writable directory and read the copy (prunekit report --store COPY)")
                }
                return try DatabaseQueue(path: immutableURI(path), configuration: configuration)
            }
        } catch let error as PruneKitError {
            throw error
        } catch {
            throw openingError(error, path: path)
        }
    }

    /// `file:/abs/path?immutable=1`, with the characters that URIs reserve escaped.
    static func immutableURI(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var escaped = ""
        for scalar in absolute.unicodeScalars {
            switch scalar {
            case "%": escaped += "%25"
            case "?": escaped += "%3f"
            case "#": escaped += "%23"
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return "file:" + escaped + "?immutable=1"
    }

    /// Whether the SQLite library interprets `file:` URIs in every open (compiled with
    /// `SQLITE_USE_URI`, as Debian's, Ubuntu's and Apple's are); GRDB does not pass
    /// `SQLITE_OPEN_URI` itself.
    static let sqliteReadsURIs: Bool = {
        guard let queue = try? DatabaseQueue() else { return false }
        return (try? queue.read { db in try Bool.fetchOne(db, sql: "SELECT sqlite_compileoption_used('USE_URI')") }) == true
    }()

    /// An error from opening or reading a file that passed the header check: a damaged or
    /// foreign file (SQLite's NOTADB, CORRUPT), or a file that could not be opened (its
    /// permissions, its directory, the disk), which says nothing about its contents.
    static func openingError(_ error: Error, path: String) -> PruneKitError {
        if let error = error as? DatabaseError, error.resultCode != .SQLITE_NOTADB && error.resultCode != .SQLITE_CORRUPT {
            return PruneKitError(.io, "\(path) could not be opened for reading: \(sqliteMessage(error)).",
                                 hint: "check the permissions of \(path) and of its directory; \(path) was left as it is")
        }
        return PruneKitError(.invalidFile, "\(path) could not be read as an SQLite database: \(sqliteMessage(error)).",
                             hint: "the file may be damaged or not a database; give --store a new file name; \(path) was left as it is")
    }

    /// Checks an open database: blank, or a store of a version this PruneKit reads.
    static func check(_ db: Database, path: String) throws -> Contents {
        let tables = try String.fetchAll(db, sql: """
            SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name
            """)
        let applicationID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        if tables.isEmpty && applicationID == 0 { return .blank }
        let foreignHint = "give --store a new file name, or the path of a store that prunekit wrote; \(path) was left as it is"
        if applicationID != 0 && applicationID != Self.applicationID {
            throw PruneKitError(.invalidFile,
                                "\(path) is an SQLite database of another application (application_id \(String(format: "0x%08x", applicationID))), not a PruneKit result store.",
                                hint: foreignHint)
        }
        guard tables.contains("meta") else {
            let listed = tables.prefix(5).joined(separator: ", ") + (tables.count > 5 ? ", …" : "")
            throw PruneKitError(.invalidFile,
                                "\(path) is an SQLite database of another application (tables: \(listed)), not a PruneKit result store.",
                                hint: foreignHint)
        }
        let meta = Dictionary(try Row.fetchAll(db, sql: "SELECT key, value FROM meta").compactMap { row -> (String, String)? in
            guard let key = row["key"] as String?, let value = row["value"] as String? else { return nil }
            return (key, value)
        }, uniquingKeysWith: { first, _ in first })
        guard meta["format"] == name else {
            throw PruneKitError(.invalidFile,
                                "\(path) is an SQLite database of another application (its meta table names the format \"\(meta["format"] ?? "none")\"), not a PruneKit result store.",
                                hint: foreignHint)
        }
        guard let text = meta["version"], let found = Int(text) else {
            throw PruneKitError(.invalidFile, "\(path) is a PruneKit result store without a readable format version (\"\(meta["version"] ?? "none")\").",
                                hint: "the file was edited or damaged; write the results to a new store with --store; \(path) was left as it is")
        }
        if found > version {
            throw PruneKitError(.invalidFile,
                                "\(path) is a PruneKit result store of format version \(found), newer than this PruneKit reads (version \(version)).",
                                hint: "use the newer prunekit that wrote it, or give --store a new file name; \(path) was left as it is")
        }
        if found < oldestReadableVersion {
            throw PruneKitError(.invalidFile,
                                "\(path) is a PruneKit result store of format version \(found), which this PruneKit (version \(version)) no longer reads.",
                                hint: "read it with the prunekit that wrote it, or give --store a new file name; \(path) was left as it is")
        }
        let missing = ["trials", "experiments", "baselines"].filter { !tables.contains($0) }
        guard missing.isEmpty else {
            throw PruneKitError(.invalidFile, "\(path) is a PruneKit result store that lacks the table(s) \(missing.joined(separator: ", ")).",
                                hint: "the file was edited or damaged; write the results to a new store with --store; \(path) was left as it is")
        }
        return .store
    }

    /// Creates the schema in a blank database, inside the caller's (immediate) transaction,
    /// after checking again under the write lock: another process may have created it.
    static func createIfNeeded(_ db: Database, path: String) throws {
        guard try check(db, path: path) == .blank else { return try migrateIfNeeded(db) }
        try db.execute(sql: schema)
        try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('format', ?), ('version', ?), ('created_at', ?), ('created_by', ?)",
                       arguments: [name, String(version), String(Date().timeIntervalSince1970), "PruneKit \(SDKVersion.string)"])
        try db.execute(sql: "PRAGMA user_version = \(version)")
        try db.execute(sql: "PRAGMA application_id = \(applicationID)")
    }

    /// Brings a store of an older version this PruneKit reads up to ``version``, inside the
    /// caller's (immediate) transaction: version 1 gets the plugin and SDK columns, empty
    /// for its trials (their builds were never recorded).
    static func migrateIfNeeded(_ db: Database) throws {
        let found = Int(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'version'") ?? "") ?? version
        guard found < version else { return }
        if found == 1 {
            for column in ["criterion_file", "criterion_version", "criterion_build", "plugin_sdk_version", "sdk_version"] {
                try db.execute(sql: "ALTER TABLE trials ADD COLUMN \(column) TEXT")
            }
        }
        try db.execute(sql: "UPDATE meta SET value = ? WHERE key = 'version'", arguments: [String(version)])
        try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_from', ?), ('migrated_at', ?), ('migrated_by', ?)",
                       arguments: [String(found), String(Date().timeIntervalSince1970), "PruneKit \(SDKVersion.string)"])
        try db.execute(sql: "PRAGMA user_version = \(version)")
    }

    /// SQLite's own message for a GRDB error, without GRDB's decoration.
    static func sqliteMessage(_ error: Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "\(error.resultCode)" }
        return "\(error)"
    }
}
