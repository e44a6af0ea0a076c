import Foundation
import PruneKit
import XCTest
@testable import PruneKitHarness

/// Pruning at initialisation (`when: init`) and the sanity checks of a weight criterion
/// (layer-shuffle, invert, reinit; Frankle et al. 2021): the plan's extra trials, the
/// transformations themselves, the report's verdict against each control, and bad input.
final class SanityTests: XCTestCase {
    /// |w|: a weight criterion defined here, so the transformations are tested without plugins.
    private struct AbsoluteWeight: Criterion, OptionConstructible {
        static let id = "test-absolute-weight"
        let granularity = Granularity.weight
        init(options: OptionValues) {}
        init() {}
        func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { layer.weights.scalars.map(abs) }
    }

    private func lenet(seed: UInt64 = 0) throws -> Model {
        try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: seed)
    }

    private func spec(_ yaml: String) throws -> ExperimentSpec { try ExperimentSpec.load(yaml: yaml, file: "spec.yaml") }

    /// Every built-in plugin, from the build directory (as ``ExecutionTests`` finds it).
    private func registry() throws -> Registry { try ExecutionTests.builtInRegistry() }

    private let mixed: [(choice: CriterionChoice, granularity: Granularity)] = [
        (CriterionChoice("global-magnitude"), .weight), (CriterionChoice("l1-filter"), .channel),
    ]

    // MARK: The plan

    /// Every weight criterion × target gets its own trial, then one per check; channel
    /// criteria none; each pruning time its own trials; every id distinct.
    func testPlanHasTheControlTrialsWithTheirOwnIds() throws {
        var s = try spec("seeds: 2\ncompressions: [2, 4]\nwhen: [init, trained]\nsanity: [layer-shuffle, invert, reinit]\noracle: off\n")
        XCTAssertEqual(s.when, [.initialization, .trained])
        XCTAssertEqual(s.sanity, [.layerShuffle, .invert, .reinit])
        let plan = ExperimentPlan(spec: s, criteria: mixed)
        // Per seed and pruning time: global-magnitude 2 targets × (1 + 3), l1-filter 2 targets × 1.
        XCTAssertEqual(plan.trials.count, 2 * 2 * (2 * 4 + 2))
        XCTAssertEqual(Set(plan.trials.map(\.id)).count, plan.trials.count, "every trial has its own id")
        XCTAssert(plan.trials.filter { $0.criterion == "l1-filter" }.allSatisfy { $0.sanity == nil }, "no controls for channel criteria")
        let first = plan.trials.prefix(4)
        XCTAssertEqual(first.map(\.sanity), [nil, .layerShuffle, .invert, .reinit], "the criterion's own trial, then its controls")
        XCTAssert(first.allSatisfy { $0.target == TrialTarget(.compression, 2) && $0.seed == 0 && $0.when == .initialization })
        let trained = plan.trials.filter { $0.when == nil }
        XCTAssertEqual(trained.count, plan.trials.count / 2, "trained trials keep when = nil: the default, ids as before")
        XCTAssert(trained.allSatisfy { $0.pruningTime == .trained })
        // Controls share everything with their criterion's trial but the check.
        var control = first[first.startIndex + 1]
        control.sanity = nil
        XCTAssertEqual(control.id, first[first.startIndex].id)

        s.sanity = []; s.when = [.trained]
        var before = ExperimentSpec(); before.seeds = [0, 1]; before.compressions = [2, 4]; before.oracle.enabled = false
        XCTAssertEqual(ExperimentPlan(spec: s, criteria: mixed).trials.map(\.id), ExperimentPlan(spec: before, criteria: mixed).trials.map(\.id),
                       "without when and sanity the trials are those of before")
    }

    /// `when` is part of the identity and of the setting (init and trained are never mixed);
    /// the check is part of the identity and of the criterion's label, not of the setting.
    func testWhenAndSanityInTheIdentity() throws {
        let base = TrialConfiguration(baseline: BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k"), criterion: "snip",
                                      target: TrialTarget(.compression, 10))
        var atInit = base; atInit.when = .initialization
        var trained = base; trained.when = .trained
        XCTAssertNotEqual(atInit.id, base.id)
        XCTAssertEqual(trained.id, base.id, "an explicit trained is the default")
        XCTAssertNotEqual(Analysis.settingKey(atInit), Analysis.settingKey(base))
        XCTAssertEqual(Analysis.settingKey(trained), Analysis.settingKey(base))
        XCTAssertEqual(Analysis.settingName(Analysis.settingKey(atInit)),
                       "lenet-5 · mnist-5k · pruned at init · one-shot · trained 10 epochs (the baseline's recipe)")
        var shuffled = atInit; shuffled.sanity = .layerShuffle
        XCTAssertNotEqual(shuffled.id, atInit.id)
        XCTAssertEqual(Analysis.settingKey(shuffled), Analysis.settingKey(atInit))
        XCTAssertEqual(Analysis.criterionLabel(shuffled), "snip [layer-shuffle]")
        // Round trip through JSON (the child process and the store).
        let back = try JSONDecoder().decode(TrialConfiguration.self, from: JSONEncoder().encode(shuffled))
        XCTAssertEqual(back.id, shuffled.id)
        XCTAssertEqual(back.when, .initialization)
    }

    // MARK: The transformations

    /// Layer-shuffle keeps each layer's kept count exactly, moves the kept positions, never
    /// revives a pruned one, and is seeded.
    func testLayerShuffleKeepsPerLayerCountsAndIsSeeded() throws {
        func prune(_ wrap: Bool, seed: UInt64, sparsity: Double = 0.8) throws -> PruningPlan {
            let model = try lenet()
            let c: any Criterion = wrap ? try SanityControls.controlCriterion(AbsoluteWeight(), check: .layerShuffle, model: model, seed: seed) : AbsoluteWeight()
            return try model.prune(with: c, toward: .sparsity(sparsity), data: nil).plan
        }
        let own = try prune(false, seed: 0), shuffled = try prune(true, seed: 0)
        XCTAssertEqual(own.layers.map(\.keptCount), shuffled.layers.map(\.keptCount), "each layer keeps the criterion's count")
        XCTAssertNotEqual(own.layers[0].keepWords, shuffled.layers[0].keepWords, "at other positions")
        XCTAssertEqual(try prune(true, seed: 0).layers.map(\.keepWords), shuffled.layers.map(\.keepWords), "the same seed, the same mask")
        XCTAssertNotEqual(try prune(true, seed: 1).layers[0].keepWords, shuffled.layers[0].keepWords, "another seed, another mask")
        // Kept positions are spread over the layer: about 20 % of each half of the first layer.
        let first = shuffled.layers[0], half = first.units / 2
        let lowHalf = (0..<half).filter(first.isKept).count
        XCTAssertEqual(Double(lowHalf) / Double(first.keptCount), 0.5, accuracy: 0.05)

        // The pure function: pruned positions stay put; the rest is a permutation.
        var rng = RandomGenerator(seed: 7)
        let scores: [Float] = [0, 5, 0, 3, 4, 1]
        let pruned = [true, false, true, false, false, false]
        let out = SanityControls.layerShuffled(scores, pruned: pruned, rng: &rng)
        XCTAssertEqual(out[0], 0); XCTAssertEqual(out[2], 0)
        XCTAssertEqual(out.sorted(), scores.sorted())
    }

    /// Invert prunes the same number of weights, the highest-scoring ones: every kept |w|
    /// is at most every pruned |w| among the layers in scope (the classifier stays whole).
    func testInvertPrunesTheHighestScores() throws {
        let ownModel = try lenet(), model = try lenet()
        let own = try ownModel.prune(with: AbsoluteWeight(), toward: .sparsity(0.6), data: nil).plan
        let inverted = try model.prune(with: try SanityControls.controlCriterion(AbsoluteWeight(), check: .invert, model: model, seed: 0),
                                       toward: .sparsity(0.6), data: nil).plan
        XCTAssertEqual(inverted.layers.reduce(0) { $0 + $1.keptCount }, own.layers.reduce(0) { $0 + $1.keptCount },
                       "the complement ranking prunes the same count")
        let original = try lenet().prunableLayers()
        var maxKept: Float = 0, minPruned = Float.infinity
        for (layer, plan) in zip(original, inverted.layers) where !layer.isClassifier {
            let w = layer.weights.scalars
            for i in 0..<plan.units {
                if plan.isKept(i) { maxKept = max(maxKept, abs(w[i])) } else { minPruned = min(minPruned, abs(w[i])) }
            }
        }
        XCTAssertLessThanOrEqual(maxKept, minPruned)
        // A later step never revives what an earlier one pruned.
        XCTAssertEqual(SanityControls.inverted([1, 2, 3], pruned: [false, true, false]), [-1, -Float.greatestFiniteMagnitude, -3])
    }

    /// Reinit keeps the mask, changes every surviving weight, and is seeded by a stream of
    /// its own (not the baseline's initialisation).
    func testReinitChangesSurvivingValuesNotTheMask() throws {
        func pruned() throws -> Model {
            let m = try lenet()
            try m.prune(with: AbsoluteWeight(), toward: .sparsity(0.5), data: nil)
            return m
        }
        let model = try pruned(), original = try pruned()
        try SanityControls.reinitialize(model, seed: 0)
        let again = try pruned()
        try SanityControls.reinitialize(again, seed: 0)
        for ((path, p), (_, q)) in zip(model.namedParameters, original.namedParameters) where path.hasSuffix("weight") {
            XCTAssertEqual(p.mask?.scalars, q.mask?.scalars, "\(path): the mask is kept")
            let v = p.value.scalars, w = q.value.scalars, m = p.mask?.scalars ?? Array(repeating: 1, count: v.count)
            XCTAssert(zip(v, m).allSatisfy { $1 != 0 || $0 == 0 }, "\(path): pruned weights stay zero")
            let survivors = m.indices.filter { m[$0] != 0 }
            let changed = survivors.filter { v[$0] != w[$0] }.count
            XCTAssertGreaterThan(Double(changed), 0.99 * Double(survivors.count), "\(path): surviving weights are new")
        }
        XCTAssertEqual(model.namedParameters.map(\.parameter.value.scalars), again.namedParameters.map(\.parameter.value.scalars), "seeded")
    }

    /// An init trial and its layer-shuffle control end to end (tiny: one baseline epoch).
    func testInitTrialAndLayerShuffleControlRun() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("sanity-cache-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: cache) }
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: cache.path)
        // 300 training images, 100 held out, one epoch: the init trial trains one epoch too.
        let baseline = BaselineConfiguration(model: "lenet-300-100", dataset: "mnist-5k", validationCount: 100, epochs: 1, batchSize: 32,
                                             learningRate: 0.05, seed: 0, trainingImages: 300)
        var c = TrialConfiguration(baseline: baseline, criterion: "global-magnitude", target: TrialTarget(.compression, 4),
                                   finetuneEpochs: 1, calibrationBatches: 2, calibrationBatchSize: 32, latencyRuns: 0)
        c.when = .initialization
        var control = c; control.sanity = .layerShuffle
        for trial in [c, control] {
            let r = try TrialExecutor.run(trial, environment: env)
            XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
            XCTAssertEqual(try XCTUnwrap(r.compression), 4, accuracy: 0.01)
            XCTAssert(r.notes.contains { $0.hasPrefix("pruned at initialisation") }, "\(r.notes)")
            XCTAssertNotNil(r.finetunedAccuracy)
        }
        var channel = c; channel.criterion = "l1-filter"
        let refused = try TrialExecutor.run(channel, environment: env)
        XCTAssertEqual(refused.status, .succeeded, "no check: a channel criterion prunes at init")
        channel.sanity = .invert
        let bad = try TrialExecutor.run(channel, environment: env)
        XCTAssertEqual(bad.status, .failed)
        XCTAssert(bad.failure?.contains("defined for weight criteria") == true, bad.failure ?? "")
    }

    // MARK: The report

    /// Synthetic records: A beats its layer-shuffle control (differences .05, .04, .06);
    /// B differs from its control by the same .02 on every seed (no spread, no verdict);
    /// controls are never rivals in the pairwise tables; init trials are another setting.
    func testReportVerdictAgainstLayerShuffle() throws {
        let t = Synthetic.c4
        var records: [TrialRecord] = []
        let a = [0.90, 0.91, 0.92], aShuffled = [0.85, 0.87, 0.86], b = [0.80, 0.81, 0.82]
        for seed in 0..<3 {
            records.append(Synthetic.record("A", t, seed: UInt64(seed), top1: a[seed], granularity: .weight))
            records.append(Synthetic.record("B", t, seed: UInt64(seed), top1: b[seed], granularity: .weight))
            var control = Synthetic.record("A", t, seed: UInt64(seed), top1: aShuffled[seed], granularity: .weight)
            control.configuration.sanity = .layerShuffle
            records.append(control)
            var flat = Synthetic.record("B", t, seed: UInt64(seed), top1: b[seed] - 0.02, granularity: .weight)
            flat.configuration.sanity = .layerShuffle
            records.append(flat)
            var atInit = Synthetic.record("A", t, seed: UInt64(seed), top1: 0.5, granularity: .weight)
            atInit.configuration.when = .initialization
            records.append(atInit)
        }
        let analysis = Analysis(records)
        XCTAssertEqual(analysis.settings.count, 2, "init and trained trials are separate settings")
        let trained = try XCTUnwrap(analysis.settings.first { $0.configuration.when == nil })
        let atInit = try XCTUnwrap(analysis.settings.first { $0.configuration.when == .initialization })
        XCTAssert(atInit.name.contains("pruned at init"), atInit.name)
        XCTAssertEqual(trained.criteria, ["A", "A [layer-shuffle]", "B", "B [layer-shuffle]"])
        let comparison = try XCTUnwrap(trained.comparisons.first)
        XCTAssertEqual(comparison.pairs.map { "\($0.a)-\($0.b)" }, ["A-B"], "controls are not rivals")
        let verdicts = try XCTUnwrap(trained.sanity)
        XCTAssertEqual(verdicts.count, 2)
        let va = try XCTUnwrap(verdicts.first { $0.criterion == "A" })
        XCTAssertEqual(va.control, "A [layer-shuffle]")
        XCTAssertEqual(va.verdict, .aBetter)
        XCTAssertEqual(try XCTUnwrap(va.difference).mean, 0.05, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(va.difference?.interval).lower, 0.05 - 0.0248414, accuracy: 1e-7)
        XCTAssertEqual(verdicts.first { $0.criterion == "B" }?.verdict, .noSpread)
        XCTAssertEqual(atInit.sanity, [])

        let line = "4× compression: A beats its layer-shuffle control by +5.00 points [+2.52, +7.48] (paired 95 % CI, 3 seeds)."
        XCTAssertEqual(Report.sanitySentences(trained).first, line)
        XCTAssert(Report.sanitySentences(trained)[1].contains("no spread, not evidence"), Report.sanitySentences(trained)[1])
        XCTAssert(Report.markdown(analysis, title: "t").contains("- " + line))
        XCTAssert(Report.terminalTable(analysis).contains("sanity: " + line))
        XCTAssert(Report.html(analysis, title: "t").contains(Report.escapeXML(line)))
        // trials.csv says when each trial pruned and which check it ran.
        let rows = Report.csv(records).components(separatedBy: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let when = try XCTUnwrap(rows[0].firstIndex(of: "when")), check = try XCTUnwrap(rows[0].firstIndex(of: "sanity"))
        XCTAssertEqual(rows[1...5].map { "\($0[when]) \($0[check])" },
                       ["trained ", "trained ", "trained layer-shuffle", "trained layer-shuffle", "init "])
    }

    // MARK: Bad input

    func testBadInputIsRefusedWithTheReason() throws {
        XCTAssertThrowsError(try spec("sanity: [shuffle]")) { e in
            let e = e as? PruneKitError
            XCTAssert(e?.message.contains("unknown value 'shuffle'") == true, e?.message ?? "")
            XCTAssert(e?.hint?.contains("layer-shuffle") == true, e?.hint ?? "")
        }
        XCTAssertThrowsError(try spec("when: later")) { e in
            XCTAssert((e as? PruneKitError)?.hint?.contains("init, trained") == true, "\(e)")
        }
        XCTAssertThrowsError(try ExperimentSpec.parseList("init,soon", option: "--when") as [PruningTime]) { e in
            XCTAssertEqual((e as? PruneKitError)?.message, "--when: unknown value 'soon'")
        }
        XCTAssertEqual(try ExperimentSpec.parseList("none", option: "--sanity", allowsNone: true) as [SanityCheck], [])
        XCTAssertThrowsError(try spec("when: [init, init]").validate())

        let registry = try registry()
        func refusal(_ yaml: String, line: UInt = #line) throws -> PruneKitError {
            do {
                _ = try ExperimentPlan.validated(try spec(yaml), registry: registry)
            } catch let e as PruneKitError {
                return e
            }
            XCTFail("accepted: \(yaml)", line: line)
            return PruneKitError(.invalidArgument, "accepted")
        }
        let channel = try refusal("criteria: [global-magnitude, l1-filter]\nsanity: [layer-shuffle]")
        XCTAssert(channel.message.contains("'l1-filter' ranks channels"), channel.message)
        XCTAssert(channel.hint?.contains("random granularity=channel") == true, channel.hint ?? "")
        let rewind = try refusal("criteria: [snip]\nwhen: init\nfinetune: rewind epoch=0")
        XCTAssert(rewind.message.contains("rewinds to epoch 0 of the trained baseline"), rewind.message)
        let iterative = try refusal("criteria: [snip]\nwhen: init\nschedule: iterative steps=3")
        XCTAssert(iterative.message.contains("prunes once, before any training"), iterative.message)
        XCTAssert(iterative.hint?.contains("one-shot") == true, iterative.hint ?? "")
        // Rewinding with both pruning times is fine: the trained trials rewind.
        XCTAssertNoThrow(try ExperimentPlan.validated(try spec("criteria: [snip]\nwhen: [init, trained]\nfinetune: rewind epoch=0\ncompressions: 2"), registry: registry))
    }
}
