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
        discussion: "prunekit trial --config TRIAL.json --result OUT.json [--cache DIR]; prunekit trial --baseline BASELINE.json --result OUT.json",
        shouldDisplay: false)

    @Option(help: ArgumentHelp("A TrialConfiguration as JSON.", valueName: "file")) var config: String?
    @Option(help: ArgumentHelp("A BaselineConfiguration as JSON: train (or find) that baseline instead.", valueName: "file"))
    var baseline: String?
    @Option(help: ArgumentHelp("Where to write the TrialResult (or BaselineArtifact) as JSON.", valueName: "file"))
    var result: String
    @Option(help: ArgumentHelp("The baseline cache directory.", valueName: "dir")) var cache: String = ".prunekit/baselines"
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            switch (config, baseline) {
            case let (path?, nil):
                let c = try decode(TrialConfiguration.self, path)
                plugins.load()
                let r = try TrialExecutor.run(c, environment: TrialEnvironment(cacheDirectory: cache, log: log))
                try write(r)
            case let (nil, path?):
                let b = try decode(BaselineConfiguration.self, path)
                try write(try BaselineCache.ensure(b, cacheDirectory: cache, log: log))
            default:
                throw PruneKitError(.invalidArgument, "give exactly one of --config and --baseline")
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
    private func write<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            try encoder.encode(value).write(to: URL(fileURLWithPath: result), options: .atomic)
        } catch {
            throw PruneKitError(.io, "could not write the result to \(result): \(error.localizedDescription)")
        }
    }
}
