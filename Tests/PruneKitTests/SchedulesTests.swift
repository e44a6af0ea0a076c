import Foundation
import PruneKit
import XCTest

/// The three shipped schedules, loaded from their plugin library: each sparsity sequence
/// against its formula.
final class SchedulesTests: XCTestCase {
    private func schedule(_ id: String, _ options: [String] = []) throws -> any Schedule {
        try TestSupport.builtInRegistry().schedule(id, options: options)
    }

    private func assertClose(_ a: [Double], _ b: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(a) vs \(b)", file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-12, "\(a) vs \(b)", file: file, line: line) }
    }

    func testOneShotPrunesToTheTargetInOneStep() throws {
        let s = try schedule("one-shot")
        XCTAssertEqual(s.sparsities(toward: 0.9), [0.9])
        XCTAssertNil(s.trainingSteps, "one-shot is separated by finetuning")
    }

    func testIterativeLinearRemovesTheSameShareEachStep() throws {
        // s_i = s·i/N: 0.8·{1,2,3,4}/4.
        let s = try schedule("iterative", ["steps=4", "decay=linear"])
        assertClose(s.sparsities(toward: 0.8), [0.2, 0.4, 0.6, 0.8])
        XCTAssertNil(s.trainingSteps)
    }

    func testIterativeGeometricKeepsTheSameFractionEachStep() throws {
        // kept_i = (1 − s)^(i/N): with s = 0.875 and N = 3, kept = 0.5, 0.25, 0.125.
        let s = try schedule("iterative", ["steps=3", "decay=geometric"])
        let sparsities = s.sparsities(toward: 0.875)
        assertClose(sparsities, [0.5, 0.75, 0.875])
        XCTAssertEqual(sparsities.last, 0.875, "ends exactly at the target")
        let kept = sparsities.map { 1 - $0 }
        for i in 1..<kept.count { XCTAssertEqual(kept[i] / kept[i - 1], 0.5, accuracy: 1e-12) }
        XCTAssertEqual(try schedule("iterative").sparsities(toward: 0.5).count, 5, "the default is 5 steps")
    }

    func testAGPFollowsTheCubic() throws {
        // s_t = s_f + (s_i − s_f)(1 − t/n)³, n = 10, k = 3: pruning at t = 3, 6, 9 and 10.
        let s = try schedule("agp", ["steps=10", "every=3"])
        XCTAssertEqual(s.trainingSteps, [3, 6, 9, 10])
        let f = 0.9
        assertClose(s.sparsities(toward: f), [3, 6, 9, 10].map { t in f + (0 - f) * pow(1 - Double(t) / 10, 3) })
        XCTAssertEqual(s.sparsities(toward: f).last, f)

        // With s_i > 0, t = 0 prunes to s_i first.
        let withInitial = try schedule("agp", ["steps=8", "every=4", "initial=0.2"])
        XCTAssertEqual(withInitial.trainingSteps, [0, 4, 8])
        assertClose(withInitial.sparsities(toward: 0.6), [0.2, 0.6 + (0.2 - 0.6) * 0.125, 0.6])
        let sequence = withInitial.sparsities(toward: 0.6)
        XCTAssertEqual(sequence, sequence.sorted(), "the sparsity never falls")
    }

    func testBadOptionsAreRefusedWithAMessage() throws {
        for (id, options) in [("iterative", ["steps=0"]), ("iterative", ["decay=cubic"]), ("agp", ["every=0"]),
                              ("agp", ["steps=0"]), ("agp", ["initial=1"]), ("one-shot", ["steps=2"])] {
            XCTAssertThrowsError(try schedule(id, options), "\(id) \(options)") {
                XCTAssertFalse("\($0)".isEmpty)
            }
        }
    }
}
