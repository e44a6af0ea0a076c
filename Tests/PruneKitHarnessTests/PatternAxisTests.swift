import Foundation
import PruneKit
import XCTest
@testable import PruneKitHarness

/// N:M patterns as a harness axis (`pattern:` / `compare --pattern`): the spec, the plan's
/// extra trials, the trial's identity and label, the reports, a pattern trial run in this
/// process, and bad input refused before any trial. (The end-to-end `compare --pattern 2:4`
/// whose saved model is checked group by group is in CompareCommandTests.)
final class PatternAxisTests: XCTestCase {
    private func spec(_ yaml: String) throws -> ExperimentSpec { try ExperimentSpec.load(yaml: yaml, file: "spec.yaml") }

    private func registry() throws -> Registry { try ExecutionTests.builtInRegistry() }

    private let mixed: [(choice: CriterionChoice, granularity: Granularity)] = [
        (CriterionChoice("global-magnitude"), .weight), (CriterionChoice("l1-filter"), .channel),
    ]

    /// The message of the error `body` throws, or a failure.
    private func refusal(_ body: () throws -> Any, line: UInt = #line) -> PruneKitError {
        do {
            _ = try body()
        } catch let e as PruneKitError {
            return e
        } catch {
            XCTFail("not a PruneKitError: \(error)", line: line)
        }
        XCTFail("accepted", line: line)
        return PruneKitError(.invalidArgument, "accepted")
    }

    // MARK: The spec

    func testSpecReadsOneOrSeveralPatterns() throws {
        XCTAssertEqual(ExperimentSpec().patterns, [], "none by default")
        XCTAssertEqual(try spec("pattern: 2:4").patterns, ["2:4"])
        XCTAssertEqual(try spec("pattern: [2:4, 4:8]").patterns, ["2:4", "4:8"])
        XCTAssertEqual(try spec("pattern:\n  - 1:4\n  - 2:8\n").patterns, ["1:4", "2:8"])
        XCTAssertEqual(try spec("pattern: none").patterns, [])
        XCTAssertEqual(try spec("pattern: []").patterns, [])
        XCTAssertEqual(try ExperimentSpec.parsePatterns([" 2 : 4", "4:8 "], option: "--pattern"), ["2:4", "4:8"], "written one way")
        // The command line replaces the file's patterns; none drops them.
        var o = ExperimentSpec.Overrides()
        o.patterns = try ExperimentSpec.parsePatterns(["none"], option: "--pattern")
        XCTAssertEqual(try spec("pattern: 2:4").applying(o).patterns, [])
        o.patterns = ["4:8"]
        XCTAssertEqual(try spec("pattern: 2:4").applying(o).patterns, ["4:8"])
        XCTAssertNoThrow(try spec("pattern: [2:4, 1:4]").validate())
    }

    func testSpecRefusesImpossiblePatternsWithTheReason() throws {
        let reversed = refusal { try self.spec("pattern: 5:4") }
        XCTAssert(reversed.message.hasPrefix("spec.yaml:1:") && reversed.message.contains("N must be less than M"), reversed.message)
        let zero = refusal { try self.spec("pattern: [2:4, 0:4]") }
        XCTAssert(zero.message.contains("0:4 needs N and M of at least 1"), zero.message)
        XCTAssert(zero.hint?.contains("none for no pattern") == true, zero.hint ?? "")
        let twice = refusal { try self.spec("pattern: [2:4, 2:4]") }
        XCTAssert(twice.message.contains("the pattern 2:4 is listed twice"), twice.message)
        let slash = refusal { try self.spec("pattern: 2/4") }
        XCTAssert(slash.message.contains("'2/4' is not an N:M pattern"), slash.message)
        XCTAssert(slash.hint?.contains("such as 2:4") == true, slash.hint ?? "")
        let mapping = refusal { try self.spec("pattern: {n: 2, m: 4}") }
        XCTAssert(mapping.message.contains("'pattern' must be an N:M pattern such as 2:4"), mapping.message)
        // A spec made in code is checked too.
        var s = ExperimentSpec()
        s.patterns = ["4:4"]
        XCTAssert(refusal { try s.validate() }.message.contains("'pattern': the N:M pattern 4:4 keeps 4 of every 4 weights"))
    }

    // MARK: The plan

    /// Each weight criterion gets one trial per pattern after its targets, at the pattern's
    /// nominal compression, each with its sanity controls; channel criteria none.
    func testPlanAddsOneTrialPerPatternToEachWeightCriterion() throws {
        let s = try spec("seeds: 2\ncompressions: [2, 4]\npattern: [2:4, 4:8]\nsanity: layer-shuffle\noracle: off\n")
        let plan = ExperimentPlan(spec: s, criteria: mixed)
        // Per seed: global-magnitude (2 targets + 2 patterns) × (itself + its control), l1-filter 2 targets.
        XCTAssertEqual(plan.trials.count, 2 * ((2 + 2) * 2 + 2))
        XCTAssertEqual(Set(plan.trials.map(\.id)).count, plan.trials.count, "every trial has its own id")
        let first = plan.trials.prefix(8).map { "\($0.target?.description ?? "-") \($0.pattern ?? "-") \($0.sanity?.rawValue ?? "-")" }
        XCTAssertEqual(first, ["2× compression - -", "2× compression - layer-shuffle", "4× compression - -", "4× compression - layer-shuffle",
                               "2× compression 2:4 -", "2× compression 2:4 layer-shuffle", "2× compression 4:8 -", "2× compression 4:8 layer-shuffle"])
        XCTAssert(plan.trials.filter { $0.criterion == "l1-filter" }.allSatisfy { $0.pattern == nil }, "no pattern for a channel criterion")
        XCTAssertEqual(plan.trials.filter { $0.pattern != nil }.count, 2 * 2 * 2)
        // 1:4 keeps a quarter: reported at 4×.
        XCTAssertEqual(ExperimentPlan(spec: try spec("compressions: 2\npattern: 1:4\noracle: off"), criteria: mixed).trials
            .first { $0.pattern == "1:4" }?.target, TrialTarget(.compression, 4))
    }

    /// The pattern is part of the identity (2:4, 4:8 and unstructured never collide), absent
    /// from it when there is none (ids of before stay), in the label, not in the setting.
    func testPatternInTheIdentityAndTheLabel() throws {
        let base = TrialConfiguration(baseline: BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k"), criterion: "global-magnitude",
                                      target: TrialTarget(.compression, 2))
        var twoFour = base; twoFour.pattern = "2:4"
        var fourEight = base; fourEight.pattern = "4:8"
        XCTAssertEqual(Set([base.id, twoFour.id, fourEight.id]).count, 3)
        let json = String(decoding: try JSONEncoder().encode(base), as: UTF8.self)
        XCTAssertFalse(json.contains("pattern"), "no pattern: nothing in the hashed JSON, so stored ids stay: \(json)")
        let back = try JSONDecoder().decode(TrialConfiguration.self, from: JSONEncoder().encode(twoFour))
        XCTAssertEqual(back.pattern, "2:4")
        XCTAssertEqual(back.id, twoFour.id)
        XCTAssertEqual(try back.nmPattern, try NMPattern(n: 2, m: 4))
        XCTAssertEqual(Analysis.settingKey(twoFour), Analysis.settingKey(base), "side by side in one setting")
        XCTAssertEqual(Analysis.criterionLabel(twoFour), "global-magnitude 2:4")
        var control = twoFour; control.sanity = .layerShuffle
        XCTAssertEqual(Analysis.criterionLabel(control), "global-magnitude 2:4 [layer-shuffle]")
        var random = twoFour; random.criterion = "random"; random.criterionOptions = ["granularity=weight"]
        XCTAssertEqual(Analysis.criterionLabel(random), "random(granularity=weight) 2:4")
        XCTAssertEqual(TrialTarget(nominalOf: try NMPattern(n: 2, m: 4)), TrialTarget(.compression, 2))
        XCTAssertEqual(TrialTarget(nominalOf: try NMPattern(n: 1, m: 4)).description, "4× compression")
    }

    /// Reports: a pattern trial is a row of its own beside its criterion's unstructured one
    /// and the channel criteria, and trials.csv has its pattern.
    func testReportsShowThePatternBesideUnstructuredAndChannelTrials() throws {
        var records: [TrialRecord] = []
        for seed: UInt64 in 0..<2 {
            records.append(Synthetic.record("global-magnitude", Synthetic.c2, seed: seed, top1: 0.95, granularity: .weight))
            var nm = Synthetic.record("global-magnitude", Synthetic.c2, seed: seed, top1: 0.93 + Double(seed) * 0.01, granularity: .weight)
            nm.configuration.pattern = "2:4"
            records.append(nm)
            records.append(Synthetic.record("l1-filter", Synthetic.c2, seed: seed, top1: 0.90, granularity: .channel))
        }
        let analysis = Analysis(records)
        XCTAssertEqual(analysis.settings.count, 1)
        let setting = try XCTUnwrap(analysis.settings.first)
        XCTAssertEqual(setting.criteria, ["global-magnitude", "global-magnitude 2:4", "l1-filter"])
        XCTAssertEqual(setting.comparisons.first?.pairs.count, 3, "the pattern trial is a rival like any criterion")
        XCTAssert(Report.markdown(analysis, title: "t").contains("| global-magnitude 2:4 |"))
        XCTAssert(Report.html(analysis, title: "t").contains("global-magnitude 2:4"))
        XCTAssert(Report.terminalTable(analysis).contains("global-magnitude 2:4 "))
        let rows = Report.csv(records).components(separatedBy: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let column = try XCTUnwrap(rows[0].firstIndex(of: "pattern"))
        XCTAssertEqual(rows[1...3].map { $0[column] }, ["", "2:4", ""])
        let json = String(decoding: try Report.json(records, analysis: analysis, title: "t"), as: UTF8.self)
        XCTAssert(json.contains("\"pattern\" : \"2:4\"") || json.contains("\"pattern\":\"2:4\""), "results.json keeps the pattern")
    }

    // MARK: Sanity controls under a pattern

    /// |w|: a weight criterion defined here, so the controls are tested without plugins.
    private struct AbsoluteWeight: Criterion, OptionConstructible {
        static let id = "test-absolute-weight"
        let granularity = Granularity.weight
        init(options: OptionValues) {}
        init() {}
        func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { layer.weights.scalars.map(abs) }
    }

    /// Under 2:4 the layer-shuffle control keeps 2 random weights of every group of 4 (a
    /// random 2:4 mask), and the invert control the 2 smallest |w| of every group.
    func testSanityControlsKeepThePattern() throws {
        func masks(_ check: SanityCheck?) throws -> (model: Model, kept: [[Bool]]) {
            let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
            var settings = TargetedPruningSettings()
            settings.pattern = try NMPattern(n: 2, m: 4)
            let c: any Criterion = try check.map { try SanityControls.controlCriterion(AbsoluteWeight(), check: $0, model: model, seed: 0) } ?? AbsoluteWeight()
            let plan = try model.prune(with: c, toward: .sparsity(0.5), settings: settings, data: nil).plan
            return (model, plan.layers.map { l in (0..<l.units).map(l.isKept) })
        }
        let original = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0).prunableLayers()[0].weights.scalars
        let own = try masks(nil).kept[0], shuffled = try masks(.layerShuffle).kept[0], inverted = try masks(.invert).kept[0]
        for kept in [own, shuffled, inverted] {
            XCTAssert(stride(from: 0, to: kept.count, by: 4).allSatisfy { g in (g..<g + 4).filter { kept[$0] }.count == 2 }, "2 of every 4 kept")
        }
        XCTAssertNotEqual(shuffled, own)
        for g in stride(from: 0, to: own.count, by: 4) {
            let keptOwn = (g..<g + 4).filter { own[$0] }.map { abs(original[$0]) }, prunedOwn = (g..<g + 4).filter { !own[$0] }.map { abs(original[$0]) }
            XCTAssertGreaterThanOrEqual(keptOwn.min()!, prunedOwn.max()!)
            let keptInv = (g..<g + 4).filter { inverted[$0] }.map { abs(original[$0]) }, prunedInv = (g..<g + 4).filter { !inverted[$0] }.map { abs(original[$0]) }
            XCTAssertLessThanOrEqual(keptInv.max()!, prunedInv.min()!)
        }
    }

    // MARK: Checked before any trial

    func testPlanRefusesWhatAPatternCantDo() throws {
        let registry = try registry()
        func plan(_ yaml: String) throws -> ExperimentPlan { try ExperimentPlan.validated(try spec(yaml), registry: registry) }
        let channel = refusal { try plan("criteria: [global-magnitude, l1-filter]\ncompressions: 2\npattern: 2:4") }
        XCTAssertEqual(channel.message, "--pattern 2:4 selects single weights, but 'l1-filter' is a channel criterion")
        XCTAssert(channel.hint?.contains("same --store") == true && channel.hint?.contains("leave --criteria out") == true, channel.hint ?? "")
        let random = refusal { try plan("criteria: ['random granularity=channel']\ncompressions: 2\npattern: 2:4") }
        XCTAssert(random.message.contains("'random' is a channel criterion"), random.message)
        let iterative = refusal { try plan("criteria: [global-magnitude]\ncompressions: 2\npattern: 2:4\nschedule: iterative steps=3") }
        XCTAssert(iterative.message.contains("prunes in 3 steps, but the N:M pattern 2:4 fixes the sparsity of every step"), iterative.message)
        XCTAssert(iterative.hint?.contains("one-shot") == true, iterative.hint ?? "")
        let nowhere = refusal { try plan("criteria: [global-magnitude]\ncompressions: 2\npattern: 2:7") }
        XCTAssert(nowhere.message.contains("the N:M pattern 2:7 covers no prunable layer of lenet-5")
                  && nowhere.message.contains("features.3: 6"), nowhere.message)

        // What it reaches on lenet-5 (conv1 and conv2 have 1 and 6 inputs: dense), and that
        // the other target is not the pattern's.
        let ok = try plan("criteria: [global-magnitude]\ncompressions: [2, 4]\npattern: 2:4\noracle: off")
        let note = try XCTUnwrap(ok.notes.first)
        XCTAssert(note.contains("nominally 2× compression (1.90× on lenet-5, features.0, features.3 dense (input size not a multiple of 4), the classifier kept whole)"), note)
        XCTAssert(note.contains("beside the unstructured 2× compression trials") && note.contains("the target 4× compression applies to the unstructured and channel trials only"), note)
        XCTAssertEqual(ok.trials.count, 3)

        // Every criterion (the default): the patterns go to the weight criteria only.
        let all = try plan("compressions: 2\npattern: 2:4\noracle: off")
        let patterned = all.trials.filter { $0.pattern != nil }
        XCTAssertEqual(Set(patterned.map(\.criterion)), Set(all.criteria.filter { $0.granularity == .weight }.map(\.choice.id)))
        XCTAssertGreaterThan(all.criteria.filter { $0.granularity == .channel }.count, 0)
    }

    // MARK: One trial

    /// A 2:4 trial runs in this process, says what it reached; one whose target is not its
    /// pattern's, or with a channel criterion, fails with the reason (as `prune --pattern`).
    func testAPatternTrialRunsAndRefusesATargetThePatternFixes() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("pattern-cache-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: cache) }
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: cache.path)
        let baseline = BaselineConfiguration(model: "lenet-300-100", dataset: "mnist-5k", validationCount: 100, epochs: 1, batchSize: 32,
                                             learningRate: 0.05, seed: 0, trainingImages: 300)
        var c = TrialConfiguration(baseline: baseline, criterion: "layer-magnitude", target: TrialTarget(.compression, 2),
                                   finetuneEpochs: 1, calibrationBatches: 2, calibrationBatchSize: 32, latencyRuns: 0)
        c.pattern = "2:4"
        let r = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        // fc1 and fc2 (784 and 300 inputs) keep half; the classifier (1,000 weights) is whole.
        let after = try XCTUnwrap(r.after)
        XCTAssertEqual(after.prunableWeights - after.remainingPrunableWeights, (784 * 300 + 300 * 100) / 2)
        XCTAssert(r.notes.contains { $0.contains("reported at its nominal 2× compression, it reaches 1.99×") }, "\(r.notes)")

        var other = c; other.target = TrialTarget(.compression, 4)
        let mismatch = try TrialExecutor.run(other, environment: env)
        XCTAssertEqual(mismatch.status, .failed)
        XCTAssert(mismatch.failure?.contains("the N:M pattern 2:4 fixes the sparsity of the layers it covers at 0.5; it can't prune toward compression 4×") == true,
                  mismatch.failure ?? "")
        var channel = c; channel.criterion = "l1-filter"
        let refused = try TrialExecutor.run(channel, environment: env)
        XCTAssertEqual(refused.status, .failed)
        XCTAssert(refused.failure?.contains("selects single weights, but 'l1-filter' is a channel criterion") == true, refused.failure ?? "")
    }
}
