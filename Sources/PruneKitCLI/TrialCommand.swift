import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness

/// `prunekit trial`: runs one trial (or ensures one baseline) from a JSON file and writes
/// the result as JSON. Hidden: `prunekit compare` starts it in a child process for every
/// trial, so a crashing plugin takes down only its own trial.
struct TrialCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trial",
        abstract: "Run one trial from a configuration file (used by `prunekit compare`).",
        discussion: """
            prunekit trial --config TRIAL.json --result OUT.json [--cache DIR]
            prunekit trial --baseline BASELINE.json --result OUT.json [--cache DIR]
            prunekit trial --probe PROBE.json --result OUT.json: whether a criterion can rank a model's channels
            prunekit trial --bench [--criterion ID]: one lenet-5 trial on mnist-5k (10-epoch baseline,             4× compression, one-shot, 2-epoch finetune) in this process and in a child process, with             the time of each phase and the child process's overhead
            """,
        shouldDisplay: false)

    @Option(help: ArgumentHelp("A TrialConfiguration as JSON.", valueName: "file")) var config: String?
    @Option(help: ArgumentHelp("A BaselineConfiguration as JSON: train (or find) that baseline instead.", valueName: "file"))
    var baseline: String?
    @Option(help: ArgumentHelp("A ChannelRankingProbe as JSON: whether the criterion can rank the model's channels.", valueName: "file"))
    var probe: String?
    @Option(help: ArgumentHelp("Where to write the TrialResult (or BaselineArtifact) as JSON.", valueName: "file"))
    var result: String?
    @Flag(help: "Time one default trial in process and in a child process.") var bench = false
    @Option(help: "The criterion of --bench.") var criterion: String = "global-magnitude"
    @Option(help: ArgumentHelp("The baseline cache directory.", valueName: "dir")) var cache: String = ".prunekit/baselines"
    @Option(help: ArgumentHelp("Keep the pruned model in DIR/<trial id> (default: not kept).", valueName: "dir")) var models: String?
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            // Started by compare's runner: its own process group, and gone when compare is.
            ChildProcessTrialRunner.becomeChildProcess()
            try engine.apply()
            let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            if bench { return try runBench() }
            guard let result else { throw PruneKitError(.invalidArgument, "--result is required", hint: "give the file to write the result to") }
            switch (config, baseline, probe) {
            case let (path?, nil, nil):
                let c = try decode(TrialConfiguration.self, path)
                plugins.load()
                try PluginBuild.verify(c)          // the builds it was planned with, or a clear failure
                let r = try TrialExecutor.run(c, environment: TrialEnvironment(cacheDirectory: cache, modelsDirectory: models, log: log))
                try write(r, to: result)
            case let (nil, path?, nil):
                let b = try decode(BaselineConfiguration.self, path)
                try write(try BaselineCache.ensure(b, cacheDirectory: cache, log: log), to: result)
            case let (nil, nil, path?):
                let p = try decode(ChannelRankingProbe.self, path)
                plugins.load()
                try write(ChannelRankingProbe.Verdict(p.run(registry: .shared)), to: result)
            default:
                throw PruneKitError(.invalidArgument, "give exactly one of --config, --baseline and --probe")
            }
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PruneKitError(.invalidFile, "no configuration file at \(path)")
        }
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw PruneKitError(.invalidFile, "\(path) is not a valid \(T.self): \(error)")
        }
    }

    /// Writes the result atomically (a temporary file, renamed), so a reader never sees half of it.
    private func write<T: Encodable>(_ value: T, to result: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            try encoder.encode(value).write(to: URL(fileURLWithPath: result), options: .atomic)
        } catch {
            throw PruneKitError(.io, "could not write the result to \(result): \(error.localizedDescription)")
        }
    }

    /// `--bench`: the default trial, in process and in a child, phase by phase.
    private func runBench() throws {
        warnIfDebugBuild()
        plugins.load()
        let b = BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k")
        let c = TrialConfiguration(baseline: b, criterion: criterion, target: TrialTarget(.compression, 4), finetuneEpochs: 2)
        let t0 = Date()
        let artifact = try BaselineCache.ensure(b, cacheDirectory: cache)
        print(String(format: "baseline: %@ in %.2f s (top-1 %.2f%%; training took %.2f s)", artifact.trainedNow ? "trained" : "found in the cache",
                     Date().timeIntervalSince(t0), artifact.testAccuracy.top1 * 100, artifact.seconds))
        let t1 = Date()
        let inProcess = try TrialExecutor.run(c, environment: TrialEnvironment(cacheDirectory: cache))
        let inProcessSeconds = Date().timeIntervalSince(t1)
        let runner = ChildProcessTrialRunner(cacheDirectory: cache, pluginFiles: plugins.files, pluginDirectories: plugins.directories,
                                             threads: engine.threads)
        defer { runner.removeWorkDirectory() }
        let child = runner.run(c)
        for (name, r) in [("in process", inProcess), ("child process", child)] {
            guard r.status == .succeeded else { throw PruneKitError(.plugin, "the \(name) trial failed: \(r.failure ?? "?")") }
            let phases = ["baseline", "score", "prune", "finetune", "evaluate", "measure"]
            let text = phases.map { String(format: "%@ %.3f", $0, r.phaseSeconds[$0] ?? 0) }.joined(separator: "  ")
            let sum = phases.reduce(0) { $0 + (r.phaseSeconds[$1] ?? 0) }
            print(String(format: "%@ (%@, %.2f× → %.2f%% top-1): %@  Σ %.3f s", name, criterion, r.compression ?? 0,
                         (r.finetunedAccuracy?.top1 ?? 0) * 100, text, sum))
        }
        // The child's overhead: its wall time (spawn → result read) outside the trial's own
        // phases: starting the process, loading the plugins, reading and writing JSON.
        let inside = inProcess.phaseSeconds.values.reduce(0, +)
        print(String(format: "wall: in process %.3f s (%.3f s outside the phases); child spawn → result %.3f s (%.3f s outside the phases: the overhead)",
                     inProcessSeconds, inProcessSeconds - inside, child.phaseSeconds.values.reduce(0, +), child.phaseSeconds["overhead"] ?? 0))
    }
}
