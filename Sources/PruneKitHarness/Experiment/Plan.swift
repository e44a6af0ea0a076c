import Foundation
import PruneKit

/// The trials of an experiment, checked before any of them runs.
///
/// Every seed × pruning time (`when`) × criterion × target is a `.prune` trial, and every
/// seed × pruning time × weight criterion × N:M pattern (``ExperimentSpec/patterns``) one
/// more, at the pattern's nominal compression; each is followed by one trial per sanity
/// check of a weight criterion (``SanityCheck``). With the oracle on, every seed × channel
/// criterion is also an `.oracle` trial. The order is fixed (seeds, then pruning times in
/// the spec's order, then criteria in the spec's order — the registry's sorted ids by
/// default — then targets, then patterns, then the criterion's own trial and its sanity
/// checks, then the oracle trials of the seed), so the same spec gives the same trials, in
/// the same order, on every machine: what ``Shard`` relies on.
public struct ExperimentPlan: Sendable {
    public let spec: ExperimentSpec
    /// The criteria, resolved, with their granularity.
    public let criteria: [(choice: CriterionChoice, granularity: Granularity)]
    public internal(set) var trials: [TrialConfiguration]
    /// Registered criteria left out of a default ("all criteria") experiment because they
    /// can't rank this model's channels, with the reason.
    public var skipped: [(choice: CriterionChoice, reason: String)] = []
    /// What a reader of the results must know before they run (what an N:M pattern's
    /// trials do with the targets, and what it reaches on this model), one sentence each
    /// (set by ``validated(_:registry:probe:)``, which has the model).
    public var notes: [String] = []
    /// What the oracle of one baseline costs, when the plan has oracle trials (set by
    /// ``validated(_:registry:probe:)``, which has the model).
    public var oracleCost: Oracle.Cost?

    /// The distinct baselines the trials start from, in seed order.
    public var baselines: [BaselineConfiguration] {
        var seen = Set<String>()
        return trials.map(\.baseline).filter { seen.insert($0.hash).inserted }
    }

    /// The trials of a spec whose criteria are already resolved: pure, no registry, model or data.
    /// - Parameter checkpointEpochs: the baseline epochs the finetuning strategy rewinds to
    ///   (`FinetuneStrategy.checkpointEpochs`), kept by every baseline; `nil` or empty: none.
    public init(spec: ExperimentSpec, criteria: [(choice: CriterionChoice, granularity: Granularity)],
                checkpointEpochs: [Int]? = nil) {
        self.spec = spec
        self.criteria = criteria
        var trials: [TrialConfiguration] = []
        for seed in spec.seeds {
            var baseline = spec.baselineConfiguration(seed: seed)
            if let epochs = checkpointEpochs, !epochs.isEmpty { baseline.checkpointEpochs = epochs.sorted() }
            func trial(_ kind: TrialKind, _ c: CriterionChoice, _ target: TrialTarget?) -> TrialConfiguration {
                TrialConfiguration(kind: kind, baseline: baseline, criterion: c.id, criterionOptions: c.options,
                                   target: target, schedule: spec.schedule, scheduleOptions: spec.scheduleOptions,
                                   finetune: spec.finetune, finetuneOptions: spec.finetuneOptions,
                                   finetuneEpochs: spec.finetuneEpochs, calibrationBatches: spec.calibration.batches,
                                   calibrationBatchSize: spec.calibration.batchSize, residualPolicy: spec.residualPolicy,
                                   oracleLayers: kind == .oracle ? spec.oracle.layers : nil,
                                   // Latency changes only where channels are removed: a
                                   // weight-pruned model runs the same dense kernels.
                                   latencyRuns: kind == .prune && granularity(of: c) == .weight ? 0 : nil)
            }
            func granularity(of choice: CriterionChoice) -> Granularity? {
                criteria.first { $0.choice == choice }?.granularity
            }
            for when in spec.when {
                for c in criteria {
                    // Sanity checks are defined for weight criteria (``SanityCheck``).
                    let checks: [SanityCheck?] = [nil] + (c.granularity == .weight ? spec.sanity : [])
                    // The targets, then (weight criteria) each N:M pattern at its own nominal target.
                    var variants: [(target: TrialTarget?, pattern: String?)] = spec.targets.map { ($0, nil) }
                    if c.granularity == .weight {
                        // A pattern that doesn't parse (a spec not validated) gets no target: its trial fails with the reason.
                        variants += spec.patterns.map { ((try? NMPattern(parsing: $0)).map(TrialTarget.init(nominalOf:)), $0) }
                    }
                    for variant in variants {
                        for check in checks {
                            var t = trial(.prune, c.choice, variant.target)
                            t.when = when == .trained ? nil : when   // trained: the default, ids as before
                            t.pattern = variant.pattern
                            t.sanity = check
                            trials.append(t)
                        }
                    }
                }
            }
            if spec.oracle.enabled {
                for c in criteria where c.granularity == .channel { trials.append(trial(.oracle, c.choice, nil)) }
            }
        }
        self.trials = trials
    }

    /// Checks everything that can be checked before a trial runs, and plans the trials.
    ///
    /// In order: the spec's values (``ExperimentSpec/validate()``); every criterion,
    /// schedule and finetuning id and its options against the registry (an unknown id
    /// lists the known ones); the data set (it is loaded); the model (a zoo name, or a saved
    /// model that must load and fit the data); every target against the most the model's
    /// structure allows for each criterion's granularity (``TargetReach``), naming the
    /// closest reachable figure; every channel criterion that needs no data against the
    /// model (``ChannelRankingProbe``: one that can't rank its channels is refused when
    /// named, left out of "every criterion" otherwise; one whose probe fails stays, and
    /// its trials fail with the reason); pruning at initialisation against the model, the
    /// schedule and the strategy (``checkPruningTime(_:schedule:strategy:)``); sanity checks
    /// against named channel criteria (refused). Cost: loading the data set and building the model
    /// once; a scoring pass over the weights per such criterion.
    /// - Parameter probe: where the channel criteria are scored (`compare`: a child process,
    ///   ``ChildProcessTrialRunner``); `nil`: in this process, so that a criterion that
    ///   crashes while scoring takes the caller down.
    /// - Throws: ``PruneKitError`` `.invalidArgument`, `.invalidFile` (data, model).
    public static func validated(_ spec: ExperimentSpec, registry: Registry = .shared,
                                 probe: ChannelRankingProbing? = nil) throws -> ExperimentPlan {
        try spec.validate()
        let choices: [CriterionChoice]
        if let given = spec.criteria {
            choices = given
        } else {
            choices = registry.ids(of: .criterion).map { CriterionChoice($0) }
            guard !choices.isEmpty else {
                throw PruneKitError(.plugin, "no criteria are registered, so there is nothing to compare",
                                    hint: "check that the plugin libraries are next to the executable or on PRUNEKIT_PLUGIN_PATH (prunekit plugins)")
            }
        }
        var seenCriteria = Set<CriterionChoice>()
        var instances: [(choice: CriterionChoice, criterion: any Criterion)] = []
        for c in choices {
            guard seenCriteria.insert(c).inserted else {
                throw PruneKitError(.invalidArgument, "the criterion '\(c)' is listed twice", hint: "list each criterion once")
            }
            instances.append((c, try registry.criterion(c.id, options: c.options)))
        }
        let schedule = try registry.schedule(spec.schedule, options: spec.scheduleOptions)
        let strategy = try registry.finetune(spec.finetune, options: spec.finetuneOptions)
        try checkPruningTime(spec, schedule: schedule, strategy: strategy)
        // Named channel criteria are refused; "every criterion" gives controls to its weight criteria only.
        if !spec.sanity.isEmpty, spec.criteria != nil {
            for (choice, criterion) in instances where criterion.granularity == .channel {
                throw PruneKitError(.invalidArgument,
                    "sanity checks (\(spec.sanity.map(\.rawValue).joined(separator: ", "))) are defined for weight criteria; '\(choice.id)' ranks channels",
                    hint: "leave '\(choice.id)' out of --criteria, or drop --sanity: for a channel criterion, compare it with 'random granularity=channel' (a layer shuffle at the same per-layer fraction) and with --finetune reinit (Liu et al. 2019)")
            }
        }
        let patterns = try spec.patterns.map(NMPattern.init(parsing:))
        try checkPatterns(patterns, spec: spec, instances: instances, schedule: schedule)

        let splits = try DatasetCatalog.load(spec.dataset, directory: spec.dataDirectory, options: spec.dataOptions ?? DataSourceOptions())
        let model = try loadModel(spec.model, data: splits.train)
        if let n = spec.baseline.trainingImages, n > splits.train.count {
            throw PruneKitError(.invalidArgument, "'training-images' is \(n) but \(splits.train.name) has only \(splits.train.count) training images",
                                hint: "leave it out to use them all")
        }
        guard spec.baseline.validationImages < splits.train.count else {
            throw PruneKitError(.invalidArgument, "'validation-images' is \(spec.baseline.validationImages) but \(splits.train.name) has only \(splits.train.count) training images",
                                hint: "hold out fewer images for validation")
        }
        // A channel criterion that scores from the model alone and can't tell any channels
        // apart (network slimming on a model without BatchNorm) would prune in layer order:
        // refused when named, left out of the default "every criterion".
        var resolved: [(choice: CriterionChoice, granularity: Granularity)] = []
        var skipped: [(choice: CriterionChoice, reason: String)] = []
        let beforeTraining = ModelZoo.names.contains(spec.model)
        for (choice, criterion) in instances {
            var outcome = ChannelRankingProbe.Outcome.canRank
            if model.channelRankingIsChecked(for: criterion, beforeTraining: beforeTraining) {
                let request = ChannelRankingProbe(criterion: choice, model: spec.model, inputShape: splits.train.imageShape,
                                                  classCount: splits.train.classCount, beforeTraining: beforeTraining)
                outcome = probe?.probe(request) ?? request.run(registry: registry, model: model)
            }
            if case let .cannotRank(problem) = outcome {
                guard spec.criteria == nil else {
                    throw PruneKitError(.invalidArgument, problem.message,
                                        hint: "leave '\(choice.id)' out" + (problem.hint.map { "; \($0)" } ?? ""))
                }
                skipped.append((choice, problem.message))
            } else {
                // A probe that failed keeps the criterion: its trials fail with the reason.
                resolved.append((choice, criterion.granularity))
            }
        }
        guard !resolved.isEmpty else {
            throw PruneKitError(.invalidArgument, "no registered criterion can rank \(spec.model)", hint: "name the criteria with --criteria")
        }
        if !patterns.isEmpty, !resolved.contains(where: { $0.granularity == .weight }) {
            throw PruneKitError(.invalidArgument, "--pattern \(spec.patterns.joined(separator: ",")) selects single weights, but no weight criterion is registered",
                                hint: "load a weight criterion (prunekit plugins lists them), or drop --pattern")
        }
        let reach = TargetReach(model: model)
        for granularity in Set(resolved.map(\.granularity)).sorted(by: { $0.rawValue < $1.rawValue }) {
            for axis in TargetAxis.allCases {
                let wanted = spec.targets.filter { $0.axis == axis }
                guard let top = wanted.map(\.value).max() else { continue }
                let most = reach.maximum(granularity, axis)
                guard top <= most else {
                    let names = resolved.filter { $0.granularity == granularity }.map(\.choice.id).joined(separator: ", ")
                    throw PruneKitError(.invalidArgument,
                        "the target \(TrialTarget(axis, top)) can't be met by \(granularity.rawValue) pruning of \(spec.model) (\(names)): the most it allows is "
                        + String(format: "%.1f×", most),
                        hint: "lower the target to at most " + String(format: "%.1f", most)
                            + (granularity == .weight ? " (the classifier is kept whole)" : " (every layer keeps at least one channel; the classifier keeps all its outputs)"))
                }
            }
        }
        var plan = ExperimentPlan(spec: spec, criteria: resolved, checkpointEpochs: Array(strategy.checkpointEpochs))
        plan.skipped = skipped
        plan.notes = try patterns.map { try reach.note(on: $0, model: spec.model, targets: spec) }
        // Each plugin's build is part of its trials' ids: a rebuilt plugin gets new trials.
        plan.trials = try plan.trials.map { try PluginBuild.stamped($0, registry: registry) }
        if plan.trials.contains(where: { $0.kind == .oracle }) {
            let training = min(spec.baseline.trainingImages ?? .max, splits.train.count - spec.baseline.validationImages)
            plan.oracleCost = Oracle.cost(of: model, layers: Oracle.sampledLayers(of: model, cap: spec.oracle.layers),
                                          calibration: spec.calibration, trainingImages: training, baselineEpochs: spec.baseline.epochs)
        }
        return plan
    }

    /// Refuses N:M patterns where they can't be used, as `prunekit prune --pattern` does:
    /// with a channel criterion named in the spec (every criterion, the default: the
    /// patterns apply to the weight criteria only), and with a schedule that prunes in
    /// several steps (``NMPattern/check(_:)``: the pattern fixes every step's sparsity).
    /// - Throws: ``PruneKitError`` `.invalidArgument` with the reason and what to do instead.
    static func checkPatterns(_ patterns: [NMPattern], spec: ExperimentSpec, instances: [(choice: CriterionChoice, criterion: any Criterion)],
                              schedule: any Schedule) throws {
        guard let first = patterns.first else { return }
        let option = "--pattern \(patterns.map(\.description).joined(separator: ","))"
        if spec.criteria != nil {
            for (choice, criterion) in instances where criterion.granularity != .weight {
                throw PruneKitError(.invalidArgument,
                    "\(option) selects single weights, but '\(choice.id)' is a \(criterion.granularity.rawValue) criterion",
                    hint: "leave '\(choice.id)' out of --criteria, or drop --pattern; to see N:M beside channel pruning, run '\(choice.id)' with the same --store (the report covers every trial in the store), or leave --criteria out (every criterion: the patterns apply to the weight criteria)")
            }
        }
        do { try first.check(schedule) } catch let e as PruneKitError {
            throw PruneKitError(e.kind, "\(option): \(e.message)",
                                hint: "use --schedule one-shot with --pattern (compare '\(spec.schedule)' in a run without --pattern)")
        }
    }

    /// Refuses what pruning at initialisation can't do (``PruningTime/initialization``):
    /// a saved model (it has no initial weights to go back to); a schedule that prunes more
    /// than once or during training (iterative, AGP: their later steps score a trained
    /// network — that is not pruning at initialisation); and, when every trial prunes at
    /// initialisation, a finetuning strategy that needs checkpoints of the trained baseline
    /// (rewinding), which init trials never use: they train with the baseline's recipe.
    /// - Throws: ``PruneKitError`` `.invalidArgument` with the reason and what to do instead.
    static func checkPruningTime(_ spec: ExperimentSpec, schedule: any Schedule, strategy: any FinetuneStrategy) throws {
        guard spec.when.contains(.initialization) else { return }
        guard ModelZoo.names.contains(spec.model) else {
            throw PruneKitError(.invalidArgument, "--when init prunes the baseline's initial weights, but '\(spec.model)' is a saved model: it has none",
                                hint: "use a zoo model (\(ModelZoo.names.joined(separator: ", "))) with --when init, or --when trained")
        }
        let steps = schedule.sparsities(toward: 0.5).count
        let duringTraining = (schedule.trainingSteps ?? []).contains { $0 > 0 }
        guard steps == 1, !duringTraining else {
            throw PruneKitError(.invalidArgument,
                "--when init prunes once, before any training; the schedule '\(spec.schedule)' "
                    + (duringTraining ? "prunes during training" : "prunes in \(steps) steps with training between them") + ", so its later steps score a trained network",
                hint: "use --schedule one-shot with --when init (compare '\(spec.schedule)' with --when trained)")
        }
        if spec.when == [.initialization], !strategy.checkpointEpochs.isEmpty {
            throw PruneKitError(.invalidArgument,
                "the finetuning strategy '\(spec.finetune)' rewinds to epoch\(strategy.checkpointEpochs.count == 1 ? "" : "s") \(strategy.checkpointEpochs.sorted().map(String.init).joined(separator: ", ")) of the trained baseline, and --when init has no trained model: its trials train with the baseline's recipe instead of a finetuning strategy",
                hint: "leave --finetune out with --when init, or use --when init,trained to rewind the trained trials")
        }
    }

    /// A zoo model (freshly initialised) or a saved model that fits `data`.
    static func loadModel(_ name: String, data: Dataset) throws -> Model {
        let model = try loadModel(name, inputShape: data.imageShape, classCount: data.classCount)
        try model.checkFits(data)
        return model
    }

    /// A zoo model (freshly initialised with seed 0) or a saved model.
    static func loadModel(_ name: String, inputShape: [Int], classCount: Int) throws -> Model {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: name, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw PruneKitError(.invalidArgument, "'\(name)' is a file, not a saved model folder",
                                    hint: "give the folder that holds model.json and model.safetensors, or a zoo name")
            }
            return try Model.load(from: name)
        }
        guard ModelZoo.names.contains(name) else {
            throw PruneKitError(.invalidArgument, "'\(name)' is neither a saved model folder nor a zoo model",
                                hint: "zoo models: \(ModelZoo.names.joined(separator: ", "))")
        }
        return try ModelZoo.make(name, inputShape: inputShape, classCount: classCount, seed: 0)
    }

    /// The trials of one shard.
    public func trials(in shard: Shard) -> [TrialConfiguration] { shard.slice(trials) }
}

/// One slice of an experiment's trials, so that machines can share the work:
/// shard `index` of `count` (1-based) takes trials index−1, index−1+count, … of the plan.
///
/// The plan's order is the same everywhere, so every machine computes the same slices;
/// shards differ in size by at most one trial, and their union is exactly the plan.
public struct Shard: Hashable, Sendable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    /// The whole plan.
    public static let all = Shard(unchecked: 1, 1)

    init(unchecked index: Int, _ count: Int) { self.index = index; self.count = count }

    /// - Throws: ``PruneKitError`` `.invalidArgument` unless 1 ≤ index ≤ count.
    public init(index: Int, count: Int) throws {
        guard count >= 1, (1...count).contains(index) else {
            throw PruneKitError(.invalidArgument, "shard \(index)/\(count) does not exist",
                                hint: "--shard I/N takes N ≥ 1 and I from 1 to N (a Slurm array: --shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT)")
        }
        self.index = index; self.count = count
    }

    /// Parses `I/N`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0].trimmingCharacters(in: .whitespaces)),
              let n = Int(parts[1].trimmingCharacters(in: .whitespaces)) else {
            throw PruneKitError(.invalidArgument, "'\(text)' is not a shard", hint: "write I/N, for example --shard 2/4")
        }
        try self.init(index: i, count: n)
    }

    public func slice<T>(_ items: [T]) -> [T] {
        stride(from: index - 1, to: items.count, by: count).map { items[$0] }
    }

    public var description: String { "\(index)/\(count)" }
}

/// The most a pruning granularity can reach on a model, from its structure alone.
///
/// Weight pruning with the classifier kept whole: everything else pruned leaves the
/// classifier's weights (compression) and MACs (speed-up). Channel pruning: every layer
/// but the classifier keeps one output channel (the selection's minimum), and each
/// layer's inputs shrink with the previous prunable layer's kept fraction. These are
/// upper bounds (a residual join can force more to stay), so a target above them can
/// never be met; one below them can still fail in its trial, with the closest figure.
/// Cost: one pass over the prunable layers' shapes.
public struct TargetReach {
    let layers: [(weights: Int, macs: Int, outputs: Int, isClassifier: Bool, path: String, inputs: Int?)]

    public init(model: Model) {
        layers = model.prunableLayers().map {
            ($0.weights.count, $0.macs, $0.outputs, $0.isClassifier, $0.path, $0.weightShape.count >= 2 ? $0.weightShape[1] : nil)
        }
    }

    /// The compression an N:M pattern reaches over every prunable weight, and the layers it
    /// leaves dense: as ``NMPattern`` documents, a layer is covered when its input size
    /// (`weightShape[1]`: `in`, or `in/groups`) is a positive multiple of M; the classifier
    /// is kept whole, as in every trial.
    public func compression(of pattern: NMPattern) -> (ratio: Double, dense: [(path: String, inputs: Int?)]) {
        let total = layers.reduce(0) { $0 + $1.weights }
        var pruned = 0.0, dense: [(path: String, inputs: Int?)] = []
        for l in layers where !l.isClassifier {
            if let inputs = l.inputs, inputs > 0, inputs % pattern.m == 0 {
                pruned += Double(l.weights) * pattern.sparsity
            } else {
                dense.append((l.path, l.inputs))
            }
        }
        return (Double(total) / max(Double(total) - pruned, 1), dense)
    }

    /// What the trials of `pattern` do, in one sentence: their target is the pattern's own
    /// (not the spec's compressions or speed-ups), and what it reaches on this model.
    /// - Throws: ``PruneKitError`` `.invalidArgument` when the pattern covers no layer (every
    ///   trial would prune nothing).
    func note(on pattern: NMPattern, model name: String, targets spec: ExperimentSpec) throws -> String {
        let (ratio, dense) = compression(of: pattern)
        let covered = layers.filter { !$0.isClassifier }.count - dense.count
        let inputs = dense.map { "\($0.path): \($0.inputs.map(String.init) ?? "no input dimension")" }.joined(separator: ", ")
        guard covered > 0 else {
            throw PruneKitError(.invalidArgument,
                "the N:M pattern \(pattern) covers no prunable layer of \(name): no input size is a multiple of \(pattern.m) (\(inputs)); the classifier is kept whole",
                hint: "choose an M that divides one of those input sizes (2:4 covers layers whose input size is a multiple of 4), or drop the pattern")
        }
        let nominal = TrialTarget(nominalOf: pattern)
        var left = ["the classifier kept whole"]
        if !dense.isEmpty { left.insert("\(dense.map(\.path).joined(separator: ", ")) dense (input size not a multiple of \(pattern.m))", at: 0) }
        var text = "the N:M pattern \(pattern) is its own target: it keeps \(pattern.n) of every \(pattern.m) weights of each layer it covers, "
            + "nominally \(nominal) (" + String(format: "%.2f×", ratio) + " on \(name), \(left.joined(separator: ", "))); "
            + "one trial per weight criterion and seed, in the \(nominal) table"
        if spec.compressions != nil || spec.speedups != nil {
            if spec.targets.contains(nominal) { text += " beside the unstructured \(nominal) trials" }
            let others = spec.targets.filter { $0 != nominal }
            if !others.isEmpty {
                text += "; the target\(others.count == 1 ? "" : "s") \(others.map(\.description).joined(separator: ", ")) appl\(others.count == 1 ? "ies" : "y") to the unstructured and channel trials only"
            }
        }
        return text
    }

    /// The largest ratio (before / after) reachable on `axis`.
    public func maximum(_ granularity: Granularity, _ axis: TargetAxis) -> Double {
        let totalWeights = layers.reduce(0) { $0 + $1.weights }, totalMACs = layers.reduce(0) { $0 + $1.macs }
        guard totalWeights > 0 else { return 1 }
        var leftWeights = 0.0, leftMACs = 0.0
        switch granularity {
        case .weight:
            for l in layers where l.isClassifier { leftWeights += Double(l.weights); leftMACs += Double(l.macs) }
        default:
            var inputFraction = 1.0
            for l in layers {
                let kept = l.isClassifier ? 1.0 : 1.0 / Double(max(l.outputs, 1))
                leftWeights += Double(l.weights) * kept * inputFraction
                leftMACs += Double(l.macs) * kept * inputFraction
                inputFraction = kept
            }
        }
        let ratio = axis == .compression ? Double(totalWeights) / max(leftWeights, 1) : Double(totalMACs) / max(leftMACs, 1)
        return ratio.isFinite ? ratio : .greatestFiniteMagnitude
    }
}
