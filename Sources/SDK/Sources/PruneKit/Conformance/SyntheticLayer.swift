
/// A small synthetic prunable layer with evidence of the right shapes, as
/// ``checkCriterion(_:seed:skipping:)`` builds them; usable in an author's own tests.
///
/// The evidence is random but shaped like the real thing:
/// - ``weightGradient``: `[outputs, fanIn]`, standard normal.
/// - ``batches``: two batches of ``examplesPerBatch`` examples with every ``LayerBatch``
///   field filled. `activations` are post-ReLU (non-negative, about half zeros):
///   `[C, N, H, W]` with `H = W = 3` for a convolution, `[N, F]` for a linear layer;
///   `activationGradients` the same shape, normal; `nextLayerInputs` equal the
///   activations (no pooling in between) and `nextLayer` is a layer reading them
///   (a `[4, C, 3, 3]` convolution after a convolution, a `[3, F]` linear layer after a linear one).
public struct SyntheticLayer {
    /// The layer's view, as a criterion receives it.
    public var layer: PrunableLayer
    /// ∂L/∂W summed over the batches, `[outputs, fanIn]`.
    public var weightGradient: Tensor
    /// Per-batch evidence for ``Criterion/observe(_:layer:state:)``.
    public var batches: [LayerBatch]

    /// Examples in each synthetic batch.
    public static let examplesPerBatch = 2
    /// Output height and width of a synthetic convolution.
    public static let spatial = 3

    /// A layer of weight shape `[out, in]` (`kind` `.linear`) or `[O, C, kh, kw]` (`.conv2d`),
    /// with weights, bias and evidence drawn from `seed`.
    public init(path: String, kind: LayerKind, weightShape: [Int], index: Int, isClassifier: Bool = false, seed: UInt64) {
        var rng = RandomGenerator(seed: seed, stream: "conformance." + path)
        let outputs = weightShape[0]
        let fanIn = weightShape.dropFirst().reduce(1, *)
        let isConv = kind == .conv2d
        let hw = isConv ? SyntheticLayer.spatial * SyntheticLayer.spatial : 1
        func normal(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in rng.nextNormal() })
        }
        layer = PrunableLayer(path: path, kind: kind, weights: normal([outputs, fanIn]), weightShape: weightShape,
                              bias: normal([outputs]), macs: outputs * fanIn * hw, index: index, isClassifier: isClassifier)
        weightGradient = normal([outputs, fanIn])

        let n = SyntheticLayer.examplesPerBatch, s = SyntheticLayer.spatial
        let outShape = isConv ? [outputs, n, s, s] : [n, outputs]
        let nextShape = isConv ? [4, outputs, 3, 3] : [3, outputs]
        let nextFanIn = nextShape.dropFirst().reduce(1, *)
        let nextLayer = PrunableLayer(path: path + ".next", kind: kind, weights: normal([nextShape[0], nextFanIn]),
                                      weightShape: nextShape, bias: nil, macs: nextShape[0] * nextFanIn * hw,
                                      index: index + 1, isClassifier: false)
        batches = (0..<2).map { _ in
            let pre = normal(outShape)
            let act = Tensor(shape: outShape, scalars: pre.scalars.map { max($0, 0) })
            return LayerBatch(activations: act, activationGradients: normal(outShape), nextLayerInputs: act,
                              nextLayer: nextLayer, exampleCount: n)
        }
    }

    /// The layers the conformance checker uses: a linear layer `[6, 10]`, a convolution
    /// `[8, 3, 3, 3]`, a single-output linear layer `[1, 5]` and a single-output
    /// convolution `[1, 2, 3, 3]`.
    public static func standardSet(seed: UInt64) -> [SyntheticLayer] {
        [
            SyntheticLayer(path: "synthetic.linear", kind: .linear, weightShape: [6, 10], index: 0, seed: seed),
            SyntheticLayer(path: "synthetic.conv", kind: .conv2d, weightShape: [8, 3, 3, 3], index: 1, seed: seed),
            SyntheticLayer(path: "synthetic.linear1", kind: .linear, weightShape: [1, 5], index: 2, seed: seed),
            SyntheticLayer(path: "synthetic.conv1", kind: .conv2d, weightShape: [1, 2, 3, 3], index: 3, seed: seed),
        ]
    }

    /// The same layer with its output channels reordered: new channel `i` is old channel
    /// `permutation[i]`, in the weights, bias, gradient, every evidence tensor and the
    /// input channels of the next layer.
    public func permuted(by permutation: [Int]) -> SyntheticLayer {
        precondition(permutation.sorted() == Array(0..<layer.outputs), "SyntheticLayer.permuted: not a permutation of 0..<\(layer.outputs)")
        let isConv = layer.kind == .conv2d
        var copy = self
        copy.layer = PrunableLayer(path: layer.path, kind: layer.kind, weights: permuteBlocks(layer.weights, permutation, axisIsRows: true),
                                   weightShape: layer.weightShape, bias: layer.bias.map { permuteBlocks($0, permutation, axisIsRows: true) },
                                   macs: layer.macs, index: layer.index, isClassifier: layer.isClassifier)
        copy.weightGradient = permuteBlocks(weightGradient, permutation, axisIsRows: true)
        copy.batches = batches.map { b in
            // Channel-major [C, N, H, W] permutes rows; [N, F] permutes columns.
            func perm(_ t: Tensor?) -> Tensor? { t.map { permuteBlocks($0, permutation, axisIsRows: isConv) } }
            var next = b.nextLayer
            if let nl = b.nextLayer {
                next = PrunableLayer(path: nl.path, kind: nl.kind, weights: permuteBlocks(nl.weights, permutation, axisIsRows: false),
                                     weightShape: nl.weightShape, bias: nl.bias, macs: nl.macs, index: nl.index, isClassifier: nl.isClassifier)
            }
            return LayerBatch(activations: perm(b.activations), activationGradients: perm(b.activationGradients),
                              nextLayerInputs: perm(b.nextLayerInputs), nextLayer: next, exampleCount: b.exampleCount)
        }
        return copy
    }

    /// The same layer with all-zero weights, bias, gradient and evidence.
    public func zeroed() -> SyntheticLayer {
        func zero(_ t: Tensor) -> Tensor { Tensor(shape: t.shape, repeating: 0) }
        var copy = self
        copy.layer = PrunableLayer(path: layer.path, kind: layer.kind, weights: zero(layer.weights), weightShape: layer.weightShape,
                                   bias: layer.bias.map(zero), macs: layer.macs, index: layer.index, isClassifier: layer.isClassifier)
        copy.weightGradient = zero(weightGradient)
        copy.batches = batches.map { b in
            LayerBatch(activations: b.activations.map(zero), activationGradients: b.activationGradients.map(zero),
                       nextLayerInputs: b.nextLayerInputs.map(zero), nextLayer: b.nextLayer, exampleCount: b.exampleCount)
        }
        return copy
    }

    /// Feeds `criterion` the evidence it declares and returns its scores, as the harness
    /// would: `observe` on each batch (only the fields in ``Criterion/evidence`` filled),
    /// then `scores` with the gradient (if asked for) and a generator from `seed` and the path.
    /// (A criterion that runs passes of its own in ``Criterion/gather(_:into:)`` needs a
    /// model: check it on a tiny ``Model`` with ``Model/score(with:data:settings:)``.)
    public func scores(of criterion: any Criterion, seed: UInt64) throws -> [Float] {
        let wanted = criterion.evidence
        guard !wanted.contains(.ownPasses) else {
            throw PruneKitError(.invalidArgument, "criterion '\(criterion.id)' runs passes of its own over a model (Evidence.ownPasses); a synthetic layer can't feed it",
                                hint: "check it on a tiny Model with Model.score(with:data:settings:)")
        }
        let given = batches.map { b in
            LayerBatch(activations: wanted.contains(.activations) ? b.activations : nil,
                       activationGradients: wanted.contains(.activationGradients) ? b.activationGradients : nil,
                       nextLayerInputs: wanted.contains(.nextLayerInputs) ? b.nextLayerInputs : nil,
                       nextLayer: wanted.contains(.nextLayerInputs) ? b.nextLayer : nil,
                       exampleCount: b.exampleCount)
        }
        return try observeAndScore(criterion, layer: layer, batches: wanted.isDisjoint(with: .perBatch) ? [] : given,
                                   weightGradient: wanted.contains(.weightGradients) ? weightGradient : nil,
                                   rng: RandomGenerator(seed: seed, stream: layer.path))
    }
}

/// Drives `criterion` on one layer by hand, as the SDK's standard calibration pass does:
/// a fresh state (``Criterion/makeState(for:)``), ``Criterion/observe(_:layer:state:)`` on
/// each of `batches`, then ``Criterion/scores(for:state:context:)``; and, when `adjusting`
/// is given, ``Criterion/adjustWeights(of:keeping:model:state:context:)`` with that state.
/// For unit tests of a criterion's arithmetic without a model.
/// - Parameters:
///   - batchCount: the context's batch count; default `batches.count`.
public func observeAndScore(_ criterion: any Criterion, layer: PrunableLayer, batches: [LayerBatch],
                            weightGradient: Tensor? = nil, batchCount: Int? = nil,
                            rng: RandomGenerator = RandomGenerator(seed: 0),
                            adjusting: (kept: [Int], model: Model)? = nil) throws -> [Float] {
    func run<C: Criterion>(_ criterion: C) throws -> [Float] {
        var state = try criterion.makeState(for: layer)
        for b in batches { try criterion.observe(b, layer: layer, state: &state) }
        let context = ScoringContext(weightGradient: weightGradient, batchCount: batchCount ?? batches.count,
                                     exampleCount: batches.reduce(0) { $0 + $1.exampleCount }, rng: rng)
        let scores = try criterion.scores(for: layer, state: state, context: context)
        if let adjusting {
            try criterion.adjustWeights(of: layer, keeping: adjusting.kept, model: adjusting.model, state: state, context: context)
        }
        return scores
    }
    return try run(criterion)
}

/// Reorders the blocks of `t` along its first axis (`axisIsRows`) or, within every row,
/// the `permutation.count` equal blocks of columns: new block `i` is old block `permutation[i]`.
func permuteBlocks(_ t: Tensor, _ permutation: [Int], axisIsRows: Bool) -> Tensor {
    let old = t.scalars, k = permutation.count
    var new = old
    if axisIsRows {
        let width = old.count / k
        for i in 0..<k { new[(i * width)..<((i + 1) * width)] = old[(permutation[i] * width)..<((permutation[i] + 1) * width)] }
    } else {
        let rows = t.shape[0], rowWidth = old.count / rows, block = rowWidth / k
        for r in 0..<rows {
            for i in 0..<k {
                let dst = r * rowWidth + i * block, src = r * rowWidth + permutation[i] * block
                new[dst..<(dst + block)] = old[src..<(src + block)]
            }
        }
    }
    return Tensor(shape: t.shape, scalars: new)
}
