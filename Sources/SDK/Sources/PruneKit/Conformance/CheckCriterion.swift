
/// Checks that `criterion` keeps the promises every criterion makes to the harness, on
/// small synthetic layers (``SyntheticLayer/standardSet(seed:)``): a linear and a
/// convolutional layer, and a single-output one of each.
///
/// The checks (``ConformanceCheck``):
/// - **identifier**: `id` is a valid registry id and a fresh ``Registry`` accepts the type.
/// - **defaultOptions**: each option's default has its declared type, names are unique,
///   and `init(options:)` accepts the defaults.
/// - **scoreCount**: `outputs` scores per layer (channel) or `outputs · fanIn` (weight).
/// - **finiteScores**: no NaN or infinity.
/// - **determinism**: two runs with the same seed give bit-identical scores.
/// - **permutationEquivariance**: permuting the output channels (weights, bias,
///   gradient, evidence, and the next layer's input channels) permutes the scores the
///   same way, within a relative tolerance of `1e-4` (sums in another order may round
///   differently). A criterion that is not meant to be equivariant (a seeded random
///   baseline) passes it in `skipping` with the reason.
/// - **zeroWeights**: all-zero weights, bias and evidence give no error, the right count
///   and finite scores (ties are fine).
///
/// A criterion that runs passes of its own (``Evidence/ownPasses``: SynFlow, OBD, GraSP)
/// is checked on a tiny model instead, through ``Model/score(with:data:settings:)``, with
/// one more check, **modelUnchanged**: scoring leaves the model as it found it.
///
/// Evidence: a criterion that declares ``Evidence/weightGradients`` receives a synthetic
/// ∂L/∂W; one that declares per-batch evidence receives two synthetic batches through
/// ``Criterion/observe(_:layer:state:)``, with exactly the fields it asked for (see
/// ``SyntheticLayer`` for their shapes). The synthetic data are random, not a trained
/// network's: the checks test the contract, not that the scores are *good*.
///
/// Cost: a few dozen calls of `scores` on layers of at most 80 weights.
///
/// - Parameters:
///   - criterion: the criterion to check, with the options under test.
///   - seed: the seed of the synthetic data and of ``ScoringContext/rng``.
///   - skipping: checks not to run, each with the reason the report gives.
/// - Returns: one result per check and layer; ``ConformanceReport/passed`` tells the verdict.
public func checkCriterion(_ criterion: any Criterion, seed: UInt64 = 0,
                           skipping: [ConformanceCheck: String] = [:]) -> ConformanceReport {
    var report = ConformanceReport(criterionID: criterion.id)
    func skipped(_ check: ConformanceCheck, _ layer: String?) -> Bool {
        guard let why = skipping[check] else { return false }
        report.record(check, layer, .skipped("skipped by the caller: \(why)"))
        return true
    }

    // The id, and the options of a criterion made from options.
    if !skipped(.identifier, nil) {
        do {
            try Registry().register(criterion: criterion.id, summary: "", options: []) { _ in criterion }
            report.record(.identifier, nil, .passed)
        } catch {
            report.record(.identifier, nil, .failed("'\(criterion.id)' is refused by a registry: \(describe(error))"))
        }
    }
    if !skipped(.defaultOptions, nil) {
        if let type = Swift.type(of: criterion) as? any OptionConstructible.Type {
            report.record(.defaultOptions, nil, checkDefaults(type))
        } else {
            report.record(.defaultOptions, nil, .skipped("\(Swift.type(of: criterion)) is not made from options (not OptionConstructible)"))
        }
    }

    // A criterion that runs passes of its own needs a whole model.
    if criterion.evidence.contains(.ownPasses) {
        checkOnTinyModel(criterion, seed: seed, skipped: skipped, report: &report)
        return report
    }

    let layers = SyntheticLayer.standardSet(seed: seed)
    for synthetic in layers {
        let layer = synthetic.layer
        let name = "\(layer.path) \(layer.kind.rawValue) \(layer.weightShape)"
        let expected = criterion.granularity == .channel ? layer.outputs : layer.outputs * layer.fanIn
        let unit = criterion.granularity == .channel ? "channel" : "weight"

        let first: [Float]
        do {
            first = try synthetic.scores(of: criterion, seed: seed)
        } catch {
            report.record(.scoreCount, name, .failed("scores(for:context:) threw: \(describe(error))"))
            continue
        }
        let countOK = first.count == expected
        if !skipped(.scoreCount, name) {
            report.record(.scoreCount, name, countOK ? .passed
                : .failed("\(unit) granularity: expected \(expected) scores (\(layer.outputs) outputs × \(layer.fanIn) fanIn → \(expected)), got \(first.count)"))
        }
        if !skipped(.finiteScores, name) {
            report.record(.finiteScores, name, finiteOutcome(first))
        }
        if !skipped(.determinism, name) {
            do {
                let second = try synthetic.scores(of: criterion, seed: seed)
                let differs = (0..<min(first.count, second.count)).first { first[$0].bitPattern != second[$0].bitPattern }
                if let i = differs ?? (first.count != second.count ? min(first.count, second.count) : nil) {
                    let a = i < first.count ? "\(first[i])" : "none", b = i < second.count ? "\(second[i])" : "none"
                    report.record(.determinism, name, .failed("same seed \(seed), different scores: score[\(i)] was \(a), then \(b)"))
                } else {
                    report.record(.determinism, name, .passed)
                }
            } catch {
                report.record(.determinism, name, .failed("the second run threw: \(describe(error))"))
            }
        }
        if !skipped(.permutationEquivariance, name) {
            if layer.outputs < 2 {
                report.record(.permutationEquivariance, name, .skipped("a single output channel has no other order"))
            } else if !countOK || !first.allSatisfy(\.isFinite) {
                report.record(.permutationEquivariance, name, .skipped("needs the right count of finite scores"))
            } else {
                report.record(.permutationEquivariance, name,
                              equivarianceOutcome(criterion, synthetic, first, block: expected / layer.outputs, seed: seed))
            }
        }
        if !skipped(.zeroWeights, name) {
            do {
                let zeros = try synthetic.zeroed().scores(of: criterion, seed: seed)
                if zeros.count != expected {
                    report.record(.zeroWeights, name, .failed("all-zero layer: expected \(expected) scores, got \(zeros.count)"))
                } else {
                    report.record(.zeroWeights, name, finiteOutcome(zeros, prefix: "all-zero layer: "))
                }
            } catch {
                report.record(.zeroWeights, name, .failed("all-zero layer: scores(for:context:) threw: \(describe(error))"))
            }
        }
    }
    return report
}

/// Builds the criterion `type` from its default options (recording whether they are
/// accepted) and checks it with ``checkCriterion(_:seed:skipping:)``.
///
/// - Parameter options: `key=value` settings to use instead of some defaults.
public func checkCriterion<C: Criterion & OptionConstructible>(_ type: C.Type, options: [String] = [], seed: UInt64 = 0,
                                                              skipping: [ConformanceCheck: String] = [:]) -> ConformanceReport {
    let criterion: any Criterion
    do {
        criterion = try type.init(options: OptionValues(parsing: options, specs: type.options, owner: type.id))
    } catch {
        var report = ConformanceReport(criterionID: type.id)
        report.record(.defaultOptions, nil, .failed("init(options:) with \(options.isEmpty ? "the defaults" : options.joined(separator: " ")) threw: \(describe(error))"))
        return report
    }
    return checkCriterion(criterion, seed: seed, skipping: skipping)
}

private func checkDefaults(_ type: any OptionConstructible.Type) -> ConformanceReport.Outcome {
    var seen = Set<String>()
    for spec in type.options {
        guard seen.insert(spec.name).inserted else { return .failed("option '\(spec.name)' is declared twice") }
        let actual: OptionType
        switch spec.defaultValue {
        case .int: actual = .int
        case .double: actual = .double
        case .bool: actual = .bool
        case .string: actual = .string
        @unknown default: continue
        }
        if actual != spec.type {
            return .failed("option '\(spec.name)' is declared \(spec.type.rawValue) but its default \(spec.defaultValue) is \(actual.rawValue)")
        }
    }
    do {
        _ = try type.init(options: OptionValues(defaultsOf: type.options))
        return .passed
    } catch {
        return .failed("init(options:) refuses the defaults (\(type.options.map { "\($0.name)=\($0.defaultValue)" }.joined(separator: " "))): \(describe(error))")
    }
}

private func finiteOutcome(_ scores: [Float], prefix: String = "") -> ConformanceReport.Outcome {
    let bad = scores.indices.filter { !scores[$0].isFinite }
    guard !bad.isEmpty else { return .passed }
    let shown = bad.prefix(5).map { "score[\($0)] = \(scores[$0])" }.joined(separator: ", ")
    return .failed("\(prefix)\(bad.count) of \(scores.count) scores are not finite: \(shown)\(bad.count > 5 ? ", …" : "")")
}

private func equivarianceOutcome(_ criterion: any Criterion, _ synthetic: SyntheticLayer, _ original: [Float],
                                 block: Int, seed: UInt64) -> ConformanceReport.Outcome {
    // A fixed derangement-like order: reversed, so every channel moves when outputs > 1
    // (but the middle one of an odd count), then rotated by one so that one moves too.
    let n = synthetic.layer.outputs
    let permutation = Array((0..<n).reversed()).rotated(by: 1)
    let permuted: [Float]
    do {
        permuted = try synthetic.permuted(by: permutation).scores(of: criterion, seed: seed)
    } catch {
        return .failed("with output channels permuted by \(permutation), scores(for:context:) threw: \(describe(error))")
    }
    guard permuted.count == original.count else {
        return .failed("with output channels permuted by \(permutation): \(permuted.count) scores instead of \(original.count)")
    }
    for i in 0..<n {
        for k in 0..<block {
            let got = permuted[i * block + k], want = original[permutation[i] * block + k]
            let tolerance = 1e-4 * max(1, abs(want), abs(got))
            if !(abs(got - want) <= tolerance) {
                let which = block == 1 ? "score[\(i)]" : "score[\(i * block + k)] (row \(i), column \(k))"
                return .failed("with output channels permuted by \(permutation) (new channel i = old channel permutation[i]), "
                               + "\(which) is \(got), expected \(want) (the original score of channel \(permutation[i]))")
            }
        }
    }
    return .passed
}

private func describe(_ error: Error) -> String { describeError(error) }

extension Array {
    fileprivate func rotated(by k: Int) -> [Element] {
        guard count > 1 else { return self }
        let s = k % count
        return Array(self[s...] + self[..<s])
    }
}
