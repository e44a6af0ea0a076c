import Foundation
import PruneKit
import XCTest

/// |w| per weight, computing chunks on its own (as the magnitude plugin does), or not.
private struct ChunkedAbs: Criterion, OptionConstructible {
    static let id = "test-chunked-abs"
    let granularity = Granularity.weight
    var chunked = true
    init(options: OptionValues) {}
    init(chunked: Bool) { self.chunked = chunked }
    var scoresInChunks: Bool { chunked }
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.scalars.map(abs)
    }
    func scores(for layer: PrunableLayer, context: ScoringContext, chunk: Range<Int>,
                into buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard chunked else { throw PruneKitError(.plugin, "not chunked") }
        layer.weights.withUnsafeBufferPointer { p in for (i, j) in chunk.enumerated() { buffer[i] = abs(p[j]) } }
    }
}

/// The streaming selection (score sources read in chunks, keep bits) against the array
/// path and against a sort; bit-packed plans.
final class SelectionScaleTests: XCTestCase {
    /// Scores with many ties, both signs, zeros and negative zeros; layer sizes that are
    /// and aren't multiples of 64, one empty layer.
    private func tiedScores(seed: UInt64) -> [[Float]] {
        var rng = RandomGenerator(seed: seed)
        return [1000, 130, 0, 4097, 64, 1].map { n in
            (0..<n).map { _ in Float(rng.nextInt(below: 41) - 20) / 8 * (rng.nextInt(below: 2) == 0 ? 1 : -1) }
        }
    }

    /// A source that hands out chunks of an array (the streaming path), checking its ranges.
    private func chunkSource(_ s: [Float], path: String, classifier: Bool = false) -> ScoreSource {
        ScoreSource(path: path, count: s.count, isClassifier: classifier) { range, buffer in
            XCTAssert(range.lowerBound >= 0 && range.upperBound <= s.count && buffer.count == range.count)
            for (i, j) in range.enumerated() { buffer[i] = s[j] }
        }
    }

    func testStreamingMatchesASortForAllChunkSizesAndThreads() throws {
        let layers = tiedScores(seed: 11)
        let all = layers.enumerated().flatMap { k, s in s.enumerated().map { (score: $0.element, layer: k, pos: $0.offset) } }
        for count in [0, 1, 777, all.count / 2, all.count - 1, all.count] {
            // −0 ranks below +0 (the selection orders scores by their bit patterns).
            func zeroSign(_ v: Float) -> Int { v.sign == .minus ? 0 : 1 }
            let expected = all.sorted {
                ($0.score, zeroSign($0.score), $0.layer, $0.pos) < ($1.score, zeroSign($1.score), $1.layer, $1.pos)
            }.prefix(count)
            var expectedKeep = layers.map { [Bool](repeating: true, count: $0.count) }
            for e in expected { expectedKeep[e.layer][e.pos] = false }
            for chunk in [64, 100, 1000, 1 << 16] {
                for threads in [1, 2, 3] {
                    let sources = layers.enumerated().map { chunkSource($1, path: "l\($0)") }
                    let words = try selectLowest(sources, count: count, chunkSize: chunk, threads: threads)
                    for (k, w) in words.enumerated() {
                        let l = PruningPlan.Layer(path: "l\(k)", granularity: .weight, units: layers[k].count, keepWords: w)
                        XCTAssertEqual(w, l.keepWords, "bits past the layer's units are clear")
                        let mismatches = (0..<l.units).filter { l.isKept($0) != expectedKeep[k][$0] }
                        XCTAssert(mismatches.isEmpty, "\(mismatches.count) differ (first \(mismatches.prefix(3))): count \(count), chunk \(chunk), threads \(threads), layer \(k)")
                    }
                }
            }
        }
    }

    func testStreamingPlanEqualsArrayPlan() throws {
        let layers = tiedScores(seed: 12)
        for (scope, keepClassifier) in [(SelectionSettings.Scope.global, false), (.global, true), (.perLayer, false)] {
            let settings = SelectionSettings(scope: scope, sparsity: 0.83, keepClassifier: keepClassifier)
            let arrays = layers.enumerated().map { k, s in
                ScoreSource(path: "l\(k)", scores: s, isClassifier: k == layers.count - 1)
            }
            let reference = try selectPruning(arrays, granularity: .weight, settings: settings, criterion: "x",
                                              chunkSize: 1 << 20, threads: 1)
            // The old array-based results, through lowestScores (positions).
            if scope == .global && !keepClassifier {
                let total = layers.reduce(0) { $0 + $1.count }
                let prune = total - Int((Double(total) * 0.17).rounded())
                let positions = lowestScores(Array(layers.enumerated()), count: prune)
                for (k, l) in reference.layers.enumerated() { XCTAssertEqual(l.prunedPositions, positions[k] ?? [], "layer \(k)") }
            }
            for chunk in [64, 192, 500] {
                for threads in [1, 2] {
                    let sources = layers.enumerated().map { chunkSource($1, path: "l\($0)", classifier: $0 == layers.count - 1) }
                    let plan = try selectPruning(sources, granularity: .weight, settings: settings, criterion: "x",
                                                 chunkSize: chunk, threads: threads)
                    XCTAssertEqual(plan, reference, "\(scope), chunk \(chunk), threads \(threads)")
                }
            }
        }
    }

    func testModelScoreSourcesGiveTheArrayPlan() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 4)
        let settings = SelectionSettings(scope: .global, sparsity: 0.9, keepClassifier: false)
        let arrays = try model.score(with: ChunkedAbs(chunked: false), data: nil)
        let reference = try selectPruning(arrays, granularity: .weight, settings: settings, criterion: "x")
        for chunked in [true, false] {
            let sources = try model.scoreSources(with: ChunkedAbs(chunked: chunked), data: nil)
            for threads in [1, 2] {
                let plan = try selectPruning(sources, granularity: .weight, settings: settings, criterion: "x",
                                             chunkSize: 1000, threads: threads)
                XCTAssertEqual(plan, reference, "chunked \(chunked), threads \(threads)")
            }
        }
        let pruned = reference.layers.reduce(0) { $0 + $1.units - $1.keptCount }
        let total = reference.layers.reduce(0) { $0 + $1.units }
        XCTAssertEqual(pruned, total - Int((Double(total) * 0.1).rounded()))
    }

    func testSourceErrorsAndNonFiniteScoresAreThrown() {
        struct Boom: Error {}
        let failing = ScoreSource(path: "a", count: 5000) { range, buffer in
            if range.lowerBound >= 4096 { throw Boom() }
            for i in buffer.indices { buffer[i] = Float(i) }
        }
        for threads in [1, 2] {
            XCTAssertThrowsError(try selectLowest([failing], count: 10, chunkSize: 1024, threads: threads)) { XCTAssert($0 is Boom) }
        }
        let context = ScoringContext(rng: RandomGenerator(seed: 0))
        // Non-finite scores in the vector part and in the tail of a chunk; the largest finite is fine.
        for (position, bad) in [(1, Float.nan), (5, -.infinity), (17, .infinity), (38, .nan), (-1, 0)] {
            var row = (0..<40).map { Float($0) - 20 }
            row[0] = .greatestFiniteMagnitude; row[1] = -.greatestFiniteMagnitude
            if position >= 0 { row[position] = bad }
            let source = try! ScoreSource(layer: TestSupport.layer([row]), criterion: ChunkedAbs(chunked: true), context: context)
            if position < 0 {
                XCTAssertNoThrow(try selectLowest([source], count: 2))
            } else {
                XCTAssertThrowsError(try selectLowest([source], count: 2), "\(bad) at \(position)") {
                    XCTAssert(($0 as? PruneKitError)?.message.contains("non-finite score (\(abs(bad))) at position \(position)") == true, "\($0)")
                }
            }
        }
    }

    func testBitPlansRoundTripAndApplyTheSameMasks() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 5)
        let sources = try model.scoreSources(with: ChunkedAbs(chunked: true), data: nil)
        let plan = try selectPruning(sources, granularity: .weight, settings: .init(scope: .global, sparsity: 0.7, keepClassifier: false),
                                     criterion: "x", chunkSize: 320, threads: 2)
        // Unpacked views agree with each other.
        for l in plan.layers {
            let keep = l.keep   // computed from the bits: take it once
            XCTAssertEqual(keep.count, l.units)
            XCTAssertEqual(keep.indices.filter { keep[$0] == 0 }, l.prunedPositions)
            XCTAssertEqual(keep.indices.filter { keep[$0] != 0 }, l.keptPositions)
            XCTAssertEqual(l.keptCount, l.keptPositions.count)
        }
        let dir = try TestSupport.scratchDirectory("plan")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("plan.json").path
        try plan.save(to: path)
        XCTAssertEqual(try PruningPlan.load(from: path), plan)
        // Odd sizes: 1, 63, 64, 65, 130 units.
        var rng = RandomGenerator(seed: 9)
        let odd = PruningPlan(criterion: "x", granularity: .weight, scope: .global, requestedSparsity: 0.5, layers: [1, 63, 64, 65, 130].map { n in
            let words = (0..<(n + 63) / 64).map { _ in rng.next() }
            return PruningPlan.Layer(path: "l\(n)", granularity: .weight, units: n, keepWords: words)
        })
        try odd.save(to: path)
        XCTAssertEqual(try PruningPlan.load(from: path), odd)

        // The masks: 0 exactly at the pruned positions (the byte-per-unit semantics).
        try plan.apply(to: model)
        for (l, i) in zip(plan.layers, model.prunableNodeIndices) {
            let mask = try XCTUnwrap(model.nodes[i].layer.parameter(named: "weight")?.mask)
            XCTAssertEqual(mask.scalars, l.keep.map(Float.init), l.path)
        }
    }
}
