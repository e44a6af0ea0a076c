import Foundation
import PruneKit

// Which plugin builds a trial runs with: read from the registry (which records the file,
// version and SDK version of every registration) and the plugin files' bytes. The plan
// stamps them into each trial's configuration, so they are part of its id; the child
// process that runs the trial checks that it loaded the same builds.

extension PluginBuild {
    /// The builds of the plugins that `configuration` uses (its criterion, schedule and
    /// finetuning strategy), in that order; ids the registry does not know are left out
    /// (the plan refuses them before this is asked).
    ///
    /// Cost: one read of each plugin file the first time it is asked for (a few hundred
    /// kB each), cached for the process while the file is unchanged (a C criterion's
    /// manifest and library are read every time: small).
    /// - Throws: `PruneKitError(.plugin)` when a plugin file can't be read.
    public static func builds(for configuration: TrialConfiguration, registry: Registry = .shared) throws -> [PluginBuild] {
        let wanted: [(PluginKind, String)] = [(.criterion, configuration.criterion), (.schedule, configuration.schedule),
                                              (.finetune, configuration.finetune)]
        let entries = registry.entries
        return try wanted.compactMap { kind, id in
            guard let entry = entries.first(where: { $0.kind == kind && $0.id == id }) else { return nil }
            return PluginBuild(kind: kind, id: id, file: entry.file, version: entry.version, sdkVersion: entry.sdkVersion,
                               contentHash: entry.file == "built-in" ? nil : try contentHash(of: entry.file))
        }
    }

    /// `configuration` with ``TrialConfiguration/plugins`` set from `registry`.
    public static func stamped(_ configuration: TrialConfiguration, registry: Registry = .shared) throws -> TrialConfiguration {
        var c = configuration
        c.plugins = try builds(for: configuration, registry: registry)
        return c
    }

    /// Checks, in the process that runs a trial, that the plugins it loaded are the builds
    /// the trial was planned with: a plugin rebuilt while an experiment runs would
    /// otherwise produce results filed under the old build.
    /// - Throws: `PruneKitError(.plugin)` naming the plugin, both builds and what to do.
    public static func verify(_ configuration: TrialConfiguration, registry: Registry = .shared) throws {
        guard let planned = configuration.plugins else { return }
        let loaded = try builds(for: configuration, registry: registry)
        for p in planned {
            let now = loaded.first { $0.kind == p.kind && $0.id == p.id }
            guard now?.identity != p.identity else { continue }
            throw PruneKitError(.plugin, "the \(p.kind.rawValue) '\(p.id)' changed after this trial was planned: planned \(p), loaded \(now.map(\.description) ?? "none")",
                                hint: "don't rebuild plugins while an experiment runs; run the same command again to run this trial with the new build")
        }
    }

    /// The hash of a plugin file's bytes; for a C criterion's manifest (`.json`), of the
    /// manifest's and its library's bytes.
    static func contentHash(of file: String) throws -> String {
        // Cached by path, size, modification time and inode: a file rebuilt while the
        // process runs is read again.
        let attributes = (try? FileManager.default.attributesOfItem(atPath: file)) ?? [:]
        let key = [file, "\(attributes[.size] ?? "")", "\((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)",
                   "\(attributes[.systemFileNumber] ?? "")"].joined(separator: "|")
        let cache = Self.cache
        cache.lock.lock(); defer { cache.lock.unlock() }
        if !file.hasSuffix(".json"), let known = cache.hashes[key] { return known }
        var bytes = try read(file)
        if file.hasSuffix(".json") {
            // The SDK's own reading of the manifest resolves the library's path (one rule, one place).
            bytes += try read(ForeignCriterionManifest(contentsOf: file).libraryPath)
        }
        let hash = StableHash.hex(of: bytes)
        cache.hashes[key] = hash
        return hash
    }

    private static func read(_ file: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: file), options: .mappedIfSafe)
        } catch {
            throw PruneKitError(.plugin, "could not read the plugin file \(file) to identify its build: \(FileSystem.reason(error))",
                                hint: "check that the plugin file is still there and readable")
        }
    }

    private final class Cache: @unchecked Sendable {
        let lock = NSLock()
        var hashes: [String: String] = [:]
    }
    private static let cache = Cache()
}
