import PruneKit

/// Ranks the output channels of each layer by how far their filter lies from the layer's
/// other filters: filters near the geometric median of the layer are the most replaceable
/// and are pruned first (Filter Pruning via Geometric Median, FPGM).
///
/// Formula, for filter j of a layer with filters W_0 … W_{C−1} (the rows of the
/// `[outputs, fanIn]` view, a convolution's `[C/g, kh, kw]` weights flattened):
///
///     s_j = Σ_k ‖W_j − W_k‖_p        (k over all C filters of the layer; the k = j term is 0)
///
/// The paper's exact form prunes the filters nearest the geometric median
/// x* = argmin_x Σ_k ‖x − W_k‖₂; it then restricts x to the layer's own filters, so the
/// filter minimising Σ_k ‖W_j − W_k‖₂ is the most redundant, and its implementation
/// ranks every filter by that sum. This is that practical form: the smallest s_j is
/// pruned first (higher kept, as every criterion here).
///
/// Options: `norm` — `l2` (default, the paper's Euclidean distance) or `l1`
/// (Σ_i |W_j[i] − W_k[i]|, the official code's `dist_type=l1`).
///
/// Scope: per layer, as the paper prunes the same fraction of filters in every layer.
///
/// Deviations from the paper: the paper prunes softly — pruned filters are zeroed, keep
/// training, and are chosen again after every epoch; here one scoring pass ranks the
/// filters and iteration is the schedule's and finetuning's job. The official code may
/// also prune part of each layer by ℓ2 norm first; this criterion is the distance term
/// alone. A linear layer's rows are scored the same way as filters.
///
/// Non-finite weights are an error naming the layer (a NaN distance would compare false
/// and silently read as a low score).
///
/// Cost: C(C−1)/2 distances per layer, each once, O(C² · fanIn) operations in `Double`;
/// no data needed; memory O(C).
///
/// References: He, Liu, Wang, Hu & Yang, "Filter Pruning via Geometric Median for Deep
/// Convolutional Neural Networks Acceleration", CVPR 2019.
public struct FPGM: Criterion, OptionConstructible {
    public static let id = "fpgm"
    public static let summary = "Σ_k ‖W_j − W_k‖ over the layer's filters: those near the geometric median are pruned first, the same fraction per layer (He et al. 2019)"
    public static let options: [OptionSpec] = [
        .string("norm", default: Norm.l2.rawValue,
                help: "distance between filters: l2 (the paper's) or l1"),
    ]

    /// The distance between two filters.
    public enum Norm: String, CaseIterable, Sendable {
        /// ‖a − b‖₂ (the paper's).
        case l2
        /// ‖a − b‖₁.
        case l1
    }

    public let granularity = Granularity.channel
    public let preferredScope = SelectionSettings.Scope.perLayer
    public let norm: Norm

    public init(options: OptionValues) throws {
        let text = options.string("norm")
        guard let norm = Norm(rawValue: text) else {
            throw PruneKitError(.invalidArgument, "fpgm: norm must be one of \(Norm.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'",
                                hint: "l2 is the paper's distance")
        }
        self.norm = norm
    }

    /// - Returns: `outputs` scores, s_j = Σ_k ‖W_j − W_k‖ (higher kept).
    /// - Throws: ``PruneKitError`` `.numerical` naming the layer when a weight is NaN or infinite.
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        let (rows, cols) = (layer.outputs, layer.fanIn)
        guard layer.weights.withUnsafeBufferPointer({ $0.allSatisfy(\.isFinite) }) else {
            throw PruneKitError(.numerical, "fpgm: the weights of layer '\(layer.path)' hold NaN or infinite values",
                                hint: "check the model's weights (`prunekit inspect`); training may have diverged")
        }
        var sums = [Double](repeating: 0, count: rows)
        layer.weights.withUnsafeBufferPointer { w in
            distanceSums(w, rows: rows, cols: cols, norm: norm, into: &sums)
        }
        return sums.map { Float($0) }
    }
}

/// sums[j] = Σ_k ‖row j − row k‖ for the rows of `w` (`[rows, cols]`, row-major): each pair's
/// distance is computed once, in `Double`, and added to both rows' sums.
/// Cost: rows(rows−1)/2 · cols.
func distanceSums(_ w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, norm: FPGM.Norm, into sums: inout [Double]) {
    assert(w.count == rows * cols && sums.count == rows)
    guard let base = w.baseAddress, rows > 1 else { return }
    for j in 0..<rows {
        let a = base + j * cols
        for k in (j + 1)..<rows {
            let b = base + k * cols
            var d = 0.0
            switch norm {
            case .l2:
                for i in 0..<cols { let t = Double(a[i]) - Double(b[i]); d += t * t }
                d = d.squareRoot()
            case .l1:
                for i in 0..<cols { d += abs(Double(a[i]) - Double(b[i])) }
            }
            sums[j] += d
            sums[k] += d
        }
    }
}

final class FPGMPlugin: PluginEntry {
    func register(into registry: Registry) throws {
        try registry.register(criterion: FPGM.self)
    }
}

@_cdecl("prunekit_plugin_info")
public func prunekitPluginInfo() -> UnsafePointer<CChar> { exportPluginInfo(name: "fpgm", version: "1.0.0") }

@_cdecl("prunekit_plugin_entry")
public func prunekitPluginEntry() -> UnsafeMutableRawPointer { exportPluginEntry(FPGMPlugin()) }
