import PruneKit
import XCTest

/// The shipped criteria, loaded from their plugin libraries, against values computed by
/// hand in the test.
final class CriteriaTests: XCTestCase {
    private let weights: [[Float]] = [[1, -2, 3], [0, 0, 0], [-1, 1, -1], [0.5, -0.25, 4]]

    private func scores(_ id: String, _ layer: PrunableLayer, gradient: Tensor? = nil, options: [String] = [],
                        seed: UInt64 = 0) throws -> [Float] {
        let criterion = try TestSupport.builtInRegistry().criterion(id, options: options)
        let context = ScoringContext(weightGradient: gradient, rng: RandomGenerator(seed: seed))
        return try criterion.scores(for: layer, context: context)
    }

    func testMagnitudeIsTheAbsoluteValue() throws {
        let layer = TestSupport.layer(weights)
        let expected: [Float] = [1, 2, 3, 0, 0, 0, 1, 1, 1, 0.5, 0.25, 4]
        XCTAssertEqual(try scores("global-magnitude", layer), expected)
        XCTAssertEqual(try scores("layer-magnitude", layer), expected)
        let registry = try TestSupport.builtInRegistry()
        XCTAssertEqual(try registry.criterion("global-magnitude").preferredScope, .global)
        XCTAssertEqual(try registry.criterion("layer-magnitude").preferredScope, .perLayer)
    }

    func testGradientMagnitudeIsWeightTimesGradient() throws {
        let layer = TestSupport.layer(weights)
        let g = Tensor(shape: [4, 3], scalars: [2, 1, -1, 5, 5, 5, 0.5, -2, 0, 1, 4, -0.5])
        // |w·g| by hand: row 0: |1·2|, |−2·1|, |3·−1|; row 1: zeros; row 2: 0.5, 2, 0; row 3: 0.5, 1, 2.
        let expected: [Float] = [2, 2, 3, 0, 0, 0, 0.5, 2, 0, 0.5, 1, 2]
        XCTAssertEqual(try scores("global-gradient-magnitude", layer, gradient: g), expected)
        XCTAssertEqual(try scores("layer-gradient-magnitude", layer, gradient: g), expected)
        XCTAssertThrowsError(try scores("global-gradient-magnitude", layer)) {
            XCTAssert("\($0)".contains("no weight gradient"))
        }
    }

    func testL1FilterSumsEachFilter() throws {
        // Σ|W[j]|: 1+2+3, 0, 1+1+1, 0.5+0.25+4.
        XCTAssertEqual(try scores("l1-filter", TestSupport.layer(weights)), [6, 0, 3, 4.75])
    }

    func testRandomIsSeededExactAndOfTheRequestedGranularity() throws {
        let layer = TestSupport.layer(weights)
        let a = try scores("random", layer, seed: 1), b = try scores("random", layer, seed: 1)
        XCTAssertEqual(a, b, "the same seed gives the same scores")
        XCTAssertNotEqual(a, try scores("random", layer, seed: 2))
        XCTAssertEqual(a.count, 12)
        XCTAssertEqual(Set(a).count, 12, "no ties, so a selection prunes an exact count")
        XCTAssertEqual(try scores("random", layer, options: ["granularity=channel"]).count, 4)
        XCTAssertThrowsError(try scores("random", layer, options: ["granularity=filter"]))
    }

    /// End to end through the model: gradient magnitude with its gathered evidence equals
    /// |w| times the gradient computed directly on the same calibration batches.
    func testGradientMagnitudeOnAModelUsesTheGatheredGradient() throws {
        let data = try DatasetCatalog.load().train.subset(Array(0..<64))
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let criterion = try TestSupport.builtInRegistry().criterion("global-gradient-magnitude")
        let settings = CalibrationSettings(batches: 2, batchSize: 32, seed: 1)
        let scored = try model.score(with: criterion, data: data, settings: settings)

        let reference = try model.clone()
        reference.mode = .evaluationWithGradients
        let loader = try DataLoader(data, batchSize: 32, shuffle: true, seed: 1)
        for b in 0..<2 {
            let batch = loader.batch(b)
            reference.backward(softmaxCrossEntropy(logits: reference.forward(batch.images), labels: batch.labels).gradient)
        }
        let w = reference.nodes[2].layer.parameter(named: "weight")!
        let expected = zip(w.value.scalars, w.gradient.scalars).map { abs($0 * $1) }
        XCTAssertEqual(scored[1].layer.path, "fc2")
        for (a, e) in zip(scored[1].scores, expected) { XCTAssertEqual(a, e, accuracy: 1e-6 * max(1, e)) }
    }
}


/// Every built-in criterion passes the conformance checker that plugin authors use.
final class BuiltInConformanceTests: XCTestCase {
    func testEveryBuiltInCriterionConforms() throws {
        let registry = try TestSupport.builtInRegistry()
        let ids = registry.ids(of: .criterion)
        XCTAssertEqual(Set(ids), ["global-magnitude", "layer-magnitude", "global-gradient-magnitude", "layer-gradient-magnitude",
                                  "l1-filter", "random", "apoz", "taylor", "thinet", "slimming",
                                  "fpgm", "lamp", "snip", "hrank", "synflow", "obd", "grasp"])
        // Criteria that run passes of their own (synflow, obd, grasp) are checked on a tiny model.
        for id in ids {
            var skipping: [ConformanceCheck: String] = [:]
            if id == "random" { skipping[.permutationEquivariance] = "random scores ignore the weights by design" }
            let report = assertConformance(try registry.criterion(id), seed: 3, skipping: skipping)
            XCTAssertFalse(report.results.isEmpty, id)
        }
    }
}
