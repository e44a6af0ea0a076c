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
        abstract: "List the registered criteria, schedules and finetuning strategies, and where they come from.",
        discussion: "Plugins are loaded from the executable's directory, each directory of PRUNEKIT_PLUGIN_PATH (colon-separated), --plugin-dir and --plugin. A plugin that can't be loaded is reported as a warning and the others still load.")

    @Flag(help: "Print JSON instead of a table.") var json = false
    @OptionGroup var plugins: PluginOptions

    func run() throws {
        let report = plugins.load()
        let entries = Registry.shared.entries
        if json {
            let object: [String: Any] = [
                "sdkVersion": SDKVersion.string,
                "entries": entries.map { e -> [String: Any] in
                    ["id": e.id, "kind": e.kind.rawValue, "version": e.version, "file": e.file,
                     "sdkVersion": e.sdkVersion, "summary": e.summary, "options": e.options.map(\.summary)]
                },
                "failures": report.failures.map { f -> [String: Any] in
                    ["file": f.file, "message": f.error.message, "hint": f.error.hint ?? ""]
                },
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        if entries.isEmpty {
            print("no plugins registered (SDK \(SDKVersion.string)); searched: \(plugins.searchPath.directories.joined(separator: ", "))")
            return
        }
        let idWidth = max(2, entries.map(\.id.count).max() ?? 0)
        print("id".padding(toLength: idWidth, withPad: " ", startingAt: 0), "kind     ", "version ", "sdk  ", "file")
        for e in entries {
            print(e.id.padding(toLength: idWidth, withPad: " ", startingAt: 0),
                  e.kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0),
                  e.version.padding(toLength: 8, withPad: " ", startingAt: 0),
                  e.sdkVersion.padding(toLength: 5, withPad: " ", startingAt: 0), e.file)
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
