// Test fixture: registers a criterion, then throws a PruneKitError from its entry, so the
// loader must refuse it and roll the registration back. Loaded only by tests (--plugin).
import PruneKit

struct FixtureThrowingCriterion: Criterion, OptionConstructible {
    static let id = "fixture-throwing"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { [] }
}

final class ThrowingPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: FixtureThrowingCriterion.self)
        throw PruneKitError(.plugin, "the throwing fixture refuses to register", hint: "this fixture always fails")
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "fixture-throwing", version: "0.0.1") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(ThrowingPlugin()) }
