import PruneKit
import XCTest

// Criteria for testing the checker: good ones, and one broken in each way it must catch.

private struct L1Filter: Criterion, OptionConstructible {
    static let id = "test-l1-filter"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } }
    }
}

private struct Magnitude: Criterion, OptionConstructible {
    static let id = "test-magnitude"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.scalars.map(abs)
    }
}

/// |w · ∂L/∂w| per weight: uses the synthetic gradient.
private struct GradientMagnitude: Criterion, OptionConstructible {
    static let id = "test-gradient-magnitude"
    let granularity = Granularity.weight
    let evidence: Evidence = .weightGradients
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        guard let g = context.weightGradient else { throw PruneKitError(.invalidArgument, "no gradient") }
        return zip(layer.weights.scalars, g.scalars).map { abs($0 * $1) }
    }
}

/// Runs a pass of its own, then doubles the first layer's weights and leaves them so.
private struct LeavesWeightsChanged: Criterion, OptionConstructible {
    static let id = "test-leaves-weights-changed"
    let granularity = Granularity.weight
    let evidence: Evidence = .ownPasses
    init(options: OptionValues) {}
    func gather(_ session: CalibrationSession, into states: inout [Void]) throws {
        _ = try session.pass(Tensor(shape: [1] + session.model.inputShape, repeating: 1))
        let w = session.model.namedParameters.first { $0.path.hasSuffix(".weight") }!.parameter
        w.value = Tensor(shape: w.value.shape, scalars: w.value.scalars.map { 2 * $0 })
    }
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { layer.weights.scalars.map(abs) }
}

/// Taylor-like: |Σ activation · gradient| per channel over the batches, ℓ2-normalised per layer.
private struct ActivationTaylor: Criterion, OptionConstructible {
    static let id = "test-taylor"
    static let options: [OptionSpec] = [.bool("normalize", default: true, help: "ℓ2-normalise per layer")]
    let granularity = Granularity.channel
    let evidence: Evidence = [.activations, .activationGradients]
    let normalize: Bool
    init(options: OptionValues) { normalize = options.bool("normalize") }
    func makeState(for layer: PrunableLayer) -> [Float] { [Float](repeating: 0, count: layer.outputs) }
    func observe(_ batch: LayerBatch, layer: PrunableLayer, state sums: inout [Float]) throws {
        guard let a = batch.activations, let g = batch.activationGradients else { throw PruneKitError(.invalidArgument, "missing evidence") }
        let c = layer.outputs
        let (av, gv) = (a.scalars, g.scalars)
        if layer.kind == .conv2d {   // [C, N, H, W]
            let per = a.count / c
            for ch in 0..<c { for k in 0..<per { sums[ch] += av[ch * per + k] * gv[ch * per + k] } }
        } else {                     // [N, F]
            for i in 0..<a.count { sums[i % c] += av[i] * gv[i] }
        }
    }
    func scores(for layer: PrunableLayer, state sums: [Float], context: ScoringContext) throws -> [Float] {
        let s = sums.map(abs)
        guard normalize else { return s }
        let norm = s.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? s.map { $0 / norm } : s
    }
}

private struct WrongCount: Criterion, OptionConstructible {
    static let id = "test-wrong-count"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        Array(layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } }.dropLast())
    }
}

private struct ProducesNaN: Criterion, OptionConstructible {
    static let id = "test-nan"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        // 0/0 on all-zero rows, and a NaN on the first channel always.
        layer.weights.rows.enumerated().map { $0.offset == 0 ? .nan : $0.element.reduce(0) { $0 + abs($1) } }
    }
}

private final class Counter: @unchecked Sendable { var value: Float = 0 }
private let sharedCounter = Counter()

private struct NonDeterministic: Criterion, OptionConstructible {
    static let id = "test-nondeterministic"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        sharedCounter.value += 1   // ignores context.rng: a hidden global state
        return layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } + sharedCounter.value }
    }
}

private struct ByPosition: Criterion, OptionConstructible {
    static let id = "test-by-position"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        (0..<layer.outputs).map { Float($0) }   // depends on the order, not the filter
    }
}

/// Seeded uniform scores: deterministic, but not equivariant by design.
private struct SeededRandom: Criterion, OptionConstructible {
    static let id = "test-random"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        var rng = context.rng
        return (0..<layer.outputs).map { _ in rng.nextFloat() }
    }
}

private struct RefusesDefaults: Criterion, OptionConstructible {
    static let id = "test-refuses-defaults"
    static let options: [OptionSpec] = [.double("ratio", default: 0, help: "must be positive")]
    let granularity = Granularity.channel
    init(options: OptionValues) throws {
        guard options.double("ratio") > 0 else { throw PruneKitError(.invalidArgument, "ratio must be positive") }
    }
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { [] }
}

private struct BadID: Criterion, OptionConstructible {
    static let id = "bad id!"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } }
    }
}

final class ConformanceCheckerTests: XCTestCase {
    private func failures(_ report: ConformanceReport, _ check: ConformanceCheck) -> [String] {
        report.results(of: check).compactMap { if case let .failed(m) = $0.outcome { return m }; return nil }
    }

    func testGoodCriteriaPass() {
        for type in [L1Filter.self, Magnitude.self, GradientMagnitude.self, ActivationTaylor.self] as [any (Criterion & OptionConstructible).Type] {
            let report = checkCriterion(type)
            XCTAssertTrue(report.passed, report.description)
            // Every check ran on every layer; only the single-output equivariance is skipped.
            XCTAssertEqual(report.results(of: .scoreCount).count, 4)
            XCTAssertEqual(report.skipped.count, 2, report.description)
            XCTAssertTrue(report.skipped.allSatisfy { $0.check == .permutationEquivariance })
        }
    }

    func testAssertConformanceOnAGoodCriterion() {
        let report = assertConformance(ActivationTaylor.self, options: ["normalize=false"], seed: 7)
        XCTAssertTrue(report.passed)
        XCTAssertEqual(report.criterionID, "test-taylor")
    }

    func testWrongCountFails() {
        let report = checkCriterion(WrongCount.self)
        XCTAssertFalse(report.passed)
        let messages = failures(report, .scoreCount)
        XCTAssertEqual(messages.count, 4, report.description)
        XCTAssertTrue(messages.contains { $0.contains("channel granularity: expected 6 scores") && $0.contains("got 5") }, report.description)
        XCTAssertTrue(messages.contains { $0.contains("expected 1 scores") && $0.contains("got 0") }, report.description)
        XCTAssertTrue(report.description.contains("FAIL  scoreCount [synthetic.conv conv2d [8, 3, 3, 3]]"), report.description)
    }

    func testNaNFails() {
        let report = checkCriterion(ProducesNaN.self)
        let messages = failures(report, .finiteScores)
        XCTAssertEqual(messages.count, 4, report.description)
        XCTAssertTrue(messages.allSatisfy { $0.contains("score[0] = nan") }, report.description)
        XCTAssertTrue(failures(report, .zeroWeights).allSatisfy { $0.hasPrefix("all-zero layer: ") })
        XCTAssertTrue(failures(report, .determinism).isEmpty, "NaN bit patterns are equal run to run")
    }

    func testNonDeterminismFails() {
        let report = checkCriterion(NonDeterministic.self)
        let messages = failures(report, .determinism)
        XCTAssertEqual(messages.count, 4, report.description)
        XCTAssertTrue(messages.allSatisfy { $0.contains("same seed 0, different scores: score[0] was") }, report.description)
    }

    func testNonEquivarianceFails() {
        let report = checkCriterion(ByPosition.self)
        let messages = failures(report, .permutationEquivariance)
        XCTAssertEqual(messages.count, 2, report.description)   // the two multi-output layers
        XCTAssertTrue(messages[0].contains("permuted by [4, 3, 2, 1, 0, 5]"), messages[0])
        XCTAssertTrue(messages[0].contains("score[0] is 0.0, expected 4.0"), messages[0])
        XCTAssertEqual(report.failures.count, 2, report.description)
    }

    /// A criterion that runs passes of its own is checked on a tiny model: the built-in
    /// synflow, obd and grasp pass every check there; one whose pass leaves the weights
    /// changed fails modelUnchanged (and, its second scoring seeing other weights, determinism).
    func testOwnPassCriteriaAreCheckedOnATinyModel() throws {
        let registry = try TestSupport.builtInRegistry()
        for id in ["synflow", "obd", "grasp"] {
            let report = checkCriterion(try registry.criterion(id))
            XCTAssertTrue(report.passed, report.description)
            for check in [ConformanceCheck.scoreCount, .finiteScores, .determinism, .permutationEquivariance, .zeroWeights, .modelUnchanged] {
                XCTAssertFalse(report.results(of: check).isEmpty, "\(id): \(check)")
            }
            XCTAssertTrue(report.results.allSatisfy { $0.layer?.hasPrefix("tiny model") ?? true }, report.description)
        }
        let leaky = checkCriterion(LeavesWeightsChanged.self)
        XCTAssertEqual(Set(leaky.failures.map(\.check)), [.modelUnchanged, .determinism], leaky.description)
    }

    func testSkippingIsReportedWithTheReason() {
        XCTAssertFalse(checkCriterion(SeededRandom.self).passed, "seeded random scores are not equivariant")
        let report = checkCriterion(SeededRandom.self, skipping: [.permutationEquivariance: "random scores by design"])
        XCTAssertTrue(report.passed, report.description)
        XCTAssertEqual(report.results(of: .permutationEquivariance).count, 4)
        XCTAssertTrue(report.skipped.allSatisfy { $0.outcome == .skipped("skipped by the caller: random scores by design") })
        XCTAssertTrue(report.description.contains("skip  permutationEquivariance"), report.description)
    }

    func testRefusedDefaultsFail() {
        let report = checkCriterion(RefusesDefaults.self)
        XCTAssertFalse(report.passed)
        let messages = failures(report, .defaultOptions)
        XCTAssertEqual(messages.count, 1)
        XCTAssertTrue(messages[0].contains("ratio must be positive"), messages[0])
    }

    func testBadIdentifierFails() {
        let report = checkCriterion(BadID.self)
        let messages = failures(report, .identifier)
        XCTAssertEqual(messages.count, 1, report.description)
        XCTAssertTrue(messages[0].contains("'bad id!'"), messages[0])
    }

    func testPermutedSyntheticLayerMovesEvidenceWithTheChannels() {
        let layer = SyntheticLayer(path: "p", kind: .conv2d, weightShape: [3, 2, 1, 1], index: 0, seed: 1)
        let moved = layer.permuted(by: [2, 0, 1])
        XCTAssertEqual(moved.layer.weights.rows[0], layer.layer.weights.rows[2])
        XCTAssertEqual(moved.weightGradient.rows[1], layer.weightGradient.rows[0])
        XCTAssertEqual(moved.batches[0].activations!.rows[0], layer.batches[0].activations!.rows[2])
        // The next layer [4, 3, 3, 3] reads the channels in the new order: 9 columns per channel.
        let oldNext = layer.batches[0].nextLayer!.weights.rows[0], newNext = moved.batches[0].nextLayer!.weights.rows[0]
        XCTAssertEqual(Array(newNext[0..<9]), Array(oldNext[18..<27]))
    }
}

/// The test binary must use the process's one libPruneKit.so, not a static copy of its own.
final class SDKLinkageTests: XCTestCase {
    func testSDKTypesComeFromTheSharedLibrary() throws {
        let address = UInt(bitPattern: unsafeBitCast(Registry.self, to: UnsafeRawPointer.self))
        let path = try XCTUnwrap(SDKLinkage.sdkImagePath, "no mapping holds \(String(address, radix: 16))")
        XCTAssertTrue(path.hasSuffix("/libPruneKit.so"), "Registry's metadata lives in \(path), not in libPruneKit.so: a static copy of the SDK is linked")
        XCTAssertEqual(SDKLinkage.imagePath(of: Registry.self), path)
    }
}
