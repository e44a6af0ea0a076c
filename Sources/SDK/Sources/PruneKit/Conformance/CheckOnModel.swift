
/// The checks of ``checkCriterion(_:seed:skipping:)`` for a criterion that runs passes of
/// its own (``Evidence/ownPasses``), which a synthetic layer can't feed: on a tiny model
/// (convolution 1→4 3×3 with padding 1 and bias, ReLU, global average pool, linear 4→3;
/// 12 random 1×7×5 images, two calibration batches of 6), through ``Model/score(with:data:settings:)``.
///
/// - scoreCount, finiteScores: per prunable layer.
/// - determinism: scoring twice gives bit-identical scores.
/// - permutationEquivariance: permuting the convolution's output channels (its filters and
///   bias, and the linear layer's input columns: the same function) permutes its scores.
/// - zeroWeights: all-zero weights and biases: no error, the right count, finite scores.
/// - modelUnchanged: scoring leaves every parameter bit for bit, the masks, zero gradients
///   and the model's mode as they were.
func checkOnTinyModel(_ criterion: any Criterion, seed: UInt64, skipped: (ConformanceCheck, String?) -> Bool,
                      report: inout ConformanceReport) {
    let settings = CalibrationSettings(batches: 2, batchSize: 6, seed: seed)
    func score(_ model: Model) throws -> [LayerScores] {
        try model.score(with: criterion, data: tinyData(seed: seed), settings: settings)
    }
    let model: Model, first: [LayerScores]
    do {
        model = try tinyModel(seed: seed)
        let before = snapshot(model)
        first = try score(model)
        if !skipped(.modelUnchanged, "tiny model") {
            report.record(.modelUnchanged, "tiny model", before == snapshot(model) ? .passed
                : .failed("scoring changed the model (a parameter, a mask, a gradient or the mode): a pass must restore what it changes"))
        }
    } catch {
        report.record(.scoreCount, "tiny model", .failed("Model.score threw: \(describeError(error))"))
        return
    }
    for s in first {
        let layer = s.layer, name = "tiny model: \(layer.path) \(layer.kind.rawValue) \(layer.weightShape)"
        let expected = criterion.granularity == .channel ? layer.outputs : layer.outputs * layer.fanIn
        if !skipped(.scoreCount, name) {
            report.record(.scoreCount, name, s.scores.count == expected ? .passed
                : .failed("expected \(expected) scores, got \(s.scores.count)"))
        }
        if !skipped(.finiteScores, name), let bad = s.scores.firstIndex(where: { !$0.isFinite }) {
            report.record(.finiteScores, name, .failed("score[\(bad)] = \(s.scores[bad])"))
        } else if !skipped(.finiteScores, name) {
            report.record(.finiteScores, name, .passed)
        }
    }
    if !skipped(.determinism, "tiny model") {
        do {
            let again = try score(model)
            let same = zip(first, again).allSatisfy { a, b in a.scores.map(\.bitPattern) == b.scores.map(\.bitPattern) }
            report.record(.determinism, "tiny model", same ? .passed : .failed("the same model, data and seed gave different scores"))
        } catch {
            report.record(.determinism, "tiny model", .failed("the second run threw: \(describeError(error))"))
        }
    }
    if !skipped(.permutationEquivariance, "tiny model") {
        let order = [2, 0, 3, 1]
        do {
            let permuted = try tinyModel(seed: seed, channelOrder: order)
            let scores = try score(permuted)[0].scores, original = first[0].scores
            let block = original.count / order.count
            var outcome = ConformanceReport.Outcome.passed
            search: for i in order.indices {
                for k in 0..<block {
                    let got = scores[i * block + k], want = original[order[i] * block + k]
                    if !(abs(got - want) <= 1e-4 * max(1, abs(want), abs(got))) {
                        outcome = .failed("with the convolution's channels in the order \(order), score[\(i * block + k)] is \(got), expected \(want)")
                        break search
                    }
                }
            }
            report.record(.permutationEquivariance, "tiny model", outcome)
        } catch {
            report.record(.permutationEquivariance, "tiny model", .failed("the permuted model threw: \(describeError(error))"))
        }
    }
    if !skipped(.zeroWeights, "tiny model") {
        do {
            let zero = try tinyModel(seed: seed)
            for (_, p) in zero.namedParameters where p.isTrainable { p.value = Tensor(shape: p.value.shape, repeating: 0) }
            let scores = try score(zero)
            let bad = scores.first { $0.scores.contains { !$0.isFinite } }
            report.record(.zeroWeights, "tiny model", bad.map { .failed("all-zero model: a non-finite score in '\($0.layer.path)'") } ?? .passed)
        } catch {
            report.record(.zeroWeights, "tiny model", .failed("all-zero model: Model.score threw: \(describeError(error))"))
        }
    }
}

/// The tiny model, its convolution's output channels in `channelOrder` (new channel i is
/// old channel `channelOrder[i]`, the linear layer's inputs following: the same function).
private func tinyModel(seed: UInt64, channelOrder: [Int] = [0, 1, 2, 3]) throws -> Model {
    var rng = RandomGenerator(seed: seed, stream: "conformance-model")
    var b = ModelBuilder(architecture: "conformance-tiny", inputShape: [1, 7, 5])
    b.add("features.0", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
    b.add("features.1", ReLU())
    b.add("pool", GlobalAvgPool())
    b.add("classifier", Linear(inFeatures: 4, outFeatures: 3, rng: &rng))
    let model = try b.build()
    let w = model.nodes[0].layer.parameter(named: "weight")!, bias = model.nodes[0].layer.parameter(named: "bias")!
    let fc = model.nodes[3].layer.parameter(named: "weight")!
    let (rows, fcRows) = (w.value.rows, fc.value.rows)
    w.value = Tensor(shape: w.value.shape, scalars: channelOrder.flatMap { rows[$0] })
    bias.value = Tensor(shape: [4], scalars: channelOrder.map { bias.value.scalars[$0] })
    fc.value = Tensor(shape: [3, 4], scalars: fcRows.flatMap { row in channelOrder.map { row[$0] } })
    return model
}

private func tinyData(seed: UInt64) throws -> Dataset {
    var rng = RandomGenerator(seed: seed, stream: "conformance-data")
    return try Dataset(name: "conformance", imageShape: [1, 7, 5], classCount: 3,
                       pixels: (0..<(12 * 35)).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
                       labels: (0..<12).map { Int32($0 % 3) }, normalization: Normalization(mean: [0.5], std: [0.25]))
}

private struct ModelSnapshot: Equatable {
    var values: [Tensor], masks: [Tensor?], gradientsZero: Bool, mode: ForwardMode
}

private func snapshot(_ model: Model) -> ModelSnapshot {
    let parameters = model.namedParameters.map(\.parameter)
    return ModelSnapshot(values: parameters.map(\.value), masks: parameters.map(\.mask),
                         gradientsZero: model.trainableParameters.allSatisfy { $0.gradient.scalars.allSatisfy { $0 == 0 } },
                         mode: model.mode)
}

func describeError(_ error: Error) -> String {
    (error as? PruneKitError)?.description ?? String(describing: error)
}
