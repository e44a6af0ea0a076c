import Foundation
import PruneKit

/// The oracle loss increases of one layer's channels.
public struct OracleLayer: Codable, Hashable, Sendable {
    /// The layer's dotted path.
    public var path: String
    /// `[outputs]`: the calibration loss with channel j removed alone, minus the loss of
    /// the intact model.
    public var lossIncrease: [Double]
}

/// The oracle of a baseline on its calibration data: what removing each channel alone
/// costs, for a sample of layers.
public struct OracleValues: Codable, Hashable, Sendable {
    /// Mean cross-entropy of the intact model on the calibration examples.
    public var baseLoss: Double
    /// Calibration examples the losses are averaged over.
    public var examples: Int
    public var layers: [OracleLayer]
}

/// Molchanov et al. 2017's evaluation of channel criteria: rank each channel by the loss
/// increase its removal alone causes, and compare a criterion's ranking with it.
///
/// Removing channel j of a layer: its filter (weight row j), its bias, and the γ_j and β_j
/// of a BatchNorm that directly follows; with BatchNorm in evaluation mode the channel
/// then outputs exactly zero, as if it were cut out. The loss is the mean cross-entropy
/// over the calibration batches the criteria score on (the same seeded shuffle of the
/// training split, in evaluation mode), summed in double precision. The oracle uses the
/// signed increase (a channel whose removal lowers the loss ranks lowest).
///
/// References: Molchanov, Tyree, Karras, Aila & Kautz, "Pruning Convolutional Neural
/// Networks for Resource Efficient Inference", ICLR 2017 (section 3, "oracle ranking").
///
/// Cost: one forward pass over the calibration examples per channel of every sampled
/// layer, once per (baseline, calibration); the values are cached beside the baseline.
public enum Oracle {
    /// The dotted paths of the prunable layers to sample: every one but the classifier
    /// (removing a classifier output removes a class), or at most `cap` of them evenly
    /// spaced (first and last included).
    public static func sampledLayers(of model: Model, cap: Int? = nil) -> [String] {
        let paths = model.prunableLayers().filter { !$0.isClassifier }.map(\.path)
        guard let cap, cap >= 1, cap < paths.count else { return paths }
        if cap == 1 { return [paths[0]] }
        let picks = (0..<cap).map { Int((Double($0) * Double(paths.count - 1) / Double(cap - 1)).rounded()) }
        return picks.map { paths[$0] }
    }

    /// The calibration examples of `settings` over `data`, as one batch: exactly the
    /// batches `Model.score(with:data:settings:)` gathers evidence from.
    public static func calibrationBatch(_ data: Dataset, settings: CalibrationSettings) throws -> Batch {
        let loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed, epoch: 0)
        var scalars: [Float] = [], labels: [Int] = [], indices: [Int] = []
        var shape: [Int] = []
        for b in 0..<min(settings.batches, loader.batchCount) {
            let batch = loader.batch(b)
            scalars += batch.images.scalars; labels += batch.labels; indices += batch.indices
            shape = Array(batch.images.shape.dropFirst())
        }
        return Batch(images: Tensor(shape: [labels.count] + shape, scalars: scalars), labels: labels, indices: indices)
    }

    /// Mean cross-entropy of `model` on `batch` in evaluation mode, accumulated in double
    /// precision from the logits (a loss increase can be far below float's resolution of
    /// the loss itself).
    public static func loss(_ model: Model, on batch: Batch, chunk: Int = 256) -> Double {
        let saved = model.mode
        model.mode = .inference
        defer { model.mode = saved }
        let n = batch.count, per = batch.images.count / max(n, 1)
        var sum = 0.0
        var start = 0
        while start < n {
            let end = min(n, start + chunk)
            let logits = model.forward(batch.images.slice(examples: start..<end, perExample: per))
            let classes = logits.count / (end - start)
            logits.withUnsafeBufferPointer { z in
                for e in 0..<(end - start) {
                    let row = z.baseAddress! + e * classes
                    var m = -Double.infinity
                    for k in 0..<classes { m = max(m, Double(row[k])) }
                    var s = 0.0
                    for k in 0..<classes { s += exp(Double(row[k]) - m) }
                    sum += m + log(s) - Double(row[batch.labels[start + e]])
                }
            }
            start = end
        }
        return sum / Double(max(n, 1))
    }

    /// The oracle loss increases of every channel of the layers `paths`.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a path that is no prunable layer.
    /// Cost: Σ channels forward passes over the calibration batch; the model is restored.
    public static func values(model: Model, data: Dataset, calibration: CalibrationSettings, layers paths: [String]) throws -> OracleValues {
        try model.checkFits(data)
        let batch = try calibrationBatch(data, settings: calibration)
        let base = loss(model, on: batch)
        let views = Dictionary(model.prunableLayers().map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        var layers: [OracleLayer] = []
        for path in paths {
            guard let view = views[path], let i = model.nodeIndex(named: path),
                  let weight = model.nodes[i].layer.parameter(named: "weight") else {
                throw PruneKitError(.invalidArgument, "oracle: '\(path)' is not a prunable layer of the model",
                                    hint: "prunable layers: \(model.prunableLayers().map(\.path).joined(separator: ", "))")
            }
            // Per-channel vectors that go with channel j: the bias, and the following BatchNorm's γ and β.
            var vectors = [model.nodes[i].layer.parameter(named: "bias")].compactMap { $0 }
            if let bn = view.batchNormPath, let k = model.nodeIndex(named: bn) {
                vectors += ["weight", "bias"].compactMap { model.nodes[k].layer.parameter(named: $0) }
            }
            let outputs = view.outputs, fanIn = view.fanIn
            var increases = [Double](repeating: 0, count: outputs)
            for j in 0..<outputs {
                let savedRow = Array(weight.value.scalars[(j * fanIn)..<((j + 1) * fanIn)])
                let savedVectors = vectors.map { $0.value.scalars[j] }
                weight.value.withUnsafeMutableBufferPointer { w in for f in 0..<fanIn { w[j * fanIn + f] = 0 } }
                for v in vectors { v.value.withUnsafeMutableBufferPointer { $0[j] = 0 } }
                increases[j] = loss(model, on: batch) - base
                weight.value.withUnsafeMutableBufferPointer { w in for f in 0..<fanIn { w[j * fanIn + f] = savedRow[f] } }
                for (v, x) in zip(vectors, savedVectors) { v.value.withUnsafeMutableBufferPointer { $0[j] = x } }
            }
            layers.append(OracleLayer(path: path, lossIncrease: increases))
        }
        return OracleValues(baseLoss: base, examples: batch.count, layers: layers)
    }

    /// ``values(model:data:calibration:layers:)`` of a baseline, cached in its entry
    /// (`oracle-KEY.json`, KEY a hash of the baseline, the calibration settings and the
    /// layers): computed once, whatever criterion asks. Safe when several trials ask at
    /// once: one computes under a `flock(2)` lock on `oracle-KEY.lock` (as baselines are
    /// trained, ``BaselineCache``), the others wait and then read its file.
    /// - Returns: the values, and whether this call computed them (false: read from the cache).
    public static func cachedValues(model: Model, artifact: BaselineArtifact, data: Dataset,
                                    calibration: CalibrationSettings, layers: [String]) throws -> (values: OracleValues, computedNow: Bool) {
        struct Key: Encodable {
            var version = 1, baseline: String, batches: Int, batchSize: Int, seed: UInt64, layers: [String]
        }
        let key = StableHash.hex(of: Key(baseline: artifact.hash, batches: calibration.batches, batchSize: calibration.batchSize,
                                         seed: calibration.seed, layers: layers))
        let path = "\(artifact.entryDirectory)/oracle-\(key).json"
        let lock = try FileLock(path: "\(artifact.entryDirectory)/oracle-\(key).lock")
        defer { lock.unlock() }
        if let cached = try? readJSON(OracleValues.self, from: path, what: "oracle file") { return (cached, false) }
        let values = try values(model: model, data: data, calibration: calibration, layers: layers)
        try writeJSON(values, to: path)
        return (values, true)
    }

    /// What computing the oracle of one baseline costs, said before any trial runs (it can
    /// take longer than training the baseline).
    public struct Cost: Sendable, Equatable {
        /// Channels removed one at a time (over the sampled layers), and the calibration
        /// examples each removal is evaluated on.
        public var channels: Int
        public var examples: Int
        /// Training images of one baseline epoch.
        public var trainingImages: Int
        /// Baseline epochs of training configured.
        public var baselineEpochs: Int

        public init(channels: Int, examples: Int, trainingImages: Int, baselineEpochs: Int) {
            self.channels = channels; self.examples = examples; self.trainingImages = trainingImages
            self.baselineEpochs = baselineEpochs
        }

        /// Example forward passes: one per channel per calibration example (plus the intact model's).
        public var forwardPasses: Int { (channels + 1) * examples }

        /// The cost in baseline epochs, counting a training step as three forward passes
        /// (forward, and a backward pass of about twice the work). An estimate, high rather
        /// than low: measured here, the oracle took a third (lenet-5) to a tenth
        /// (lenet-300-100) of it, as evaluation batches run faster than training steps.
        public var epochs: Double { Double(forwardPasses) / Double(3 * max(trainingImages, 1)) }

        /// Whether it costs more than training the baseline.
        public var isExpensive: Bool { epochs > Double(max(baselineEpochs, 1)) }

        /// One line for the output: what the oracle computes and what it costs.
        public var summary: String {
            var line = "oracle: \(channels) channels each removed alone over \(examples) calibration examples, once per seed (cached with the baseline): "
                + "\(forwardPasses) example forward passes, up to about " + String(format: "%.1f", epochs) + " baseline epochs of work"
            if isExpensive {
                line += " — more than training the baseline (\(baselineEpochs) epoch\(baselineEpochs == 1 ? "" : "s")); "
                    + "`oracle: {layers: N}` samples fewer layers, `oracle: off` skips it"
            }
            return line
        }
    }

    /// The cost of the oracle of `model` over the layers `paths`.
    public static func cost(of model: Model, layers paths: [String], calibration: CalibrationChoice,
                            trainingImages: Int, baselineEpochs: Int) -> Cost {
        let outputs = Dictionary(model.prunableLayers().map { ($0.path, $0.outputs) }, uniquingKeysWith: { a, _ in a })
        let product = calibration.batches.multipliedReportingOverflow(by: calibration.batchSize)
        let examples = min(product.overflow ? Int.max : product.partialValue, trainingImages)
        return Cost(channels: paths.reduce(0) { $0 + (outputs[$1] ?? 0) }, examples: examples,
                    trainingImages: trainingImages, baselineEpochs: baselineEpochs)
    }

    /// Spearman's ρ between a criterion's channel scores and the oracle's loss increases,
    /// per oracle layer, and their mean over the layers where ρ is defined (a constant
    /// ranking has none: noted).
    public static func agreement(scores: [LayerScores], oracle: OracleValues) -> (byLayer: [String: Double], mean: Double?, notes: [String]) {
        var byLayer: [String: Double] = [:], notes: [String] = []
        for layer in oracle.layers {
            guard let s = scores.first(where: { $0.layer.path == layer.path }), s.scores.count == layer.lossIncrease.count else {
                notes.append("oracle: no channel scores for layer '\(layer.path)'")
                continue
            }
            if let rho = RankStatistics.spearman(s.scores.map(Double.init), layer.lossIncrease) {
                byLayer[layer.path] = rho
            } else {
                notes.append("oracle: Spearman's ρ is undefined for layer '\(layer.path)' (a constant ranking)")
            }
        }
        let mean = byLayer.isEmpty ? nil : byLayer.values.reduce(0, +) / Double(byLayer.count)
        return (byLayer, mean, notes)
    }
}
