import Foundation

extension Model {
    /// The model's prunable layers (convolutions and linear layers) in node order, as the
    /// views criteria see.
    public func prunableLayers() -> [PrunableLayer] {
        let indices = prunableNodeIndices
        return indices.enumerated().map { k, i in prunableView(node: i, index: k, isLast: k == indices.count - 1) }
    }

    /// Node indices of the convolutions and linear layers.
    public var prunableNodeIndices: [Int] {
        nodes.indices.filter { nodes[$0].layer.kind == .conv2d || nodes[$0].layer.kind == .linear }
    }

    func prunableView(node i: Int, index: Int, isLast: Bool) -> PrunableLayer {
        let layer = nodes[i].layer
        let w = layer.parameter(named: "weight")!.value
        let outputs = w.shape[0]
        let bn = soleConsumer(of: i).flatMap { nodes[$0].layer.kind == .batchNorm ? $0 : nil }
        var view = PrunableLayer(path: nodes[i].name, kind: layer.kind, weights: w.reshaped([outputs, w.count / max(outputs, 1)]),
                                 weightShape: w.shape, bias: layer.parameter(named: "bias")?.value,
                                 macs: layer.macs(inputShapes: inputShapes(ofNode: i)), index: index, isClassifier: isLast,
                                 batchNormScale: bn.flatMap { nodes[$0].layer.parameter(named: "weight")?.value },
                                 batchNormPath: bn.map { nodes[$0].name })
        if let conv = layer as? Conv2d {
            view.convolution = ConvolutionSettings(stride: conv.stride, padding: conv.padding, groups: conv.groups)
        }
        return view
    }

    /// The only node reading node `i`'s output, if exactly one does.
    func soleConsumer(of i: Int) -> Int? {
        let readers = nodes.indices.filter { nodes[$0].inputs.contains(i) }
        return readers.count == 1 ? readers[0] : nil
    }

    /// The node whose output is prunable node `i`'s activation: its output after a
    /// following BatchNorm and ReLU (or Clip, as ReLU6), where they follow directly (the
    /// layer's own output otherwise).
    func activationNode(after i: Int) -> Int {
        var j = i
        while let c = soleConsumer(of: j), [.batchNorm, .relu, .clip].contains(nodes[c].layer.kind) {
            j = c
            if nodes[c].layer.kind != .batchNorm { break }
        }
        return j
    }

    /// The next prunable node fed only by node `i` through shape-preserving or pooling
    /// layers, if there is one (not across residual joins).
    func nextPrunableNode(after i: Int) -> Int? {
        var j = activationNode(after: i)
        while let c = soleConsumer(of: j) {
            switch nodes[c].layer.kind {
            case .conv2d, .linear: return c
            case .maxPool2d, .avgPool2d, .flatten, .dropout, .globalAvgPool, .relu, .clip, .batchNorm: j = c
            default: return nil
            }
        }
        return nil
    }
}

/// How the evidence a criterion needs is gathered.
public struct CalibrationSettings: Sendable, Equatable {
    /// Calibration batches (the gradient-magnitude and Taylor papers use a few).
    public var batches: Int = 10
    public var batchSize: Int = 64
    /// Chooses the calibration images (a seeded shuffle of the data) and seeds random criteria.
    public var seed: UInt64 = 0

    public init(batches: Int = 10, batchSize: Int = 64, seed: UInt64 = 0) {
        self.batches = batches; self.batchSize = batchSize; self.seed = seed
    }
}

/// One layer's scores.
public struct LayerScores {
    public let layer: PrunableLayer
    /// `outputs` scores (channel criteria) or `outputs · fanIn` (weight criteria), higher kept.
    public let scores: [Float]
    /// What the criterion was given for this layer (its accumulated evidence), for hooks
    /// that run after selection.
    public let context: ScoringContext?

    public init(layer: PrunableLayer, scores: [Float], context: ScoringContext? = nil) {
        self.layer = layer; self.scores = scores; self.context = context
    }
}

extension Model {
    /// Scores every prunable layer with `criterion`, gathering the evidence it declares.
    ///
    /// Evidence comes from the same `settings.batches` calibration batches of `data` for
    /// every criterion (a seeded shuffle), passed forward and backward in evaluation mode
    /// (BatchNorm uses its running statistics) with the cross-entropy loss of the true labels.
    /// The model's weights are not changed; gradients are left at zero.
    /// - Throws: ``PruneKitError`` when the criterion needs data and none is given, when it
    ///   returns the wrong number of scores or a non-finite score, or when it throws.
    public func score(with criterion: any Criterion, data: Dataset?, settings: CalibrationSettings = CalibrationSettings()) throws -> [LayerScores] {
        let (layers, contexts) = try scoringContexts(criterion, data: data, settings: settings)
        return try zip(layers, contexts).map { layer, context in
            let scores = try checkedScores(criterion, layer: layer, context: context)
            return LayerScores(layer: layer, scores: scores, context: context)
        }
    }

    /// Score sources for every prunable layer, for the streaming
    /// ``selectPruning(_:granularity:settings:criterion:chunkSize:threads:)``: a criterion
    /// that computes chunks on its own (``Criterion/scoresInChunks``, magnitude) is read
    /// chunk by chunk and its scores never exist all at once; any other is scored layer
    /// by layer here, as ``score(with:data:settings:)`` does.
    /// - Throws: as ``score(with:data:settings:)``; a streamed criterion's errors and
    ///   non-finite scores are thrown by the selection.
    public func scoreSources(with criterion: any Criterion, data: Dataset?,
                             settings: CalibrationSettings = CalibrationSettings()) throws -> [ScoreSource] {
        let (layers, contexts) = try scoringContexts(criterion, data: data, settings: settings)
        return try zip(layers, contexts).map { try ScoreSource(layer: $0, criterion: criterion, context: $1) }
    }

    /// Gathers the criterion's evidence and makes each layer's context.
    private func scoringContexts(_ criterion: any Criterion, data: Dataset?,
                                 settings: CalibrationSettings) throws -> ([PrunableLayer], [ScoringContext]) {
        let id = criterion.id
        let layers = prunableLayers()
        let prunable = prunableNodeIndices
        var states = [CriterionState](repeating: CriterionState(), count: layers.count)
        var gradients: [Tensor?] = Array(repeating: nil, count: layers.count)
        var batchCount = 0, exampleCount = 0
        let evidence = criterion.evidence
        if !evidence.isEmpty {
            guard let data else {
                throw PruneKitError(.invalidArgument, "criterion '\(id)' needs calibration data (\(evidence.names.joined(separator: ", ")))",
                                    hint: "give a data set to score on")
            }
            try checkFits(data)
            guard settings.batches >= 1, settings.batchSize >= 1 else {
                throw PruneKitError(.invalidArgument, "calibration needs at least one batch of at least one image, got \(settings.batches) × \(settings.batchSize)")
            }
            (batchCount, exampleCount) = try gatherEvidence(criterion, data: data, settings: settings, layers: layers,
                                                            prunable: prunable, states: &states, gradients: &gradients)
        }
        let contexts = layers.enumerated().map { k, layer in
            var rng = RandomGenerator(seed: settings.seed, stream: "criterion:\(id):\(layer.path)")
            _ = rng.next()
            return ScoringContext(weightGradient: gradients[k], state: states[k], batchCount: batchCount,
                                  exampleCount: exampleCount, rng: rng)
        }
        return (layers, contexts)
    }

    private func gatherEvidence(_ criterion: any Criterion, data: Dataset, settings: CalibrationSettings,
                                layers: [PrunableLayer], prunable: [Int], states: inout [CriterionState],
                                gradients: inout [Tensor?]) throws -> (Int, Int) {
        let evidence = criterion.evidence
        let perBatch = !evidence.subtracting(.weightGradients).isEmpty
        let activationNodes = prunable.map { activationNode(after: $0) }
        let nextNodes = prunable.map { nextPrunableNode(after: $0) }
        let nextViews: [PrunableLayer?] = nextNodes.map { n in
            n.flatMap { node in prunable.firstIndex(of: node).map { layers[$0] } }
        }
        // Which node outputs to keep during a batch: activations, and the inputs of next layers.
        var wantedOutputs = Set<Int>(), wantedGradients = Set<Int>()
        if evidence.contains(.activations) { wantedOutputs.formUnion(activationNodes) }
        if evidence.contains(.activationGradients) { wantedGradients.formUnion(activationNodes) }
        if evidence.contains(.nextLayerInputs) {
            for n in nextNodes.compactMap({ $0 }) { wantedOutputs.formUnion(nodes[n].inputs.filter { $0 >= 0 }) }
        }
        let savedMode = mode
        defer {
            mode = savedMode; forwardObserver = nil; backwardObserver = nil
            zeroGradients()
        }
        // Only what the evidence needs: no backward pass for forward-only evidence (APoZ,
        // ThiNet), no weight-gradient products unless weight gradients are asked for (Taylor
        // needs ∂L/∂activations only).
        let needsBackward = !evidence.isDisjoint(with: [.weightGradients, .activationGradients])
        mode = needsBackward
            ? ForwardMode(training: false, recordsForBackward: true, parameterGradients: evidence.contains(.weightGradients))
            : .inference
        zeroGradients()
        let loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed, epoch: 0)
        var batches = 0, examples = 0
        for b in 0..<min(settings.batches, loader.batchCount) {
            let batch = loader.batch(b)
            var outputs: [Int: Tensor] = [:], grads: [Int: Tensor] = [:]
            forwardObserver = { i, y in if wantedOutputs.contains(i) { outputs[i] = y } }
            backwardObserver = { i, g in if wantedGradients.contains(i) { grads[i] = g } }
            let logits = forward(batch.images)
            if needsBackward { backward(softmaxCrossEntropy(logits: logits, labels: batch.labels).gradient) }
            batches += 1; examples += batch.count
            guard perBatch else { continue }
            for k in layers.indices {
                let a = activationNodes[k]
                var lb = LayerBatch(exampleCount: batch.count)
                if evidence.contains(.activations) { lb.activations = outputs[a] }
                if evidence.contains(.activationGradients) { lb.activationGradients = grads[a] }
                if evidence.contains(.nextLayerInputs), let n = nextNodes[k], let src = nodes[n].inputs.first, src >= 0 {
                    lb.nextLayerInputs = outputs[src]; lb.nextLayer = nextViews[k]
                }
                try requireFinite(lb.activations, "activations", layers[k].path, batch: b)
                try requireFinite(lb.activationGradients, "activation gradients", layers[k].path, batch: b)
                try requireFinite(lb.nextLayerInputs, "next layer's inputs", layers[k].path, batch: b)
                try criterion.observe(lb, layer: layers[k], state: &states[k])
            }
        }
        if evidence.contains(.weightGradients) {
            for (k, i) in prunable.enumerated() {
                let g = nodes[i].layer.parameter(named: "weight")!.gradient
                try requireFinite(g, "weight gradients", layers[k].path, batch: nil)
                gradients[k] = g.reshaped([layers[k].outputs, layers[k].fanIn])
            }
        }
        return (batches, examples)
    }
}

/// Throws unless every value of a piece of evidence is finite: a criterion can't tell NaN
/// evidence from none (a `norm > 0` test is false for NaN), so it must never see it.
/// Cost: one vectorised pass over the tensor.
private func requireFinite(_ tensor: Tensor?, _ what: String, _ path: String, batch: Int?) throws {
    guard let tensor, tensor.withUnsafeBufferPointer(containsNonFinite) else { return }
    throw PruneKitError(.numerical, "the calibration pass gave NaN or infinite \(what) at layer '\(path)'"
                        + (batch.map { " (batch \($0 + 1))" } ?? ""),
                        hint: "the model's weights hold NaN or infinite values, or the data does: check them with `prunekit eval`")
}

/// A criterion's scores for one layer, checked: the right count, all finite.
func checkedScores(_ criterion: any Criterion, layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
    let id = criterion.id
    let scores: [Float]
    do {
        scores = try criterion.scores(for: layer, context: context)
    } catch {
        throw wrapped(error, criterion, layer)
    }
    let expected = criterion.granularity == .channel ? layer.outputs : layer.outputs * layer.fanIn
    guard scores.count == expected else {
        throw PruneKitError(.plugin, "criterion '\(id)' returned \(scores.count) scores for layer '\(layer.path)', expected \(expected) (\(criterion.granularity.rawValue) granularity)")
    }
    if let bad = scores.firstIndex(where: { !$0.isFinite }) {
        throw PruneKitError(.plugin, "criterion '\(id)' returned a non-finite score (\(scores[bad])) at position \(bad) of layer '\(layer.path)'")
    }
    return scores
}

private func wrapped(_ error: Error, _ criterion: any Criterion, _ layer: PrunableLayer) -> PruneKitError {
    if let e = error as? PruneKitError {
        return PruneKitError(e.kind, "criterion '\(criterion.id)' failed on layer '\(layer.path)': \(e.message)", hint: e.hint)
    }
    return PruneKitError(.plugin, "criterion '\(criterion.id)' failed on layer '\(layer.path)': \(error)")
}

extension ScoreSource {
    /// A layer's scores under a criterion: streamed chunk by chunk when the criterion
    /// computes chunks on its own (``Criterion/scoresInChunks``), else computed once here.
    /// Streamed chunks are checked as they are read (a non-finite score throws).
    public init(layer: PrunableLayer, criterion: any Criterion, context: ScoringContext) throws {
        let units = criterion.granularity == .channel ? layer.outputs : layer.outputs * layer.fanIn
        guard criterion.scoresInChunks else {
            self.init(path: layer.path, scores: try checkedScores(criterion, layer: layer, context: context),
                      isClassifier: layer.isClassifier)
            weightShape = layer.weightShape
            return
        }
        self.init(path: layer.path, count: units, isClassifier: layer.isClassifier) { range, buffer in
            do {
                try criterion.scores(for: layer, context: context, chunk: range, into: buffer)
            } catch {
                throw wrapped(error, criterion, layer)
            }
            // Non-finite floats are those whose exponent bits are all ones.
            if containsNonFinite(UnsafeBufferPointer(buffer)), let bad = buffer.firstIndex(where: { !$0.isFinite }) {
                throw PruneKitError(.plugin, "criterion '\(criterion.id)' returned a non-finite score (\(buffer[bad])) at position \(range.lowerBound + bad) of layer '\(layer.path)'")
            }
        }
        weightShape = layer.weightShape
    }
}
