/// What one layer of a model costs: its channels, parameters and multiply–accumulates.
///
/// Conventions (the same for ``ModelCost`` and `prunekit inspect`):
/// - **MACs** are the multiply–accumulates of convolution and linear layers for **one
///   example's** forward pass: a convolution costs `out · Ho · Wo · (in / groups) · kh · kw`
///   (padding positions included, as every library counts them), a linear layer
///   `in · out`. Biases, BatchNorm, activations, pooling, additions and shortcuts are
///   not counted.
/// - **FLOPs** = 2 × MACs (one multiply and one add each).
/// - **Sparse MACs** count only the multiplications by a non-zero weight: each weight of
///   a convolution is used `Ho · Wo` times per example, each weight of a linear layer
///   once, so sparse MACs = non-zero weights × that use count. They equal the dense
///   MACs when no weight is zero, and are what an ideal sparse kernel would do.
/// - **Parameters** are trainable scalars (weights, biases, BatchNorm's γ and β), as
///   ``Model/parameterCount`` counts them; BatchNorm's running statistics are state, not
///   parameters. **Non-zero parameters** are those whose current value is not zero
///   (masked weights are zero, so this counts what unstructured pruning kept).
public struct LayerCost: Sendable, Equatable {
    /// The node's dotted name (`features.3`, `layer2.0.conv1`).
    public var path: String
    /// What the layer is.
    public var kind: LayerKind
    /// Channels (or features) of the layer's first input: `C` of `[C, H, W]`, `F` of `[F]`.
    public var inputChannels: Int
    /// Channels (or features) of its output.
    public var outputChannels: Int
    /// Trainable scalars of the layer.
    public var parameters: Int
    /// Trainable scalars whose value is not zero.
    public var nonZeroParameters: Int
    /// Multiply–accumulates of one example's forward pass, every weight counted.
    public var macs: Int
    /// Multiply–accumulates by non-zero weights only.
    public var sparseMACs: Int

    /// 2 × ``macs``.
    public var flops: Int { 2 * macs }
    /// 2 × ``sparseMACs``.
    public var sparseFLOPs: Int { 2 * sparseMACs }

    public init(path: String, kind: LayerKind, inputChannels: Int, outputChannels: Int,
                parameters: Int, nonZeroParameters: Int, macs: Int, sparseMACs: Int) {
        self.path = path; self.kind = kind
        self.inputChannels = inputChannels; self.outputChannels = outputChannels
        self.parameters = parameters; self.nonZeroParameters = nonZeroParameters
        self.macs = macs; self.sparseMACs = sparseMACs
    }
}

/// A model's counted cost: every layer that has parameters or MACs, and the totals.
/// See ``LayerCost`` for the conventions (MACs per example, FLOPs = 2 × MACs).
public struct ModelCost: Sendable, Equatable {
    /// The layers with trainable parameters or MACs (convolutions, linear layers,
    /// BatchNorm), in node order.
    public var layers: [LayerCost]

    public init(layers: [LayerCost]) { self.layers = layers }

    /// Trainable scalars of the whole model (equals ``Model/parameterCount``).
    public var parameters: Int { layers.reduce(0) { $0 + $1.parameters } }
    /// Trainable scalars that are not zero.
    public var nonZeroParameters: Int { layers.reduce(0) { $0 + $1.nonZeroParameters } }
    /// Multiply–accumulates of one example's forward pass (equals ``Model/macs``).
    public var macs: Int { layers.reduce(0) { $0 + $1.macs } }
    /// Multiply–accumulates by non-zero weights only.
    public var sparseMACs: Int { layers.reduce(0) { $0 + $1.sparseMACs } }
    /// 2 × ``macs``.
    public var flops: Int { 2 * macs }
    /// 2 × ``sparseMACs``.
    public var sparseFLOPs: Int { 2 * sparseMACs }

    /// The layer with this dotted path.
    public func layer(_ path: String) -> LayerCost? { layers.first { $0.path == path } }
}

extension Model {
    /// The counted cost of the model as it is now: per-layer channels, parameters
    /// (all and non-zero) and MACs (dense and by non-zero weights only), and totals.
    ///
    /// A physically pruned (narrower) model counts its own, smaller shapes; a masked one
    /// counts its zeros in ``ModelCost/nonZeroParameters`` and ``ModelCost/sparseMACs``.
    /// See ``LayerCost`` for the conventions.
    ///
    /// Cost: one pass over every trainable value (counting zeros); no forward pass.
    public var cost: ModelCost {
        var layers: [LayerCost] = []
        for (i, node) in nodes.enumerated() {
            let inputs = inputShapes(ofNode: i)
            let macs = node.layer.macs(inputShapes: inputs)
            let trainable = node.layer.parameters.map(\.parameter).filter(\.isTrainable)
            guard macs > 0 || !trainable.isEmpty else { continue }
            let parameters = trainable.reduce(0) { $0 + $1.value.count }
            let nonZero = trainable.reduce(0) { $0 + nonZeroCount($1.value) }
            var sparse = macs
            if macs > 0, let w = node.layer.parameter(named: "weight"), w.value.count > 0 {
                let n = w.value.count, kept = nonZeroCount(w.value)
                // Each weight is used macs / n times per example (Ho·Wo for a convolution, 1 for linear).
                sparse = macs % n == 0 ? macs / n * kept : Int((Double(macs) * Double(kept) / Double(n)).rounded())
            }
            layers.append(LayerCost(path: node.name, kind: node.layer.kind,
                                    inputChannels: inputs.first?.first ?? 0,
                                    outputChannels: shapes[i].first ?? 0,
                                    parameters: parameters, nonZeroParameters: nonZero,
                                    macs: macs, sparseMACs: sparse))
        }
        return ModelCost(layers: layers)
    }
}

/// The number of elements that are not zero (−0 counts as zero; NaN as non-zero).
func nonZeroCount(_ t: Tensor) -> Int {
    t.withUnsafeBufferPointer { b in
        var n = 0
        for x in b where x != 0 { n += 1 }
        return n
    }
}
