// Test fixture: registers the criterion id `random`, which the Random plugin already
// takes, so the registry must refuse it naming both files. Loaded only by tests.
import PruneKit

struct FixtureDuplicateCriterion: Criterion, OptionConstructible {
    static let id = "random"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { [] }
}

final class DuplicatePlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: FixtureDuplicateCriterion.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "fixture-duplicate", version: "0.0.1") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(DuplicatePlugin()) }
