import Foundation
import PruneKit

/// Runs trials and baselines in child processes (`prunekit trial`), so that a plugin that
/// crashes, aborts or hangs takes down only its own trial.
///
/// The child writes its result as JSON to a file; its standard output and error go to a
/// log file (no pipe that could fill up and block it). A trial's own failure is never
/// thrown: exit 0 with a result file gives that result; a signal gives a failed result
/// naming it (`SIGSEGV`, `SIGABRT`, `SIGILL`, …) with the tail of standard error; another
/// exit status gives a failed result with the child's `error:` line; a timeout kills the
/// child and gives "timed out after N s".
public struct ChildProcessTrialRunner: Sendable {
    /// The `prunekit` executable (default: this process's own, `/proc/self/exe`).
    public var executable: String
    /// The baseline cache the children share.
    public var cacheDirectory: String
    /// Plugin files and directories passed on (`--plugin`, `--plugin-dir`).
    public var pluginFiles: [String]
    public var pluginDirectories: [String]
    /// `--threads` for the child (default: its own default, all cores).
    public var threads: Int?
    /// Where trials keep their pruned models (``TrialEnvironment/modelsDirectory``); `nil`: not kept.
    public var modelsDirectory: String?
    /// How long a trial's child may run before its process group is killed (default: no limit).
    public var timeLimit: TrialTimeLimit
    /// Where configuration, result and log files go (default: `$TMPDIR/prunekit-trials-PID`,
    /// removed by ``removeWorkDirectory()``; one left by a run that was killed is removed by
    /// the next run's ``removeStaleWorkDirectories(in:)``).
    public var workDirectory: String
    /// Extra environment variables for the child.
    public var environment: [String: String]

    public init(executable: String? = nil, cacheDirectory: String, pluginFiles: [String] = [],
                pluginDirectories: [String] = [], threads: Int? = nil, timeLimit: TrialTimeLimit = .none,
                workDirectory: String? = nil, environment: [String: String] = [:]) {
        self.executable = executable
            ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        self.cacheDirectory = cacheDirectory
        self.pluginFiles = pluginFiles; self.pluginDirectories = pluginDirectories
        self.threads = threads; self.timeLimit = timeLimit
        self.workDirectory = workDirectory ?? Self.defaultWorkDirectory(in: NSTemporaryDirectory(), pid: getpid())
        self.environment = environment
    }

    static let workDirectoryPrefix = "prunekit-trials-"

    static func defaultWorkDirectory(in temporary: String, pid: pid_t) -> String {
        URL(fileURLWithPath: temporary).appendingPathComponent("\(workDirectoryPrefix)\(pid)").path
    }

    /// Removes the work directory and what is left in it (call when the run ends: success,
    /// error or signal).
    public func removeWorkDirectory() {
        try? FileManager.default.removeItem(atPath: workDirectory)
    }

    /// Removes the `prunekit-trials-PID` folders in `temporary` of runs that are gone (no
    /// process PID is alive: killed with kill -9, or by a power cut). A live run's folder is
    /// never touched.
    /// - Returns: the folders removed.
    @discardableResult
    public static func removeStaleWorkDirectories(in temporary: String = NSTemporaryDirectory()) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []
        var removed: [String] = []
        for name in names where name.hasPrefix(workDirectoryPrefix) {
            guard let pid = pid_t(name.dropFirst(workDirectoryPrefix.count)), pid > 0, pid != getpid() else { continue }
            guard kill(pid, 0) != 0, errno == ESRCH else { continue }   // alive, or not ours to judge
            let path = URL(fileURLWithPath: temporary).appendingPathComponent(name).path
            if (try? FileManager.default.removeItem(atPath: path)) != nil { removed.append(path) }
        }
        return removed
    }

    /// Runs trial `c` in a child process. Never throws for the trial's own failure. The
    /// result's `phaseSeconds["overhead"]` is the wall time from spawning the child to
    /// reading its result that none of the trial's phases accounts for (starting the
    /// process, loading plugins, JSON), so the phases add up to the wall time seen here.
    public func run(_ c: TrialConfiguration) -> TrialResult {
        let name = "trial-\(c.id)-\(UUID().uuidString.prefix(8))"
        let t0 = DispatchTime.now().uptimeNanoseconds
        var result: TrialResult
        do {
            let outcome = try spawn(name: name, input: c, mode: "--config", limit: timeLimit.seconds(for: c, epochSeconds: baselineEpochSeconds(c.baseline)))
            switch outcome {
            case let .finished(data):
                result = try decodeJSON(TrialResult.self, data, what: "trial result")
            case let .failed(message):
                result = .failed(message)
            }
        } catch let e as PruneKitError {
            result = .failed("could not run the trial in a child process: \(e.message)")
            result.transient = true   // not the criterion's failure: a rerun tries again
        } catch {
            result = .failed("could not run the trial in a child process: \(error)")
            result.transient = true
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        result.phaseSeconds["overhead"] = max(0, wall - result.phaseSeconds.values.reduce(0, +))
        return result
    }

    /// Ensures baseline `b` in a child process (`prunekit trial --baseline`).
    /// - Throws: ``PruneKitError`` with the child's message when it fails or crashes.
    public func ensureBaseline(_ b: BaselineConfiguration) throws -> BaselineArtifact {
        switch try spawn(name: "baseline-\(b.hash)-\(UUID().uuidString.prefix(8))", input: b, mode: "--baseline", limit: nil) {
        case let .finished(data): return try decodeJSON(BaselineArtifact.self, data, what: "baseline result")
        case let .failed(message): throw PruneKitError(.plugin, "baseline \(b.model) (seed \(b.seed)): \(message)")
        }
    }

    /// Asks a child process (`prunekit trial --probe`) whether a criterion can rank a
    /// model's channels, so that a criterion that crashes, throws or hangs while scoring
    /// can't take the caller down. Limited to the fixed ``timeLimit``, or 10 minutes.
    public func probe(_ p: ChannelRankingProbe) -> ChannelRankingProbe.Outcome {
        let limit: Double? = { if case let .seconds(s) = timeLimit { return s }; return 600 }()
        do {
            switch try spawn(name: "probe-\(UUID().uuidString.prefix(8))", input: p, mode: "--probe", limit: limit) {
            case let .finished(data):
                let verdict = try decodeJSON(ChannelRankingProbe.Verdict.self, data, what: "probe result")
                return verdict.outcome
            case let .failed(message):
                return .failed(message)
            }
        } catch let e as PruneKitError {
            return .failed("could not run the probe in a child process: \(e.message)")
        } catch {
            return .failed("could not run the probe in a child process: \(error)")
        }
    }

    /// Seconds per epoch of `b`'s cached baseline training (`nil`: not cached, or not trained).
    func baselineEpochSeconds(_ b: BaselineConfiguration) -> Double? {
        guard case .automatic = timeLimit, let a = BaselineCache.cached(b, cacheDirectory: cacheDirectory),
              !a.epochs.isEmpty, a.seconds > 0 else { return nil }
        return a.seconds / Double(a.epochs.count)
    }

    /// The child's result file, read before it is removed; or why there is none.
    enum Outcome { case finished(Data), failed(String) }

    /// The environment variable that tells a child its parent's process id
    /// (``becomeChildProcess()``).
    static let parentVariable = "PRUNEKIT_PARENT_PID"

    /// Process ids of the children running now, each the leader of its own process group.
    private static let running = RunningChildren()

    /// Kills every running child's process group (SIGKILL), for a parent that is about to
    /// exit on a signal.
    public static func killRunningChildren() { running.killAll() }

    /// Makes this process, a child started by the runner, the leader of its own process
    /// group (a timeout then kills the group: everything the trial started), and ends it
    /// when its parent dies (the runner killed with kill -9 must not leave trials running).
    /// Called first thing by `prunekit trial`. Does nothing without the runner's
    /// `PRUNEKIT_PARENT_PID`.
    public static func becomeChildProcess(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let text = environment[parentVariable], let parent = pid_t(text) else { return }
        setpgid(0, 0)
        @Sendable func orphaned() -> Bool { getppid() != parent }
        @Sendable func die() -> Never {
            if getpgrp() == getpid() { kill(0, SIGKILL) }   // this child's own group only
            _exit(137)
        }
        if orphaned() { die() }
        // Linux's PR_SET_PDEATHSIG is out of reach (prctl is variadic, not imported into
        // Swift); a quarter-second check of the parent does the same job.
        Thread.detachNewThread {
            while true {
                usleep(250_000)
                if orphaned() { die() }
            }
        }
    }

    /// Writes `input`, runs the child, and says how it ended.
    /// - Parameter limit: seconds after which the child's process group is killed (`nil`: never).
    func spawn<T: Encodable>(name: String, input: T, mode: String, limit timeout: Double?) throws -> Outcome {
        try makeDirectory(workDirectory)
        let configPath = "\(workDirectory)/\(name).json", resultPath = "\(workDirectory)/\(name).result.json"
        let logPath = "\(workDirectory)/\(name).log"
        defer {
            for p in [configPath, resultPath, logPath] { try? FileManager.default.removeItem(atPath: p) }
        }
        try writeJSON(input, to: configPath)
        guard FileManager.default.createFile(atPath: logPath, contents: nil), let log = FileHandle(forWritingAtPath: logPath) else {
            throw PruneKitError(.io, "could not create the log file \(logPath)")
        }
        defer { try? log.close() }

        var arguments = ["trial", mode, configPath, "--result", resultPath, "--cache", cacheDirectory]
        for f in pluginFiles { arguments += ["--plugin", f] }
        for d in pluginDirectories { arguments += ["--plugin-dir", d] }
        if let threads { arguments += ["--threads", String(threads)] }
        if let modelsDirectory, mode == "--config" { arguments += ["--models", modelsDirectory] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        var env = ProcessInfo.processInfo.environment
        // A crash report from Swift's backtracer takes seconds; the signal and the last
        // lines of standard error say what is needed. An explicit setting is kept.
        if env["SWIFT_BACKTRACE"] == nil { env["SWIFT_BACKTRACE"] = "enable=no" }
        for (k, v) in environment { env[k] = v }
        env[Self.parentVariable] = String(getpid())
        process.environment = env
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do { try process.run() } catch {
            throw PruneKitError(.io, "could not start \(executable): \(error.localizedDescription)",
                                hint: "build prunekit (swift build) or give the executable's path")
        }
        let pid = process.processIdentifier
        Self.running.insert(pid)
        defer { Self.running.remove(pid) }
        if let timeout, done.wait(timeout: .now() + timeout) == .timedOut {
            // The child leads its own process group (becomeChildProcess): kill the group.
            killGroup(pid, SIGTERM)
            if done.wait(timeout: .now() + 2) == .timedOut {
                killGroup(pid, SIGKILL)
                done.wait()
            }
            return .failed("timed out after \(formatSeconds(timeout)) s")
        } else if timeout == nil {
            done.wait()
        }
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        switch process.terminationReason {
        case .uncaughtSignal:
            let signal = process.terminationStatus
            return .failed("crashed with \(signalName(signal)) (signal \(signal))" + tail(output))
        case .exit:
            let status = process.terminationStatus
            if status == 0 {
                guard let data = FileManager.default.contents(atPath: resultPath) else {
                    return .failed("the child exited without writing a result" + tail(output))
                }
                return .finished(data)
            }
            let lines = output.split(separator: "\n", omittingEmptySubsequences: true)
            if let error = lines.last(where: { $0.hasPrefix("error: ") }) {
                var message = String(error.dropFirst("error: ".count))
                if let i = lines.lastIndex(of: error), i + 1 < lines.count, lines[i + 1].hasPrefix("hint: ") {
                    message += " (\(lines[i + 1]))"
                }
                return .failed(message)
            }
            return .failed("exited with status \(status)" + tail(output))
        @unknown default:
            return .failed("ended in an unknown way (status \(process.terminationStatus))" + tail(output))
        }
    }

    private func tail(_ output: String, lines count: Int = 12) -> String {
        let lines = output.split(separator: "\n", omittingEmptySubsequences: true).suffix(count)
        return lines.isEmpty ? "" : "; last output:\n" + lines.joined(separator: "\n")
    }
}

/// Sends `signal` to the process group led by `pid`, or to `pid` alone when it has not
/// made its group yet.
private func killGroup(_ pid: pid_t, _ signal: Int32) {
    if kill(-pid, signal) != 0 { kill(pid, signal) }
}

/// The runner's running children, for ``ChildProcessTrialRunner/killRunningChildren()``.
private final class RunningChildren: @unchecked Sendable {
    private let lock = NSLock()
    private var pids = Set<pid_t>()
    func insert(_ pid: pid_t) { lock.lock(); pids.insert(pid); lock.unlock() }
    func remove(_ pid: pid_t) { lock.lock(); pids.remove(pid); lock.unlock() }
    func killAll() {
        lock.lock(); let all = pids; lock.unlock()
        for pid in all { killGroup(pid, SIGKILL) }
    }
}

/// How long a trial's child process may run before its process group is killed and the
/// trial is recorded as failed, "timed out after N s" (a plugin that hangs).
public enum TrialTimeLimit: Sendable, Equatable {
    /// No limit.
    case none
    /// A fixed limit in seconds (`compare --trial-timeout`, `trial-timeout:`).
    case seconds(Double)
    /// Derived from the trial's baseline, `compare`'s default (``seconds(for:epochSeconds:)``).
    /// `oracleEpochs`: the oracle's cost in baseline epochs (``Oracle/Cost/epochs``), added
    /// to an oracle trial's work.
    case automatic(oracleEpochs: Double)

    /// The automatic limit is at least this (10 minutes)…
    public static let minimumSeconds = 600.0
    /// …and this many times the trial's work timed at the baseline's epoch time.
    public static let factor = 20.0
    /// The automatic limit when the baseline has no epoch time (an imported saved model): 2 hours.
    public static let fallbackSeconds = 7200.0
    /// No limit is longer than 30 days (what a timer can wait for, with room to spare).
    public static let maximumSeconds = 30 * 86_400.0

    /// The limit for trial `c`, in seconds (`nil`: none).
    ///
    /// Automatic: max(10 min, 20 × the baseline's seconds per epoch × the trial's work in
    /// epochs): its regularisation and finetuning epochs, one more for scoring, evaluating
    /// and measuring, and for an oracle trial the oracle's epochs. Twenty times, because a
    /// child runs single-threaded beside others where the baseline may have used every
    /// core, and iterative schedules finetune at every step: generous, to catch a hang
    /// and never a slow trial.
    /// - Parameter epochSeconds: the baseline's seconds per training epoch (`nil`: unknown,
    ///   then ``fallbackSeconds``).
    public func seconds(for c: TrialConfiguration, epochSeconds: Double?) -> Double? {
        switch self {
        case .none: return nil
        case let .seconds(s): return min(s, Self.maximumSeconds)
        case let .automatic(oracleEpochs):
            guard let e = epochSeconds, e.isFinite, e > 0 else { return Self.fallbackSeconds }
            let work = c.kind == .oracle
                ? 1 + max(0, oracleEpochs)
                : Double(c.regularizationEpochs ?? c.finetuneEpochs) + Double(c.finetuneEpochs) + 1
            let s = Self.factor * e * work
            return s.isFinite ? min(Self.maximumSeconds, max(Self.minimumSeconds, s)) : Self.maximumSeconds
        }
    }
}

/// `SIGSEGV` for 11, and so on; `signal N` for one without a common name.
public func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL",
                                  SIGTRAP: "SIGTRAP", SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE",
                                  SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGTERM: "SIGTERM"]
    return names[signal] ?? "signal \(signal)"
}

private func formatSeconds(_ s: Double) -> String {
    s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
}
