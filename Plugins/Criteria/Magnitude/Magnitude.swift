import PruneKit

/// Magnitude pruning: each weight scored by |w|.
///
/// - `global-magnitude`: one threshold over all prunable layers (Han et al. 2015, as
///   evaluated in Blalock et al. 2020).
/// - `layer-magnitude`: the same fraction pruned in every layer (Blalock et al. 2020).
///
/// Formula: s(w) = |w|. No data needed. Cost: one pass over the weights.
///
/// References:
/// - Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient
///   Neural Networks", NeurIPS 2015.
/// - Blalock, Gonzalez Ortiz, Frankle & Guttag, "What is the State of Neural Network
///   Pruning?", MLSys 2020.
public struct GlobalMagnitude: MagnitudeScoring {
    public static let id = "global-magnitude"
    public static let summary = "|w|, one threshold over all prunable layers (Han et al. 2015)"
    public let granularity = Granularity.weight
    public let preferredScope = SelectionSettings.Scope.global

    public init(options: OptionValues) {}
}

/// `layer-magnitude`: |w| with the same fraction pruned in every layer. See ``GlobalMagnitude``.
public struct LayerMagnitude: MagnitudeScoring {
    public static let id = "layer-magnitude"
    public static let summary = "|w|, the same fraction in every layer (Blalock et al. 2020)"
    public let granularity = Granularity.weight
    public let preferredScope = SelectionSettings.Scope.perLayer

    public init(options: OptionValues) {}
}

/// The scoring both magnitude criteria share: |w|, whole or chunk by chunk (the chunked
/// path lets selection stream over the weights without materialising all scores).
public protocol MagnitudeScoring: Criterion, OptionConstructible {}

extension MagnitudeScoring {
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        magnitudes(layer.weights)
    }

    public var scoresInChunks: Bool { true }

    public func scores(for layer: PrunableLayer, context: ScoringContext, chunk: Range<Int>,
                       into buffer: UnsafeMutableBufferPointer<Float>) throws {
        magnitudes(layer.weights, chunk, into: buffer)
    }
}

func magnitudes(_ w: Tensor) -> [Float] {
    w.withUnsafeBufferPointer { p in p.map { abs($0) } }
}

/// |w| of the weights `range` (row order) into `buffer`, computed on the fly: streaming
/// selection reads magnitudes chunk by chunk and never holds a copy of the weights.
func magnitudes(_ w: Tensor, _ range: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) {
    precondition(range.lowerBound >= 0 && range.upperBound <= w.count && buffer.count >= range.count)
    w.withUnsafeBufferPointer { p in
        let src = p.baseAddress! + range.lowerBound, dst = buffer.baseAddress!
        for i in 0..<range.count { dst[i] = Float(bitPattern: src[i].bitPattern & 0x7fff_ffff) }
    }
}

final class MagnitudePlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: GlobalMagnitude.self)
        try registry.register(criterion: LayerMagnitude.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "magnitude", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(MagnitudePlugin()) }
