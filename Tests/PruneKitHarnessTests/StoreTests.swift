import Foundation
import GRDB
import PruneKit
import XCTest
@testable import PruneKitHarness

/// Records made for the store tests: deterministic in `index`, so a child process and the
/// test that checks its work make the same ones.
enum StoreSamples {
    static func baseline(seed: UInt64 = 0) -> BaselineConfiguration {
        BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k", seed: seed)
    }

    static func configuration(_ criterion: String, _ compression: Double, seed: UInt64 = 0) -> TrialConfiguration {
        TrialConfiguration(baseline: baseline(seed: seed), criterion: criterion, target: TrialTarget(.compression, compression))
    }

    /// A succeeded record whose notes carry `padding` bytes (so a write spans several pages).
    static func record(_ prefix: String, _ index: Int, padding: Int = 0) -> TrialRecord {
        let configuration = TrialConfiguration(baseline: baseline(seed: UInt64(index % 3)), criterion: prefix,
                                               criterionOptions: ["index=\(index)"], target: TrialTarget(.compression, 4))
        var result = TrialResult(status: .succeeded, notes: [String(repeating: "n", count: padding)], phaseSeconds: ["prune": 0.25])
        result.finetunedAccuracy = Accuracy(top1: 0.5 + Double(index) / 1e6)
        return TrialRecord(configuration: configuration, result: result, finishedAt: 1_700_000_000 + Double(index), host: "child")
    }

    /// Every field set, with values that test exactness (0.1 + 0.2, UInt64.max, non-ASCII).
    static func fullRecord() -> TrialRecord {
        let base = BaselineConfiguration(model: "vgg-small", dataset: "cifar-10", dataDirectory: "/data/cifär", validationCount: 1000,
                                         epochs: 12, batchSize: 128, learningRate: 0.1 + 0.2, seed: UInt64.max, trainingImages: 4096)
        let configuration = TrialConfiguration(kind: .prune, baseline: base, criterion: "taylor", criterionOptions: ["normalize=true"],
                                               target: TrialTarget(.speedup, 2.5), schedule: "iterative", scheduleOptions: ["steps=3"],
                                               finetune: "finetune", finetuneOptions: ["lr=0.01"], finetuneEpochs: 3,
                                               calibrationBatches: 7, calibrationBatchSize: 32, residualPolicy: "whole-stream")
        var result = TrialResult(status: .succeeded, notes: ["clipped: features.3 keeps 1 channel", "ünïcode ✓"],
                                 phaseSeconds: ["score": 1.5, "finetune": 12.25, "evaluate": 1e-3])
        result.baselineAccuracy = Accuracy(top1: 0.9123, top5: 0.99, loss: 0.31)
        result.prunedAccuracy = Accuracy(top1: 0.1, top5: nil, loss: 2.3)
        result.finetunedAccuracy = Accuracy(top1: 0.8999999999999999, top5: 0.98, loss: 0.4)
        result.before = ModelFigures(parameters: 1000, nonzeroParameters: 1000, prunableWeights: 900, remainingPrunableWeights: 900,
                                     macs: 50_000, fileBytes: 4096,
                                     latency: [Latency(batchSize: 1, median: 1e-4, p10: 9e-5, p90: 1.2e-4, runs: 50)])
        result.after = ModelFigures(parameters: 500, nonzeroParameters: 450, prunableWeights: 400, remainingPrunableWeights: 360,
                                    macs: 20_000, fileBytes: nil, latency: [])
        result.sparsity = 0.6
        result.oracleCorrelation = -0.25
        result.oracleCorrelationByLayer = ["features.0.conv": 0.5, "features.3.conv": -1]
        return TrialRecord(configuration: configuration, result: result, finishedAt: 1_700_000_123.456789, host: "node-17")
    }

    /// A failure: every optional field nil; an oracle trial without a target.
    static func failedOracleRecord() -> TrialRecord {
        let configuration = TrialConfiguration(kind: .oracle, baseline: baseline(), criterion: "apoz", target: nil)
        return TrialRecord(configuration: configuration, result: .failed("plugin crashed: signal 11 (SIGSEGV)"),
                           finishedAt: 1_700_000_200, host: "node-18")
    }
}

final class StoreTests: XCTestCase {
    private func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    private func assertRefused(_ body: @autoclosure () throws -> Any, kind: PruneKitError.Kind = .invalidFile,
                               mentioning words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? PruneKitError else { return XCTFail("not a PruneKitError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.kind, kind, file: file, line: line)
            XCTAssertNotNil(error.hint, file: file, line: line)
            for word in words { XCTAssertTrue(error.message.contains(word), "«\(error.message)» lacks «\(word)»", file: file, line: line) }
        }
    }

    // MARK: Round trip

    func testRecordsRoundTripLosslesslyAcrossReopening() throws {
        let path = try scratch().appendingPathComponent("nested/dir/results.sqlite").path
        let full = StoreSamples.fullRecord(), failed = StoreSamples.failedOracleRecord()
        var diverged = StoreSamples.record("random", 1)
        diverged.result.prunedAccuracy = Accuracy(top1: 0.1, loss: .nan)
        diverged.result.finetunedAccuracy = Accuracy(top1: 0.1, loss: .infinity)
        do {
            let store = try ResultStore(path: path)
            XCTAssertEqual(try store.record(failed), .inserted)
            XCTAssertEqual(try store.record(full), .inserted)
            XCTAssertEqual(try store.record(diverged), .inserted)
        }
        let store = try ResultStore.openExisting(path: path, readOnly: true)
        // Ordered by finish time: diverged (…001), full (…123.456789), failed (…200).
        let back = try store.records()
        XCTAssertEqual(back.map(\.id), [diverged.id, full.id, failed.id])
        XCTAssertEqual(back[1], full)
        XCTAssertEqual(back[2], failed)
        XCTAssertEqual(back[1].configuration.seed, UInt64.max)
        XCTAssertEqual(back[1].configuration.baseline.learningRate, 0.1 + 0.2)
        XCTAssertEqual(back[1].finishedAt, 1_700_000_123.456789)
        XCTAssertNil(back[2].configuration.target)
        XCTAssertNil(back[2].result.finetunedAccuracy)
        XCTAssertTrue(try XCTUnwrap(back[0].result.prunedAccuracy?.loss).isNaN)
        XCTAssertEqual(back[0].result.finetunedAccuracy?.loss, .infinity)
        XCTAssertEqual(try store.record(id: full.id), full)
        XCTAssertNil(try store.record(id: "no-such-trial"))
        XCTAssertEqual(try store.integrityCheck(), ["ok"])
        assertRefused(try store.record(full), kind: .invalidArgument, mentioning: ["read-only"])

        // The query columns hold what people filter and sort on, computed independently here.
        let queue = try DatabaseQueue(path: path)
        let row = try XCTUnwrap(try queue.read { db in try Row.fetchOne(db, sql: "SELECT * FROM trials WHERE id = ?", arguments: [full.id]) })
        XCTAssertEqual(row["criterion"] as String, "taylor")
        XCTAssertEqual(row["target_axis"] as String, "speedup")
        XCTAssertEqual(row["target_value"] as Double, 2.5)
        XCTAssertEqual(row["seed"] as Int64, -1)               // UInt64.max's bit pattern
        XCTAssertEqual(row["status"] as String, "succeeded")
        XCTAssertEqual(row["finetuned_top1"] as Double, 0.8999999999999999)
        XCTAssertEqual(row["compression"] as Double, 900.0 / 360.0)
        XCTAssertEqual(row["theoretical_speedup"] as Double, 50_000.0 / 20_000.0)
        XCTAssertEqual(row["whole_model_compression"] as Double, 1000.0 / 450.0)
        XCTAssertEqual(try queue.read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") }, ResultStoreFormat.version)
        XCTAssertEqual(try queue.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }, "wal")
        XCTAssertEqual(try queue.read { db in try Int32.fetchOne(db, sql: "PRAGMA application_id") }, 0x504B_5253)
    }

    func testFiltersCountsAndCompletedIDs() throws {
        let store = try ResultStore(path: try scratch().appendingPathComponent("r.sqlite").path)
        let a = StoreSamples.record("l1-filter", 0), b = StoreSamples.record("l1-filter", 1), c = StoreSamples.record("taylor", 2)
        let f = StoreSamples.failedOracleRecord()
        for record in [c, f, a, b] { try store.record(record) }
        XCTAssertEqual(try store.records().map(\.id), [a.id, b.id, c.id, f.id])
        XCTAssertEqual(try store.records(matching: .init(criterion: "l1-filter")).map(\.id), [a.id, b.id])
        XCTAssertEqual(try store.records(matching: .init(status: .failed)).map(\.id), [f.id])
        XCTAssertEqual(try store.records(matching: .init(kind: .oracle)).map(\.id), [f.id])
        XCTAssertEqual(try store.records(matching: .init(criterion: "l1-filter", seed: 1)).map(\.id), [b.id])
        XCTAssertEqual(try store.records(matching: .init(model: "vgg-small")), [])
        XCTAssertEqual(try store.trialCount(), 4)
        XCTAssertEqual(try store.trialCount(status: .succeeded), 3)
        XCTAssertEqual(try store.completedTrialIDs(), [a.id, b.id, c.id, f.id])
        XCTAssertEqual(try store.completedTrialIDs(includingFailed: false), [a.id, b.id, c.id])
    }

    // MARK: Duplicates and retries

    func testSuccessIsNeverOverwrittenAndFailureIsRetried() throws {
        let store = try ResultStore(path: try scratch().appendingPathComponent("r.sqlite").path)
        let configuration = StoreSamples.configuration("random", 8)
        let failure = TrialRecord(configuration: configuration, result: .failed("NaN loss"), finishedAt: 10, host: "h")
        let laterFailure = TrialRecord(configuration: configuration, result: .failed("signal 9"), finishedAt: 20, host: "h")
        let earlierFailure = TrialRecord(configuration: configuration, result: .failed("old"), finishedAt: 5, host: "h")
        var succeeded = TrialResult(status: .succeeded); succeeded.sparsity = 0.875
        let success = TrialRecord(configuration: configuration, result: succeeded, finishedAt: 30, host: "h")
        var other = success; other.result.sparsity = 0.9; other.finishedAt = 40

        XCTAssertEqual(try store.record(failure), .inserted)
        XCTAssertEqual(try store.record(earlierFailure), .keptExisting)
        XCTAssertEqual(try store.record(id: configuration.id), failure)
        XCTAssertEqual(try store.record(laterFailure), .replaced)
        XCTAssertEqual(try store.record(id: configuration.id), laterFailure)
        XCTAssertEqual(try store.completedTrialIDs(includingFailed: false), [])
        XCTAssertEqual(try store.record(success), .replaced)          // a retry that succeeded
        XCTAssertEqual(try store.record(failure), .keptExisting)      // never over a success
        XCTAssertEqual(try store.record(other), .keptExisting)        // nor another success
        XCTAssertEqual(try store.record(success), .keptExisting)      // identical: nothing to do
        XCTAssertEqual(try store.records(), [success])
        XCTAssertEqual(try store.completedTrialIDs(includingFailed: false), [configuration.id])
    }

    // MARK: Experiments and baselines

    func testExperimentsAndBaselinesAreKept() throws {
        let path = try scratch().appendingPathComponent("r.sqlite").path
        let base = StoreSamples.baseline(seed: 3)
        do {
            let store = try ResultStore(path: path)
            try store.saveExperiment(id: "e1", specification: "model: lenet-5\n", createdAt: 100)
            try store.saveExperiment(id: "e1", specification: "model: lenet-5\n", createdAt: 150)   // the same: ignored
            try store.saveExperiment(id: "e1", specification: "model: vgg-small\n", createdAt: 120)
            try store.recordBaseline(hash: base.hash, configuration: base, accuracy: nil, seconds: 1, path: "/old", recordedAt: 1)
            try store.recordBaseline(hash: base.hash, configuration: base, accuracy: Accuracy(top1: 0.97, top5: 1, loss: 0.1),
                                     seconds: 9.5, path: "/cache/\(base.hash)", recordedAt: 2)
            try store.recordBaseline(hash: "other", configuration: StoreSamples.baseline(), accuracy: nil, seconds: 2, path: "/p",
                                     recordedAt: 3)
        }
        let store = try ResultStore.openExisting(path: path)
        XCTAssertEqual(try store.experiments(), [
            .init(id: "e1", specification: "model: lenet-5\n", createdAt: 100),
            .init(id: "e1", specification: "model: vgg-small\n", createdAt: 120),
        ])
        XCTAssertEqual(try store.baseline(hash: base.hash),
                       .init(hash: base.hash, configuration: base, accuracy: Accuracy(top1: 0.97, top5: 1, loss: 0.1),
                             seconds: 9.5, path: "/cache/\(base.hash)", recordedAt: 2))
        XCTAssertNil(try store.baseline(hash: "other")?.accuracy)
        XCTAssertNil(try store.baseline(hash: "missing"))
        XCTAssertEqual(try store.baselines().map(\.hash), [base.hash, "other"])
    }

    // MARK: Bad files

    func testBadFilesAreRefusedAndLeftAsTheyWere() throws {
        let dir = try scratch()
        // Random bytes.
        let random = dir.appendingPathComponent("random.sqlite").path
        var generator = SystemRandomNumberGenerator()
        let noise = Data((0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try noise.write(to: URL(fileURLWithPath: random))
        assertRefused(try ResultStore(path: random), mentioning: [random, "not an SQLite database"])
        assertRefused(try ResultStore.openExisting(path: random), mentioning: ["not an SQLite database"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: random)), noise)

        // A text file that begins like nothing in particular.
        let text = dir.appendingPathComponent("notes.txt").path
        try Data("hello, world\n".utf8).write(to: URL(fileURLWithPath: text))
        assertRefused(try ResultStore(path: text), mentioning: ["begins with \"hello, world\""])

        // An SQLite header followed by garbage.
        let damaged = dir.appendingPathComponent("damaged.sqlite").path
        let damagedBytes = Data("SQLite format 3\u{0}".utf8) + Data(repeating: 0xAB, count: 2000)
        try damagedBytes.write(to: URL(fileURLWithPath: damaged))
        assertRefused(try ResultStore(path: damaged), mentioning: ["could not be read as an SQLite database"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: damaged)), damagedBytes)

        // Another application's SQLite database (rollback journal, as most are).
        let foreign = dir.appendingPathComponent("foreign.db").path
        do {
            let queue = try DatabaseQueue(path: foreign)
            try queue.write { db in
                try db.execute(sql: "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada')")
            }
            try queue.close()
        }
        let foreignBytes = try Data(contentsOf: URL(fileURLWithPath: foreign))
        assertRefused(try ResultStore(path: foreign), mentioning: ["another application", "users"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: foreign)), foreignBytes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: foreign + "-wal"))

        // A database with another application id.
        let tagged = dir.appendingPathComponent("tagged.db").path
        do {
            let queue = try DatabaseQueue(path: tagged)
            try queue.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA application_id = 1234") }
            try queue.close()
        }
        assertRefused(try ResultStore(path: tagged), mentioning: ["another application", "0x000004d2"])

        // A store of a newer format version.
        let future = try makeFutureStore(in: dir)
        let futureBytes = try Data(contentsOf: URL(fileURLWithPath: future))
        assertRefused(try ResultStore(path: future), mentioning: ["format version 3", "newer"])
        assertRefused(try ResultStore.openExisting(path: future, readOnly: true), mentioning: ["format version 3"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: future)), futureBytes)

        // Missing, empty, directory.
        let missing = dir.appendingPathComponent("missing.sqlite").path
        assertRefused(try ResultStore.openExisting(path: missing), mentioning: ["no result store", missing])
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
        assertRefused(try ResultStore(path: dir.path), kind: .invalidArgument, mentioning: ["is a directory"])
        let empty = dir.appendingPathComponent("empty.sqlite").path
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        assertRefused(try ResultStore.openExisting(path: empty), mentioning: ["empty"])
        let store = try ResultStore(path: empty)                     // a zero-byte file becomes a store
        try store.record(StoreSamples.record("x", 0))
        XCTAssertEqual(try store.trialCount(), 1)
    }

    // MARK: Read-only media (issue 15, defects 6 and 8)

    /// The decision: a writable directory reads as usual; an unwritable one reads the file
    /// immutably, unless results are still in its write-ahead log, which needs `-shm`.
    func testReadAccessFollowsTheDirectoryAndTheLog() throws {
        let dir = try scratch()
        let path = dir.appendingPathComponent("results.sqlite").path
        XCTAssertEqual(try ResultStoreFormat.readAccess(for: path, directoryWritable: true), .shared)
        XCTAssertEqual(try ResultStoreFormat.readAccess(for: path, directoryWritable: false), .immutable)
        XCTAssertTrue(FileManager.default.createFile(atPath: path + "-wal", contents: Data()))
        XCTAssertEqual(try ResultStoreFormat.readAccess(for: path, directoryWritable: false), .immutable, "an empty log holds nothing")
        try Data(repeating: 1, count: 64).write(to: URL(fileURLWithPath: path + "-wal"))
        assertRefused(try ResultStoreFormat.readAccess(for: path, directoryWritable: false), kind: .io, mentioning: [path + "-wal", "-shm"])
        XCTAssertTrue(FileManager.default.createFile(atPath: path + "-shm", contents: Data()))
        XCTAssertEqual(try ResultStoreFormat.readAccess(for: path, directoryWritable: false), .shared)
        // access(2) decides, by default: this scratch directory is writable.
        XCTAssertTrue(FileSystem.isWritableDirectory(dir.path))
        XCTAssertEqual(ResultStoreFormat.immutableURI("/a b/r?#%.sqlite"), "file:/a b/r%3f%23%25.sqlite?immutable=1")
    }

    /// A store whose directory can't be written is read through SQLite's immutable open:
    /// every record comes back, and nothing (no -wal, no -shm) is created beside it. Before,
    /// the inspection's ordinary read-only open needed to create `-shm` and failed with
    /// "could not be read as an SQLite database … may be damaged".
    func testAStoreInAnUnwritableDirectoryIsReadWithoutWritingBesideIt() throws {
        let dir = try scratch()
        let path = dir.appendingPathComponent("results.sqlite").path
        let records = (0..<5).map { StoreSamples.record("ro", $0) }
        do {
            let store = try ResultStore(path: path)
            for r in records { try store.record(r) }
            try store.close()            // the last connection: SQLite removes -wal and -shm
        }
        let before = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertEqual(before, ["results.sqlite"])
        let store = try ResultStore.openExisting(path: path, readOnly: true, directoryWritable: false)
        XCTAssertEqual(try store.records(), records)
        XCTAssertEqual(try store.trialCount(), 5)
        XCTAssertEqual(try store.integrityCheck(), ["ok"])
        assertRefused(try store.record(records[0]), kind: .invalidArgument, mentioning: ["read-only"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), before, "nothing written beside it")
        try store.close()
        // Writing is refused up front, with the reason and what to do.
        assertRefused(try ResultStore.openExisting(path: path, readOnly: false, directoryWritable: false), kind: .io,
                      mentioning: ["can't write to the result store", "not writable"])
    }

    /// A file that could not be opened is not called damaged: the message says it could not
    /// be opened (the permissions, the directory), not that it may be damaged.
    func testAnOpeningFailureIsNotReportedAsDamage() {
        let error = ResultStoreFormat.openingError(DatabaseError(resultCode: .SQLITE_CANTOPEN, message: "unable to open database file"),
                                                   path: "ro/results.sqlite")
        XCTAssertEqual(error.kind, .io)
        XCTAssertTrue(error.message.contains("could not be opened for reading"), error.message)
        XCTAssertFalse(error.message.contains("damaged") || (error.hint ?? "").contains("damaged"), error.description)
        let damaged = ResultStoreFormat.openingError(DatabaseError(resultCode: .SQLITE_NOTADB, message: "file is not a database"),
                                                     path: "x.sqlite")
        XCTAssertEqual(damaged.kind, .invalidFile)
        XCTAssertTrue((damaged.hint ?? "").contains("damaged"))
    }

    /// A new store where no directory can be made (a file in the way, as a read-only disk
    /// also refuses): an `error:` message with the system's reason and a hint, no Foundation
    /// "NSCocoaErrorDomain" text, and nothing left behind.
    func testANewStoreWhereNoDirectoryCanBeMadeIsAClearError() throws {
        let dir = try scratch()
        let blocker = dir.appendingPathComponent("file.txt")
        try Data("x".utf8).write(to: blocker)
        let path = blocker.appendingPathComponent("sub/results.sqlite").path
        assertRefused(try ResultStore(path: path), kind: .io, mentioning: ["could not create the directory", "Not a directory"])
        XCTAssertThrowsError(try ResultStore(path: path)) { error in
            XCTAssertFalse("\(error)".contains("NSCocoaErrorDomain"), "\(error)")
        }
        // An existing directory that is not writable (decided by access(2); simulated here).
        let unwritable = dir.appendingPathComponent("ro/new.sqlite").path
        try FileManager.default.createDirectory(atPath: dir.appendingPathComponent("ro").path, withIntermediateDirectories: true)
        assertRefused(try ResultStore(path: unwritable, directoryWritable: false), kind: .io,
                      mentioning: ["can't create a result store at \(unwritable)", "is not writable"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("ro").path), [])
        // The directories made for a store that then can't be opened are removed again.
        let deep = dir.appendingPathComponent("a/b/c")
        XCTAssertEqual(try FileSystem.makeDirectories(deep.path, for: "test", hint: "-"), [dir.appendingPathComponent("a").path,
                                                                                          dir.appendingPathComponent("a/b").path, deep.path])
        FileSystem.removeCreated([dir.appendingPathComponent("a").path, dir.appendingPathComponent("a/b").path, deep.path])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("a").path))
        XCTAssertEqual(["a/b/c", "a/b/", "/a", "w", "/"].map(FileSystem.parent(of:)), ["a/b", "a", "/", "", "/"])
        // A relative one-letter directory (Foundation's deletingLastPathComponent traps on it).
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir.path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        XCTAssertEqual(try ResultStore(path: "w/results.sqlite").trialCount(), 0)
    }

    /// Issue 15, defect 14: a store of format version 1 (before plugin builds were kept) is
    /// read as it is, read-only, and migrated in place when opened for writing: the plugin
    /// and SDK columns are added, empty for its old trials, and meta says where it came from.
    func testAVersionOneStoreIsReadAndMigratedWhenWritten() throws {
        let path = try scratch().appendingPathComponent("v1.sqlite").path
        let old = StoreSamples.record("old", 0)
        do {
            let store = try ResultStore(path: path)
            try store.record(old)
        }
        let queue = try DatabaseQueue(path: path)      // back to version 1's layout
        try queue.write { db in
            for column in ["criterion_file", "criterion_version", "criterion_build", "plugin_sdk_version", "sdk_version"] {
                try db.execute(sql: "ALTER TABLE trials DROP COLUMN \(column)")
            }
            try db.execute(sql: "UPDATE meta SET value = '1' WHERE key = 'version'; PRAGMA user_version = 1")
        }
        try queue.close()

        let reader = try ResultStore.openExisting(path: path, readOnly: true)
        XCTAssertEqual(try reader.records(), [old])
        try reader.close()
        let store = try ResultStore(path: path)
        let build = PluginBuild(kind: .criterion, id: "new", file: "/p/libNew.so", version: "0.2.0", sdkVersion: "1.0", contentHash: "abc")
        var configuration = StoreSamples.configuration("new", 2)
        configuration.plugins = [build]
        try store.record(TrialRecord(configuration: configuration, result: .failed("x"), finishedAt: 1_800_000_000, host: "h"))
        XCTAssertEqual(try store.records().map(\.id), [old.id, configuration.id])
        let check = try DatabaseQueue(path: path)
        try check.read { db in
            XCTAssertEqual(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'version'"), String(ResultStoreFormat.version))
            XCTAssertEqual(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'migrated_from'"), "1")
            XCTAssertEqual(try Int.fetchOne(db, sql: "PRAGMA user_version"), ResultStoreFormat.version)
            XCTAssertNil(try String.fetchOne(db, sql: "SELECT criterion_version FROM trials WHERE id = ?", arguments: [old.id]))
            XCTAssertEqual(try String.fetchOne(db, sql: "SELECT criterion_version FROM trials WHERE id = ?", arguments: [configuration.id]), "0.2.0")
        }
    }

    /// A store whose meta says version 3, as a future PruneKit would write.
    private func makeFutureStore(in dir: URL) throws -> String {
        let path = dir.appendingPathComponent("future-\(UUID().uuidString).sqlite").path
        do {
            let store = try ResultStore(path: path)
            try store.record(StoreSamples.record("future", 0))
        }
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "UPDATE meta SET value = '3' WHERE key = 'version'; PRAGMA user_version = 3")
        }
        try queue.close()
        return path
    }

    // MARK: Merge

    func testMergeOfDisjointShardsCopiesEverythingAndLeavesSourcesAlone() throws {
        let dir = try scratch()
        let shards = (0..<3).map { dir.appendingPathComponent("shard-\($0).sqlite").path }
        for (s, path) in shards.enumerated() {
            let store = try ResultStore(path: path)
            for i in 0..<4 { try store.record(StoreSamples.record("shard\(s)", i)) }
            try store.saveExperiment(id: "exp", specification: "criteria: [all]", createdAt: 1)   // the same in every shard
            let base = StoreSamples.baseline(seed: UInt64(s))
            try store.recordBaseline(hash: base.hash, configuration: base, accuracy: Accuracy(top1: 0.9), seconds: 1, path: "/b\(s)")
        }
        let before = try shards.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        let destination = dir.appendingPathComponent("merged/all.sqlite").path
        let summary = try ResultStore.merge(shards, into: destination)
        XCTAssertEqual(summary, MergeSummary(sources: shards, added: 12, identical: 0, replacedFailures: 0, skippedFailures: 0,
                                             conflicts: [], experimentsAdded: 1, baselinesAdded: 3, totalTrials: 12))
        XCTAssertEqual(try shards.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }, before)
        let merged = try ResultStore.openExisting(path: destination)
        let expected = (0..<3).flatMap { s in (0..<4).map { StoreSamples.record("shard\(s)", $0) } }
        XCTAssertEqual(Set(try merged.records()), Set(expected))
        XCTAssertEqual(try merged.baselines().count, 3)
        XCTAssertTrue(summary.description.contains("12 trials added"))

        // Merging the same shards again adds nothing.
        let again = try ResultStore.merge(shards, into: destination)
        XCTAssertEqual(again.added, 0)
        XCTAssertEqual(again.identical, 12)
        XCTAssertEqual(again.experimentsAdded + again.baselinesAdded, 0)
        XCTAssertEqual(again.totalTrials, 12)
    }

    func testMergeKeepsSuccessesCountsDuplicatesAndReportsConflicts() throws {
        let dir = try scratch()
        let configurations = (1...5).map { StoreSamples.configuration("l1-filter", Double(1 << $0)) }
        func success(_ c: TrialConfiguration, sparsity: Double, at time: Double) -> TrialRecord {
            var result = TrialResult(status: .succeeded); result.sparsity = sparsity
            return TrialRecord(configuration: c, result: result, finishedAt: time, host: "h")
        }
        func failure(_ c: TrialConfiguration, at time: Double) -> TrialRecord {
            TrialRecord(configuration: c, result: .failed("crash at \(time)"), finishedAt: time, host: "h")
        }
        let (c1, c2, c3, c4, c5) = (configurations[0], configurations[1], configurations[2], configurations[3], configurations[4])
        let destination = dir.appendingPathComponent("dest.sqlite").path
        let a = dir.appendingPathComponent("a.sqlite").path, b = dir.appendingPathComponent("b.sqlite").path
        do {
            let dest = try ResultStore(path: destination)
            try dest.record(failure(c4, at: 1))                 // retried successfully in b
            let storeA = try ResultStore(path: a)
            try storeA.record(success(c1, sparsity: 0.5, at: 2))
            try storeA.record(failure(c2, at: 3))               // b has its success
            try storeA.record(success(c3, sparsity: 0.75, at: 4))
            try storeA.record(failure(c5, at: 9))               // later than b's failure: kept
            let storeB = try ResultStore(path: b)
            try storeB.record(success(c1, sparsity: 0.5, at: 2))      // identical to a's
            try storeB.record(success(c2, sparsity: 0.5, at: 5))
            try storeB.record(success(c3, sparsity: 0.8, at: 6))      // conflicts with a's
            try storeB.record(success(c4, sparsity: 0.9, at: 7))
            try storeB.record(failure(c5, at: 8))
        }
        let summary = try ResultStore.merge([a, b], into: destination)
        XCTAssertEqual(summary.added, 4)              // a: c1, c2 (failure), c3, c5
        XCTAssertEqual(summary.identical, 1)          // b: c1
        XCTAssertEqual(summary.replacedFailures, 2)   // b: c2 over a's failure, c4 over the destination's
        XCTAssertEqual(summary.skippedFailures, 1)    // b: c5, earlier than a's
        XCTAssertEqual(summary.conflicts, [c3.id])
        XCTAssertEqual(summary.totalTrials, 5)
        let merged = try ResultStore.openExisting(path: destination)
        XCTAssertEqual(try merged.record(id: c2.id), success(c2, sparsity: 0.5, at: 5))
        XCTAssertEqual(try merged.record(id: c3.id), success(c3, sparsity: 0.75, at: 4))
        XCTAssertEqual(try merged.record(id: c4.id), success(c4, sparsity: 0.9, at: 7))
        XCTAssertEqual(try merged.record(id: c5.id), failure(c5, at: 9))
        XCTAssertEqual(try merged.completedTrialIDs(includingFailed: false), [c1.id, c2.id, c3.id, c4.id])
    }

    func testMergeRefusesBadSourcesBeforeWritingAnything() throws {
        let dir = try scratch()
        let good = dir.appendingPathComponent("good.sqlite").path
        do { try ResultStore(path: good).record(StoreSamples.record("good", 0)) }
        let future = try makeFutureStore(in: dir)
        let garbage = dir.appendingPathComponent("garbage.sqlite").path
        try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: garbage))

        // A new destination is not even created.
        let fresh = dir.appendingPathComponent("fresh.sqlite").path
        assertRefused(try ResultStore.merge([good, future], into: fresh), mentioning: [future, "format version 3"])
        assertRefused(try ResultStore.merge([good, garbage], into: fresh), mentioning: [garbage])
        assertRefused(try ResultStore.merge([good, dir.appendingPathComponent("nope.sqlite").path], into: fresh),
                      mentioning: ["no result store", "nothing was merged"])
        assertRefused(try ResultStore.merge([good, good], into: fresh), kind: .invalidArgument, mentioning: ["twice"])
        assertRefused(try ResultStore.merge([], into: fresh), kind: .invalidArgument, mentioning: ["no source"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh))

        // An existing destination keeps its bytes.
        let existing = dir.appendingPathComponent("existing.sqlite").path
        do { try ResultStore(path: existing).record(StoreSamples.record("existing", 0)) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: existing))
        assertRefused(try ResultStore.merge([good, future], into: existing), mentioning: ["newer"])
        assertRefused(try ResultStore.merge([good, existing], into: existing), kind: .invalidArgument, mentioning: ["both a source and the destination"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: existing)), bytes)
        // A destination of the wrong kind is refused too.
        assertRefused(try ResultStore.merge([good], into: garbage), mentioning: ["not an SQLite database"])
    }

    // MARK: Speed

    /// Prints the cost of one trial's write (a commit with fsync, `synchronous = FULL`), of
    /// reading the records back and of merging: figures for the README, no timing asserted.
    func testWriteReadAndMergeSpeed() throws {
        let dir = try scratch()
        let count = 200
        let shards = (0..<2).map { dir.appendingPathComponent("speed-\($0).sqlite").path }
        var start = Date()
        do {
            let store = try ResultStore(path: shards[0])
            for i in 0..<count { try store.record(StoreSamples.record("speed", i)) }
        }
        let write = Date().timeIntervalSince(start)
        do {
            let store = try ResultStore(path: shards[1])
            for i in 0..<count { try store.record(StoreSamples.record("other", i)) }
        }
        start = Date()
        let records = try ResultStore.openExisting(path: shards[0], readOnly: true).records()
        let read = Date().timeIntervalSince(start)
        XCTAssertEqual(records.count, count)
        start = Date()
        let summary = try ResultStore.merge(shards, into: dir.appendingPathComponent("merged.sqlite").path)
        let merge = Date().timeIntervalSince(start)
        XCTAssertEqual(summary.totalTrials, 2 * count)
        print(String(format: "store speed: record %.2f ms/trial (%d trials, commit + fsync each), read %.2f ms for %d, merge %.1f ms for %d",
                     write / Double(count) * 1000, count, read * 1000, count, merge * 1000, 2 * count))
    }

    // MARK: Processes: kill -9 and concurrent writers

    /// A child process writes records in a loop and is killed with SIGKILL after a varying
    /// number of commits, three times over, each run resuming the last one (skipping the
    /// trials already there). The store must pass SQLite's integrity check and hold every
    /// trial the child reported committed, each readable and equal to what was written,
    /// with nothing duplicated or skipped.
    func testKillNineWhileWritingLosesNoCommittedTrial() throws {
        let path = try scratch().appendingPathComponent("killed.sqlite").path
        var reported = -1
        for (round, killAfter) in [7, 19, 31].enumerated() {
            let child = try WriterProcess(path: path, prefix: "kill", count: 100_000, padding: 24_000)
            let seen = try child.waitForCommit(index: reported + killAfter, timeout: 120)
            // Jitter so that the kill lands at different points of a transaction.
            usleep(UInt32(round * 700))
            child.kill9()
            reported = max(seen, child.lastCommitted())
            XCTAssertEqual(child.terminationSignal, SIGKILL)

            let store = try ResultStore(path: path)
            XCTAssertEqual(try store.integrityCheck(), ["ok"])
            let records = try store.records()
            // Exactly a prefix 0..<n: nothing skipped or duplicated; n ≥ every reported commit
            // (+1 when the kill fell between a commit and its report).
            XCTAssertGreaterThanOrEqual(records.count, reported + 1)
            XCTAssertLessThanOrEqual(records.count, reported + 2)
            XCTAssertEqual(records, (0..<records.count).map { StoreSamples.record("kill", $0, padding: 24_000) })
            reported = records.count - 1
        }
    }

    /// Two processes write one new file at once (both creating the schema), while this
    /// process reads it: every record of both arrives intact.
    func testTwoProcessesWritingOneStoreAtOnce() throws {
        let path = try scratch().appendingPathComponent("shared.sqlite").path
        let count = 40
        let writers = try ["left", "right"].map { try WriterProcess(path: path, prefix: $0, count: count, padding: 500) }
        var reads = 0
        while writers.contains(where: { $0.isRunning }) {
            if FileManager.default.fileExists(atPath: path), let store = try? ResultStore.openExisting(path: path, readOnly: true) {
                let records = try store.records()
                XCTAssertLessThanOrEqual(records.count, 2 * count)
                reads += 1
            }
            usleep(2000)
        }
        for writer in writers {
            writer.wait()
            XCTAssertEqual(writer.terminationStatus, 0, "writer failed:\n\(writer.output)")
        }
        let store = try ResultStore.openExisting(path: path)
        XCTAssertEqual(try store.integrityCheck(), ["ok"])
        let expected = ["left", "right"].flatMap { prefix in (0..<count).map { StoreSamples.record(prefix, $0, padding: 500) } }
        XCTAssertEqual(Set(try store.records()), Set(expected))
        print("concurrent writers: \(2 * count) records, \(reads) reads during the writes")
    }
}

/// The child half of the process tests: runs only when launched by ``WriterProcess`` (with
/// `PRUNEKIT_STORE_CHILD` set), and is skipped in an ordinary test run.
final class StoreChildProcess: XCTestCase {
    func testWriterChild() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let path = environment["PRUNEKIT_STORE_CHILD"] else {
            throw XCTSkip("the writer half of the store's process tests; runs only as their child process")
        }
        let prefix = environment["PRUNEKIT_STORE_PREFIX"] ?? "child"
        let count = Int(environment["PRUNEKIT_STORE_COUNT"] ?? "") ?? 10
        let padding = Int(environment["PRUNEKIT_STORE_PADDING"] ?? "") ?? 0
        let store = try ResultStore(path: path)
        let done = try store.completedTrialIDs()                 // resume: skip what is there
        for index in 0..<count {
            let record = StoreSamples.record(prefix, index, padding: padding)
            if done.contains(record.id) { continue }
            try store.record(record)
            FileHandle.standardOutput.write(Data("committed \(index)\n".utf8))   // unbuffered
        }
    }
}

/// This test binary re-launched, filtered to ``StoreChildProcess/testWriterChild``.
final class WriterProcess {
    /// The child's stdout and stderr, filled by a reader thread.
    private final class Output: @unchecked Sendable {
        let lock = NSLock()
        var data = Data()
        let finished = DispatchSemaphore(value: 0)
    }

    private let process = Process()
    private let collected = Output()

    init(path: String, prefix: String, count: Int, padding: Int) throws {
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["PruneKitHarnessTests.StoreChildProcess/testWriterChild"]
        var environment = ProcessInfo.processInfo.environment
        environment["PRUNEKIT_STORE_CHILD"] = path
        environment["PRUNEKIT_STORE_PREFIX"] = prefix
        environment["PRUNEKIT_STORE_COUNT"] = String(count)
        environment["PRUNEKIT_STORE_PADDING"] = String(padding)
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let handle = pipe.fileHandleForReading, output = collected
        Thread.detachNewThread {
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                output.lock.lock(); output.data.append(data); output.lock.unlock()
            }
            output.finished.signal()
        }
    }

    var output: String {
        collected.lock.lock(); defer { collected.lock.unlock() }
        return String(decoding: collected.data, as: UTF8.self)
    }
    var isRunning: Bool { process.isRunning }
    var terminationStatus: Int32 { process.terminationStatus }
    var terminationSignal: Int32? { process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil }

    /// The highest index the child reported committed, or -1.
    func lastCommitted() -> Int {
        output.split(separator: "\n").compactMap { line in
            line.hasPrefix("committed ") ? Int(line.dropFirst("committed ".count)) : nil
        }.max() ?? -1
    }

    /// Waits until the child reports index `index` committed; returns the last index reported.
    func waitForCommit(index: Int, timeout: TimeInterval) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let last = lastCommitted()
            if last >= index { return last }
            if !process.isRunning {
                wait()
                if lastCommitted() >= index { return lastCommitted() }
                throw PruneKitError(.io, "the writer child exited (status \(process.terminationStatus)) before index \(index):\n\(output)")
            }
            usleep(200)
        }
        kill9()
        throw PruneKitError(.io, "the writer child did not reach index \(index) in \(Int(timeout)) s:\n\(output)")
    }

    /// SIGKILL, then wait for the exit and for the output written before it.
    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        wait()
    }

    private var drained = false
    func wait() {
        process.waitUntilExit()
        if !drained { _ = collected.finished.wait(timeout: .now() + 10); drained = true }
    }
}
