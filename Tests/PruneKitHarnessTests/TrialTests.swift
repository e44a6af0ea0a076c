import Foundation
import GRDB
import PruneKit
import XCTest
@testable import PruneKitHarness

final class TrialTests: XCTestCase {
    /// The id is a pure function of the configuration: equal configurations share it,
    /// any change of a field gives another.
    func testTrialIdentityIsStableAndSensitive() {
        let base = BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k")
        let a = TrialConfiguration(baseline: base, criterion: "global-magnitude", target: TrialTarget(.compression, 4))
        let b = TrialConfiguration(baseline: base, criterion: "global-magnitude", target: TrialTarget(.compression, 4))
        XCTAssertEqual(a.id, b.id)
        XCTAssertEqual(a.id.count, 32)
        var c = a; c.target = TrialTarget(.compression, 8)
        var d = a; d.baseline.seed = 1
        XCTAssertNotEqual(a.id, c.id)
        XCTAssertNotEqual(a.id, d.id)
        XCTAssertNotEqual(a.baseline.hash, d.baseline.hash)
    }

    /// Issue 15, defect 14: a criterion rebuilt with other code (same path, same version, or
    /// a new version) is another trial: its id changes, so a store holding the old build's
    /// result does not skip it; a child that loaded another build than planned refuses the
    /// trial; moving the plugin file keeps the identity; the store records the build.
    func testARebuiltPluginIsANewTrialNotAReuse() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-trial-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("libMyCriterion.so").path
        try Data("build one: scores".utf8).write(to: URL(fileURLWithPath: file))
        func registry(version: String) throws -> Registry {
            let registry = Registry()
            try registry.registering(from: file, version: version, sdkVersion: "1.0") {
                try registry.register(criterion: "my-criterion", summary: "", options: []) { _ in throw PruneKitError(.plugin, "unused") }
            }
            return registry
        }
        let planned = TrialConfiguration(baseline: BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k"),
                                         criterion: "my-criterion", target: TrialTarget(.compression, 4))
        let first = try PluginBuild.stamped(planned, registry: try registry(version: "0.1.0"))
        let build = try XCTUnwrap(first.criterionBuild)
        XCTAssertEqual([build.file, build.version, build.sdkVersion], [file, "0.1.0", "1.0"])
        XCTAssertEqual(build.contentHash, StableHash.hex(of: Data("build one: scores".utf8)))
        XCTAssertNotEqual(first.id, planned.id)

        let store = try ResultStore(path: dir.appendingPathComponent("results.sqlite").path)
        var result = TrialResult(status: .succeeded)
        result.finetunedAccuracy = Accuracy(top1: 0.9)
        try store.record(TrialRecord(configuration: first, result: result))

        // Rebuilt with inverted scores, version and path unchanged.
        try Data("build two: inverted scores".utf8).write(to: URL(fileURLWithPath: file))
        let rebuilt = try registry(version: "0.1.0")
        let second = try PluginBuild.stamped(planned, registry: rebuilt)
        XCTAssertNotEqual(second.id, first.id)
        XCTAssertFalse(try store.completedTrialIDs().contains(second.id), "the rebuilt criterion's trial is not skipped")
        // A new version is a new trial too.
        XCTAssertNotEqual(try PluginBuild.stamped(planned, registry: try registry(version: "0.2.0")).id, second.id)

        // The child that loaded the rebuilt plugin refuses a trial planned with the old build.
        XCTAssertThrowsError(try PluginBuild.verify(first, registry: rebuilt)) { error in
            XCTAssertTrue("\(error)".contains("'my-criterion' changed after this trial was planned"), "\(error)")
            XCTAssertNotNil((error as? PruneKitError)?.hint)
        }
        XCTAssertNoThrow(try PluginBuild.verify(second, registry: rebuilt))

        // The same bytes loaded from elsewhere are the same trial.
        var moved = second
        moved.plugins = moved.plugins?.map { var p = $0; p.file = "/elsewhere/libMyCriterion.so"; return p }
        XCTAssertEqual(moved.id, second.id)

        // The store's columns say which file, version and SDK produced the result.
        let row = try XCTUnwrap(try DatabaseQueue(path: store.path).read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM trials WHERE id = ?", arguments: [first.id])
        })
        XCTAssertEqual(row["criterion_file"] as String?, file)
        XCTAssertEqual(row["criterion_version"] as String?, "0.1.0")
        XCTAssertEqual(row["criterion_build"] as String?, build.contentHash)
        XCTAssertEqual(row["plugin_sdk_version"] as String?, "1.0")
        XCTAssertEqual(row["sdk_version"] as String?, SDKVersion.string)
    }

    /// FNV-1a's first lane against the published 64-bit test vector for "a".
    func testStableHashFirstLaneMatchesFNV1a() {
        let h = StableHash.hex(of: Data("a".utf8))
        XCTAssertEqual(String(h.prefix(16)), "af63dc4c8601ec8c")
    }
}

final class RankStatisticsTests: XCTestCase {
    func testTiedRanksAreAveraged() {
        XCTAssertEqual(RankStatistics.ranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
        XCTAssertEqual(RankStatistics.ranks([3, 1, 2]), [3, 1, 2])
    }

    /// Hand computation: x ranks [1,2,3,4,5], y ranks [2,1,4,3,5]; Σd² = 4, so
    /// ρ = 1 − 6·4 / (5·24) = 0.8.
    func testSpearmanAgainstHandComputation() throws {
        let rho = try XCTUnwrap(RankStatistics.spearman([1, 2, 3, 4, 5], [0.2, 0.1, 0.9, 0.5, 1.7]))
        XCTAssertEqual(rho, 0.8, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(RankStatistics.spearman([1, 2, 3], [9, 4, 1])), -1, accuracy: 1e-12)
        XCTAssertNil(RankStatistics.spearman([1, 2, 3], [5, 5, 5]))
        XCTAssertNil(RankStatistics.spearman([1], [2]))
    }
}
