import Foundation

/// What a criterion may do with the model before scoring: read the calibration batches
/// and run forward and backward passes of its own, observing the prunable layers, with
/// the weights as they are or transformed for one pass.
///
/// The SDK makes one session per scoring (``Model/score(with:data:settings:)``) and hands
/// it to ``Criterion/gather(_:into:)``. The standard evidence kinds (``Evidence``) are
/// gathered by ``gatherStandardEvidence(for:into:)``, itself built on ``pass(_:objective:observing:weightGradients:parameters:)``;
/// a criterion that needs something else (SynFlow's data-free pass on |W|, a
/// Hessian–vector product, per-example gradients) builds it from the same calls, with no
/// change to the SDK.
///
/// Every pass runs in evaluation mode (BatchNorm uses its running statistics) and leaves
/// the model as it found it: weights, masks, mode and gradients (zero).
public final class CalibrationSession {
    /// The model being scored. Passes restore whatever they change; a criterion should
    /// not change it otherwise.
    public let model: Model
    /// The prunable layers, in the order of the criterion's states.
    public let layers: [PrunableLayer]
    /// The calibration settings (batches, batch size, seed).
    public let settings: CalibrationSettings
    /// The criterion's id, for messages.
    public let criterion: String
    private let loader: DataLoader?
    private let prunableNodes: [Int]
    private let activationNodes: [Int]
    private let nextNodes: [Int?]
    /// ∂L/∂W of each layer summed over the standard pass's batches, when it gathered them.
    var weightGradientSums: [Tensor?]

    init(model: Model, layers: [PrunableLayer], data: Dataset?, settings: CalibrationSettings, criterion: String) throws {
        self.model = model; self.layers = layers; self.settings = settings; self.criterion = criterion
        prunableNodes = model.prunableNodeIndices
        activationNodes = prunableNodes.map { model.activationNode(after: $0) }
        nextNodes = prunableNodes.map { model.nextPrunableNode(after: $0) }
        weightGradientSums = Array(repeating: nil, count: layers.count)
        if let data {
            try model.checkFits(data)
            guard settings.batches >= 1, settings.batchSize >= 1 else {
                throw PruneKitError(.invalidArgument, "calibration needs at least one batch of at least one image, got \(settings.batches) × \(settings.batchSize)")
            }
            loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed, epoch: 0)
        } else {
            loader = nil
        }
    }

    /// The calibration batches available: `settings.batches`, or fewer when the data set
    /// is small; 0 without data.
    public var batchCount: Int { loader.map { min(settings.batches, $0.batchCount) } ?? 0 }

    /// Calibration batch `b` (`0..<batchCount`): the same seeded shuffle for every criterion.
    /// - Throws: ``PruneKitError`` `.invalidArgument` when there is no data or `b` is out of range.
    public func batch(_ b: Int) throws -> Batch {
        guard let loader else {
            throw PruneKitError(.invalidArgument, "criterion '\(criterion)' asked for calibration data, and none was given",
                                hint: "give a data set to score on; a criterion that reads batches declares Evidence.calibrationData")
        }
        guard b >= 0, b < batchCount else {
            throw PruneKitError(.invalidArgument, "criterion '\(criterion)' asked for calibration batch \(b) of \(batchCount)")
        }
        return loader.batch(b)
    }

    /// The examples in all calibration batches together.
    public var exampleCount: Int {
        guard let loader else { return 0 }
        return min(batchCount * settings.batchSize, loader.dataset.count)
    }

    /// What a pass back-propagates.
    public enum Objective {
        /// Forward only.
        case none
        /// The mean cross-entropy of these labels (the standard calibration loss).
        case crossEntropy(labels: [Int])
        /// R = the sum of every output (SynFlow's objective): ∂R/∂output is all ones.
        case sumOfOutputs
        /// Any loss: given the outputs `[N, classes]`, its value and ∂L/∂outputs.
        case custom((Tensor) throws -> (loss: Double, gradient: Tensor))
    }

    /// What one pass produced.
    public struct PassResult {
        /// The model's outputs, `[N, classes]`.
        public let output: Tensor
        /// The objective's value (0 for ``Objective/none``).
        public let loss: Double
        /// Per prunable layer, the kinds asked for in `observing` (``LayerBatch``).
        public let layers: [LayerBatch]
        /// Per prunable layer, ∂L/∂W of this pass, `[outputs, fanIn]`; empty unless asked for.
        public let weightGradients: [Tensor]
    }

    /// Runs the model forward on `input` (`[N] + model.inputShape`), and backward from
    /// `objective` unless it is ``Objective/none``.
    ///
    /// - Parameters:
    ///   - observing: the per-batch kinds to record for every prunable layer
    ///     (``Evidence/activations``, ``Evidence/activationGradients``,
    ///     ``Evidence/nextLayerInputs``); other kinds are ignored.
    ///   - weightGradients: whether to return ∂L/∂W of every prunable layer.
    ///   - parameters: replaces parameters for this pass only: called with every
    ///     parameter's dotted path (`features.0.weight`, BatchNorm running statistics
    ///     included) and value, it returns the value to use, or `nil` to keep it. A
    ///     replacement must have the same shape; a pruned weight stays zero (the mask is
    ///     applied to the replacement).
    /// - Throws: ``PruneKitError`` for a wrong input or replacement shape, and `.numerical`
    ///   when the pass gives NaN or infinite evidence (a criterion never sees it).
    public func pass(_ input: Tensor, objective: Objective = .none, observing: Evidence = [],
                     weightGradients: Bool = false,
                     parameters: ((_ path: String, _ value: Tensor) -> Tensor?)? = nil) throws -> PassResult {
        let n = input.shape.first ?? 0
        guard n > 0, input.count == n * model.inputShape.reduce(1, *) else {
            throw PruneKitError(.shapeMismatch, "criterion '\(criterion)': a pass needs [N] + \(model.inputShape) inputs, got \(input.shape)")
        }
        let backward: Bool
        if case .none = objective { backward = false } else { backward = true }
        guard backward || (!weightGradients && !observing.contains(.activationGradients)) else {
            throw PruneKitError(.invalidArgument, "criterion '\(criterion)': gradients need an objective to back-propagate")
        }
        let saved = model.mode
        var restored: [(Parameter, Tensor)] = []
        defer {
            for (p, v) in restored { p.value = v }
            model.mode = saved; model.forwardObserver = nil; model.backwardObserver = nil
            model.zeroGradients()
        }
        if let parameters {
            for (path, p) in model.namedParameters {
                guard let replacement = parameters(path, p.value) else { continue }
                guard replacement.shape == p.value.shape else {
                    throw PruneKitError(.shapeMismatch, "criterion '\(criterion)': replacement for '\(path)' is \(replacement.shape), the parameter is \(p.value.shape)")
                }
                restored.append((p, p.value))
                p.value = replacement
                p.applyMask()
            }
        }
        model.mode = backward
            ? ForwardMode(training: false, recordsForBackward: true, parameterGradients: weightGradients)
            : .inference
        model.zeroGradients()
        var wantedOutputs = Set<Int>(), wantedGradients = Set<Int>()
        if observing.contains(.activations) { wantedOutputs.formUnion(activationNodes) }
        if observing.contains(.activationGradients) { wantedGradients.formUnion(activationNodes) }
        if observing.contains(.nextLayerInputs) {
            for node in nextNodes.compactMap({ $0 }) { wantedOutputs.formUnion(model.nodes[node].inputs.filter { $0 >= 0 }) }
        }
        var outputs: [Int: Tensor] = [:], grads: [Int: Tensor] = [:]
        model.forwardObserver = { i, y in if wantedOutputs.contains(i) { outputs[i] = y } }
        model.backwardObserver = { i, g in if wantedGradients.contains(i) { grads[i] = g } }
        let output = model.forward(input)
        var loss = 0.0
        switch objective {
        case .none: break
        case .crossEntropy(let labels):
            guard labels.count == n else {
                throw PruneKitError(.shapeMismatch, "criterion '\(criterion)': \(labels.count) labels for a pass of \(n) examples")
            }
            let ce = softmaxCrossEntropy(logits: output, labels: labels)
            loss = Double(ce.loss)
            model.backward(ce.gradient)
        case .sumOfOutputs:
            loss = output.withUnsafeBufferPointer { $0.reduce(0.0) { $0 + Double($1) } }
            model.backward(Tensor(shape: output.shape, repeating: 1))
        case .custom(let objective):
            let (value, gradient) = try objective(output)
            guard gradient.shape == output.shape else {
                throw PruneKitError(.shapeMismatch, "criterion '\(criterion)': its objective's gradient is \(gradient.shape), the output \(output.shape)")
            }
            loss = value
            model.backward(gradient)
        }
        var batches: [LayerBatch] = []
        batches.reserveCapacity(layers.count)
        for k in layers.indices {
            var lb = LayerBatch(exampleCount: n)
            let a = activationNodes[k]
            if observing.contains(.activations) { lb.activations = outputs[a] }
            if observing.contains(.activationGradients) { lb.activationGradients = grads[a] }
            if observing.contains(.nextLayerInputs), let next = nextNodes[k], let src = model.nodes[next].inputs.first, src >= 0 {
                lb.nextLayerInputs = outputs[src]
                lb.nextLayer = prunableNodes.firstIndex(of: next).map { layers[$0] }
            }
            try requireFinite(lb.activations, "activations", layers[k].path)
            try requireFinite(lb.activationGradients, "activation gradients", layers[k].path)
            try requireFinite(lb.nextLayerInputs, "next layer's inputs", layers[k].path)
            batches.append(lb)
        }
        var gradients: [Tensor] = []
        if weightGradients {
            for (k, node) in prunableNodes.enumerated() {
                let g = model.nodes[node].layer.parameter(named: "weight")!.gradient
                try requireFinite(g, "weight gradients", layers[k].path)
                gradients.append(g.reshaped([layers[k].outputs, layers[k].fanIn]))
            }
        }
        return PassResult(output: output, loss: loss, layers: batches, weightGradients: gradients)
    }

    /// The standard calibration pass: every calibration batch forward, and backward from
    /// its cross-entropy when `criterion` declares gradients; per-batch kinds go to
    /// ``Criterion/observe(_:layer:state:)``, ∂L/∂W (summed over the batches) to
    /// ``ScoringContext/weightGradient``. Does nothing for a criterion that declares no
    /// standard kind.
    public func gatherStandardEvidence<C: Criterion>(for criterion: C, into states: inout [C.State]) throws {
        let evidence = criterion.evidence
        let perBatch = evidence.intersection(.perBatch)
        let wantsWeightGradients = evidence.contains(.weightGradients)
        guard !perBatch.isEmpty || wantsWeightGradients else { return }
        guard states.count == layers.count else {
            throw PruneKitError(.plugin, "criterion '\(self.criterion)': \(states.count) states for \(layers.count) layers")
        }
        let backward = wantsWeightGradients || perBatch.contains(.activationGradients)
        for b in 0..<batchCount {
            let batch = try self.batch(b)
            let result: PassResult
            do {
                result = try pass(batch.images, objective: backward ? .crossEntropy(labels: batch.labels) : .none,
                                  observing: perBatch, weightGradients: wantsWeightGradients)
            } catch let error as PruneKitError where error.kind == .numerical {
                throw PruneKitError(.numerical, "\(error.message) (batch \(b + 1))", hint: error.hint)
            }
            for (k, g) in result.weightGradients.enumerated() {
                if weightGradientSums[k] == nil { weightGradientSums[k] = g } else { weightGradientSums[k]!.add(g) }
            }
            guard !perBatch.isEmpty else { continue }
            for k in layers.indices {
                try criterion.observe(result.layers[k], layer: layers[k], state: &states[k])
            }
        }
    }
}

/// Throws unless every value of a piece of evidence is finite: a criterion can't tell NaN
/// evidence from none (a `norm > 0` test is false for NaN), so it must never see it.
/// Cost: one vectorised pass over the tensor.
private func requireFinite(_ tensor: Tensor?, _ what: String, _ path: String) throws {
    guard let tensor, tensor.withUnsafeBufferPointer(containsNonFinite) else { return }
    throw PruneKitError(.numerical, "the calibration pass gave NaN or infinite \(what) at layer '\(path)'",
                        hint: "the model's weights hold NaN or infinite values, or the data does: check them with `prunekit eval`")
}
