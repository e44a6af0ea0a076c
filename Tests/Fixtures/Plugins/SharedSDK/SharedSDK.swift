// Test fixture: proves that host and plugin share one copy of the SDK. It registers a
// criterion whose `scores` throws a PruneKitError (the host must catch it by type), and
// exports `prunekit_fixture_make_criterion`, a criterion object made inside the plugin
// (the host must cast it with `as? any Criterion`). Loaded only by tests.
import PruneKit

/// Thrown through the plugin boundary: the message the host checks.
let fixtureMessage = "thrown by the shared-SDK fixture"

final class FixtureSharedCriterion: Criterion, OptionConstructible {
    static let id = "fixture-shared-sdk"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        throw PruneKitError(.numerical, fixtureMessage, hint: "expected by the test")
    }
}

final class SharedSDKPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: FixtureSharedCriterion.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "fixture-shared-sdk", version: "0.0.1") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(SharedSDKPlugin()) }

/// A criterion instance created in the plugin, retained once, for the host to cast.
@_cdecl("prunekit_fixture_make_criterion")
public func prunekitFixtureMakeCriterion() -> UnsafeMutableRawPointer {
    Unmanaged.passRetained(FixtureSharedCriterion(options: OptionValues(defaultsOf: []))).toOpaque()
}
