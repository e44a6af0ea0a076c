import Foundation
import PruneKit

/// Where a trial runs: the plugins it finds criteria in, and the baseline cache.
public struct TrialEnvironment {
    /// The registry criteria, schedules and finetuning strategies are looked up in.
    public var registry: Registry
    /// The baseline cache (``BaselineCache``); oracle values are cached in its entries.
    public var cacheDirectory: String
    /// Scratch space for file-size measurements (default: the system's temporary directory).
    public var scratchDirectory: String
    /// Where each prune trial keeps its pruned, finetuned model, in `<directory>/<trial id>`
    /// (weight criteria: the masked model, stored sparse; channel criteria: the narrower
    /// model), the folder its file size is measured on; `nil` (the default): not kept.
    public var modelsDirectory: String?
    /// Hears progress lines (baseline training, phases).
    public var log: ((String) -> Void)?

    public init(registry: Registry = .shared, cacheDirectory: String,
                scratchDirectory: String = NSTemporaryDirectory(), modelsDirectory: String? = nil, log: ((String) -> Void)? = nil) {
        self.registry = registry; self.cacheDirectory = cacheDirectory
        self.scratchDirectory = scratchDirectory; self.modelsDirectory = modelsDirectory; self.log = log
    }
}

/// Runs one trial in this process: baseline → prune to the target → finetune → measure
/// (or, for an oracle trial, the criterion's agreement with the oracle ranking).
///
/// Fair by construction: every criterion starts from the cached baseline of
/// `c.baseline`; the calibration batches (`CalibrationSettings(seed: c.seed)` over the
/// training split) and the finetuning data order (`TrainingConfiguration.seed = c.seed`)
/// depend only on the seed, never on the criterion; finetuning strategies get the
/// validation split carved from the training data, never the test split, which is only
/// ever used to report accuracy.
///
/// An init trial (``PruningTime/initialization``) prunes the baseline's initial weights and
/// trains with the baseline's recipe instead of the finetuning strategy; a sanity-check
/// trial (``SanityCheck``) transforms the criterion's scores, or re-initialises the
/// surviving weights before training (``SanityControls``). An N:M trial
/// (``TrialConfiguration/pattern``) selects in its pattern (`TargetedPruningSettings.pattern`,
/// as `prunekit prune --pattern` does) instead of searching the sparsity of its target.
///
/// Phases timed in `phaseSeconds`: `baseline` (ensure and load), `regularize` (criteria
/// whose `regularize` hook changes training: that many epochs of training with the
/// penalty before pruning), `prune` (the SDK's pruning entry point: scoring, the search
/// for the target and selection, along the schedule; for a schedule over training steps,
/// the training run it prunes in), `finetune`, `evaluate` (test accuracy),
/// `measure` (figures, file sizes and latency, before and after), `score` and `oracle`
/// (oracle trials: the criterion's scores and the oracle's).
public enum TrialExecutor {
    /// Runs trial `c`. A failure of the trial itself (an unknown id, a criterion that
    /// throws, a NaN loss or score, a target that can't be reached) is returned as a
    /// failed result with its message and the phases timed so far, never thrown.
    /// - Throws: nothing today; reserved for an unusable environment.
    public static func run(_ c: TrialConfiguration, environment: TrialEnvironment) throws -> TrialResult {
        let run = Run(c, environment)
        do {
            return try run.execute()
        } catch let e as PruneKitError {
            var r = TrialResult.failed(e.hint.map { "\(e.message) (hint: \($0))" } ?? e.message, phaseSeconds: run.phases)
            r.notes = run.notes
            if run.transient { r.transient = true }
            return r
        } catch {
            var r = TrialResult.failed("\(error)", phaseSeconds: run.phases)
            r.notes = run.notes
            if run.transient { r.transient = true }
            return r
        }
    }
}

/// One trial's state while it runs.
private final class Run {
    let c: TrialConfiguration
    let env: TrialEnvironment
    var phases: [String: Double] = [:]
    var notes: [String] = []
    /// Whether a failure is the environment's (the baseline cache), not the criterion's.
    var transient = false

    init(_ c: TrialConfiguration, _ env: TrialEnvironment) { self.c = c; self.env = env }

    /// Runs `body` as (part of) `phase`, adding its wall time; the log hears the phase
    /// start (so a crashed child's last output says where it was).
    func timed<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        env.log?("trial \(c.criterion): \(phase)")
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { phases[phase, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        return try body()
    }

    var calibration: CalibrationSettings {
        CalibrationSettings(batches: c.calibrationBatches, batchSize: c.calibrationBatchSize, seed: c.seed)
    }

    func execute() throws -> TrialResult {
        let registry = env.registry
        var criterion = try registry.criterion(c.criterion, options: c.criterionOptions)
        let (artifact, trainedModel, splits) = try timed("baseline") { () throws -> (BaselineArtifact, Model, DataSplits) in
            do {
                let a = try BaselineCache.ensure(c.baseline, cacheDirectory: env.cacheDirectory, log: env.log)
                return (a, try Model.load(from: a.directory), try c.baseline.loadData())
            } catch let e as PruneKitError {
                // Not the criterion's failure: the trial is not recorded, so a rerun runs it.
                transient = true
                let entry = "\(URL(fileURLWithPath: env.cacheDirectory).standardizedFileURL.path)/\(c.baseline.hash)"
                throw PruneKitError(e.kind, "the baseline could not be loaded from the cache: \(e.message)",
                                    hint: e.hint ?? "remove \(entry) (it is trained again) and run the same command again: this trial is not recorded, so it runs then")
            }
        }
        var result = TrialResult(status: .succeeded)
        result.granularity = criterion.granularity
        result.baselineAccuracy = artifact.testAccuracy
        let runs = c.latencyRuns ?? 20
        guard runs >= 0 else { throw PruneKitError(.invalidArgument, "latencyRuns must be ≥ 0, got \(runs)") }

        if c.kind == .oracle {
            try runOracle(criterion, model: trainedModel, artifact: artifact, data: splits.train, into: &result)
            return finish(result)
        }
        let pattern = try c.nmPattern
        guard let target = c.target else {
            throw PruneKitError(.invalidArgument, "a prune trial needs a target", hint: "give a compression or speed-up target")
        }
        let schedule = try registry.schedule(c.schedule, options: c.scheduleOptions)
        // At initialisation the pruned network trains with the baseline's recipe; the
        // finetuning strategy is for trained trials (``PruningTime``).
        var strategy: any FinetuneStrategy = c.pruningTime == .initialization
            ? BaselineRecipeTraining() : try registry.finetune(c.finetune, options: finetuneOptions(registry))
        let model = try c.pruningTime == .initialization ? initialModel(splits.train) : trainedModel
        if let check = c.sanity {
            guard criterion.granularity == .weight else {
                throw PruneKitError(.invalidArgument, "the sanity check \(check.rawValue) is defined for weight criteria; '\(c.criterion)' ranks channels",
                                    hint: "compare a channel criterion with 'random granularity=channel' instead")
            }
            if check == .reinit {
                strategy = ReinitializingStrategy(strategy, seed: c.seed)
                notes.append("sanity check reinit: the criterion's mask, the surviving weights initialised afresh (seed stream sanity/reinit of seed \(c.seed)) before the training after pruning")
            } else {
                criterion = try SanityControls.controlCriterion(criterion, check: check, model: model, seed: c.seed)
                switch (check, pattern) {
                case (.invert, nil): notes.append("sanity check invert: the highest-scoring weights pruned instead of the lowest")
                case let (.invert, p?): notes.append("sanity check invert: in every group of \(p.m), the \(p.n) lowest-scoring weights kept instead of the highest")
                case (_, nil): notes.append("sanity check layer-shuffle: each layer keeps the criterion's count of weights, at positions drawn uniformly at random (seeded)")
                case let (_, p?): notes.append("sanity check layer-shuffle: the criterion's scores shuffled within each layer, so every group of \(p.m) keeps \(p.n) weights drawn uniformly at random (seeded)")
                }
            }
        }
        let checkpoints: [Int: [String: Tensor]]
        do { checkpoints = try artifact.loadCheckpoints(strategy.checkpointEpochs) } catch let e as PruneKitError where e.kind != .invalidArgument {
            transient = true   // a checkpoint file of the cache that doesn't read: not the criterion's failure
            throw e
        }
        let policy = try Measure.residualPolicy(c.residualPolicy)
        var settings = TargetedPruningSettings(policy: policy)
        settings.pattern = pattern

        result.before = try timed("measure") { try baselineFigures(model, artifact: artifact, runs: runs) }
        let originalMACs = model.macs

        // Criteria that change training (slimming's L1 on γ) train with their penalty first:
        // on a model with BatchNorm that training is what sets the scales apart.
        if let problem = try model.channelRankingProblem(with: criterion, beforeTraining: criterion.regularizes) { throw problem }
        if criterion.regularizes {
            guard c.pruningTime == .trained else {
                throw PruneKitError(.invalidArgument, "'\(c.criterion)' ranks what training with its penalty leaves; pruning at initialisation has no training before pruning",
                                    hint: "run '\(c.criterion)' with --when trained")
            }
            let epochs = c.regularizationEpochs ?? c.finetuneEpochs
            if epochs > 0 {
                try timed("regularize") {
                    var t = c.baseline.trainingConfiguration
                    t.epochs = epochs; t.learningRate = t.learningRate / 5; t.decay = .constant; t.startEpoch = 0
                    try model.fit(splits.train, validation: splits.validation, configuration: t, regularizer: { criterion.regularize($0) })
                }
                notes.append("trained \(epochs) epoch\(epochs == 1 ? "" : "s") with the training penalty of '\(criterion.id)' before pruning (learning rate \(c.baseline.learningRate / 5), constant)")
            }
            if let problem = try model.channelRankingProblem(with: criterion) { throw problem }
        }

        let goal = try TargetSearch.goal(for: target, pattern: pattern)
        if c.pruningTime == .initialization {
            let t = c.baseline.trainingConfiguration
            notes.append("pruned at initialisation (the baseline's initial weights, seed \(c.seed)), then trained \(t.epochs) epoch\(t.epochs == 1 ? "" : "s") with the baseline's recipe (learning rate \(c.baseline.learningRate), cosine), the masks kept")
        }
        var context = FinetuneContext(train: splits.train, validation: splits.validation,
                                      training: c.baseline.trainingConfiguration, checkpoints: checkpoints)
        context.originalMACs = originalMACs
        let test = splits.test
        let observed = ObservedStrategy(strategy) { [unowned self] m in
            try timed("evaluate") { try accuracy(m.evaluate(test), classes: test.classCount, of: "the pruned model") }
        }
        env.log?("trial \(c.criterion): prune and finetune")
        let start = DispatchTime.now().uptimeNanoseconds
        // One pipeline: scoring, the search for the target and selection happen in the
        // SDK's entry point (once for a one-shot schedule), as in `prunekit prune`.
        let outcomes = try model.prune(with: criterion, schedule: schedule, finetune: observed, toward: goal,
                                       context: context, settings: settings, data: splits.train, calibration: calibration)
        let total = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        phases["finetune", default: 0] += observed.finetuneSeconds
        phases["prune", default: 0] += max(0, total - observed.finetuneSeconds - observed.evaluateSeconds)
        var seen = Set<String>()
        notes += outcomes.flatMap(\.notes).filter { seen.insert($0).inserted }
        result.sparsity = outcomes.last?.plan.sparsity
        result.prunedAccuracy = observed.prunedAccuracy

        let finetuned = try timed("evaluate") { try accuracy(model.evaluate(test), classes: test.classCount, of: "the finetuned model") }
        guard finetuned.loss?.isFinite ?? true else {
            throw PruneKitError(.numerical, "the test loss after finetuning is \(finetuned.loss ?? .nan)",
                                hint: "lower the finetuning learning rate")
        }
        result.finetunedAccuracy = finetuned

        // Kept where the environment says (then measured there), with what made it.
        var metadata = ["prunekit.trial": c.id, "prunekit.criterion": Analysis.criterionLabel(c), "prunekit.target": "\(target)",
                        "seed": "\(c.seed)", "dataset": c.baseline.dataset]
        if let pattern { metadata["prunekit.pattern"] = pattern.description }
        let kept = try env.modelsDirectory.map { dir -> Measure.Kept in
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            return Measure.Kept(directory: "\(dir)/\(c.id)", metadata: metadata)
        }
        result.after = try timed("measure") { () throws -> ModelFigures in
            if criterion.granularity == .channel {
                // The channels are removed: every after-figure is the narrower model's.
                let surgery = try Measure.physicallyPruned(model, policy: policy)
                notes += surgery.notes
                return try Measure.model(surgery.model, latencyRuns: runs, scratch: env.scratchDirectory, keeping: kept)
            }
            return try Measure.model(model, latencyRuns: 0, scratch: env.scratchDirectory, keeping: kept)
        }
        if let pattern, let reached = result.compression {
            notes.append("the N:M pattern \(pattern) keeps \(pattern.n) of every \(pattern.m) weights of the layers it covers (sparsity \(String(format: "%g", pattern.sparsity))); "
                + "reported at its nominal \(target), it reaches " + String(format: "%.2f×", reached)
                + " over every prunable weight (layers it can't cover and the classifier stay dense)")
        }
        return finish(result)
    }

    /// The baseline's initial weights: the zoo model made with the baseline's seed, as
    /// ``BaselineCache/ensure(_:cacheDirectory:log:)`` makes it before training.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a saved model (it has no initial weights).
    func initialModel(_ train: Dataset) throws -> Model {
        guard !c.baseline.isSavedModel else {
            throw PruneKitError(.invalidArgument, "pruning at initialisation needs the baseline's initial weights; '\(c.baseline.model)' is a saved model and has none",
                                hint: "use a zoo model with --when init")
        }
        return try ModelZoo.make(c.baseline.model, inputShape: train.imageShape, classCount: train.classCount, seed: c.baseline.seed)
    }

    /// The baseline's figures, file size and latency: measured once per baseline, host,
    /// thread count and number of runs, and cached in the baseline's entry (every trial of
    /// an experiment compares with the same measurement, taken on the machine it runs on).
    func baselineFigures(_ model: Model, artifact: BaselineArtifact, runs: Int) throws -> ModelFigures {
        let host = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }
        let path = "\(artifact.entryDirectory)/figures-\(host)-t\(Parallel.threadCount)-r\(runs).json"
        if let cached = try? readJSON(ModelFigures.self, from: path, what: "baseline figures") { return cached }
        let f = try Measure.model(model, latencyRuns: runs, scratch: env.scratchDirectory)
        try writeJSON(f, to: path)
        return f
    }

    func finish(_ r: TrialResult) -> TrialResult {
        var r = r
        r.notes = notes
        r.phaseSeconds = phases
        return r
    }

    /// The finetuning options, with `epochs=c.finetuneEpochs` added where the strategy has
    /// an `epochs` option the configuration doesn't set.
    func finetuneOptions(_ registry: Registry) -> [String] {
        var options = c.finetuneOptions
        let specs = registry.entries.first { $0.kind == .finetune && $0.id == c.finetune }?.options ?? []
        if specs.contains(where: { $0.name == "epochs" }), !options.contains(where: { $0.hasPrefix("epochs=") }) {
            options.append("epochs=\(c.finetuneEpochs)")
        }
        return options
    }

    /// Whether the criterion's `regularize` hook changes the gradients of this model
    /// (probed on a copy with zero gradients).
    func runOracle(_ criterion: any Criterion, model: Model, artifact: BaselineArtifact, data: Dataset,
                   into result: inout TrialResult) throws {
        guard criterion.granularity == .channel else {
            throw PruneKitError(.invalidArgument, "oracle trials rank channels; '\(criterion.id)' is a \(criterion.granularity.rawValue) criterion",
                                hint: "run oracle trials for channel criteria only")
        }
        let layers = Oracle.sampledLayers(of: model, cap: c.oracleLayers)
        let (oracle, computedNow) = try timed("oracle") {
            try Oracle.cachedValues(model: model, artifact: artifact, data: data, calibration: calibration, layers: layers)
        }
        if computedNow { notes.append("oracle: computed in this trial (\(layers.count) layers), then cached with the baseline") }
        let scores = try timed("score") { try model.score(with: criterion, data: data, settings: calibration) }
        let agreement = Oracle.agreement(scores: scores, oracle: oracle)
        result.oracleCorrelationByLayer = agreement.byLayer
        result.oracleCorrelation = agreement.mean
        notes += agreement.notes
    }
}

/// Wraps the trial's finetuning strategy: times it, and measures the accuracy right after
/// the last pruning step (before the last finetuning).
private final class ObservedStrategy: FinetuneStrategy {
    let inner: any FinetuneStrategy
    let evaluate: (Model) throws -> Accuracy
    var finetuneSeconds = 0.0, evaluateSeconds = 0.0
    var prunedAccuracy: Accuracy?

    init(_ inner: any FinetuneStrategy, evaluate: @escaping (Model) throws -> Accuracy) {
        self.inner = inner; self.evaluate = evaluate
    }

    var id: String { inner.id }
    var checkpointEpochs: Set<Int> { inner.checkpointEpochs }

    func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        if step == stepCount - 1 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            prunedAccuracy = try evaluate(model)
            evaluateSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { finetuneSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try inner.finetune(model, step: step, of: stepCount, context: context)
    }
}
