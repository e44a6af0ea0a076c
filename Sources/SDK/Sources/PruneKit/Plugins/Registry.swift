import Foundation

/// The SDK's version. A plugin must be built against the same major version and a minor
/// version no newer than the host's.
public enum SDKVersion {
    public static let major = 1
    public static let minor = 0
    public static var string: String { "\(major).\(minor)" }
}

/// What kind of thing a plugin registers.
public enum PluginKind: String, Sendable, Codable, CaseIterable {
    case criterion, schedule, finetune
}

/// One registered criterion, schedule or finetuning strategy, and where it came from.
public struct RegistryEntry: Sendable {
    public let id: String
    public let kind: PluginKind
    public let summary: String
    public let options: [OptionSpec]
    /// The plugin's own version (from its info symbol), or the SDK's for built-ins.
    public let version: String
    /// The file it was loaded from (`built-in` for code linked into the process).
    public let file: String
    /// The SDK version it was built against.
    public let sdkVersion: String
}

/// Every criterion, schedule and finetuning strategy the process knows, by id.
///
/// Plugins add to it from their entry point (``PluginEntry/register(into:)``). An id
/// registered twice is refused with an error that names both sources.
public final class Registry {
    /// The process's registry: the one the plugin loader fills.
    public static let shared = Registry()

    private let lock = NSLock()
    /// Criteria by id: their options and how to make one (a type's `init(options:)`, or a
    /// factory for criteria that are not Swift types of their own, such as C criteria).
    private var criteria: [String: Factory<any Criterion>] = [:]
    private var schedules: [String: Factory<any Schedule>] = [:]
    private var finetunes: [String: Factory<any FinetuneStrategy>] = [:]

    /// How to make one registered thing: its options and a function of checked values.
    private struct Factory<Made> {
        let options: [OptionSpec]
        let make: (OptionValues) throws -> Made

        func make(_ id: String, _ arguments: [String]) throws -> Made {
            try make(OptionValues(parsing: arguments, specs: options, owner: id))
        }
    }
    private var entryList: [RegistryEntry] = []
    /// The source and version that registrations are attributed to while a plugin registers.
    private var currentSource = (file: "built-in", version: SDKVersion.string, sdk: SDKVersion.string)

    public init() {}

    /// Everything registered, in registration order.
    public var entries: [RegistryEntry] { lock.lock(); defer { lock.unlock() }; return entryList }

    /// The ids of one kind, sorted.
    public func ids(of kind: PluginKind) -> [String] {
        entries.filter { $0.kind == kind }.map(\.id).sorted()
    }

    public func register<C: Criterion & OptionConstructible>(criterion type: C.Type) throws {
        try register(criterion: type.id, summary: type.summary, options: type.options) { try type.init(options: $0) }
    }

    /// Registers a criterion that is not a Swift type of its own: `make` creates an
    /// instance from options checked against `options`. Used for criteria whose behaviour
    /// comes from data, such as C criteria loaded from a manifest
    /// (``ForeignCriterion/loadManifest(at:into:)``).
    public func register(criterion id: String, summary: String, options: [OptionSpec],
                         factory make: @escaping (OptionValues) throws -> any Criterion) throws {
        try add(id, .criterion, summary, options) { criteria[id] = Factory(options: options, make: make) }
    }

    public func register<S: Schedule & OptionConstructible>(schedule type: S.Type) throws {
        try add(type.id, .schedule, type.summary, type.options) {
            schedules[type.id] = Factory(options: type.options) { try type.init(options: $0) }
        }
    }

    public func register<F: FinetuneStrategy & OptionConstructible>(finetune type: F.Type) throws {
        try add(type.id, .finetune, type.summary, type.options) {
            finetunes[type.id] = Factory(options: type.options) { try type.init(options: $0) }
        }
    }

    private func add(_ id: String, _ kind: PluginKind, _ summary: String, _ options: [OptionSpec],
                     _ store: () -> Void) throws {
        lock.lock(); defer { lock.unlock() }
        guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw PruneKitError(.plugin, "\(currentSource.file) registers the \(kind.rawValue) id '\(id)': ids use letters, digits, '-', '_' and '.'")
        }
        if let existing = entryList.first(where: { $0.id == id && $0.kind == kind }) {
            throw PruneKitError(.plugin, "the \(kind.rawValue) '\(id)' is registered twice: by \(existing.file) and by \(currentSource.file)",
                                hint: "remove one of the two plugins, or give one of them another id")
        }
        store()
        entryList.append(RegistryEntry(id: id, kind: kind, summary: summary, options: options,
                                       version: currentSource.version, file: currentSource.file, sdkVersion: currentSource.sdk))
    }

    /// Runs `body` with registrations attributed to `file`; used by the plugin loader.
    /// If `body` throws, whatever it registered is removed again.
    public func registering(from file: String, version: String, sdkVersion: String, _ body: () throws -> Void) throws {
        lock.lock()
        let saved = currentSource, before = entryList.count
        currentSource = (file, version, sdkVersion)
        lock.unlock()
        defer { lock.lock(); currentSource = saved; lock.unlock() }
        do {
            try body()
        } catch {
            lock.lock()
            for e in entryList[before...] {
                switch e.kind {
                case .criterion: criteria[e.id] = nil
                case .schedule: schedules[e.id] = nil
                case .finetune: finetunes[e.id] = nil
                }
            }
            entryList.removeSubrange(before...)
            lock.unlock()
            throw error
        }
    }

    /// A criterion instance by id, with `key=value` options.
    /// - Throws: ``PruneKitError`` for an unknown id (listing the known ones) or bad options.
    public func criterion(_ id: String, options: [String] = []) throws -> any Criterion {
        lock.lock(); let factory = criteria[id]; lock.unlock()
        guard let factory else { throw unknown(id, .criterion) }
        return try factory.make(id, options)
    }

    public func schedule(_ id: String, options: [String] = []) throws -> any Schedule {
        lock.lock(); let factory = schedules[id]; lock.unlock()
        guard let factory else { throw unknown(id, .schedule) }
        return try factory.make(id, options)
    }

    public func finetune(_ id: String, options: [String] = []) throws -> any FinetuneStrategy {
        lock.lock(); let factory = finetunes[id]; lock.unlock()
        guard let factory else { throw unknown(id, .finetune) }
        return try factory.make(id, options)
    }

    private func unknown(_ id: String, _ kind: PluginKind) -> PruneKitError {
        let known = ids(of: kind)
        return PruneKitError(.invalidArgument, "unknown \(kind.rawValue) '\(id)'",
                             hint: known.isEmpty ? "no \(kind.rawValue) plugins are loaded: check the plugin directories (prunekit plugins)"
                                 : "known: \(known.joined(separator: ", "))")
    }
}

/// What a plugin library hands the host: an object that registers the plugin's
/// criteria, schedules and finetuning strategies.
///
/// A plugin exports a C symbol `prunekit_plugin_entry` returning a retained instance:
///
/// ```swift
/// final class MyPlugin: PluginEntry {
///     func register(into registry: Registry) throws { try registry.register(criterion: MyCriterion.self) }
/// }
/// @_cdecl("prunekit_plugin_entry")
/// public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(MyPlugin()) }
/// ```
public protocol PluginEntry: AnyObject {
    /// Registers everything the plugin provides. An error refuses the whole plugin.
    func register(into registry: Registry) throws
}

/// Passes a plugin's entry object to the host across the C boundary (retained once).
public func exportPluginEntry(_ entry: PluginEntry) -> UnsafeMutableRawPointer {
    Unmanaged.passRetained(entry as AnyObject).toOpaque()
}
