import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A plugin library that was loaded and registered.
public struct LoadedPlugin: Sendable {
    /// The library's resolved path (symlinks followed).
    public let file: String
    /// The plugin's name and version, from its `prunekit_plugin_info`.
    public let name: String
    public let version: String
    /// The ABI tag it carries.
    public let tag: PluginABITag
    /// What it registered.
    public let entries: [RegistryEntry]
}

/// A plugin library that was refused, and why.
public struct PluginLoadFailure: Error, Sendable, CustomStringConvertible {
    /// The path as it was found or given.
    public let file: String
    /// What is wrong and what to do (always `.plugin`, or `.io`/`.invalidFile` wrapped as `.plugin`).
    public let error: PruneKitError
    public var description: String { error.description }
}

/// The outcome of loading every plugin on a search path: one failure never stops the others.
public struct PluginLoadReport: Sendable {
    public var loaded: [LoadedPlugin] = []
    /// C-criterion manifests (`--plugin FILE.json`) registered.
    public var manifests: [String] = []
    public var failures: [PluginLoadFailure] = []
    public init() {}
}

/// Where ``PluginLoader/loadAll(_:)`` looks for plugins, in order.
public struct PluginSearchPath: Sendable, Equatable {
    /// Directories scanned for `lib*.so` files that carry a `.prunekit_abi` section.
    public var directories: [String]
    /// Files loaded explicitly: every problem with one is reported.
    public var files: [String]

    public init(directories: [String] = [], files: [String] = []) {
        self.directories = directories; self.files = files
    }

    /// The standard search path: the running executable's directory, then each directory
    /// of `PRUNEKIT_PLUGIN_PATH` (colon-separated), then `pluginDirectories`
    /// (`--plugin-dir`), then the files `pluginFiles` (`--plugin`).
    public static func standard(pluginDirectories: [String] = [], pluginFiles: [String] = [],
                                environment: [String: String] = ProcessInfo.processInfo.environment) -> PluginSearchPath {
        var dirs: [String] = []
        if let exe = PluginLoader.executablePath() { dirs.append((exe as NSString).deletingLastPathComponent) }
        if let env = environment["PRUNEKIT_PLUGIN_PATH"] {
            dirs += env.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
        }
        return PluginSearchPath(directories: dirs + pluginDirectories, files: pluginFiles)
    }
}

/// Finds, checks and loads plugin libraries, and registers what they provide.
///
/// ``load(file:)`` refuses a library, with a ``PruneKitError`` (`.plugin`) that names the
/// file, says what is wrong and what to do, unless all of these hold, checked in order:
/// it is a regular file; a 64-bit little-endian ELF shared object for this machine; it
/// carries a `.prunekit_abi` tag; built against the host's SDK major version and a minor
/// version no newer than the host's; by the same compiler; without its own copy of the SDK
/// (it defines no `$s8PruneKit…` symbols and needs `libPruneKit.so`). Only then is it
/// `dlopen`ed (`RTLD_NOW | RTLD_LOCAL`); it must export `prunekit_plugin_info` and
/// `prunekit_plugin_entry`, and its entry's ``PluginEntry/register(into:)`` must succeed.
/// A library is never `dlclose`d (unloading Swift code breaks later dynamic casts), and
/// the same file reached twice (through a symlink, or on two search-path directories) is
/// loaded once. The ABI is documented in `Plugins/PLUGINS.md`.
public final class PluginLoader: @unchecked Sendable {
    /// The loader that fills ``Registry/shared``.
    public static let shared = PluginLoader(registry: .shared)

    /// The registry plugins register into.
    public let registry: Registry
    /// Recursive: a plugin's register(into:) may ask the loader what is loaded.
    private let lock = NSRecursiveLock()
    private var loadedByPath: [String: LoadedPlugin] = [:]
    private var order: [String] = []

    /// The SDK's own library name, which a plugin must need and directory scans skip.
    public static let sdkLibraryName = "libPruneKit.so"
    /// Libraries whose names start with this are test fixtures: directory scans skip them,
    /// ``load(file:)`` (`--plugin FILE`) loads them.
    public static let fixturePrefix = "libPruneKitFixture"
    /// The mangled-name prefix of the SDK module's symbols.
    public static let sdkSymbolPrefix = "$s8PruneKit"
    /// The C symbols a plugin exports.
    public static let infoSymbol = "prunekit_plugin_info"
    public static let entrySymbol = "prunekit_plugin_entry"

    public init(registry: Registry) { self.registry = registry }

    /// The plugins loaded so far, in load order.
    public var loaded: [LoadedPlugin] {
        lock.lock(); defer { lock.unlock() }
        return order.compactMap { loadedByPath[$0] }
    }

    /// Checks and loads one plugin library and registers what it provides. Loading a file
    /// that is already loaded (by its resolved path) returns the earlier result.
    /// - Throws: ``PruneKitError`` `.plugin` naming `file`, what is wrong and what to do.
    @discardableResult
    public func load(file: String) throws -> LoadedPlugin {
        lock.lock(); defer { lock.unlock() }
        let path = try Self.checkedRegularFile(file)
        if let done = loadedByPath[path] { return done }

        let elf: ELFSharedObject
        do { elf = try ELFSharedObject(path: path) } catch let e as PruneKitError { throw Self.asPluginError(e) }
        let tag = try Self.checkTag(elf, path)
        try Self.checkNoSDKCopy(elf, path)

        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown reason"
            throw PruneKitError(.plugin, "\(path): dlopen failed: \(reason)",
                                hint: "check that the libraries it needs are on the library path (ldd \(path))")
        }
        // Never dlclose `handle`: unloading Swift code breaks later dynamic casts.
        guard let infoSym = dlsym(handle, Self.infoSymbol) else {
            throw PruneKitError(.plugin, "\(path) does not export \(Self.infoSymbol)",
                                hint: "add `@_cdecl(\"\(Self.infoSymbol)\") public func pluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: \"…\", version: \"…\") }`")
        }
        let info = try Self.parseInfo(unsafeBitCast(infoSym, to: (@convention(c) () -> UnsafePointer<CChar>?).self)(), path)
        guard let entrySym = dlsym(handle, Self.entrySymbol) else {
            throw PruneKitError(.plugin, "\(path) does not export \(Self.entrySymbol)",
                                hint: "add `@_cdecl(\"\(Self.entrySymbol)\") public func pluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(MyPlugin()) }`")
        }
        guard let raw = unsafeBitCast(entrySym, to: (@convention(c) () -> UnsafeMutableRawPointer?).self)() else {
            throw PruneKitError(.plugin, "\(path): \(Self.entrySymbol) returned null",
                                hint: "return exportPluginEntry(MyPlugin()) from the entry function")
        }
        let object = Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue()
        guard let entry = object as? PluginEntry else {
            throw PruneKitError(.plugin, "\(path): its entry object (\(type(of: object))) is not a PruneKit PluginEntry to this host: the plugin has its own copy of the SDK",
                                hint: "depend on .product(name: \"PruneKit\", package: \"PruneKit\") from the SDK package; don't build the SDK's sources into the plugin")
        }
        let before = registry.entries.count
        do {
            try registry.registering(from: path, version: info.version, sdkVersion: tag.sdkVersion) {
                try entry.register(into: registry)
            }
        } catch let e as PruneKitError {
            throw PruneKitError(.plugin, "\(path): the plugin failed to register: \(e.message)",
                                hint: e.hint ?? "fix the plugin's register(into:)")
        } catch {
            throw PruneKitError(.plugin, "\(path): the plugin failed to register, throwing \(type(of: error)): \(error)",
                                hint: "plugins should throw PruneKitError; if this one does, it carries its own copy of the SDK")
        }
        let plugin = LoadedPlugin(file: path, name: info.name, version: info.version, tag: tag,
                                  entries: Array(registry.entries.dropFirst(before)))
        loadedByPath[path] = plugin
        order.append(path)
        return plugin
    }

    /// Loads every plugin on `searchPath`: the candidates of each directory (see
    /// ``candidates(in:)``), then each explicit file. Failures are collected and the
    /// others still load; a file reached twice is loaded once.
    public func loadAll(_ searchPath: PluginSearchPath = .standard()) -> PluginLoadReport {
        var report = PluginLoadReport()
        var seen = Set<String>()
        func attempt(_ file: String) {
            let key = Self.realPath(file) ?? file
            guard seen.insert(key).inserted else { return }
            do {
                if file.hasSuffix(".json") {
                    // A criterion written in C: a manifest naming its library (Plugins/Foreign).
                    try ForeignCriterion.loadManifest(at: file, into: registry)
                    report.manifests.append(file)
                } else {
                    report.loaded.append(try load(file: file))
                }
            } catch let e as PruneKitError {
                report.failures.append(PluginLoadFailure(file: file, error: e))
            } catch {
                report.failures.append(PluginLoadFailure(file: file, error: PruneKitError(.plugin, "\(file): \(error)")))
            }
        }
        for dir in searchPath.directories {
            do { try candidates(in: dir).forEach(attempt) } catch let e as PruneKitError {
                report.failures.append(PluginLoadFailure(file: dir, error: e))
            } catch {}
        }
        searchPath.files.forEach(attempt)
        return report
    }

    /// The plugin candidates in `directory`, sorted by name: regular files (or links to
    /// them) named `lib*.so` that carry a `.prunekit_abi` section. Skipped silently: the
    /// SDK itself (`libPruneKit.so`), test fixtures (`libPruneKitFixture*`), and every
    /// other library (no tag) or file that is not an ELF shared object.
    /// - Throws: ``PruneKitError`` `.plugin` if `directory` is not a readable directory.
    public func candidates(in directory: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw PruneKitError(.plugin, "plugin directory \(directory) does not exist or is not a directory",
                                hint: "check --plugin-dir and PRUNEKIT_PLUGIN_PATH")
        }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw PruneKitError(.plugin, "cannot list plugin directory \(directory): \(error.localizedDescription)")
        }
        return names.sorted().filter { name in
            name.hasPrefix("lib") && name.hasSuffix(".so") && name != Self.sdkLibraryName && !name.hasPrefix(Self.fixturePrefix)
        }.map { (directory as NSString).appendingPathComponent($0) }.filter { path in
            guard (try? Self.checkedRegularFile(path)) != nil,
                  let elf = try? ELFSharedObject(path: path) else { return false }
            return elf.section(named: PluginABITag.sectionName) != nil
        }
    }

    // MARK: The checks

    /// `file` resolved, if it names a regular file (symlinks followed).
    static func checkedRegularFile(_ file: String) throws -> String {
        var st = stat()
        guard stat(file, &st) == 0 else {
            throw PruneKitError(.plugin, "plugin \(file) does not exist",
                                hint: "check the path given with --plugin, or run `swift build` to build the plugins")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            let what = (st.st_mode & S_IFMT) == S_IFDIR ? "a directory" : "not a regular file"
            throw PruneKitError(.plugin, "plugin \(file) is \(what)",
                                hint: "give a shared library (lib<Name>.so) with --plugin, or a directory with --plugin-dir")
        }
        return realPath(file) ?? file
    }

    static func asPluginError(_ e: PruneKitError) -> PruneKitError {
        PruneKitError(.plugin, e.message, hint: e.hint)
    }

    static func checkTag(_ elf: ELFSharedObject, _ path: String) throws -> PluginABITag {
        guard let section = elf.section(named: PluginABITag.sectionName) else {
            throw PruneKitError(.plugin, "\(path) carries no PruneKit ABI tag (no \(PluginABITag.sectionName) section): it is not a PruneKit plugin, or was built without the tag",
                                hint: "add .product(name: \"PruneKitPluginABI\", package: \"PruneKit\") to the plugin target's dependencies and rebuild")
        }
        let tag: PluginABITag
        do { tag = try PluginABITag(bytes: elf.contents(of: section), file: path) } catch let e as PruneKitError { throw asPluginError(e) }
        let host = PluginABITag.host
        guard tag.sdkMajor == host.sdkMajor else {
            throw PruneKitError(.plugin, "\(path) was built against PruneKit SDK \(tag.sdkVersion); this host has SDK \(host.sdkVersion), another major version",
                                hint: "rebuild the plugin against SDK \(host.sdkMajor).x, or use a host with SDK \(tag.sdkMajor).x")
        }
        guard tag.sdkMinor <= host.sdkMinor else {
            throw PruneKitError(.plugin, "\(path) was built against PruneKit SDK \(tag.sdkVersion), newer than this host's SDK \(host.sdkVersion)",
                                hint: "update the host to SDK \(tag.sdkVersion) or later, or rebuild the plugin against SDK \(host.sdkVersion)")
        }
        guard tag.compiler == host.compiler else {
            throw PruneKitError(.plugin, "\(path) was built by another compiler: '\(tag.compiler)'; this host was built by '\(host.compiler)'",
                                hint: "rebuild the plugin with the same Swift toolchain as the host (swift --version)")
        }
        return tag
    }

    static func checkNoSDKCopy(_ elf: ELFSharedObject, _ path: String) throws {
        let hint = "depend on .product(name: \"PruneKit\", package: \"PruneKit\") from the SDK's own package (a .dynamic product); don't add the SDK's sources or target to the plugin's package"
        let own: [String], needed: [String]
        do {
            own = try elf.definedSymbols(withPrefix: sdkSymbolPrefix, limit: 3, where: isSDKTypeDescriptor)
            needed = try elf.neededLibraries()
        } catch let e as PruneKitError { throw asPluginError(e) }
        guard own.isEmpty else {
            throw PruneKitError(.plugin, "\(path) carries its own copy of the PruneKit SDK (it defines and exports the SDK's own type descriptors: \(own.joined(separator: ", ")))", hint: hint)
        }
        guard needed.contains(sdkLibraryName) else {
            throw PruneKitError(.plugin, "\(path) does not link \(sdkLibraryName) (it needs \(needed.isEmpty ? "no libraries" : needed.joined(separator: ", "))): it is not built against the shared SDK", hint: hint)
        }
    }

    /// Whether `symbol` is the module descriptor of the SDK (`$s8PruneKitMXM`) or the
    /// descriptor of a type declared in the SDK itself: `$s8PruneKit8RegistryCMn`,
    /// `$s8PruneKit9CriterionMp`, `$s8PruneKit6TensorV4ViewVMn` (nested). A copy of the SDK
    /// exports these; a plugin never does. Every other `$s8PruneKit…` symbol a plugin may
    /// define legitimately: the compiler's local helpers for SDK types it uses, and the
    /// members of its own extensions of SDK types (`$s8PruneKit6TensorV0aB6RandomE…`, where
    /// `…6RandomE` marks an extension declared in module PruneKitRandom), which this
    /// strict parse (plain `<length><identifier>` contexts only) never matches.
    public static func isSDKTypeDescriptor(_ symbol: String) -> Bool {
        let prefix = sdkSymbolPrefix
        guard symbol.hasPrefix(prefix) else { return false }
        var rest = Substring(symbol.dropFirst(prefix.count))
        if rest == "MXM" { return true }
        var contexts = 0
        while let first = rest.first, first.isASCII, first.isNumber, first != "0" {
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard let length = Int(digits), length > 0, rest.count >= digits.count + length else { return false }
            rest = rest.dropFirst(digits.count + length)
            contexts += 1
            if rest == "Mp" { return true }                         // a protocol descriptor
            guard let kind = rest.first, "CVO".contains(kind) else { return false }
            rest = rest.dropFirst()
            if rest == "Mn" { return true }                         // a class, struct or enum descriptor
        }
        return false
    }

    static func parseInfo(_ p: UnsafePointer<CChar>?, _ path: String) throws -> (name: String, version: String) {
        let bad = { (why: String) in
            PruneKitError(.plugin, "\(path): \(infoSymbol) \(why)",
                          hint: "return exportPluginInfo(name: \"…\", version: \"…\"): JSON {\"name\": …, \"version\": …}")
        }
        guard let p else { throw bad("returned null") }
        guard let object = try? JSONSerialization.jsonObject(with: Data(String(cString: p).utf8)) as? [String: Any],
              let name = object["name"] as? String, !name.isEmpty, let version = object["version"] as? String else {
            throw bad("did not return JSON with string fields \"name\" and \"version\"")
        }
        return (name, version)
    }

    static func realPath(_ path: String) -> String? {
        guard let r = realpath(path, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    /// The running executable's path (`/proc/self/exe`).
    static func executablePath() -> String? {
        realPath("/proc/self/exe") ?? Bundle.main.executablePath
    }
}

/// Makes the JSON that a plugin's `prunekit_plugin_info` returns (allocated once per
/// call and never freed: call it from that function only).
///
/// ```swift
/// @_cdecl("prunekit_plugin_info")
/// public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "random", version: "1.0.0") }
/// ```
public func exportPluginInfo(name: String, version: String) -> UnsafePointer<CChar> {
    let object: [String: String] = ["name": name, "version": version]
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return UnsafePointer(strdup(String(decoding: data, as: UTF8.self))!)
}
