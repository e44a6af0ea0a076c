import Foundation
import PruneKit

/// Where the runner keeps results: which trials are done, and each new record as soon
/// as its trial finishes (``ResultStore`` is the real one).
public protocol ExperimentStore: AnyObject {
    /// Ids of the trials already recorded (failed ones too, unless `includingFailed` is false).
    func doneTrialIDs(includingFailed: Bool) throws -> Set<String>
    /// Records one finished trial durably (one transaction).
    func add(_ record: TrialRecord) throws
    /// Every record kept.
    func allRecords() throws -> [TrialRecord]
    /// Remembers the experiment the trials belong to (its id and its spec as JSON).
    func remember(experimentID: String, specification: String) throws
}

/// Runs one trial and returns its result; a trial's failure (a thrown error, a crash, a
/// NaN) is a failed result, never an error (``ChildProcessTrialRunner`` is the real one).
public protocol TrialRunning: Sendable {
    func run(_ trial: TrialConfiguration) -> TrialResult
}

/// Trains (or finds in its cache) the baseline checkpoint trials start from.
public protocol BaselinePreparing {
    /// - Returns: whether it was already cached.
    func prepare(_ baseline: BaselineConfiguration) throws -> Bool
}

/// Runs an experiment's trials: the baselines first, then every trial not yet in the
/// store, `jobs` at a time, each recorded as soon as it finishes.
///
/// Stopping is safe at any moment: a trial is in the store (one transaction) or not, and
/// the next run skips those that are. ``cancel()`` (Ctrl-C) starts no new trial, waits
/// for the running ones, and keeps only the ones that succeeded (a child killed by the
/// same Ctrl-C would otherwise be recorded as a failure and never run again).
public final class ExperimentRunner: @unchecked Sendable {
    /// What happens, for a progress display. Called from worker threads, one call at a time.
    public enum Event {
        /// Before any trial: how many trials this run has, and how many the store already holds.
        case planned(total: Int, skipped: Int)
        case baselineStarted(BaselineConfiguration, index: Int, count: Int)
        case baselineFinished(BaselineConfiguration, cached: Bool, seconds: Double)
        case trialStarted(TrialConfiguration)
        /// A trial finished and is in the store (unless its failure is ``TrialResult/transient``);
        /// `done` counts the skipped ones too.
        case trialFinished(TrialRecord, seconds: Double, done: Int, total: Int, failures: Int)
    }

    /// What a run did.
    public struct Summary: Sendable {
        /// Trials in this run's slice (the shard), those skipped because the store had them,
        /// and those run now (and how many of these failed).
        public var total = 0
        public var skipped = 0
        public var ran = 0
        public var failed = 0
        /// Trials not run because the run was cancelled.
        public var notRun = 0
        /// Failed trials not recorded because the environment failed, not the criterion
        /// (``TrialResult/transient``): the next run tries them again. Counted in `ran` and `failed`.
        public var notRecorded = 0
        public var cancelled = false
        /// Seconds spent training baselines here (0 when all were cached).
        public var baselineSeconds = 0.0
        /// Each phase summed over the trials run now (``TrialResult/phaseSeconds``).
        public var phaseSeconds: [String: Double] = [:]
        public var wallSeconds = 0.0
    }

    /// Trials run at once by default: one single-threaded child per core, up to 4 (trials
    /// that measure latency still run alone: ``needsMachineAlone(_:)``).
    ///
    /// Measured on this project's 2-core machine, quiet, release build, the unstructured
    /// part of the default comparison (25 trials and the baseline): 2 single-threaded
    /// children 14.0 s wall, 1 two-threaded child 17.3–20.6 s. (Under load from other
    /// builds the two had measured alike, 16–23 s.) Small models don't use two threads
    /// fully; two processes do.
    public static var defaultJobs: Int { min(4, max(1, ProcessInfo.processInfo.activeProcessorCount)) }

    /// Whether a trial measures inference latency, and so must run with no other trial
    /// beside it: prune trials with latency runs (the plan gives them to channel criteria,
    /// whose pruned models are physically smaller).
    public static func needsMachineAlone(_ trial: TrialConfiguration) -> Bool {
        trial.kind == .prune && (trial.latencyRuns ?? 20) > 0
    }

    public let plan: ExperimentPlan
    public let shard: Shard
    public let jobs: Int
    private let store: ExperimentStore
    private let runner: TrialRunning
    private let baselines: BaselinePreparing
    private let lock = NSLock()
    private var cancelled = false
    private var running = 0

    /// Run the trials that failed before again (default: a failure counts as done).
    public let retryFailed: Bool

    public init(plan: ExperimentPlan, shard: Shard = .all, jobs: Int, retryFailed: Bool = false, store: ExperimentStore,
                runner: TrialRunning, baselines: BaselinePreparing) {
        self.plan = plan; self.shard = shard; self.jobs = max(1, jobs); self.retryFailed = retryFailed
        self.store = store; self.runner = runner; self.baselines = baselines
    }

    /// The experiment's identity: a hash of the spec without the settings that don't change
    /// results (where files go, how many jobs).
    public static func experimentID(_ spec: ExperimentSpec) -> String {
        var s = spec
        s.store = ""; s.report = nil; s.cache = nil; s.jobs = nil; s.trialTimeout = nil
        return StableHash.hex(of: s)
    }

    /// Stops starting trials; the running ones finish. Safe from any thread (a signal handler's queue).
    /// - Returns: how many trials are still running.
    @discardableResult
    public func cancel() -> Int {
        lock.lock(); defer { lock.unlock() }
        cancelled = true
        return running
    }

    /// What the workers share, under ``lock``.
    private final class WorkState {
        var next = 0, finished: Int, ran = 0, failures = 0, notRecorded = 0
        var phases: [String: Double] = [:]
        var storeError: Error?
        init(finished: Int) { self.finished = finished }
    }

    /// One worker: takes trials until none is left, the run is cancelled or the store fails.
    private func work(_ pending: [TrialConfiguration], total: Int, state: WorkState, onEvent: (Event) -> Void) {
        while true {
            lock.lock()
            guard !cancelled, state.storeError == nil, state.next < pending.count else { lock.unlock(); return }
            let trial = pending[state.next]
            state.next += 1; running += 1
            onEvent(.trialStarted(trial))
            lock.unlock()

            let t0 = Date()
            let result = runner.run(trial)
            let seconds = Date().timeIntervalSince(t0)

            lock.lock()
            defer { lock.unlock() }
            running -= 1
            // After a cancel, a failure may be the child dying of the same Ctrl-C: keep it
            // out, so that the next run tries the trial again.
            if cancelled && result.status == .failed { continue }
            let record = TrialRecord(configuration: trial, result: result)
            // A failure of the environment (the baseline cache, starting the child) is not
            // the criterion's: shown, but not recorded, so the next run tries the trial again.
            let transient = result.status == .failed && result.transient == true
            if !transient {
                do {
                    try store.add(record)
                } catch {
                    state.storeError = error
                    return
                }
                state.finished += 1
            }
            state.ran += 1
            if result.status == .failed { state.failures += 1 }
            if transient { state.notRecorded += 1 }
            for (k, v) in result.phaseSeconds { state.phases[k, default: 0] += v }
            onEvent(.trialFinished(record, seconds: seconds, done: state.finished, total: total, failures: state.failures))
        }
    }

    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }

    /// Runs every trial of the shard not yet in the store.
    /// - Parameter onEvent: progress; called one event at a time.
    /// - Throws: the store's error if a record can't be written (the run stops), a
    ///   baseline's error (nothing runs).
    public func run(onEvent: @escaping (Event) -> Void = { _ in }) throws -> Summary {
        let start = Date()
        var summary = Summary()
        let trials = plan.trials(in: shard)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let specJSON = String(decoding: (try? encoder.encode(plan.spec)) ?? Data(), as: UTF8.self)
        try store.remember(experimentID: Self.experimentID(plan.spec), specification: specJSON)
        let done = try store.doneTrialIDs(includingFailed: !retryFailed)
        let pending = trials.filter { !done.contains($0.id) }
        summary.total = trials.count
        summary.skipped = trials.count - pending.count
        onEvent(.planned(total: trials.count, skipped: summary.skipped))

        // Baselines: one per (model, data, seed) among the pending trials, trained here once.
        var seen = Set<String>()
        let needed = pending.map(\.baseline).filter { seen.insert($0.hash).inserted }
        for (i, b) in needed.enumerated() {
            if isCancelled { break }
            onEvent(.baselineStarted(b, index: i, count: needed.count))
            let t0 = Date()
            let cached = try baselines.prepare(b)
            let seconds = Date().timeIntervalSince(t0)
            if !cached { summary.baselineSeconds += seconds }
            onEvent(.baselineFinished(b, cached: cached, seconds: seconds))
        }

        // Trials: `jobs` workers take the next pending trial until none is left or the run is
        // cancelled; then the trials that time inference run one at a time, alone on the
        // machine, so that no other trial skews their latency.
        let state = WorkState(finished: summary.skipped)
        let alone = pending.filter(Self.needsMachineAlone), shared = pending.filter { !Self.needsMachineAlone($0) }
        for (queue, workers) in [(shared, jobs), (alone, 1)] where !queue.isEmpty {
            state.next = 0
            let group = DispatchGroup()
            for _ in 0..<min(workers, queue.count) {
                group.enter()
                Thread.detachNewThread { [self] in
                    defer { group.leave() }
                    work(queue, total: trials.count, state: state, onEvent: onEvent)
                }
            }
            group.wait()
        }
        if let error = state.storeError { throw error }
        summary.ran = state.ran
        summary.failed = state.failures
        summary.notRecorded = state.notRecorded
        summary.phaseSeconds = state.phases
        summary.cancelled = isCancelled
        summary.notRun = pending.count - state.ran
        summary.wallSeconds = Date().timeIntervalSince(start)
        return summary
    }

}

extension ExperimentRunner.Summary {
    /// The phases in the order they happen, then any others a trial reported.
    public static let phaseOrder = ["baseline", "score", "prune", "finetune", "evaluate", "measure", "oracle", "overhead"]
    static let phaseNames = ["baseline": "baseline training", "score": "scoring (oracle)", "prune": "scoring and pruning",
                             "finetune": "finetuning", "evaluate": "evaluation", "measure": "measuring",
                             "oracle": "oracle", "overhead": "process start-up, loading, writing"]

    /// One line per phase with its seconds (summed over trials, so over the wall time when
    /// jobs run at once), the total, the child processes' own overhead, and the wall time.
    public func phaseTable() -> String {
        var phases = phaseSeconds
        // `process` is a child's whole life seen from outside: not a phase of its own.
        let process = phases.removeValue(forKey: "process")
        phases["baseline", default: 0] += baselineSeconds
        let keys = Self.phaseOrder.filter { phases[$0] != nil } + phases.keys.filter { !Self.phaseOrder.contains($0) }.sorted()
        func line(_ name: String, _ seconds: Double) -> String {
            "  " + name.padding(toLength: 34, withPad: " ", startingAt: 0) + String(format: "%8.2f s", seconds)
        }
        var lines = ["time by phase (summed over trials):"]
        for k in keys { lines.append(line(Self.phaseNames[k] ?? k, phases[k] ?? 0)) }
        let inTrials = phases.values.reduce(0, +) - (phases["baseline"] ?? 0)
        if let process {
            lines.append(line("process start-up, loading, writing", max(0, process - inTrials)))
        }
        lines.append(line("total", (phases["baseline"] ?? 0) + max(process ?? 0, inTrials)))
        lines.append(line("wall time", wallSeconds))
        return lines.joined(separator: "\n")
    }
}
