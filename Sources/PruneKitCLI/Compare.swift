import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness
import PruneKitONNX

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare pruning criteria fairly: every criterion × target × seed from one baseline, with statistics and reports.",
        discussion: """
            With no arguments: lenet-5 on the bundled mnist-5k, every built-in criterion, compression targets \
            2, 4, 8, 16 and 32, one-shot pruning, a 2-epoch finetune, one seed (--seeds 3 gives confidence \
            intervals), and oracle agreement for channel criteria. Results go to prunekit-results/results.sqlite \
            in the current directory as each trial finishes; stop at any moment (Ctrl-C, or even kill -9) and run \
            the same command again to run only the trials not yet done. Reports go to prunekit-results/report/.
            Example: prunekit compare --criteria global-magnitude,l1-filter --compressions 2,4 --seeds 3
            N:M beside unstructured pruning: prunekit compare --criteria global-magnitude,layer-magnitude --compressions 2 --pattern 2:4,4:8
            """)

    @Argument(help: ArgumentHelp("A YAML experiment file (see README); options given here override its keys.", valueName: "spec.yaml"))
    var specFile: String?
    @Option(help: "Model: a zoo name (\(ModelZoo.names.joined(separator: ", "))) or a saved model folder (default: lenet-5).")
    var model: String?
    @Option(help: "Data set (default: mnist-5k, bundled), or your own: an .npz file, a folder of .npy files, an image folder.") var dataset: String?
    @Option(help: "Folder holding the data set's files (not needed for mnist-5k).") var dataDir: String?
    @OptionGroup var source: DataSourceFlags
    @Option(help: ArgumentHelp("Criterion ids, comma-separated, each optionally with options after a space ('random granularity=channel'); default: every registered criterion.", valueName: "a,b,…"))
    var criteria: String?
    @Option(help: ArgumentHelp("Parameter-compression targets, comma-separated (default: 2,4,8,16,32).", valueName: "2,4,8"))
    var compressions: String?
    @Option(help: ArgumentHelp("FLOPs speed-up targets, comma-separated (instead of, or with, --compressions).", valueName: "1.5,2"))
    var speedups: String?
    @Option(help: ArgumentHelp("Schedule id, optionally with options after a space ('iterative steps=3'; default: one-shot).", valueName: "id"))
    var schedule: String?
    @Option(help: ArgumentHelp("Finetuning strategy id, optionally with options after a space ('finetune learning-rate=0.01'; default: finetune).", valueName: "id"))
    var finetune: String?
    @Option(help: "Epochs of finetuning after pruning (default: 2).") var finetuneEpochs: Int?
    @Option(help: "Seeds: replicates, each from its own baseline (default: 1; --seeds 3 gives confidence intervals).")
    var seeds: Int?
    @Option(help: ArgumentHelp("When to prune: trained (the trained baseline, then the finetuning strategy; the default), init (the baseline's initial weights, then the baseline's whole training recipe), or init,trained for both; one-shot schedules only with init.", valueName: "init|trained"))
    var when: String?
    @Option(help: ArgumentHelp("Sanity checks run as extra trials next to each weight criterion's own, comma-separated: layer-shuffle (each layer's count, random positions), invert (prune the highest scores), reinit (the mask, fresh weights); none for no checks.", valueName: "checks"))
    var sanity: String?
    @Option(help: ArgumentHelp("N:M sparsity patterns, comma-separated (2:4 or 2:4,4:8): each adds one trial per weight criterion, beside its unstructured ones, keeping the N best of every M consecutive input channels. The pattern is its own target (nominally M/N× compression); none for no pattern. Weight criteria and one-shot schedules only.", valueName: "N:M"))
    var pattern: String?
    @Option(help: ArgumentHelp("The SQLite result store (default: prunekit-results/results.sqlite in the current directory).", valueName: "file"))
    var store: String?
    @Option(help: ArgumentHelp("Where the reports go (default: report/ next to the store).", valueName: "dir"))
    var report: String?
    @Option(help: ArgumentHelp("Run one slice of the trials, for a cluster: shard I of N (1-based); combine with prunekit merge.", valueName: "I/N"))
    var shard: String?
    @Option(help: "Trials run at once, each in its own process (default: \(ExperimentRunner.defaultJobs)).") var jobs: Int?
    @Option(help: ArgumentHelp("Seconds a trial may run before it is killed and recorded as failed (default: 20× its work at the baseline's epoch time, at least 600).", valueName: "seconds"))
    var trialTimeout: Double?
    @Flag(help: "Run again the trials that failed before (by default a failed trial counts as done).") var retryFailed = false
    @Option(help: ArgumentHelp("Where baseline checkpoints are cached (default: baselines/ next to the store).", valueName: "dir"))
    var cache: String?
    @Option(help: ArgumentHelp("Keep the pruned model of every trial that runs in DIR/<trial id> (the id column of trials.csv; default: not kept).", valueName: "dir"))
    var models: String?
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    /// The options checked at parse time (numbers, counts, the shard); the spec file, the
    /// registry and the data are checked by the plan before any trial.
    func validate() throws {
        try reportingErrors {
            try ExperimentSpec().applying(try overrides()).validate()
            _ = try shard.map(Shard.init(parsing:))
        }
    }

    func run() throws {
        try reportingErrors {
            setvbuf(stdout, nil, _IOLBF, 0)   // printed lines and the progress display stay in order
            try engine.apply()
            plugins.load()
            var spec = try specFile.map(ExperimentSpec.load(file:)) ?? ExperimentSpec()
            spec = try spec.applying(try overrides())
            if ONNX.isONNXPath(spec.model) {
                // The harness takes saved models: import it beside the store, and compare from
                // its weights as they are (a saved model's baseline is not trained).
                let folder = URL(fileURLWithPath: spec.store).deletingLastPathComponent()
                    .appendingPathComponent("onnx-imports")
                    .appendingPathComponent(URL(fileURLWithPath: spec.model).deletingPathExtension().lastPathComponent).path
                let source = try ModelSource.load(spec.model, zoo: nil)
                try source.model.save(to: folder, metadata: source.metadata)
                print("imported \(spec.model) into \(folder); its weights are the baseline (no training)")
                spec.model = folder
            }
            let shard = try self.shard.map(Shard.init(parsing:)) ?? .all
            let jobs = spec.jobs ?? ExperimentRunner.defaultJobs
            let threads = engine.threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / jobs)
            // Trials, and the probes of the plan, run in child processes: a plugin that
            // crashes or hangs fails only its own trials. Their work folder goes at the end.
            var children = ExperimentParts.childRunner(executable: executablePath(), cacheDirectory: spec.cacheDirectory,
                                                       threads: threads, pluginFiles: plugins.files,
                                                       pluginDirectories: plugins.directories, modelsDirectory: spec.models)
            defer { children.removeWorkDirectory() }
            let plan = try ExperimentPlan.validated(spec, probe: children)
            children.timeLimit = spec.trialTimeLimit(oracleEpochs: plan.oracleCost?.epochs ?? 0)
            for s in plan.skipped { print("left out \(s.choice.id): \(s.reason)") }
            for n in plan.notes { print("note: \(n)") }
            if let models = spec.models { try ExperimentParts.makeModelsDirectory(models) }
            let store = try ExperimentParts.openStore(spec.store)   // creates its directory, or says why it can't
            let display = CompareProgress(jobs: jobs)
            let runner = ExperimentRunner(
                plan: plan, shard: shard, jobs: jobs, retryFailed: retryFailed, store: store, runner: children,
                baselines: ExperimentParts.baselineCache(spec.cacheDirectory, store: store, log: display.baselineLog))

            let axes = Set(spec.targets.map(\.axis)).map { $0 == .compression ? "compression" : "speed-up" }.sorted()
            print("\(spec.model) on \(spec.dataset): \(plan.criteria.count) criteria × \(spec.targets.count) targets (\(axes.joined(separator: ", "))) "
                  + "× \(spec.seeds.count) seed\(spec.seeds.count == 1 ? "" : "s")"
                  + (spec.when == [.trained] ? "" : " × pruned \(spec.when.map { $0 == .initialization ? "at init" : "after training" }.joined(separator: " and "))")
                  + (spec.patterns.isEmpty ? "" : ", and N:M pattern\(spec.patterns.count == 1 ? "" : "s") \(spec.patterns.joined(separator: ", ")) for weight criteria")
                  + (spec.sanity.isEmpty ? "" : " with sanity checks \(spec.sanity.map(\.rawValue).joined(separator: ", ")) for weight criteria")
                  + " = \(plan.trials.count) trials"
                  + (shard == .all ? "" : "; shard \(shard): \(plan.trials(in: shard).count)")
                  + "; \(jobs) at a time; store \(spec.store)")
            if let cost = plan.oracleCost { print(cost.summary) }

            let workDirectory = children.workDirectory
            let interrupt = InterruptHandler(onInterrupt: { [runner] in
                let running = runner.cancel()
                display.note("stopping: no new trials; waiting for \(running) running trial\(running == 1 ? "" : "s") (Ctrl-C again to quit now)")
            }, onQuit: {
                // Quitting now (a second Ctrl-C, SIGTERM, SIGHUP): no trial outlives the run,
                // and its work folder goes with it.
                ChildProcessTrialRunner.killRunningChildren()
                try? FileManager.default.removeItem(atPath: workDirectory)
            })
            let summary = try runner.run(onEvent: display.handle)
            interrupt.stop()
            display.finish()

            let resume = "prunekit " + CommandLine.arguments.dropFirst().joined(separator: " ")
            if summary.cancelled {
                print("stopped: \(summary.skipped + summary.ran) of \(summary.total) trials are in \(spec.store); "
                      + "run the same command again (\(resume)) to run the other \(summary.notRun)")
                throw ExitCode(130)
            }
            // The report describes the whole store, as `prunekit report` does.
            let report = try ExperimentParts.storeReport(store, path: spec.store)
            print(ExperimentParts.terminalTable(report.records))
            let files = try ExperimentParts.writeReports(report.records, to: spec.reportDirectory, title: report.title)
            if !files.isEmpty { print("reports: \(files.joined(separator: ", "))") }
            let ids = Set(plan.trials.map(\.id)), others = report.records.filter { !ids.contains($0.id) }.count
            if others > 0 {
                print("the reports cover all \(report.records.count) trials in \(spec.store): \(others) of them from other runs than this one")
            }
            print("trials: \(summary.total) in this run, \(summary.skipped) already in the store (skipped), \(summary.ran) run now, \(summary.failed) failed")
            print(summary.phaseTable())
        }
    }

    private func overrides() throws -> ExperimentSpec.Overrides {
        var o = ExperimentSpec.Overrides()
        o.model = model; o.dataset = dataset; o.dataDirectory = dataDir
        if !source.isEmpty {
            let flags = source
            o.dataOptions = { d in d = try flags.options(over: d) }
        }
        o.criteria = try criteria.map { text in
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !items.isEmpty else { throw PruneKitError(.invalidArgument, "--criteria lists no criterion", hint: "--criteria global-magnitude,l1-filter") }
            return items.map(CriterionChoice.init(parsing:))
        }
        o.compressions = try compressions.map { try numbers($0, "--compressions") }
        o.speedups = try speedups.map { try numbers($0, "--speedups") }
        o.schedule = schedule.map(CriterionChoice.init(parsing:)); o.finetune = finetune.map(CriterionChoice.init(parsing:))
        o.finetuneEpochs = finetuneEpochs
        if let jobs, jobs < 1 { throw PruneKitError(.invalidArgument, "--jobs must be at least 1, got \(jobs)") }
        if let t = trialTimeout, !(t > 0 && t <= TrialTimeLimit.maximumSeconds) {
            throw PruneKitError(.invalidArgument, "--trial-timeout must be a positive number of seconds, at most \(Int(TrialTimeLimit.maximumSeconds)) (30 days), got \(t)",
                                hint: "leave it out for a limit derived from the baseline's epoch time")
        }
        o.trialTimeout = trialTimeout
        o.when = try when.map { try ExperimentSpec.parseList($0, option: "--when") }
        o.sanity = try sanity.map { try ExperimentSpec.parseList($0, option: "--sanity", allowsNone: true) }
        o.patterns = try pattern.map { try ExperimentSpec.parsePatterns($0.split(separator: ",", omittingEmptySubsequences: false).map(String.init), option: "--pattern") }
        o.seeds = seeds; o.store = store; o.report = report; o.cache = cache; o.models = models; o.jobs = jobs
        return o
    }

    private func numbers(_ text: String, _ option: String) throws -> [Double] {
        try text.split(separator: ",").map { item in
            let t = item.trimmingCharacters(in: .whitespaces)
            guard let v = Double(t.hasSuffix("x") ? String(t.dropLast()) : t), v.isFinite else {
                throw PruneKitError(.invalidArgument, "\(option) takes numbers separated by commas, got '\(t)'", hint: "\(option) 2,4,8")
            }
            return v
        }
    }
}

/// This executable's path, for starting trials as child processes.
func executablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

/// Calls `onInterrupt` on the first Ctrl-C; a second one, SIGTERM or SIGHUP calls `onQuit`
/// and exits at once (status 128 + the signal).
final class InterruptHandler {
    private static let quitting: [Int32] = [SIGTERM, SIGHUP]
    private var sources: [DispatchSourceSignal] = []
    private var count = 0

    init(onInterrupt: @escaping () -> Void, onQuit: @escaping () -> Void = {}) {
        for sig in [SIGINT] + Self.quitting {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [unowned self] in
                if sig == SIGINT { count += 1 }
                if sig != SIGINT || count > 1 {
                    onQuit()
                    exit(128 + sig)
                }
                onInterrupt()
            }
            source.resume()
            sources.append(source)
        }
    }

    func stop() {
        for s in sources { s.cancel() }
        for sig in [SIGINT] + Self.quitting { signal(sig, SIG_DFL) }
    }
}

/// The progress of a comparison: a bar over the whole experiment redrawn in place on a
/// terminal (trial in hand, done/total, failures, elapsed, time left), a line per
/// finished trial otherwise.
final class CompareProgress {
    private let interactive = isatty(STDOUT_FILENO) != 0
    private let jobs: Int
    private let lock = NSLock()
    private var start = Date()
    private var inHand: [String: String] = [:]
    private var done = 0, total = 0, failures = 0, ranNow = 0
    private var trialSeconds = 0.0

    /// Redraws the bar twice a second on a terminal, so elapsed and left keep moving during a long trial.
    private var ticker: DispatchSourceTimer?

    init(jobs: Int) {
        self.jobs = jobs
        guard interactive else { return }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + 0.5, repeating: 0.5)
        timer.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock(); defer { self.lock.unlock() }
            if !self.inHand.isEmpty { self.draw() }
        }
        timer.resume()
        ticker = timer
    }

    static func name(_ t: TrialConfiguration) -> String {
        var who = ([t.criterion] + t.criterionOptions).joined(separator: " ")
        if let pattern = t.pattern { who += " \(pattern)" }
        if let check = t.sanity { who += " [\(check.rawValue)]" }
        if t.pruningTime == .initialization { who += " at init" }
        switch t.kind {
        case .oracle: return "\(who) oracle agreement, seed \(t.seed)"
        // A pattern is its own target: its label says it all.
        case .prune: return "\(who)\(t.pattern == nil ? " " + (t.target.map(\.description) ?? "?") : ""), seed \(t.seed)"
        }
    }

    func handle(_ event: ExperimentRunner.Event) {
        lock.lock(); defer { lock.unlock() }
        switch event {
        case let .planned(total, skipped):
            self.total = total; done = skipped; start = Date()
            if skipped > 0 {
                line("resuming: \(skipped) of \(total) trials are already in the store and are skipped; \(total - skipped) to run")
            }
        case let .baselineStarted(b, index, count):
            if interactive {
                write("\r\u{1B}[K" + fitted("baseline \(index + 1)/\(count): \(b.model) on \(b.dataset), seed \(b.seed) …"))
            }
        case let .baselineFinished(b, cached, seconds):
            line("baseline \(b.model) on \(b.dataset), seed \(b.seed): "
                 + (cached ? "cached"
                    : b.isSavedModel ? String(format: "the saved weights, measured in %.1f s (no training)", seconds)
                    : String(format: "trained %d epoch%@ in %.1f s", b.epochs, b.epochs == 1 ? "" : "s", seconds)))
            start = Date()
        case let .trialStarted(t):
            inHand[t.id] = Self.name(t)
            draw()
        case let .trialFinished(r, seconds, done, total, failures):
            inHand[r.id] = nil
            self.done = done; self.total = total; self.failures = failures
            ranNow += 1; trialSeconds += seconds
            var text = "[\(done)/\(total)] \(Self.name(r.configuration)): "
            if r.result.status == .failed {
                text += "FAILED: \(r.result.failure ?? "no message")"
                if r.result.transient == true { text += " (not recorded: the next run tries it again)" }
            } else if r.configuration.kind == .oracle {
                text += r.result.oracleCorrelation.map { String(format: "Spearman %.3f", $0) } ?? "no correlation"
            } else {
                let acc = r.result.finetunedAccuracy ?? r.result.prunedAccuracy
                text += acc.map { "top-1 \(percent($0.top1))" } ?? "no accuracy"
                if let c = r.result.compression { text += String(format: ", %.1f× compression", c) }
                if let s = r.result.theoreticalSpeedup { text += String(format: ", %.1f× speed-up", s) }
            }
            line(text + String(format: " (%.1f s)", seconds))
        }
    }

    /// A line from baseline training (one per epoch): shown on a terminal, in place.
    func baselineLog(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        if interactive { write("\r\u{1B}[K" + fitted("baseline: " + text)) }
    }

    func note(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        line(text)
    }

    func finish() {
        ticker?.cancel()
        lock.lock(); defer { lock.unlock() }
        inHand = [:]
        if interactive { write("\r\u{1B}[K") }
    }

    /// A line that stays (above the bar on a terminal).
    private func line(_ text: String) {
        if interactive { write("\r\u{1B}[K") }
        write(text + "\n")
        draw()
    }

    private func draw() {
        guard interactive, total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        let left = ranNow > 0 ? trialSeconds / Double(ranNow) * Double(total - done) / Double(jobs) : .infinity
        let figures = " \(done)/\(total)  failures \(failures)  elapsed \(formatDuration(elapsed))  left \(formatDuration(left))"
        var now = ""
        if let current = inHand.values.sorted().first {
            now = "  now: \(current)" + (inHand.count > 1 ? " (+\(inHand.count - 1))" : "")
        }
        // The bar gives way first, then the trial's name is cut: the line never wraps.
        let columns = terminalColumns()
        write("\r\u{1B}[K" + fitted(progressBar(Double(done) / Double(total), room: columns - figures.count) + figures + now, columns: columns))
    }

    private func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine the result stores of an experiment's shards (prunekit compare --shard I/N) into one.",
        discussion: "Example: prunekit merge --store results.sqlite shard-1.sqlite shard-2.sqlite; then prunekit report --store results.sqlite --out report")

    @Option(help: ArgumentHelp("The result store to write (created, or added to), as compare's --store.", valueName: "file"))
    var store: String?
    @Option(name: .customLong("out"), help: .hidden) var outAlias: String?
    @Argument(help: ArgumentHelp("The shards' stores.", valueName: "shard.sqlite")) var shards: [String] = []

    func validate() throws {
        try reportingErrors {
            guard (store == nil) != (outAlias == nil) else {
                throw PruneKitError(.invalidArgument, store == nil ? "no store to write" : "--store and --out both given",
                                    hint: "prunekit merge --store all.sqlite shard-1.sqlite shard-2.sqlite")
            }
            guard !shards.isEmpty else {
                throw PruneKitError(.invalidArgument, "no stores to merge", hint: "prunekit merge --store all.sqlite shard-1.sqlite shard-2.sqlite")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            print(try ExperimentParts.merge(shards, into: store ?? outAlias ?? ""))
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Rebuild every report (terminal table, Markdown, CSV, JSON, HTML) from a result store, running nothing.")

    @Option(help: ArgumentHelp("The result store (default: prunekit-results/results.sqlite).", valueName: "file"))
    var store: String = ExperimentSpec.defaultStore
    @Option(help: ArgumentHelp("Where the reports go (default: report/ next to the store).", valueName: "dir"))
    var out: String?
    @Option(help: "The report's title (default: the names of the experiments in the store, as compare writes it; else the store's file name).") var title: String?

    func run() throws {
        try reportingErrors {
            let db = try ExperimentParts.openExistingStore(store)
            let report = try ExperimentParts.storeReport(db, path: store, title: title)
            guard !report.records.isEmpty else {
                throw PruneKitError(.invalidArgument, "\(store) holds no trials", hint: "run prunekit compare --store \(store) first")
            }
            print(ExperimentParts.terminalTable(report.records))
            let dir = out ?? URL(fileURLWithPath: store).deletingLastPathComponent().appendingPathComponent("report").path
            let files = try ExperimentParts.writeReports(report.records, to: dir, title: report.title)
            print("\(report.records.count) trials; reports: \(files.joined(separator: ", "))")
        }
    }
}
