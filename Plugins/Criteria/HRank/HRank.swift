import PruneKit

/// Ranks the output channels of each layer by the average rank of their feature maps
/// (HRank): maps of high rank carry more information and are kept; channels whose maps
/// are of low rank are pruned first, the same fraction in every layer.
///
/// Formula, for channel c of a layer whose feature map over N calibration examples is
/// z `[C, N, H, W]`:
///
///     score_c = 1/N · Σ_n rank(z[c, n])        (z[c, n] an H × W matrix)
///     rank(A) = #{ σ_i(A) > σ_max(A) · max(H, W) · ε }   (ε = 2⁻²³, float32's machine epsilon)
///
/// which is `torch.linalg.matrix_rank(A)` with its default tolerance for a float32 map,
/// as the paper's code computes it. An all-zero map has rank 0.
///
/// - z is ``LayerBatch/activations``: the layer's output after its BatchNorm and ReLU
///   where those follow directly — the map after the ReLU, which is what the paper ranks.
///   Where no ReLU follows directly (a ResNet block's second convolution, whose ReLU
///   follows the residual sum; the classifier) z is the BatchNorm's or the layer's own output.
/// - A linear layer's output `[N, F]` is a 1 × 1 map per example and feature: its rank is
///   1 where the value is not zero, so the score is the fraction of examples on which the
///   unit is non-zero (1 − APoZ after a ReLU). The paper ranks convolutions only.
/// - The mean is over every example of every calibration batch (ranks are summed as
///   integers and divided once), so the split into batches does not matter.
///
/// How the rank is computed (an equivalent of the SVD's, justified): for k = min(H, W) ≥ 2,
/// the k × k Gram matrix G = A·Aᵀ (or Aᵀ·A) is formed in `Double` — the products of
/// float32 values are exact there — and reduced to tridiagonal form by Householder
/// reflections; σ_i² are G's eigenvalues, so rank(A) = k − #{λ_i(G) ≤ tol²}, counted
/// exactly by a Sturm sequence, with σ_max² found by bisection. The eigenvalues are
/// computed with an absolute error of order k · 10⁻¹⁶ · σ_max², against a threshold
/// tol² = σ_max² · (max(H, W) · 1.19 · 10⁻⁷)² ≥ 5.7 · 10⁻¹⁴ · σ_max², so a singular
/// value can be put on the wrong side of the tolerance only if it lies within the order
/// of 1 % of it (2 × 2 maps; far less for larger ones) — while the float32 SVD that torch
/// runs has errors of order ε · σ_max, within a factor max(H, W) of the tolerance itself.
/// On maps whose rank is well defined (no singular value near the tolerance) both give
/// the same integer; near it this one follows the exact-arithmetic rank of the given map
/// more closely. The tests check it against a naive Jacobi SVD.
/// (OpenBLAS on this machine exports LAPACK's `sgesdd_`, but plugins link only the SDK,
/// and an SVD costs several times this.)
///
/// Scope: per layer, as the paper prunes a preset fraction of each layer.
///
/// Deviations from the paper: the ranks are averaged over the calibration batches
/// (``CalibrationSettings``, 10 × 64 examples by default; the paper observes that a small
/// batch of images estimates a filter's average rank accurately), in evaluation mode
/// (BatchNorm running statistics). Options: none.
///
/// Non-finite activations are an error naming the layer.
///
/// Cost: per map, the Gram matrix (H · W · k multiply–adds), the tridiagonal reduction
/// (about (4/3) · k³) and O(k) per Sturm count (about 60 of them): for lenet-5's
/// 28 × 28 maps about 6 · 10⁴ operations per map. Maps are ranked concurrently
/// (``Parallel``). State: one integer sum of ranks per channel (exact).
///
/// References: Lin, Ji, Wang, Zhang, Zhang, Tian & Shao, "HRank: Filter Pruning using
/// High-Rank Feature Map", CVPR 2020.
public struct HRank: Criterion, OptionConstructible {
    public static let id = "hrank"
    public static let summary = "average rank of each channel's feature map after the ReLU, over calibration examples, the same fraction per layer (Lin et al. 2020)"
    public let granularity = Granularity.channel
    public let evidence: Evidence = .activations
    public let preferredScope = SelectionSettings.Scope.perLayer

    /// Per channel, the sum of its maps' ranks; and the examples seen.
    public struct State: Sendable {
        public var rankSums: [Int]
        public var examples = 0
    }

    public init(options: OptionValues) {}

    public func makeState(for layer: PrunableLayer) -> State {
        State(rankSums: Array(repeating: 0, count: layer.outputs))
    }

    public func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {
        guard let z = batch.activations else {
            throw PruneKitError(.plugin, "hrank: no activations were gathered for layer '\(layer.path)'")
        }
        let layout = try ActivationLayout(of: z, layer: layer, criterion: "hrank")
        guard z.withUnsafeBufferPointer({ $0.allSatisfy(\.isFinite) }) else {
            throw PruneKitError(.numerical, "hrank: the activations of layer '\(layer.path)' hold NaN or infinite values",
                                hint: "check the model's weights and the data")
        }
        let (channels, examples) = (layout.channels, layout.examples)
        var sums = [Int](repeating: 0, count: channels)
        z.withUnsafeBufferPointer { x in
            if layout.isChannelMajor {
                let shape = z.shape
                rankSumsChannelMajor(x, channels: channels, examples: examples, height: shape[2], width: shape[3], into: &sums)
            } else {
                for n in 0..<examples {
                    for c in 0..<channels where x[n * channels + c] != 0 { sums[c] += 1 }
                }
            }
        }
        guard state.rankSums.count == channels else {
            throw PruneKitError(.shapeMismatch, "hrank: layer '\(layer.path)' has \(state.rankSums.count) channels but its activation \(channels)")
        }
        for c in 0..<channels { state.rankSums[c] += sums[c] }
        state.examples += examples
    }

    /// - Returns: `outputs` scores, each channel's mean map rank in [0, min(H, W)] (higher kept).
    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        let n = state.examples
        guard n > 0, state.rankSums.count == layer.outputs else {
            throw PruneKitError(.plugin, "hrank: no activations were observed for layer '\(layer.path)'")
        }
        return state.rankSums.map { Float(Double($0) / Double(n)) }
    }
}

private func rankKey(_ c: Int) -> String { "rank.\(c)" }

/// sums[c] += Σ_n rank(x[c, n]) for channel-major `[C, N, H, W]` maps, ranked concurrently.
func rankSumsChannelMajor(_ x: UnsafeBufferPointer<Float>, channels: Int, examples: Int, height: Int, width: Int,
                          into sums: inout [Int]) {
    let maps = channels * examples, size = height * width
    assert(x.count == maps * size && sums.count == channels)
    guard let base = x.baseAddress, maps > 0 else { return }
    var ranks = [Int](repeating: 0, count: maps)
    let k = min(height, width)
    ranks.withUnsafeMutableBufferPointer { r in
        let out = r   // disjoint ranges are written concurrently
        Parallel.forEach(maps, grain: max(1, 4096 / max(1, k * k * k))) { range in
            var workspace = RankWorkspace(order: k)
            for m in range { out[m] = matrixRank(base + m * size, rows: height, cols: width, workspace: &workspace) }
        }
    }
    for c in 0..<channels {
        var s = 0
        for n in 0..<examples { s += ranks[c * examples + n] }
        sums[c] += s
    }
}

/// Scratch memory for ``matrixRank(_:rows:cols:workspace:)`` of maps whose smaller side is `order`.
struct RankWorkspace {
    var gram: [Double]
    var diagonal: [Double]
    var offDiagonal: [Double]
    var v: [Double]
    var p: [Double]

    init(order k: Int) {
        gram = [Double](repeating: 0, count: k * k)
        diagonal = [Double](repeating: 0, count: k)
        offDiagonal = [Double](repeating: 0, count: k)
        v = [Double](repeating: 0, count: k)
        p = [Double](repeating: 0, count: k)
    }
}

/// float32's machine epsilon, 2⁻²³ (`torch.finfo(torch.float32).eps`).
let float32Epsilon = Double(Float.ulpOfOne)

/// The numerical rank of the `rows × cols` row-major matrix at `a`, as
/// `torch.linalg.matrix_rank` defines it for float32: the number of singular values
/// above σ_max · max(rows, cols) · 2⁻²³. `a` must be finite.
///
/// Via the Gram matrix's eigenvalues in `Double` (see ``HRank``): Householder
/// tridiagonalisation, then Sturm counts.
/// Cost: rows · cols · k + (4/3) k³ + O(k) per count, k = min(rows, cols).
func matrixRank(_ a: UnsafePointer<Float>, rows: Int, cols: Int, workspace: inout RankWorkspace) -> Int {
    let k = min(rows, cols), m = max(rows, cols)
    if k == 0 { return 0 }
    if k == 1 {   // a vector: σ = ‖a‖ > ‖a‖ · m · ε unless it is zero (m · ε < 1)
        for i in 0..<m where a[i] != 0 { return 1 }
        return 0
    }
    assert(workspace.diagonal.count == k)
    return workspace.gram.withUnsafeMutableBufferPointer { g in
        workspace.diagonal.withUnsafeMutableBufferPointer { d in
            workspace.offDiagonal.withUnsafeMutableBufferPointer { e in
                workspace.v.withUnsafeMutableBufferPointer { v in
                    workspace.p.withUnsafeMutableBufferPointer { p in
                        gramMatrix(a, rows: rows, cols: cols, into: g)
                        var trace = 0.0
                        for i in 0..<k { trace += g[i * k + i] }
                        if trace == 0 { return 0 }   // the zero matrix
                        tridiagonalize(g, order: k, diagonal: d, offDiagonal: e, v: v, p: p)
                        let lambdaMax = largestEigenvalue(d, e, order: k)
                        let tolerance = lambdaMax.squareRoot() * Double(m) * float32Epsilon
                        return k - eigenvaluesAtMost(tolerance * tolerance, d, e, order: k)
                    }
                }
            }
        }
    }
}

/// g (`[k, k]`, k = min(rows, cols)) = A·Aᵀ when rows ≤ cols, else Aᵀ·A, in `Double`.
func gramMatrix(_ a: UnsafePointer<Float>, rows: Int, cols: Int, into g: UnsafeMutableBufferPointer<Double>) {
    let k = min(rows, cols)
    assert(g.count == k * k)
    if rows <= cols {   // rows are contiguous: dot products
        for i in 0..<rows {
            for j in 0...i {
                var s = 0.0
                for c in 0..<cols { s += Double(a[i * cols + c]) * Double(a[j * cols + c]) }
                g[i * k + j] = s; g[j * k + i] = s
            }
        }
    } else {            // accumulate the outer product of each row
        for i in 0..<(k * k) { g[i] = 0 }
        for r in 0..<rows {
            let row = a + r * cols
            for i in 0..<cols {
                let x = Double(row[i])
                if x == 0 { continue }
                for j in 0...i { g[i * k + j] += x * Double(row[j]) }
            }
        }
        for i in 0..<k { for j in 0..<i { g[j * k + i] = g[i * k + j] } }
    }
}

/// Reduces the symmetric `[k, k]` matrix `g` (overwritten) to tridiagonal form
/// T = Qᵀ g Q by Householder reflections: T's diagonal in `d`, its sub-diagonal in
/// `e[0..<k−1]`. `v`, `p`: scratch of k values. Cost: about (4/3) k³.
func tridiagonalize(_ g: UnsafeMutableBufferPointer<Double>, order k: Int, diagonal d: UnsafeMutableBufferPointer<Double>,
                    offDiagonal e: UnsafeMutableBufferPointer<Double>, v: UnsafeMutableBufferPointer<Double>,
                    p: UnsafeMutableBufferPointer<Double>) {
    assert(g.count == k * k && d.count >= k && e.count >= k && v.count >= k && p.count >= k)
    for i in 0..<max(0, k - 2) {
        // x = g[i+1..<k, i]; reflect it onto α·e₁ with α = −sign(x₀)·‖x‖.
        d[i] = g[i * k + i]
        let x0 = g[(i + 1) * k + i]
        var tail = 0.0
        for r in (i + 2)..<k { tail += g[r * k + i] * g[r * k + i] }
        if tail == 0 {   // already zero below the sub-diagonal: no reflection
            e[i] = x0
            continue
        }
        let norm2 = x0 * x0 + tail
        let alpha = x0 >= 0 ? -norm2.squareRoot() : norm2.squareRoot()
        // v = x − α·e₁ (indices i+1..<k stored at 0..<k−i−1); H = I − β·v·vᵀ, β = 2/(vᵀv).
        let n = k - i - 1
        for r in 0..<n { v[r] = g[(i + 1 + r) * k + i] }
        v[0] -= alpha
        var vv = 0.0
        for r in 0..<n { vv += v[r] * v[r] }
        let beta = 2 / vv
        // p = β·S·v for the trailing block S = g[i+1..<k, i+1..<k]; K = (β/2)·vᵀp; q = p − K·v.
        var vp = 0.0
        for r in 0..<n {
            var s = 0.0
            let row = (i + 1 + r) * k + i + 1
            for c in 0..<n { s += g[row + c] * v[c] }
            p[r] = beta * s
            vp += v[r] * p[r]
        }
        let kk = beta / 2 * vp
        for r in 0..<n { p[r] -= kk * v[r] }
        // S ← S − v·qᵀ − q·vᵀ (= H·S·H).
        for r in 0..<n {
            let row = (i + 1 + r) * k + i + 1
            let (vr, qr) = (v[r], p[r])
            for c in 0..<n { g[row + c] -= vr * p[c] + qr * v[c] }
        }
        e[i] = alpha
    }
    if k >= 2 {
        d[k - 2] = g[(k - 2) * k + k - 2]
        e[k - 2] = g[(k - 1) * k + k - 2]
    }
    d[k - 1] = g[(k - 1) * k + k - 1]
}

/// The number of eigenvalues of the symmetric tridiagonal matrix (diagonal `d`,
/// sub-diagonal `e`) that are ≤ x: the negative pivots of the LDLᵀ factorisation of
/// T − x·I (Sturm count), with a zero pivot replaced by a tiny negative one.
func eigenvaluesAtMost(_ x: Double, _ d: UnsafeMutableBufferPointer<Double>, _ e: UnsafeMutableBufferPointer<Double>,
                       order k: Int) -> Int {
    var pivmin = Double.leastNormalMagnitude
    for i in 0..<(k - 1) { pivmin = max(pivmin, Double.leastNormalMagnitude * e[i] * e[i]) }
    var count = 0
    var q = d[0] - x
    if abs(q) < pivmin { q = -pivmin }
    if q <= 0 { count += 1 }
    for i in 1..<k {
        q = d[i] - x - e[i - 1] * e[i - 1] / q
        if abs(q) < pivmin { q = -pivmin }
        if q <= 0 { count += 1 }
    }
    return count
}

/// The largest eigenvalue of the symmetric tridiagonal matrix, by bisection on the
/// Sturm count inside its Gershgorin interval, to a relative width of 10⁻¹²
/// (returned as the upper end). Cost: O(k) per step, at most 200 steps.
func largestEigenvalue(_ d: UnsafeMutableBufferPointer<Double>, _ e: UnsafeMutableBufferPointer<Double>, order k: Int) -> Double {
    var lo = Double.infinity, hi = -Double.infinity
    for i in 0..<k {
        let r = (i > 0 ? abs(e[i - 1]) : 0) + (i < k - 1 ? abs(e[i]) : 0)
        lo = min(lo, d[i] - r); hi = max(hi, d[i] + r)
    }
    for _ in 0..<200 {
        let mid = lo + (hi - lo) / 2
        if !(mid > lo && mid < hi) || hi - lo <= 1e-12 * max(abs(hi), abs(lo)) { break }
        if eigenvaluesAtMost(mid, d, e, order: k) == k { hi = mid } else { lo = mid }
    }
    return max(hi, 0)
}

final class HRankPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: HRank.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "hrank", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(HRankPlugin()) }
