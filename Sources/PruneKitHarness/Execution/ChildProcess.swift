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
    /// Seconds after which a child is killed (`nil`: never).
    public var timeout: Double?
    /// Where configuration, result and log files go (default: a fresh temporary directory).
    public var workDirectory: String
    /// Extra environment variables for the child.
    public var environment: [String: String]

    public init(executable: String? = nil, cacheDirectory: String, pluginFiles: [String] = [],
                pluginDirectories: [String] = [], threads: Int? = nil, timeout: Double? = nil,
                workDirectory: String? = nil, environment: [String: String] = [:]) {
        self.executable = executable
            ?? (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        self.cacheDirectory = cacheDirectory
        self.pluginFiles = pluginFiles; self.pluginDirectories = pluginDirectories
        self.threads = threads; self.timeout = timeout
        self.workDirectory = workDirectory ?? (NSTemporaryDirectory() + "prunekit-trials-\(getpid())")
        self.environment = environment
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
            let outcome = try spawn(name: name, input: c, mode: "--config")
            switch outcome {
            case let .finished(data):
                result = try decodeJSON(TrialResult.self, data, what: "trial result")
            case let .failed(message):
                result = .failed(message)
            }
        } catch let e as PruneKitError {
            result = .failed("could not run the trial in a child process: \(e.message)")
        } catch {
            result = .failed("could not run the trial in a child process: \(error)")
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        result.phaseSeconds["overhead"] = max(0, wall - result.phaseSeconds.values.reduce(0, +))
        return result
    }

    /// Ensures baseline `b` in a child process (`prunekit trial --baseline`).
    /// - Throws: ``PruneKitError`` with the child's message when it fails or crashes.
    public func ensureBaseline(_ b: BaselineConfiguration) throws -> BaselineArtifact {
        switch try spawn(name: "baseline-\(b.hash)-\(UUID().uuidString.prefix(8))", input: b, mode: "--baseline") {
        case let .finished(data): return try decodeJSON(BaselineArtifact.self, data, what: "baseline result")
        case let .failed(message): throw PruneKitError(.plugin, "baseline \(b.model) (seed \(b.seed)): \(message)")
        }
    }

    /// The child's result file, read before it is removed; or why there is none.
    enum Outcome { case finished(Data), failed(String) }

    /// Writes `input`, runs the child, and says how it ended.
    func spawn<T: Encodable>(name: String, input: T, mode: String) throws -> Outcome {
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
        process.environment = env
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        do { try process.run() } catch {
            throw PruneKitError(.io, "could not start \(executable): \(error.localizedDescription)",
                                hint: "build prunekit (swift build) or give the executable's path")
        }
        if let timeout, done.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            if done.wait(timeout: .now() + 2) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
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
