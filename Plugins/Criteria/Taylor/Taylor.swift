import PruneKit

/// Ranks feature maps by the first-order Taylor estimate of the change in loss when a
/// feature map is removed (set to zero), ℓ2-normalised per layer so that layers can be
/// compared, and prunes the lowest over the whole network.
///
/// Formula, for channel c of a layer with feature map z `[C, N, H, W]` (M = H·W positions):
///
///     Θ_c = 1/N_total · Σ_n | 1/M · Σ_{h,w} z[c, n, h, w] · ∂L_n/∂z[c, n, h, w] |
///     Θ̂_c = Θ_c / ‖Θ‖₂ − λ · F_c
///
/// - z is ``LayerBatch/activations``: the layer's output after its BatchNorm and ReLU
///   where those follow directly — the feature map after the non-linearity, which is what
///   the paper prunes. Where no ReLU follows directly (a ResNet block's second convolution,
///   the classifier) z is the BatchNorm's or the layer's own output. For a linear layer
///   (`[N, F]`) M = 1.
/// - ∂L_n/∂z is the gradient of example n's own cross-entropy. The SDK's calibration loss
///   is the mean over the batch, C = 1/N · Σ_n L_n, so ∂C/∂z carries a factor 1/N; each
///   batch's terms are multiplied by its N to undo it. Each example then counts once
///   whatever the batch size, and Θ does not depend on how the examples are split into
///   batches. After the ℓ2 normalisation this only matters when batches differ in size (a
///   short last batch), which it would otherwise over-weight.
/// - The mean over examples is over all calibration batches together.
/// - If every Θ_c of a layer is 0 (no gradient reaches it) the layer's Θ̂ is 0 − λ·F_c.
/// - λ is the option `flops_penalty` (default 0; the paper uses 10⁻³) and F_c
///   the FLOPs of one example's forward pass through this layer that produce channel c,
///   `layer.flops / layer.outputs` (2 per multiply–accumulate), in MFLOPs (10⁶). The paper
///   does not state its unit; in MFLOPs, λ = 10⁻³ lowers vgg-small's convolutions (MNIST) by
///   1.4·10⁻⁵ to 4.5·10⁻⁴, small beside normalised scores of order 1/√C: raise λ to trade
///   more accuracy for FLOPs. F_c counts this layer's FLOPs only, not those saved in the
///   next layer, whose view the criterion does not get.
///   F_c is the same for every channel of a layer, so the penalty changes the ranking only
///   across layers (global selection), as in the paper.
///
/// Scope: global — the paper removes the least important feature map of the whole network
/// at each step; the per-layer ℓ2 normalisation exists to make that comparison fair.
///
/// Deviations from the paper: calibration runs in evaluation mode (BatchNorm uses its
/// running statistics, not the batch's); the paper gathers the criterion during
/// fine-tuning in training mode and removes one feature map at a time between fine-tuning
/// updates — here one scoring pass over the calibration batches ranks all
/// channels, and iteration is the schedule's job.
///
/// Cost: one pass over each batch's activations and gradients, O(C · N · H · W); state O(C).
///
/// References: Molchanov, Tyree, Karras, Aila & Kautz, "Pruning Convolutional Neural
/// Networks for Resource Efficient Inference", ICLR 2017 (the Taylor criterion, its
/// per-layer ℓ2 normalisation, and the FLOPs regularisation).
public struct Taylor: Criterion, OptionConstructible {
    public static let id = "taylor"
    public static let summary = "|mean over h,w of z·∂L/∂z| averaged over examples, ℓ2-normalised per layer, global (Molchanov et al. 2017)"
    public static let options: [OptionSpec] = [
        .double("flops_penalty", default: 0,
                help: "λ: subtract λ · (MFLOPs per example of the layer per output channel) from each normalised score"),
    ]
    public let granularity = Granularity.channel
    public let evidence: Evidence = [.activations, .activationGradients]
    public let preferredScope = SelectionSettings.Scope.global
    public let flopsPenalty: Double

    /// Per channel, Σ_n |1/M · Σ_{h,w} z · ∂L_n/∂z| over the examples seen (in Double); and
    /// the examples seen.
    public struct State: Sendable {
        public var sums: [Double]
        public var examples = 0
    }

    public init(options: OptionValues) throws {
        flopsPenalty = options.double("flops_penalty")
        guard flopsPenalty >= 0 else {
            throw PruneKitError(.invalidArgument, "taylor: flops_penalty must be ≥ 0, got \(flopsPenalty)",
                                hint: "the paper uses 0.001; 0 turns the penalty off")
        }
    }

    public func makeState(for layer: PrunableLayer) -> State {
        State(sums: Array(repeating: 0, count: layer.outputs))
    }

    public func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {
        guard let z = batch.activations, let g = batch.activationGradients else {
            throw PruneKitError(.plugin, "taylor: activations and their gradients were not both gathered for layer '\(layer.path)'")
        }
        guard z.shape == g.shape else {
            throw PruneKitError(.shapeMismatch, "taylor: layer '\(layer.path)' activation \(z.shape) and gradient \(g.shape) differ")
        }
        let layout = try ActivationLayout(of: z, layer: layer, criterion: "taylor")
        let (channels, examples, positions) = (layout.channels, layout.examples, layout.positions)
        var sums = [Double](repeating: 0, count: channels)
        z.withUnsafeBufferPointer { zp in
            g.withUnsafeBufferPointer { gp in
                if layout.isChannelMajor {
                    taylorSumsChannelMajor(zp, gp, channels: channels, examples: examples, positions: positions, into: &sums)
                } else {
                    taylorSumsRowMajor(zp, gp, examples: examples, features: channels, into: &sums)
                }
            }
        }
        // Undo the 1/N of the batch-mean loss: each example's own ∂L_n/∂z.
        let scale = Double(examples)
        guard state.sums.count == channels else {
            throw PruneKitError(.shapeMismatch, "taylor: layer '\(layer.path)' has \(state.sums.count) channels but its activation \(channels)")
        }
        for c in 0..<channels { state.sums[c] += sums[c] * scale }
        state.examples += examples
    }

    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        let n = state.examples
        guard n > 0, state.sums.count == layer.outputs else {
            throw PruneKitError(.plugin, "taylor: no activations were observed for layer '\(layer.path)'")
        }
        let theta = state.sums.map { $0 / Double(n) }
        let norm = theta.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard norm.isFinite else {   // NaN fails `norm > 0` below and would read as all-zero scores
            throw PruneKitError(.numerical, "taylor: the accumulated activation·gradient of layer '\(layer.path)' is not finite",
                                hint: "the calibration evidence held NaN or infinite values: check the model's weights and the data")
        }
        let penalty = flopsPenalty * Double(layer.flops) / Double(max(layer.outputs, 1)) / 1e6
        return theta.map { Float((norm > 0 ? $0 / norm : 0) - penalty) }
    }
}

/// sums[c] += Σ_n |1/M · Σ_m z[c, n, m] · g[c, n, m]| for channel-major `[C, N, M]` tensors.
/// Each (c, n) block of M values is contiguous and is reduced eight lanes at a time.
func taylorSumsChannelMajor(_ z: UnsafeBufferPointer<Float>, _ g: UnsafeBufferPointer<Float>,
                            channels: Int, examples: Int, positions: Int, into sums: inout [Double]) {
    assert(z.count == channels * examples * positions && g.count == z.count && sums.count == channels)
    guard let zb = z.baseAddress, let gb = g.baseAddress else { return }
    let m = positions, m8 = positions & ~7
    let inv = 1 / Double(positions)
    for c in 0..<channels {
        var total = 0.0
        for n in 0..<examples {
            let zp = zb + (c * examples + n) * m, gp = gb + (c * examples + n) * m
            var acc = SIMD8<Float>()
            var i = 0
            while i < m8 {
                let a = UnsafeRawPointer(zp + i).loadUnaligned(as: SIMD8<Float>.self)
                let b = UnsafeRawPointer(gp + i).loadUnaligned(as: SIMD8<Float>.self)
                acc += a * b   // not addProduct: without FMA in the baseline ISA it is a call per lane
                i += 8
            }
            var s = acc.sum()
            while i < m { s += zp[i] * gp[i]; i += 1 }
            total += abs(Double(s) * inv)
        }
        sums[c] += total
    }
}

/// sums[f] += Σ_n |z[n, f] · g[n, f]| for row-major `[N, F]` tensors (M = 1).
func taylorSumsRowMajor(_ z: UnsafeBufferPointer<Float>, _ g: UnsafeBufferPointer<Float>,
                        examples: Int, features: Int, into sums: inout [Double]) {
    assert(z.count == examples * features && g.count == z.count && sums.count == features)
    for n in 0..<examples {
        let base = n * features
        for f in 0..<features { sums[f] += Double(abs(z[base + f] * g[base + f])) }
    }
}

final class TaylorPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: Taylor.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "taylor", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(TaylorPlugin()) }
