import PruneKit
import XCTest
@testable import __NAME__Plugin

final class __NAME__Tests: XCTestCase {
    /// The contract every criterion keeps: right count, finite, deterministic,
    /// permutation-equivariant, survives all-zero weights, accepts its default options.
    func testConformance() {
        let report = checkCriterion(__NAME__.self)
        XCTAssertTrue(report.passed, "\(report)")
        print(report)
    }

    /// A value computed by hand: filters [1, -2] and [0.5, 0.5] have ℓ1 norms 3 and 1.
    func testScoresByHand() throws {
        let layer = PrunableLayer(path: "fc", kind: .linear, weights: Tensor(shape: [2, 2], scalars: [1, -2, 0.5, 0.5]),
                                  weightShape: [2, 2], bias: nil, macs: 4, index: 0, isClassifier: true)
        let criterion = try __NAME__(options: OptionValues(defaultsOf: __NAME__.options))
        XCTAssertEqual(try criterion.scores(for: layer, context: ScoringContext(rng: RandomGenerator(seed: 0))), [3, 1])
    }

    func testRejectsANonPositiveScale() {
        XCTAssertThrowsError(try __NAME__(options: OptionValues(parsing: ["scale=0"], specs: __NAME__.options, owner: __NAME__.id)))
    }

    /// The test links the SDK's shared library, not a copy of it (as `prunekit` and the plugin do).
    func testOneCopyOfTheSDK() {
        XCTAssertEqual(SDKLinkage.sdkImagePath.map { $0.hasSuffix("/libPruneKit.so") }, true,
                       "PruneKit's types come from \(SDKLinkage.sdkImagePath ?? "?"), not libPruneKit.so")
    }

    /// The entry point registers the criterion (the host calls it the same way).
    func testEntryRegisters() throws {
        let registry = Registry()
        try __NAME__Entry().register(into: registry)
        XCTAssertEqual(registry.ids(of: .criterion), ["__ID__"])
        XCTAssertEqual(String(cString: prunekitPluginInfo()), #"{"name":"__ID__","version":"0.1.0"}"#)
    }
}
