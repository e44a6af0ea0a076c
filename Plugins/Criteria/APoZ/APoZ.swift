import PruneKit

/// Ranks the output channels of each layer by how often their ReLU output is non-zero
/// (Average Percentage of Zeros, APoZ) and prunes the same fraction in every layer.
///
/// Formula: APoZ_c = (number of zeros in channel c's ReLU output) / (examples · H · W),
/// counted over every example and spatial position of every calibration batch (zeros and
/// totals are accumulated as integers; batches are not averaged one by one, so a short
/// last batch weighs by its size). The activation is ``LayerBatch/activations``: the
/// layer's output after its BatchNorm and ReLU where those follow directly,
/// `[C, N, H, W]` for a convolution, `[N, F]` for a linear layer (H = W = 1).
///
/// Score: **1 − APoZ_c**, the fraction of positions where the channel fires, in [0, 1].
/// The paper prunes the highest APoZ first; 1 − APoZ gives exactly the same order (higher
/// kept, as every criterion here) and, unlike −APoZ, is a readable non-negative quantity.
/// It is computed as (total − zeros) / total in `Double`, so it is exact to `Float` rounding.
///
/// Layers whose activation is not a ReLU output (a negative value was seen in any batch):
/// APoZ is not defined there. For the classifier (the last prunable layer, whose outputs
/// are the classes, kept whole by default selection) every score is 0 — a constant that
/// ranks nothing. For any other layer (a ResNet block's second convolution, whose ReLU
/// follows the residual sum and so is not its own) scoring throws, naming the layer:
/// returning constant scores there would let a selection prune arbitrary channels silently.
///
/// Scope: per layer, as the paper trims layer by layer.
///
/// Deviation from the paper: the paper computes APoZ on a validation set of the trained
/// network; here it is computed on the calibration batches (``CalibrationSettings``), in
/// evaluation mode (BatchNorm running statistics).
///
/// Cost: one pass over each batch's activations, O(C · N · H · W); state O(C).
///
/// References: Hu, Peng, Tai & Tang, "Network Trimming: A Data-Driven Neuron Pruning
/// Approach towards Efficient Deep Architectures", arXiv:1607.03250, 2016.
public struct APoZ: Criterion, OptionConstructible {
    public static let id = "apoz"
    public static let summary = "1 − fraction of zeros after the ReLU per channel, the same fraction per layer (Hu et al. 2016)"
    public let granularity = Granularity.channel
    public let evidence: Evidence = .activations
    public let preferredScope = SelectionSettings.Scope.perLayer

    /// Per channel, the exact zeros seen; the positions seen per channel; whether any
    /// value was negative (then the activation is not a ReLU's output).
    public struct State: Sendable {
        public var zeros: [Int]
        public var positions = 0
        public var sawNegative = false
    }

    public init(options: OptionValues) {}

    public func makeState(for layer: PrunableLayer) -> State {
        State(zeros: Array(repeating: 0, count: layer.outputs))
    }

    public func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {
        guard let a = batch.activations else {
            throw PruneKitError(.plugin, "apoz: no activations were gathered for layer '\(layer.path)'")
        }
        let layout = try ActivationLayout(of: a, layer: layer, criterion: "apoz")
        let (channels, perChannel) = (layout.channels, layout.perChannel)
        var zeros = [Int](repeating: 0, count: channels)
        var negative = false
        a.withUnsafeBufferPointer { x in
            negative = countZeros(x, channels: channels, perChannel: perChannel, channelMajor: layout.isChannelMajor,
                                  into: &zeros)
        }
        guard state.zeros.count == channels else {
            throw PruneKitError(.shapeMismatch, "apoz: layer '\(layer.path)' has \(state.zeros.count) channels but its activation \(channels)")
        }
        for c in 0..<channels { state.zeros[c] += zeros[c] }
        state.positions += perChannel
        state.sawNegative = state.sawNegative || negative
    }

    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        let total = state.positions
        guard total > 0, state.zeros.count == layer.outputs else {
            throw PruneKitError(.plugin, "apoz: no activations were observed for layer '\(layer.path)'")
        }
        if state.sawNegative {
            if layer.isClassifier { return [Float](repeating: 0, count: layer.outputs) }
            throw PruneKitError(.invalidArgument,
                                "apoz: the activation of layer '\(layer.path)' has negative values, so it is not the output of a ReLU; APoZ is defined only on ReLU outputs",
                                hint: "use apoz on models where a ReLU (after BatchNorm, if any) directly follows each pruned layer, or another criterion (taylor, l1-filter)")
        }
        return (0..<layer.outputs).map { c in
            Float(Double(total - state.zeros[c]) / Double(total))
        }
    }
}

/// Adds each channel's count of exact zeros to `zeros`; returns whether a negative value
/// was seen. `x` is `[C, perChannel]` (channel-major) or `[perChannel, C]` (row-major).
func countZeros(_ x: UnsafeBufferPointer<Float>, channels: Int, perChannel: Int, channelMajor: Bool,
                into zeros: inout [Int]) -> Bool {
    assert(x.count == channels * perChannel && zeros.count == channels)
    var negative = false
    if channelMajor {
        for c in 0..<channels {
            var z = 0
            let base = c * perChannel
            for i in base..<(base + perChannel) {
                let v = x[i]
                z &+= v == 0 ? 1 : 0
                negative = negative || v < 0
            }
            zeros[c] += z
        }
    } else {
        for n in 0..<perChannel {
            let base = n * channels
            for c in 0..<channels {
                let v = x[base + c]
                zeros[c] &+= v == 0 ? 1 : 0
                negative = negative || v < 0
            }
        }
    }
    return negative
}

final class APoZPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: APoZ.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "apoz", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(APoZPlugin()) }
