import Foundation
import XCTest
@testable import PruneKitHarness

final class StatisticsTests: XCTestCase {
    /// [2, 4, 4, 4, 5, 5, 7, 9]: Σ = 40, mean = 5; squared deviations 9+1+1+1+0+0+4+16 = 32;
    /// sample variance 32/7 = 4.571428…, sd = 2.1380899353.
    func testMeanAndSampleStandardDeviationByHand() throws {
        let x: [Double] = [2, 4, 4, 4, 5, 5, 7, 9]
        XCTAssertEqual(try XCTUnwrap(Statistics.mean(x)), 5, accuracy: 1e-15)
        XCTAssertEqual(try XCTUnwrap(Statistics.standardDeviation(x)), (32.0 / 7).squareRoot(), accuracy: 1e-15)
        XCTAssertEqual(try XCTUnwrap(Statistics.standardDeviation(x)), 2.1380899353, accuracy: 1e-10)
        XCTAssertNil(Statistics.mean([]))
        XCTAssertNil(Statistics.standardDeviation([3]))
        let s = try XCTUnwrap(MetricSummary(x))
        XCTAssertEqual(s.count, 8)
        XCTAssertEqual(s.minimum, 2)
        XCTAssertEqual(s.maximum, 9)
        XCTAssertNil(MetricSummary([]))
        XCTAssertNil(try XCTUnwrap(MetricSummary([0.5])).standardDeviation)
    }

    /// Issue 15, defect 16: the same difference on every seed has no spread, so no interval
    /// (a zero-width one would call any difference significant). Equal differences computed
    /// from different accuracies differ in their last bits; that noise is no spread either.
    func testAZeroSpreadDifferenceGetsNoInterval() throws {
        let exact = try XCTUnwrap(Statistics.pairedDifference([0.9, 0.8], [0.85, 0.75]))
        XCTAssertEqual(exact.pairs, 2)
        XCTAssertEqual(exact.mean, 0.05, accuracy: 1e-12)
        XCTAssertNil(exact.interval)
        XCTAssertTrue(exact.hasNoSpread)
        // 0.91 − 0.86 and 0.70 − 0.65 are not bit-equal in binary floating point.
        XCTAssertNotEqual(0.91 - 0.86, 0.70 - 0.65)
        let rounded = try XCTUnwrap(Statistics.pairedDifference([0.91, 0.70, 0.93], [0.86, 0.65, 0.88]))
        XCTAssertNil(rounded.interval)
        XCTAssertTrue(rounded.hasNoSpread)
        let tie = try XCTUnwrap(Statistics.pairedDifference([0.9, 0.8], [0.9, 0.8]))
        XCTAssertTrue(tie.hasNoSpread)
        // A real spread still gets its interval; one pair is "needs seeds", not "no spread".
        XCTAssertNotNil(try XCTUnwrap(Statistics.pairedDifference([0.9, 0.8], [0.85, 0.76])).interval)
        XCTAssertFalse(try XCTUnwrap(Statistics.pairedDifference([0.9], [0.85])).hasNoSpread)
    }

    /// Published two-sided 95 % critical values (any statistics table), to their 3 decimals.
    func testTQuantilesAgainstTheTable() {
        let table: [(Int, Double)] = [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (9, 2.262),
                                      (10, 2.228), (20, 2.086), (30, 2.042), (60, 2.000), (120, 1.980)]
        for (nu, t) in table {
            XCTAssertEqual(Statistics.tCritical95(degreesOfFreedom: nu), t, accuracy: 5e-4, "ν = \(nu)")
        }
        XCTAssertEqual(Statistics.tQuantile(0.975, degreesOfFreedom: .infinity), 1.959963984540054, accuracy: 1e-12)
        // Other levels: t(0.995; 4) = 4.604, t(0.95; 9) = 1.833.
        XCTAssertEqual(Statistics.tQuantile(0.995, degreesOfFreedom: 4), 4.604, accuracy: 5e-4)
        XCTAssertEqual(Statistics.tQuantile(0.95, degreesOfFreedom: 9), 1.833, accuracy: 5e-4)
    }

    /// Closed forms: ν = 1 (Cauchy) t = tan(π(p − ½)); ν = 2: t = (2p − 1) / √(2p(1 − p)).
    func testTQuantilesAgainstClosedForms() {
        for p in [0.6, 0.9, 0.975, 0.995, 0.9999, 0.3, 0.01] {
            let cauchy = tan(Double.pi * (p - 0.5))
            XCTAssertEqual(Statistics.tQuantile(p, degreesOfFreedom: 1), cauchy, accuracy: 1e-11 * max(1, abs(cauchy)), "p = \(p)")
            let two = (2 * p - 1) / (2 * p * (1 - p)).squareRoot()
            XCTAssertEqual(Statistics.tQuantile(p, degreesOfFreedom: 2), two, accuracy: 1e-11 * max(1, abs(two)), "p = \(p)")
        }
        XCTAssertEqual(Statistics.tQuantile(0.5, degreesOfFreedom: 7), 0)
        XCTAssertEqual(Statistics.tQuantile(0.1, degreesOfFreedom: 7), -Statistics.tQuantile(0.9, degreesOfFreedom: 7), accuracy: 1e-12)
        XCTAssertTrue(Statistics.tQuantile(0, degreesOfFreedom: 3).isNaN)
        XCTAssertTrue(Statistics.tQuantile(1, degreesOfFreedom: 3).isNaN)
        XCTAssertTrue(Statistics.tQuantile(0.9, degreesOfFreedom: 0).isNaN)
    }

    /// Above ν = 1000 the expansion takes over: the two methods meet there (to 1e−12 relative), and
    /// the quantile keeps falling towards the normal one.
    func testTQuantileIsContinuousWhereTheMethodChanges() {
        for p in [0.9, 0.975, 0.995, 0.9995] {
            let exact = Statistics.tQuantile(p, degreesOfFreedom: 1000)
            let expanded = Statistics.tQuantile(p, degreesOfFreedom: 1000 + 1e-9)
            XCTAssertEqual(exact, expanded, accuracy: 1e-12 * exact, "p = \(p)")
        }
        XCTAssertEqual(Statistics.tQuantile(0.975, degreesOfFreedom: 1000), 1.962339, accuracy: 1e-6)
        XCTAssertGreaterThan(Statistics.tQuantile(0.975, degreesOfFreedom: 1e5), Statistics.tQuantile(0.975, degreesOfFreedom: 1e6))
        XCTAssertEqual(Statistics.tQuantile(0.975, degreesOfFreedom: 1e9), 1.959963984540054, accuracy: 1e-8)
    }

    /// I_x(1, 1) = x; I_x(a, 1) = xᵃ; I_½(a, a) = ½; and P(|T| > 12.7062) = 0.05 for ν = 1.
    func testIncompleteBetaIdentities() {
        for x in [0.1, 0.5, 0.93] {
            XCTAssertEqual(Statistics.regularizedIncompleteBeta(x: x, complement: 1 - x, a: 1, b: 1), x, accuracy: 1e-14)
            XCTAssertEqual(Statistics.regularizedIncompleteBeta(x: x, complement: 1 - x, a: 3.5, b: 1), pow(x, 3.5), accuracy: 1e-14)
        }
        XCTAssertEqual(Statistics.regularizedIncompleteBeta(x: 0.5, complement: 0.5, a: 7.3, b: 7.3), 0.5, accuracy: 1e-14)
        XCTAssertEqual(Statistics.studentTwoSidedTail(tan(Double.pi * 0.475), degreesOfFreedom: 1), 0.05, accuracy: 1e-14)
    }

    /// a − b = [0.02, 0.03, 0.01]: mean 0.02, sd √((0 + 0.01² + 0.01²)/2) = 0.01,
    /// half-width t(0.975; 2)·0.01/√3 = 4.302653·0.0057735 = 0.0248414: [−0.0048414, 0.0448414]
    /// contains zero. [1, 2, 3, 4, 5] against zeros: mean 3, sd √(10/4) = 1.5811388,
    /// half-width 2.7764451·1.5811388/√5 = 1.9632432: [1.0367568, 4.9632432] excludes zero.
    func testPairedDifferenceByHand() throws {
        let d = try XCTUnwrap(Statistics.pairedDifference([0.90, 0.92, 0.91], [0.88, 0.89, 0.90]))
        XCTAssertEqual(d.pairs, 3)
        XCTAssertEqual(d.mean, 0.02, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(d.standardDeviation), 0.01, accuracy: 1e-12)
        let ci = try XCTUnwrap(d.interval)
        XCTAssertEqual(ci.lower, -0.0048414, accuracy: 1e-7)
        XCTAssertEqual(ci.upper, 0.0448414, accuracy: 1e-7)
        XCTAssertFalse(ci.excludesZero)

        let e = try XCTUnwrap(Statistics.pairedDifference([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]))
        let ce = try XCTUnwrap(e.interval)
        XCTAssertEqual(ce.lower, 1.0367568, accuracy: 1e-6)
        XCTAssertEqual(ce.upper, 4.9632432, accuracy: 1e-6)
        XCTAssertTrue(ce.excludesZero)
        XCTAssertEqual(ce.level, 0.95)

        let one = try XCTUnwrap(Statistics.pairedDifference([0.9], [0.8]))
        XCTAssertEqual(one.mean, 0.1, accuracy: 1e-12)
        XCTAssertNil(one.standardDeviation)
        XCTAssertNil(one.interval, "one pair: no interval")
        XCTAssertNil(Statistics.pairedDifference([], []))
    }
}
