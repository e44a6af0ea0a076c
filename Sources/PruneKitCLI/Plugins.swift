import ArgumentParser
import Foundation
import PruneKit

/// The plugin options every command that uses plugins shares (`@OptionGroup var plugins: PluginOptions`).
struct PluginOptions: ParsableArguments {
    @Option(name: .customLong("plugin"), help: ArgumentHelp("Load this plugin library (repeatable); every problem with it is reported.", valueName: "file"))
    var files: [String] = []
    @Option(name: .customLong("plugin-dir"), help: ArgumentHelp("Also load the plugins in this directory (repeatable).", valueName: "dir"))
    var directories: [String] = []

    /// The search path: the executable's directory, PRUNEKIT_PLUGIN_PATH, --plugin-dir, --plugin.
    var searchPath: PluginSearchPath { .standard(pluginDirectories: directories, pluginFiles: files) }

    /// Loads the plugins on the search path into the shared registry, printing each
    /// failure as a warning on standard error; failures never stop the command.
    @discardableResult
    func load() -> PluginLoadReport {
        let report = PluginLoader.shared.loadAll(searchPath)
        for failure in report.failures { warn(failure.error) }
        return report
    }
}

/// Prints a PruneKitError as a warning (with its hint) on standard error.
func warn(_ error: PruneKitError) {
    var text = "warning: \(error.message)\n"
    if let hint = error.hint { text += "  hint: \(hint)\n" }
    FileHandle.standardError.write(Data(text.utf8))
}

struct ListPlugins: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List the registered criteria, schedules and finetuning strategies; with an id, one plugin's options.",
        discussion: """
            Plugins are loaded from the executable's directory, each directory of PRUNEKIT_PLUGIN_PATH (colon-separated), \
            --plugin-dir and --plugin. A plugin that can't be loaded is reported as a warning and the others still load.
            Examples: prunekit plugins; prunekit plugins taylor; prunekit plugins --format json
            """)

    @Argument(help: ArgumentHelp("Show this plugin's kind, granularity, file and options (with types, defaults and help).", valueName: "id"))
    var id: String?
    @Option(help: "Output format.") var format: OutputFormat = .table
    @Flag(name: .customLong("json"), help: .hidden) var jsonAlias = false
    @OptionGroup var plugins: PluginOptions

    /// What a criterion prunes with its default options (`weight`, `channel`), `—` for the
    /// other kinds, `?` for a criterion that can't be made without options.
    static func granularity(_ e: RegistryEntry) -> String {
        guard e.kind == .criterion else { return "—" }
        return (try? Registry.shared.criterion(e.id, options: []))?.granularity.rawValue ?? "?"
    }

    func run() throws {
        try reportingErrors {
            let report = plugins.load()
            var entries = Registry.shared.entries
            if let id {
                entries = entries.filter { $0.id == id }
                guard !entries.isEmpty else {
                    throw PruneKitError(.invalidArgument, "no plugin has the id '\(id)'",
                                        hint: "registered: \(Registry.shared.entries.map(\.id).sorted().joined(separator: ", "))")
                }
            }
            if format == .json || jsonAlias {
                let object: [String: Any] = [
                    "sdkVersion": SDKVersion.string,
                    "entries": entries.map { e -> [String: Any] in
                        ["id": e.id, "kind": e.kind.rawValue, "granularity": Self.granularity(e), "version": e.version, "file": e.file,
                         "sdkVersion": e.sdkVersion, "summary": e.summary, "options": e.options.map(\.summary)]
                    },
                    "failures": report.failures.map { f -> [String: Any] in
                        ["file": f.file, "message": f.error.message, "hint": f.error.hint ?? ""]
                    },
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else if id != nil {
                entries.forEach(printDetails)
            } else {
                printTable(entries)
            }
        }
    }

    private func printTable(_ entries: [RegistryEntry]) {
        guard !entries.isEmpty else {
            print("no plugins registered (SDK \(SDKVersion.string)); searched: \(plugins.searchPath.directories.joined(separator: ", "))")
            return
        }
        let idWidth = max(2, entries.map(\.id.count).max() ?? 0) + 2
        let head = "id".padding(toLength: idWidth, withPad: " ", startingAt: 0) + "kind       granularity  "
        let width = isatty(STDOUT_FILENO) != 0 ? terminalColumns() : Int.max   // piped: whole lines
        print(head + "summary")
        for e in entries.sorted(by: { ($0.kind.rawValue, $0.id) < ($1.kind.rawValue, $1.id) }) {
            let line = e.id.padding(toLength: idWidth, withPad: " ", startingAt: 0) + e.kind.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                + Self.granularity(e).padding(toLength: 13, withPad: " ", startingAt: 0) + e.summary
            print(line.count > width ? String(line.prefix(width - 1)) + "…" : line)
        }
        let files = Set(entries.map(\.file))
        let directories = Set(files.map { URL(fileURLWithPath: $0).deletingLastPathComponent().path }).sorted()
        print("\(entries.count) plugins from \(files.count) files in \(directories.joined(separator: ", ")) (SDK \(SDKVersion.string)); "
              + "`prunekit plugins ID` shows one plugin's options, --format json every file and version")
    }

    private func printDetails(_ e: RegistryEntry) {
        print("\(e.id) (\(e.kind.rawValue)\(e.kind == .criterion ? ", \(Self.granularity(e))" : "")): \(e.summary)")
        print("  version \(e.version), built against SDK \(e.sdkVersion); file \(e.file)")
        guard !e.options.isEmpty else { return print("  options: none") }
        print("  options (set as key=value):")
        let nameWidth = e.options.map(\.name.count).max() ?? 0
        for o in e.options {
            print("    " + o.name.padding(toLength: nameWidth + 2, withPad: " ", startingAt: 0) + o.type.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                  + "default \(o.defaultValue)".padding(toLength: 18, withPad: " ", startingAt: 0) + o.help)
        }
    }
}

struct PluginBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "Time to discover and load every plugin on the search path (target: under 50 ms in total).")

    @OptionGroup var plugins: PluginOptions

    func run() throws {
        warnIfDebugBuild()
        let path = plugins.searchPath
        let t0 = DispatchTime.now().uptimeNanoseconds
        let scanner = PluginLoader(registry: Registry())
        var found: [String] = []
        for dir in path.directories { found += (try? scanner.candidates(in: dir)) ?? [] }
        let t1 = DispatchTime.now().uptimeNanoseconds
        let report = PluginLoader.shared.loadAll(path)
        let t2 = DispatchTime.now().uptimeNanoseconds
        for failure in report.failures { warn(failure.error) }
        let ms = { (a: UInt64, b: UInt64) in String(format: "%.2f ms", Double(b - a) / 1e6) }
        print("discover: \(found.count + path.files.count) candidate(s) in \(path.directories.count) director\(path.directories.count == 1 ? "y" : "ies") in \(ms(t0, t1))")
        print("load:     \(report.loaded.count) plugin(s), \(report.loaded.map(\.entries.count).reduce(0, +)) registration(s), \(report.failures.count) failure(s) in \(ms(t1, t2)) (discovery again, checks, dlopen, register)")
        for p in report.loaded { print("  \(p.name) \(p.version): \(p.entries.map(\.id).joined(separator: ", ")) — \(p.file)") }
        let total = Double(t2 - t0) / 1e6
        print(String(format: "total:    %.2f ms (target < 50 ms)%@", total, total < 50 ? "" : " — over target"))
    }
}
