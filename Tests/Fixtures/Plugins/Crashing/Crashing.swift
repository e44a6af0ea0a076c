// Test fixture: criteria that crash the process while scoring, and one that throws, so
// the harness's child-process runner can be tested against them. Loaded only by tests
// (--plugin); directory scans skip libPruneKitFixture*.so.
import Foundation
import PruneKit

/// Reads through a null-page pointer in `scores`: SIGSEGV.
struct FixtureSegfaultCriterion: Criterion, OptionConstructible {
    static let id = "fixture-segfault"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        // An address in the unmapped first page, computed at run time so the read can't be folded away.
        let address = getpid() >= 0 ? 8 : 16
        let value = UnsafePointer<Float>(bitPattern: address)!.pointee
        return [Float](repeating: value, count: layer.outputs * layer.fanIn)
    }
}

/// Calls abort() in `scores`: SIGABRT.
struct FixtureAbortCriterion: Criterion, OptionConstructible {
    static let id = "fixture-abort"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        abort()
    }
}

/// Throws a PruneKitError from `scores`.
struct FixtureThrowingScoresCriterion: Criterion, OptionConstructible {
    static let id = "fixture-throws"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        throw PruneKitError(.plugin, "the fixture criterion refuses to score")
    }
}

/// Returns NaN scores.
struct FixtureNaNCriterion: Criterion, OptionConstructible {
    static let id = "fixture-nan"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        [Float](repeating: .nan, count: layer.outputs * layer.fanIn)
    }
}

/// Channel criteria that need no data, so that `compare` scores them while it plans
/// (``ChannelRankingProbe``): one segfaults, one throws, one returns NaN.
struct FixtureChannelSegfaultCriterion: Criterion, OptionConstructible {
    static let id = "fixture-channel-segfault"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        let address = getpid() >= 0 ? 8 : 16
        let value = UnsafePointer<Float>(bitPattern: address)!.pointee
        return [Float](repeating: value, count: layer.outputs)
    }
}

struct FixtureChannelThrowingCriterion: Criterion, OptionConstructible {
    static let id = "fixture-channel-throws"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        throw PruneKitError(.plugin, "the fixture channel criterion refuses to score")
    }
}

struct FixtureChannelNaNCriterion: Criterion, OptionConstructible {
    static let id = "fixture-channel-nan"
    let granularity = Granularity.channel
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        [Float](repeating: .nan, count: layer.outputs)
    }
}

/// Never returns from `scores`: a plugin that hangs.
struct FixtureHangingCriterion: Criterion, OptionConstructible {
    static let id = "fixture-hangs"
    let granularity = Granularity.weight
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        while true { sleep(60) }
    }
}

final class CrashingPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: FixtureSegfaultCriterion.self)
        try registry.register(criterion: FixtureAbortCriterion.self)
        try registry.register(criterion: FixtureThrowingScoresCriterion.self)
        try registry.register(criterion: FixtureNaNCriterion.self)
        try registry.register(criterion: FixtureChannelSegfaultCriterion.self)
        try registry.register(criterion: FixtureChannelThrowingCriterion.self)
        try registry.register(criterion: FixtureChannelNaNCriterion.self)
        try registry.register(criterion: FixtureHangingCriterion.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "fixture-crashing", version: "0.0.1") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(CrashingPlugin()) }
