import PruneKit

/// Ranks the output channels of a layer by how little the next layer's output changes
/// without them (a greedy choice on sampled outputs), then rescales the next layer's
/// weights for the kept channels by least squares.
///
/// Formula. Let layer i+1 (the next prunable layer) read layer i's C channels. At one of
/// its outputs — example n, output channel k, position (h, w) for a convolution — its
/// pre-bias value is ŷ = y − b = Σ_c x̂_c, where the contribution of input channel c is
///
///     x̂_c = Σ_{i,j} W[k, c, i, j] · X[c, n, h·s − p + i, w·s − p + j]     (convolution)
///     x̂_c = Σ_{f ∈ block c} W[k, f] · X[n, f]                                 (linear)
///
/// (a linear next layer after a flatten reads channel c as the contiguous block of F/C
/// features; a grouped convolution's channel contributes only to its own group's outputs).
/// Over m sampled outputs, with X̂ the `[m, C]` matrix of contributions:
///
/// 1. **Greedy selection** (Algorithm 1 of the paper): T = ∅; repeatedly add to T the
///    channel c ∉ T minimising Σ_samples (Σ_{j ∈ T ∪ {c}} x̂_j)². The paper stops at
///    |T| = the number to remove; here the greedy runs to |T| = C − 1 and records the
///    order, and channel removed t-th (t = 1, 2, …) scores t / C, the last one 1. Because
///    the greedy never looks at its stopping point, its set after k steps is the same for
///    every target, so pruning the k lowest scores (what per-layer selection does) removes
///    exactly the set the paper's algorithm would build for k. Only the Gram matrix
///    G = X̂ᵀX̂ `[C, C]` is needed: Σ(Σ_{T∪{c}} x̂)² = const + 2·Σ_{j∈T} G[j, c] + G[c, c].
/// 2. **Least-squares rescaling** (§3.3 of the paper), in
///    ``adjustWeights(of:keeping:model:state:context:)`` once the kept set S is known:
///    ŵ = argmin Σ_samples (ŷ − Σ_{c∈S} ŵ_c x̂_c)² + λ‖ŵ − 1‖², i.e.
///    (G_SS + λI) ŵ = G_S,all · 1 + λ·1 (since X̂ᵀŷ = G·1), solved by Cholesky in double
///    precision with λ = `ridge` × mean(diag G_SS). The next layer's weights of kept input
///    channel c are multiplied by ŵ_c (`W[:, c, :, :]` of a convolution, channel c's
///    column block of a linear layer) and those of removed channels set to 0, so the next
///    layer computes exactly Σ_{c∈S} ŵ_c x̂_c + b. Its bias is unchanged (the paper fits ŷ = y − b).
///
/// Sampling: `samples-per-image` outputs per calibration image (the paper's 10 random
/// locations per image), each a uniformly random (output channel, position) of the next
/// layer; drawn from a generator seeded by the layer's path and the batch's number, so a
/// calibration seed gives the same samples every run. `samples-per-image=0` uses every
/// output of every image instead (exact, and what the reference tests use). With the
/// default calibration (10 batches × 64 images) that is 6,400 samples per layer.
///
/// Options:
/// - `samples-per-image` (default 10, as in the paper; 0 = every output);
/// - `ridge` (default 1e-6): λ relative to the mean diagonal of G_SS, for a stable solve
///   when kept channels are (nearly) collinear on the samples; 0 = plain least squares;
/// - `rescale` (default true): false keeps the greedy selection and leaves the next layer alone.
///
/// Deviations from the paper, and why:
/// - The ridge pulls ŵ toward 1 (the unscaled weights), not toward 0, so a kept channel
///   the samples do not determine (e.g. always zero on them) keeps its weights. The paper
///   solves plain least squares; at λ = 1e-6 relative the two agree to ~1e-6.
/// - The paper prunes one layer at a time and fine-tunes in between, collecting samples
///   from the network pruned so far. `Model.prune` scores every layer on the unpruned
///   network in one pass, so the samples of layer i+1 do not reflect the pruning of layer
///   i; prune one layer per step (exclude the others) to follow the paper exactly.
/// - Layers that feed no prunable layer directly (the classifier; the last convolution of
///   a residual block, whose output meets the shortcut) have nothing for ThiNet to
///   reconstruct, and the paper leaves them unpruned. A criterion cannot take a layer out
///   of the selection, so these are ranked by the ℓ1 norm of their filters (Li et al.
///   2017) and never rescaled; exclude them to follow the paper.
///
/// References: Luo, Wu & Lin, "ThiNet: A Filter Level Pruning Method for Deep Neural
/// Network Compression", ICCV 2017 (and the authors' Caffe code for the least-squares
/// step). Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017 (the fallback).
///
/// Cost: per batch and layer, m·(C/g)·kh·kw for the contributions and m·C² (one BLAS
/// product) for the Gram matrix; O(C²) for the greedy; O(|S|³) for the solve.
public struct ThiNet: Criterion, OptionConstructible {
    public static let id = "thinet"
    public static let summary = "greedy channel selection reconstructing the next layer, then least-squares rescaling (Luo et al. 2017)"
    public static let options: [OptionSpec] = [
        .int("samples-per-image", default: 10,
             help: "random outputs (channel, position) of the next layer sampled per calibration image, as in the paper; 0 = every output (small layers only)"),
        .double("ridge", default: 1e-6, help: "ridge λ of the rescaling, relative to the mean diagonal of the kept channels' Gram matrix"),
        .bool("rescale", default: true, help: "rescale the next layer's weights by least squares after selection"),
    ]

    public let granularity = Granularity.channel
    public let evidence: Evidence = [.nextLayerInputs]
    public let preferredScope = SelectionSettings.Scope.perLayer

    public let samplesPerImage: Int
    public let ridge: Double
    public let rescale: Bool

    /// - Throws: ``PruneKitError`` `.invalidArgument` for a negative sample count or ridge.
    public init(options: OptionValues) throws {
        samplesPerImage = options.int("samples-per-image")
        ridge = options.double("ridge")
        rescale = options.bool("rescale")
        guard samplesPerImage >= 0 else {
            throw PruneKitError(.invalidArgument, "option 'samples-per-image' of 'thinet' must be ≥ 0 (0 = every output), got \(samplesPerImage)")
        }
        guard ridge >= 0 else {
            throw PruneKitError(.invalidArgument, "option 'ridge' of 'thinet' must be ≥ 0, got \(ridge)")
        }
    }

    /// What ThiNet gathers for one layer: the Gram matrix of the sampled per-channel
    /// contributions, summed over the batches in Double (each batch's own `[C, C]` product
    /// is a float32 GEMM over its samples), and the next layer it reconstructs.
    public struct State: Sendable {
        /// Row-major `[C, C]`; empty until a batch is observed.
        public var gram: [Double] = []
        public var batches = 0
        public var samples = 0
        /// The dotted path of the next prunable layer, whose inputs were sampled.
        public var nextLayer: String?
    }

    public func makeState(for layer: PrunableLayer) -> State { State() }

    /// Samples the next layer's outputs in this batch and adds the Gram matrix of their
    /// per-channel contributions `[C, C]` to `state`.
    /// - Throws: ``PruneKitError`` `.shapeMismatch` if the next layer's input does not fit
    ///   the layer's channel count.
    public func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {
        guard let x = batch.nextLayerInputs, let next = batch.nextLayer else { return }
        let channels = layer.outputs
        let batchNumber = state.batches
        var rng = RandomGenerator(seed: UInt64(batchNumber), stream: "thinet:\(layer.path)")
        let contributions = try thinetContributions(input: x, nextLayer: next, channels: channels,
                                                    samplesPerImage: samplesPerImage, rng: &rng)
        let m = contributions.shape[0]
        var gram = Tensor(shape: [channels, channels])
        if m > 0 {
            contributions.withUnsafeBufferPointer { a in
                gram.withUnsafeMutableBufferPointer { g in
                    sgemm(transA: true, m: channels, n: channels, k: m, a: a.baseAddress!, lda: channels,
                          b: a.baseAddress!, ldb: channels, c: g.baseAddress!, ldc: channels)
                }
            }
        }
        if state.gram.isEmpty { state.gram = [Double](repeating: 0, count: channels * channels) }
        guard state.gram.count == channels * channels else {
            throw PruneKitError(.shapeMismatch, "thinet: layer '\(layer.path)' has \(channels) channels but its gathered Gram matrix holds \(state.gram.count) values")
        }
        gram.withUnsafeBufferPointer { g in for i in 0..<state.gram.count { state.gram[i] += Double(g[i]) } }
        state.batches = batchNumber + 1
        state.samples += m
        state.nextLayer = next.path
    }

    /// The greedy removal order as scores: the t-th channel removed scores t / C, the one
    /// left at the end 1. Layers without a next layer: the ℓ1 norm of each filter.
    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        let c = layer.outputs
        let gram = state.gram
        guard gram.count == c * c, c > 0 else {
            return layer.weights.withUnsafeBufferPointer { w in
                (0..<c).map { r in (0..<layer.fanIn).reduce(Float(0)) { $0 + abs(w[r * layer.fanIn + $1]) } }
            }
        }
        let order = thinetGreedyOrder(gram: gram, channels: c)
        var scores = [Float](repeating: 1, count: c)
        for (t, channel) in order.enumerated() { scores[channel] = Float(t + 1) / Float(c) }
        return scores
    }

    /// Solves the least-squares scales of the kept channels and applies them to the next
    /// layer's weights (removed channels' weights there become 0). Does nothing when
    /// `rescale=false` or the layer had no next layer.
    /// - Throws: ``PruneKitError`` if the next layer is missing from `model` or its weight
    ///   no longer has the shape it had when scored.
    public func adjustWeights(of layer: PrunableLayer, keeping kept: [Int], model: Model, state: State, context: ScoringContext) throws {
        let c = layer.outputs
        let gram = state.gram
        guard rescale, !kept.isEmpty, kept.count < c, gram.count == c * c, let nextPath = state.nextLayer else { return }
        guard let node = model.nodeIndex(named: nextPath), let weight = model.nodes[node].layer.parameter(named: "weight") else {
            throw PruneKitError(.invalidArgument, "thinet: the layer after '\(layer.path)', '\(nextPath)', is not in the model")
        }
        let scales = thinetScales(gram: gram, channels: c, kept: kept, ridge: ridge)
        var perChannel = [Float](repeating: 0, count: c)
        for (s, channel) in zip(scales, kept) { perChannel[channel] = Float(s) }
        var w = weight.value
        let shape = w.shape
        if shape.count == 4 {
            // [O, C/g, kh, kw]: input channel c is column c mod (C/g) of the rows of its group.
            let (o, cg, area) = (shape[0], shape[1], shape[2] * shape[3])
            guard cg > 0, c % cg == 0, o % (c / cg) == 0 else {
                throw PruneKitError(.shapeMismatch, "thinet: '\(nextPath)' has weight \(shape), which does not read the \(c) channels of '\(layer.path)'")
            }
            let og = o / (c / cg)
            w.withUnsafeMutableBufferPointer { p in
                for k in 0..<o {
                    let group = k / og
                    for cl in 0..<cg {
                        let s = perChannel[group * cg + cl]
                        for a in 0..<area { p[(k * cg + cl) * area + a] *= s }
                    }
                }
            }
        } else if shape.count == 2 {
            // [O, F]: channel c is the block of F/C columns starting at c·F/C.
            let (o, f) = (shape[0], shape[1])
            guard f % c == 0 else {
                throw PruneKitError(.shapeMismatch, "thinet: '\(nextPath)' has \(f) inputs, not a multiple of the \(c) channels of '\(layer.path)'")
            }
            let block = f / c
            w.withUnsafeMutableBufferPointer { p in
                for k in 0..<o { for j in 0..<f { p[k * f + j] *= perChannel[j / block] } }
            }
        } else {
            throw PruneKitError(.shapeMismatch, "thinet: '\(nextPath)' has a weight of shape \(shape), neither a convolution's nor a linear layer's")
        }
        weight.value = w
    }
}

/// The contributions x̂_c of each input channel to sampled outputs of the next layer.
///
/// - Parameters:
///   - input: the next layer's input, `[C, N, H, W]` (convolution) or `[N, F]` (linear).
///   - nextLayer: its view; a convolution's stride, padding and groups come from
///     ``PrunableLayer/convolution``.
///   - samplesPerImage: random outputs (channel, position) per image; 0 = all, in order
///     (image, output channel, row, column).
/// - Returns: `[m, C]`, one row per sampled output.
/// - Throws: ``PruneKitError`` `.shapeMismatch` when the shapes do not fit together.
public func thinetContributions(input x: Tensor, nextLayer next: PrunableLayer, channels c: Int,
                                samplesPerImage: Int, rng: inout RandomGenerator) throws -> Tensor {
    let ws = next.weightShape
    if x.rank == 4 {
        guard ws.count == 4, x.shape[0] == c else {
            throw PruneKitError(.shapeMismatch, "thinet: next layer '\(next.path)' (weight \(ws)) and its input \(x.shape) do not fit \(c) channels")
        }
        let conv = next.convolution ?? ConvolutionSettings()
        let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3])
        guard conv.groups >= 1, cg * conv.groups == c, o % conv.groups == 0 else {
            throw PruneKitError(.shapeMismatch, "thinet: next layer '\(next.path)' has weight \(ws) with \(conv.groups) groups, which does not read \(c) channels")
        }
        let (n, h, w) = (x.shape[1], x.shape[2], x.shape[3])
        let g = ConvGeometry(batch: n, height: h, width: w, kernelHeight: kh, kernelWidth: kw, window: conv.window)
        let (ho, wo) = (g.outHeight, g.outWidth)
        guard ho >= 1, wo >= 1 else {
            throw PruneKitError(.shapeMismatch, "thinet: next layer '\(next.path)' has no output on input \(x.shape)")
        }
        try checkSampleMemory(samplesPerImage == 0 ? n * o * ho * wo : n * samplesPerImage, channels: c, next: next)
        // Samples as (image, output channel, row, column).
        var samples: [(Int, Int, Int, Int)] = []
        if samplesPerImage == 0 {
            samples.reserveCapacity(n * o * ho * wo)
            for i in 0..<n { for k in 0..<o { for r in 0..<ho { for q in 0..<wo { samples.append((i, k, r, q)) } } } }
        } else {
            samples.reserveCapacity(n * samplesPerImage)
            for i in 0..<n {
                for _ in 0..<samplesPerImage {
                    let k = rng.nextInt(below: o), r = rng.nextInt(below: ho), q = rng.nextInt(below: wo)
                    samples.append((i, k, r, q))
                }
            }
        }
        var out = Tensor(shape: [samples.count, c])
        let og = o / conv.groups, cw = conv.window
        x.withUnsafeBufferPointer { xp in next.weights.withUnsafeBufferPointer { wp in out.withUnsafeMutableBufferPointer { op in
            for (s, (i, k, r, q)) in samples.enumerated() {
                let c0 = (k / og) * cg
                for cl in 0..<cg {
                    var sum: Float = 0
                    for a in 0..<kh {
                        let y = r * cw.strideHeight - cw.padTop + a * cw.dilationHeight
                        guard y >= 0, y < h else { continue }
                        for b in 0..<kw {
                            let z = q * cw.strideWidth - cw.padLeft + b * cw.dilationWidth
                            guard z >= 0, z < w else { continue }
                            sum += wp[((k * cg + cl) * kh + a) * kw + b] * xp[(((c0 + cl) * n + i) * h + y) * w + z]
                        }
                    }
                    op[s * c + c0 + cl] = sum
                }
            }
        } } }
        return out
    }
    guard x.rank == 2, ws.count == 2, x.shape[1] == ws[1], ws[1] % c == 0 else {
        throw PruneKitError(.shapeMismatch, "thinet: next layer '\(next.path)' (weight \(ws)) and its input \(x.shape) do not fit \(c) channels (a linear layer needs a multiple of \(c) inputs)")
    }
    let (n, f, o) = (x.shape[0], x.shape[1], ws[0])
    let block = f / c
    try checkSampleMemory(samplesPerImage == 0 ? n * o : n * samplesPerImage, channels: c, next: next)
    var samples: [(Int, Int)] = []
    if samplesPerImage == 0 {
        for i in 0..<n { for k in 0..<o { samples.append((i, k)) } }
    } else {
        for i in 0..<n { for _ in 0..<samplesPerImage { samples.append((i, rng.nextInt(below: o))) } }
    }
    var out = Tensor(shape: [samples.count, c])
    x.withUnsafeBufferPointer { xp in next.weights.withUnsafeBufferPointer { wp in out.withUnsafeMutableBufferPointer { op in
        for (s, (i, k)) in samples.enumerated() {
            for ch in 0..<c {
                var sum: Float = 0
                for j in ch * block..<(ch + 1) * block { sum += wp[k * f + j] * xp[i * f + j] }
                op[s * c + ch] = sum
            }
        }
    } } }
    return out
}

/// Refuses a batch whose `[m, C]` contributions would exceed 2²⁸ floats (1 GiB), which
/// `samples-per-image=0` (every output) reaches on large layers.
func checkSampleMemory(_ m: Int, channels c: Int, next: PrunableLayer) throws {
    guard m.multipliedReportingOverflow(by: c).partialValue <= 1 << 28, m <= (1 << 28) else {
        throw PruneKitError(.invalidArgument, "thinet: \(m) samples × \(c) channels of contributions for '\(next.path)' exceed 1 GiB per batch",
                            hint: "sample fewer outputs (samples-per-image=10, the paper's choice) or use smaller calibration batches")
    }
}

/// ThiNet's greedy removal order from the Gram matrix `[C, C]` (row-major) of the
/// contributions: C − 1 channels, the first removed first. Ties go to the lower index.
/// Cost: O(C²).
public func thinetGreedyOrder(gram: [Double], channels c: Int) -> [Int] {
    precondition(gram.count == c * c, "thinetGreedyOrder: a Gram matrix of \(gram.count) entries for \(c) channels")
    var removed = [Bool](repeating: false, count: c)
    var cross = [Double](repeating: 0, count: c)   // Σ_{j ∈ T} G[j, i]
    var order: [Int] = []
    for _ in 0..<max(c - 1, 0) {
        var best = -1, bestValue = Double.infinity
        for i in 0..<c where !removed[i] {
            let value = 2 * cross[i] + gram[i * c + i]
            if value < bestValue { best = i; bestValue = value }
        }
        removed[best] = true
        order.append(best)
        for i in 0..<c { cross[i] += gram[best * c + i] }
    }
    return order
}

/// The least-squares scales of the kept channels: (G_SS + λI) ŵ = G_S,all·1 + λ·1 with
/// λ = `ridge` · mean(diag G_SS), solved by Cholesky. Returns 1 for every channel when the
/// system is singular (ridge 0 on collinear channels, or channels that never contribute).
/// Cost: O(|S|³ + |S|·C).
public func thinetScales(gram: [Double], channels c: Int, kept: [Int], ridge: Double) -> [Double] {
    let s = kept.count
    var a = [Double](repeating: 0, count: s * s), rhs = [Double](repeating: 0, count: s)
    for (p, i) in kept.enumerated() {
        for (q, j) in kept.enumerated() { a[p * s + q] = gram[i * c + j] }
        for j in 0..<c { rhs[p] += gram[i * c + j] }
    }
    let meanDiagonal = (0..<s).reduce(0.0) { $0 + a[$1 * s + $1] } / Double(max(s, 1))
    let lambda = ridge * meanDiagonal
    for p in 0..<s { a[p * s + p] += lambda; rhs[p] += lambda }
    guard meanDiagonal > 0, let solution = choleskySolve(a, rhs, size: s) else { return [Double](repeating: 1, count: s) }
    return solution
}

/// Solves A x = b for a symmetric positive-definite `[n, n]` A, or nil if A is not
/// (numerically) positive definite.
func choleskySolve(_ a: [Double], _ b: [Double], size n: Int) -> [Double]? {
    var l = [Double](repeating: 0, count: n * n)
    var scale = 0.0
    for i in 0..<n { scale = max(scale, abs(a[i * n + i])) }
    for i in 0..<n {
        for j in 0...i {
            var sum = a[i * n + j]
            for k in 0..<j { sum -= l[i * n + k] * l[j * n + k] }
            if i == j {
                guard sum > scale * 1e-13 else { return nil }
                l[i * n + i] = sum.squareRoot()
            } else {
                l[i * n + j] = sum / l[j * n + j]
            }
        }
    }
    var y = b
    for i in 0..<n {
        for k in 0..<i { y[i] -= l[i * n + k] * y[k] }
        y[i] /= l[i * n + i]
    }
    for i in stride(from: n - 1, through: 0, by: -1) {
        for k in (i + 1)..<n { y[i] -= l[k * n + i] * y[k] }
        y[i] /= l[i * n + i]
    }
    return y
}

final class ThiNetPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: ThiNet.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "thinet", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(ThiNetPlugin()) }
