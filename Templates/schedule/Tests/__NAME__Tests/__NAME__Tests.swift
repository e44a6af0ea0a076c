import PruneKit
import XCTest
@testable import __NAME__Plugin

final class __NAME__Tests: XCTestCase {
    private func schedule(_ options: [String] = []) throws -> __NAME__ {
        try __NAME__(options: OptionValues(parsing: options, specs: __NAME__.options, owner: __NAME__.id))
    }

    /// The contract every schedule keeps, for its default options and a few others: at
    /// least one step, every sparsity finite and in [0, target], never decreasing, the last
    /// exactly the target; and, if it prunes during training, one training step per
    /// sparsity, in order.
    func testContract() throws {
        for options in [[], ["steps=1"], ["steps=7"]] {
            let schedule = try schedule(options)
            for target in [0, 0.3, 0.5, 0.9, 0.99] {
                let s = schedule.sparsities(toward: target)
                XCTAssertFalse(s.isEmpty, "\(options) toward \(target): no steps")
                XCTAssertTrue(s.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= target }, "\(options) toward \(target): \(s)")
                XCTAssertEqual(s, s.sorted(), "\(options) toward \(target): sparsities decrease: \(s)")
                XCTAssertEqual(s.last, target, "\(options) toward \(target): the last step must reach the target exactly")
                if let t = schedule.trainingSteps {
                    XCTAssertEqual(t.count, s.count, "\(options): one training step per sparsity")
                    XCTAssertEqual(t, t.sorted(), "\(options): training steps out of order")
                    XCTAssertTrue(t.allSatisfy { $0 >= 0 }, "\(options): negative training steps \(t)")
                }
            }
        }
    }

    /// Values computed by hand: 3 steps toward 0.5 are 0.5·(1 − (2/3)³), 0.5·(1 − (1/3)³), 0.5.
    func testSparsitiesByHand() throws {
        let s = try schedule().sparsities(toward: 0.5)
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s[0], 0.5 * 19 / 27, accuracy: 1e-12)
        XCTAssertEqual(s[1], 0.5 * 26 / 27, accuracy: 1e-12)
        XCTAssertEqual(s[2], 0.5)
        XCTAssertNil(try schedule().trainingSteps, "steps separated by finetuning")
    }

    func testRejectsBadStepCounts() {
        for bad in ["steps=0", "steps=-1", "steps=1001"] {
            XCTAssertThrowsError(try schedule([bad]), bad)
        }
    }

    /// The test links the SDK's shared library, not a copy of it (as `prunekit` and the plugin do).
    func testOneCopyOfTheSDK() {
        XCTAssertEqual(SDKLinkage.sdkImagePath.map { $0.hasSuffix("/libPruneKit.so") }, true,
                       "PruneKit's types come from \(SDKLinkage.sdkImagePath ?? "?"), not libPruneKit.so")
    }

    /// The entry point registers the schedule (the host calls it the same way).
    func testEntryRegisters() throws {
        let registry = Registry()
        try __NAME__Entry().register(into: registry)
        XCTAssertEqual(registry.ids(of: .schedule), ["__ID__"])
        XCTAssertNoThrow(try registry.schedule("__ID__", options: ["steps=2"]))
        XCTAssertEqual(String(cString: prunekitPluginInfo()), #"{"name":"__ID__","version":"0.1.0"}"#)
    }
}
