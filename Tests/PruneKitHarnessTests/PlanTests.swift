import PruneKit
import XCTest
@testable import PruneKitHarness

/// Planning: the trials of a spec, their ids, shards, and the checks made before any trial runs.
final class PlanTests: XCTestCase {
    /// Every built-in plugin, loaded from the build directory as the command-line tool loads them.
    static let registry: Registry? = {
        var dirs: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        dirs.append(Bundle.main.bundleURL)
        dirs.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug"))
        guard let dir = dirs.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("libPruneKitRandom.so").path) })
        else { return nil }
        let loader = PluginLoader(registry: Registry())
        _ = loader.loadAll(PluginSearchPath(directories: [dir.path], files: []))
        return loader.registry
    }()

    private func registry() throws -> Registry {
        guard let r = Self.registry else { throw XCTSkip("the plugin libraries are not built (swift build --build-tests)") }
        return r
    }

    private func spec(_ yaml: String) throws -> ExperimentSpec { try ExperimentSpec.load(yaml: yaml, file: "spec.yaml") }

    private let mixed: [(choice: CriterionChoice, granularity: Granularity)] = [
        (CriterionChoice("global-magnitude"), .weight), (CriterionChoice("l1-filter"), .channel),
        (CriterionChoice("random", options: ["granularity=channel"]), .channel),
    ]

    func testTrialCountsAndOrder() throws {
        let s = try spec("seeds: 2\ncompressions: [2, 4]\nspeedups: [3]\n")
        let plan = ExperimentPlan(spec: s, criteria: mixed)
        // 2 seeds × 3 criteria × 3 targets prune trials, and 2 seeds × 2 channel criteria oracle trials.
        XCTAssertEqual(plan.trials.filter { $0.kind == .prune }.count, 18)
        XCTAssertEqual(plan.trials.filter { $0.kind == .oracle }.count, 4)
        XCTAssertEqual(plan.trials.count, 22)
        XCTAssertEqual(Set(plan.trials.map(\.id)).count, 22, "every trial has its own id")
        XCTAssertEqual(plan.baselines.map(\.seed), [0, 1])
        let first = plan.trials[0]
        XCTAssertEqual(first.criterion, "global-magnitude")
        XCTAssertEqual(first.target, TrialTarget(.compression, 2))
        XCTAssertEqual(first.seed, 0)
        XCTAssertEqual(plan.trials[2].target, TrialTarget(.speedup, 3))
        // Seed 0: 9 prune trials (0…8), then its oracle trials (9, 10); seed 1 from 11.
        XCTAssertEqual(plan.trials[9].kind, .oracle)
        XCTAssertEqual(plan.trials[9].criterion, "l1-filter")
        XCTAssertNil(plan.trials[9].target)
        XCTAssertEqual(plan.trials[10].criterionOptions, ["granularity=channel"])
        XCTAssertEqual(plan.trials[10].seed, 0)
        XCTAssertEqual(plan.trials[11].seed, 1)

        var off = s; off.oracle.enabled = false
        XCTAssertEqual(ExperimentPlan(spec: off, criteria: mixed).trials.count, 18)
    }

    /// Ids depend on what determines a trial, not on where results go or how many jobs run.
    func testIdsAreStable() throws {
        let s = try spec("compressions: [2, 4]\nfinetune-epochs: 1\n")
        let a = ExperimentPlan(spec: s, criteria: mixed).trials.map(\.id)
        var moved = s; moved.store = "elsewhere.sqlite"; moved.jobs = 4; moved.report = "r"; moved.name = "renamed"
        XCTAssertEqual(ExperimentPlan(spec: moved, criteria: mixed).trials.map(\.id), a)
        XCTAssertEqual(ExperimentRunner.experimentID(try moved.applying(.init())),
                       { var m = moved; m.store = "x"; m.jobs = 1; return ExperimentRunner.experimentID(m) }())
        var changed = s; changed.finetuneEpochs = 2
        XCTAssertTrue(Set(ExperimentPlan(spec: changed, criteria: mixed).trials.map(\.id)).isDisjoint(with: a))
        // Pinned: the id of the first default trial, so an accidental change of the hash or
        // of the configuration's fields (which would orphan every stored result) is caught.
        let pinned = ExperimentPlan(spec: ExperimentSpec(), criteria: [(CriterionChoice("global-magnitude"), .weight)]).trials[0]
        // Weight criteria measure no latency (their pruned models run the same dense kernels).
        XCTAssertEqual(pinned.id, TrialConfiguration(baseline: BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k"),
                                                     criterion: "global-magnitude", target: TrialTarget(.compression, 2),
                                                     latencyRuns: 0).id)
        XCTAssertEqual(pinned.id, "ac5923620c723389183d17a18c5fcbe4")
    }

    /// Channel prune trials time inference and run alone; weight and oracle trials share the machine.
    func testOnlyChannelPruneTrialsNeedTheMachineAlone() throws {
        let plan = ExperimentPlan(spec: try spec("compressions: [2, 4]\n"), criteria: mixed)
        for t in plan.trials {
            let channel = mixed.first { $0.0.id == t.criterion }?.1 == .channel
            XCTAssertEqual(ExperimentRunner.needsMachineAlone(t), t.kind == .prune && channel, "\(t.criterion) \(t.kind)")
        }
        XCTAssertTrue(plan.trials.contains(where: ExperimentRunner.needsMachineAlone))
        XCTAssertTrue(plan.trials.contains { !ExperimentRunner.needsMachineAlone($0) })
    }

    func testShardsPartitionThePlanExactly() throws {
        let plan = ExperimentPlan(spec: try spec("seeds: 3\ncompressions: [2, 4, 8, 16, 32]\n"), criteria: mixed)
        XCTAssertEqual(plan.trials.count, 3 * 3 * 5 + 3 * 2)
        for n in 1...7 {
            let shards = try (1...n).map { try plan.trials(in: Shard(index: $0, count: n)) }
            let ids = shards.flatMap { $0.map(\.id) }
            XCTAssertEqual(ids.count, plan.trials.count, "no trial twice, none lost (N = \(n))")
            XCTAssertEqual(Set(ids), Set(plan.trials.map(\.id)))
            let sizes = shards.map(\.count)
            XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "balanced: \(sizes)")
        }
        XCTAssertEqual(try Shard(parsing: "2/3").slice(Array(0..<8)), [1, 4, 7])
        XCTAssertEqual(try Shard(parsing: " 1 / 1 ").slice([5, 6]), [5, 6])
        for bad in ["0/3", "4/3", "1/0", "a/b", "3", "1/2/3", ""] {
            XCTAssertThrowsError(try Shard(parsing: bad), bad)
        }
    }

    func testDefaultIsEveryRegisteredCriterion() throws {
        let r = try registry()
        let plan = try ExperimentPlan.validated(ExperimentSpec(), registry: r)
        // Every registered criterion but slimming, which can't rank lenet-5 (no BatchNorm).
        let ids = r.ids(of: .criterion).filter { $0 != "slimming" }
        XCTAssertEqual(plan.criteria.map(\.choice.id), ids)
        XCTAssertEqual(plan.skipped.map(\.choice.id), ["slimming"])
        XCTAssert(plan.skipped[0].reason.contains("no BatchNorm"), plan.skipped[0].reason)
        // On a model with BatchNorm it stays.
        var vgg = ExperimentSpec(); vgg.model = "vgg-small"
        XCTAssertEqual(try ExperimentPlan.validated(vgg, registry: r).criteria.map(\.choice.id), r.ids(of: .criterion))
        let channel = plan.criteria.filter { $0.granularity == .channel }.count
        XCTAssertGreaterThan(channel, 0)
        XCTAssertEqual(plan.trials.count, ids.count * 5 + channel)
    }

    private func refusal(_ yaml: String, registry r: Registry, file: StaticString = #filePath, line: UInt = #line) throws -> PruneKitError? {
        do {
            _ = try ExperimentPlan.validated(try spec(yaml), registry: r)
            XCTFail("accepted: \(yaml)", file: file, line: line)
        } catch let e as PruneKitError {
            return e
        }
        return nil
    }

    func testBadInputIsRefusedBeforeAnyTrial() throws {
        let r = try registry()
        let criterion = try XCTUnwrap(try refusal("criteria: [global-magnitude, magnitood]", registry: r))
        XCTAssertEqual(criterion.message, "unknown criterion 'magnitood'")
        XCTAssert(criterion.hint?.contains("l1-filter") == true, criterion.hint ?? "")
        let schedule = try XCTUnwrap(try refusal("schedule: once", registry: r))
        XCTAssert(schedule.message.contains("unknown schedule 'once'") && schedule.hint?.contains("one-shot") == true, "\(schedule)")
        let finetune = try XCTUnwrap(try refusal("finetune: polish", registry: r))
        XCTAssert(finetune.message.contains("unknown finetune 'polish'") && finetune.hint?.contains("rewind") == true, "\(finetune)")
        let option = try XCTUnwrap(try refusal("criteria: [random granularity=pixel]", registry: r))
        XCTAssert(option.message.contains("granularity"), option.message)
        let model = try XCTUnwrap(try refusal("model: alexnet", registry: r))
        XCTAssert(model.message.contains("'alexnet' is neither") && model.hint?.contains("lenet-5") == true, "\(model)")
        let data = try XCTUnwrap(try refusal("dataset: imagenet", registry: r))
        XCTAssert(data.message.contains("imagenet"), data.message)
        let empty = try TestScratch.directory()
        addTeardownBlock { try? FileManager.default.removeItem(at: empty) }
        let files = try XCTUnwrap(try refusal("dataset: mnist\ndata-dir: \(empty.path)", registry: r))
        XCTAssert(files.message.contains("train-images-idx3-ubyte"), files.message)
        let slimming = try XCTUnwrap(try refusal("criteria: [slimming]", registry: r))
        XCTAssert(slimming.message.contains("can't rank the channels of lenet-5"), slimming.message)
        let twice = try XCTUnwrap(try refusal("criteria: [random, random]", registry: r))
        XCTAssert(twice.message.contains("twice"), twice.message)
    }

    func testAModelThatDoesNotLoadIsRefused() throws {
        let r = try registry()
        let dir = try TestScratch.directory()
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try Data("{ not json".utf8).write(to: dir.appendingPathComponent("model.json"))
        let e = try XCTUnwrap(try refusal("model: \(dir.path)", registry: r))
        XCTAssert(e.message.contains("model.json") || e.message.contains(dir.path), e.message)
    }

    /// lenet-5's prunable weights: conv1 6·1·5·5 = 150, conv2 16·6·5·5 = 2,400, fc1 120·400 =
    /// 48,000, fc2 84·120 = 10,080, fc3 (the classifier, kept whole) 10·84 = 840: at most
    /// 61,470 / 840 = 73.18× by weight pruning.
    func testUnreachableTargetNamesTheClosest() throws {
        let r = try registry()
        XCTAssertNoThrow(try ExperimentPlan.validated(try spec("criteria: [global-magnitude]\ncompressions: [73]"), registry: r))
        let e = try XCTUnwrap(try refusal("criteria: [global-magnitude]\ncompressions: [8, 100]", registry: r))
        XCTAssert(e.message.contains("100× compression") && e.message.contains("73.2×"), e.message)
        XCTAssert(e.hint?.contains("73.2") == true, e.hint ?? "")
        // lenet-300-100, channels: 784→300→100→10. Keeping one channel in each hidden layer
        // leaves 1·784 + 1·1 + 10·1 = 795 of 266,200 weights: at most 334.8×.
        let reach = TargetReach(model: try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0))
        XCTAssertEqual(reach.maximum(.channel, .compression), 266_200.0 / 795, accuracy: 1e-9)
        XCTAssertEqual(reach.maximum(.weight, .compression), 266_200.0 / 1_000, accuracy: 1e-9)
        // MACs equal weights for linear layers.
        XCTAssertEqual(reach.maximum(.channel, .speedup), 266_200.0 / 795, accuracy: 1e-9)
        let c = try XCTUnwrap(try refusal("model: lenet-300-100\ncriteria: [l1-filter]\nspeedups: [400]", registry: r))
        XCTAssert(c.message.contains("400× speed-up") && c.message.contains("334.8×"), c.message)
    }
}

enum TestScratch {
    static func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-plan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// The run loop with a store in memory and trials that return at once: skipping, jobs,
/// cancelling, and a store that fails.
final class ExperimentRunnerTests: XCTestCase {
    final class MemoryStore: ExperimentStore, @unchecked Sendable {
        let lock = NSLock()
        var records: [TrialRecord] = []
        var failAfter = Int.max
        var experiments: [String: String] = [:]
        func doneTrialIDs(includingFailed: Bool) throws -> Set<String> {
            lock.lock(); defer { lock.unlock() }
            return Set(records.filter { includingFailed || $0.result.status == .succeeded }.map(\.id))
        }
        func add(_ record: TrialRecord) throws {
            lock.lock(); defer { lock.unlock() }
            guard records.count < failAfter else { throw PruneKitError(.io, "disk full") }
            records.removeAll { $0.id == record.id }
            records.append(record)
        }
        func allRecords() throws -> [TrialRecord] { lock.lock(); defer { lock.unlock() }; return records }
        func remember(experimentID: String, specification: String) throws { experiments[experimentID] = specification }
    }

    final class FakeTrials: TrialRunning, BaselinePreparing, @unchecked Sendable {
        let lock = NSLock()
        var ran: [String] = []
        var running = 0, maxRunning = 0
        /// The most trials running at once while each trial ran (itself included).
        var crowd: [String: Int] = [:]
        var prepared: [UInt64] = []
        var onRun: ((Int) -> TrialResult?)?
        func run(_ trial: TrialConfiguration) -> TrialResult {
            lock.lock(); running += 1; maxRunning = max(maxRunning, running); ran.append(trial.id); let n = ran.count
            for (id, c) in crowd where c < running { crowd[id] = running }
            crowd[trial.id] = running
            lock.unlock()
            usleep(20_000)
            lock.lock(); running -= 1; lock.unlock()
            if let r = onRun?(n) { return r }
            return TrialResult(status: .succeeded, phaseSeconds: ["finetune": 0.5, "prune": 0.25, "process": 1.0])
        }
        func prepare(_ baseline: BaselineConfiguration) throws -> Bool { prepared.append(baseline.seed); return false }
    }

    private let plan = ExperimentPlan(spec: { var s = ExperimentSpec(); s.seeds = [0, 1]; s.compressions = [2, 4, 8]; return s }(),
                                      criteria: [(CriterionChoice("global-magnitude"), .weight)])

    func testRunsOnlyWhatIsMissingAndRecordsEach() throws {
        let store = MemoryStore(), trials = FakeTrials()
        store.records = plan.trials[0..<2].map { TrialRecord(configuration: $0, result: TrialResult(status: .succeeded)) }
        let runner = ExperimentRunner(plan: plan, jobs: 1, store: store, runner: trials, baselines: trials)
        var events: [String] = []
        let summary = try runner.run { e in
            if case let .planned(total, skipped) = e { events.append("planned \(total) \(skipped)") }
            if case let .trialFinished(_, _, done, total, _) = e { events.append("\(done)/\(total)") }
        }
        XCTAssertEqual(events, ["planned 6 2", "3/6", "4/6", "5/6", "6/6"])
        XCTAssertEqual(trials.ran, plan.trials[2...].map(\.id), "the missing ones, in plan order")
        XCTAssertEqual(trials.prepared, [0, 1], "a baseline per seed still needed")
        XCTAssertEqual(Set(store.records.map(\.id)), Set(plan.trials.map(\.id)))
        XCTAssertEqual(store.records.count, 6)
        XCTAssertEqual(summary.skipped, 2); XCTAssertEqual(summary.ran, 4); XCTAssertEqual(summary.failed, 0)
        XCTAssertEqual(summary.phaseSeconds, ["finetune": 2.0, "prune": 1.0, "process": 4.0])
        XCTAssertEqual(store.experiments.keys.first, ExperimentRunner.experimentID(plan.spec))
        let table = summary.phaseTable()
        // 4 trials: finetuning 4 × 0.5 s, pruning 4 × 0.25 s, 4 × 1 s in child processes, of
        // which 4 × 0.25 s outside the phases; no baseline was trained (the fake says 0 s).
        let lines = table.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        XCTAssert(lines.contains("finetuning 2.00 s"), table)
        XCTAssert(lines.contains("scoring and pruning 1.00 s"), table)
        XCTAssert(lines.contains("process start-up, loading, writing 1.00 s"), table)
        XCTAssert(lines.contains("total 4.00 s"), table)
        XCTAssert(table.contains("wall time"), table)

        // Everything done: nothing runs, no baseline is trained.
        let again = FakeTrials()
        let second = try ExperimentRunner(plan: plan, jobs: 2, store: store, runner: again, baselines: again).run()
        XCTAssertEqual(again.ran, []); XCTAssertEqual(again.prepared, [])
        XCTAssertEqual(second.skipped, 6)
    }

    func testJobsRunAtOnceAndShardsRunTheirSlice() throws {
        let store = MemoryStore(), trials = FakeTrials()
        let summary = try ExperimentRunner(plan: plan, shard: try Shard(index: 2, count: 2), jobs: 3, store: store,
                                           runner: trials, baselines: trials).run()
        XCTAssertEqual(summary.total, 3)
        XCTAssertEqual(Set(trials.ran), Set([1, 3, 5].map { plan.trials[$0].id }))
        XCTAssertGreaterThan(trials.maxRunning, 1)
        XCTAssertLessThanOrEqual(trials.maxRunning, 3)
    }

    /// Trials that time inference (channel prune trials) run with no other trial beside
    /// them; the others share the machine `jobs` at a time.
    func testLatencyTrialsRunAlone() throws {
        let mixedPlan = ExperimentPlan(spec: { var s = ExperimentSpec(); s.compressions = [2, 4, 8]; return s }(),
                                       criteria: [(CriterionChoice("global-magnitude"), .weight), (CriterionChoice("l1-filter"), .channel),
                                                  (CriterionChoice("layer-magnitude"), .weight)])
        let store = MemoryStore(), trials = FakeTrials()
        let summary = try ExperimentRunner(plan: mixedPlan, jobs: 2, store: store, runner: trials, baselines: trials).run()
        XCTAssertEqual(summary.ran, mixedPlan.trials.count)
        XCTAssertEqual(Set(trials.ran), Set(mixedPlan.trials.map(\.id)))
        let alone = mixedPlan.trials.filter(ExperimentRunner.needsMachineAlone)
        XCTAssertEqual(alone.count, 3 + 0, "l1-filter's three prune trials (its oracle trial shares)")
        for t in alone { XCTAssertEqual(trials.crowd[t.id], 1, "\(t.criterion) \(String(describing: t.target)) ran beside another trial") }
        XCTAssertEqual(trials.maxRunning, 2, "the weight trials ran two at a time")
    }

    /// After a cancel no trial starts, and failures (children killed by the same Ctrl-C) are
    /// not recorded, so that the next run tries them again.
    func testCancelStopsAndKeepsFailuresOut() throws {
        let store = MemoryStore(), trials = FakeTrials()
        let runner = ExperimentRunner(plan: plan, jobs: 1, store: store, runner: trials, baselines: trials)
        trials.onRun = { [unowned runner] n in
            guard n == 2 else { return nil }
            runner.cancel()
            return .failed("killed by signal 2")
        }
        let summary = try runner.run()
        XCTAssertTrue(summary.cancelled)
        XCTAssertEqual(trials.ran.count, 2)
        XCTAssertEqual(store.records.map(\.id), [plan.trials[0].id])
        XCTAssertEqual(summary.ran, 1); XCTAssertEqual(summary.notRun, 5)
    }

    func testRealFailuresAreRecordedAndAStoreErrorStopsTheRun() throws {
        let store = MemoryStore(), trials = FakeTrials()
        trials.onRun = { n in n == 1 ? .failed("the plugin crashed (signal 11)") : nil }
        store.failAfter = 3
        XCTAssertThrowsError(try ExperimentRunner(plan: plan, jobs: 1, store: store, runner: trials, baselines: trials).run()) { e in
            XCTAssertEqual((e as? PruneKitError)?.message, "disk full")
        }
        XCTAssertEqual(store.records.count, 3)
        XCTAssertEqual(store.records[0].result.failure, "the plugin crashed (signal 11)")
        XCTAssertEqual(trials.ran.count, 4, "the run stops at the first record that can't be written")

        // Resuming: the failure counts as done, unless failures are retried.
        store.failAfter = .max
        let again = FakeTrials()
        let resumed = try ExperimentRunner(plan: plan, jobs: 1, store: store, runner: again, baselines: again).run()
        XCTAssertEqual(resumed.skipped, 3); XCTAssertEqual(again.ran.count, 3)
        let retry = FakeTrials()
        let retried = try ExperimentRunner(plan: plan, jobs: 1, retryFailed: true, store: store, runner: retry, baselines: retry).run()
        XCTAssertEqual(retry.ran, [plan.trials[0].id])
        XCTAssertEqual(retried.ran, 1)
        XCTAssertEqual(store.records.count, 6)
        XCTAssertTrue(store.records.allSatisfy { $0.result.status == .succeeded })
    }
}
