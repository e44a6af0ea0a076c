import PruneKit
import XCTest

/// Test support: runs ``checkCriterion(_:seed:skipping:)`` and reports each failed check as an XCTest
/// failure at the caller's line, with the offending values.
///
/// ```swift
/// func testConformance() throws {
///     assertConformance(try MyCriterion(options: OptionValues(defaultsOf: MyCriterion.options)))
/// }
/// ```
/// - Returns: the report, for further assertions.
@discardableResult
func assertConformance(_ criterion: any Criterion, seed: UInt64 = 0, skipping: [ConformanceCheck: String] = [:],
                              file: StaticString = #filePath, line: UInt = #line) -> ConformanceReport {
    let report = checkCriterion(criterion, seed: seed, skipping: skipping)
    for failure in report.failures {
        XCTFail("criterion '\(report.criterionID)': \(failure)", file: file, line: line)
    }
    return report
}

/// Builds `type` from its default options (or `options`) and asserts its conformance;
/// a refused default is reported as the `defaultOptions` failure.
@discardableResult
func assertConformance<C: Criterion & OptionConstructible>(_ type: C.Type, options: [String] = [], seed: UInt64 = 0,
                              skipping: [ConformanceCheck: String] = [:],
                              file: StaticString = #filePath, line: UInt = #line) -> ConformanceReport {
    let report = checkCriterion(type, options: options, seed: seed, skipping: skipping)
    for failure in report.failures {
        XCTFail("criterion '\(report.criterionID)': \(failure)", file: file, line: line)
    }
    return report
}
