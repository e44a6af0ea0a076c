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
            view.convolution = ConvolutionSettings(window: conv.window, groups: conv.groups)
        }
        return view
    }

    /// The only node reading node `i`'s output, if exactly one does.
    func soleConsumer(of i: Int) -> Int? {
        let readers = nodes.indices.filter { nodes[$0].inputs.contains(i) }
        return readers.count == 1 ? readers[0] : nil
    }

    /// The node whose output is prunable node `i`'s activation: its output after a
    /// following BatchNorm and ReLU (or Clip, as ReLU6, or SiLU), where they follow directly (the
    /// layer's own output otherwise).
    func activationNode(after i: Int) -> Int {
        var j = i
        while let c = soleConsumer(of: j), [.batchNorm, .relu, .clip, .silu, .leakyRelu, .tanh, .hardSigmoid, .hardSwish, .gelu]
                .contains(nodes[c].layer.kind) {
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
            case .maxPool2d, .avgPool2d, .flatten, .dropout, .globalAvgPool, .relu, .clip, .batchNorm,
                 .leakyRelu, .tanh, .hardSigmoid, .hardSwish, .gelu, .zeroPad2d: j = c
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

    /// Runs `criterion`'s ``Criterion/adjustWeights(of:keeping:model:state:context:)`` for
    /// this layer with the state gathered when it was scored.
    func adjustWeights(with criterion: any Criterion, keeping kept: [Int], model: Model, seed: UInt64) throws {
        try adjust(criterion, kept, model, seed)
    }

    private func adjust<C: Criterion>(_ criterion: C, _ kept: [Int], _ model: Model, _ seed: UInt64) throws {
        let context = self.context ?? ScoringContext(rng: RandomGenerator(seed: seed))
        try criterion.adjustWeights(of: layer, keeping: kept, model: model,
                                    state: criterion.storedState(in: context, layer: layer), context: context)
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

    /// Gathers the criterion's evidence (``Criterion/gather(_:into:)`` with a
    /// ``CalibrationSession``) and makes each layer's context, holding its state.
    private func scoringContexts<C: Criterion>(_ criterion: C, data: Dataset?,
                                                settings: CalibrationSettings) throws -> ([PrunableLayer], [ScoringContext]) {
        let id = criterion.id
        let layers = prunableLayers()
        let evidence = criterion.evidence
        let needsData = !evidence.subtracting(.ownPasses).isEmpty
        if needsData, data == nil {
            throw PruneKitError(.invalidArgument, "criterion '\(id)' needs calibration data (\(evidence.names.joined(separator: ", ")))",
                                hint: "give a data set to score on")
        }
        let session = try CalibrationSession(model: self, layers: layers, data: needsData ? data : nil,
                                             settings: settings, criterion: id)
        var states: [C.State] = []
        states.reserveCapacity(layers.count)
        for layer in layers {
            do { states.append(try criterion.makeState(for: layer)) } catch { throw wrapped(error, criterion, layer) }
        }
        do {
            try criterion.gather(session, into: &states)
        } catch let error as PruneKitError {
            guard error.kind != .numerical, !error.message.hasPrefix("criterion '") else { throw error }
            throw PruneKitError(error.kind, "criterion '\(id)': \(error.message)", hint: error.hint)
        } catch {
            throw PruneKitError(.plugin, "criterion '\(id)' failed while gathering its evidence: \(error)")
        }
        guard states.count == layers.count else {
            throw PruneKitError(.plugin, "criterion '\(id)' left \(states.count) states for \(layers.count) layers")
        }
        let batchCount = needsData ? session.batchCount : 0, exampleCount = needsData ? session.exampleCount : 0
        let contexts = layers.enumerated().map { k, layer in
            var rng = RandomGenerator(seed: settings.seed, stream: "criterion:\(id):\(layer.path)")
            _ = rng.next()
            var context = ScoringContext(weightGradient: session.weightGradientSums[k], batchCount: batchCount,
                                         exampleCount: exampleCount, rng: rng)
            context.state = states[k]
            return context
        }
        return (layers, contexts)
    }
}

/// A criterion's scores for one layer, checked: the right count, all finite.
func checkedScores<C: Criterion>(_ criterion: C, layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
    let id = criterion.id
    let scores: [Float]
    do {
        scores = try criterion.scores(for: layer, state: criterion.storedState(in: context, layer: layer), context: context)
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
