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
