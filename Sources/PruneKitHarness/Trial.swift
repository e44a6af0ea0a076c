import Foundation
import PruneKit

// The harness's shared vocabulary: what a trial is (its configuration, identified by a
// hash), what it produced (its result), and the record the store keeps. The experiment
// runner makes configurations, child processes turn them into results, the store keeps
// records, and the analysis and reports read them back. Everything here is Codable and
// plain data, so a record survives a process boundary, a database and a JSON report.

/// The axis a pruning target is measured on.
public enum TargetAxis: String, Codable, Sendable, CaseIterable {
    /// Prunable weights before / after (`SelectionSettings.sparsity(forCompression:)`).
    case compression
    /// FLOPs (multiply–accumulates) of one example's forward pass, before / after.
    case speedup
}

/// A target: reach `value` (> 1) on `axis`.
public struct TrialTarget: Codable, Hashable, Sendable, CustomStringConvertible {
    public var axis: TargetAxis
    public var value: Double
    public init(_ axis: TargetAxis, _ value: Double) { self.axis = axis; self.value = value }
    /// Where the trials of an N:M pattern are reported: its nominal compression M/N (2:4:
    /// 2×), the ratio over the layers it covers. Over the whole model a trial reaches less
    /// (layers it can't cover and the classifier stay dense); its result records what it reached.
    public init(nominalOf pattern: NMPattern) {
        self.init(.compression, Double(pattern.m) / Double(pattern.n))
    }
    /// `4× compression`, `2× speed-up`.
    public var description: String {
        let v = value == value.rounded() ? String(Int(value)) : String(format: "%g", value)
        return "\(v)× \(axis == .compression ? "compression" : "speed-up")"
    }
}

/// What a trial does: prune-and-finetune one criterion to one target, or measure one
/// criterion's agreement with the oracle ranking (Molchanov et al. 2017).
public enum TrialKind: String, Codable, Hashable, Sendable {
    case prune
    case oracle
}

/// When a trial prunes: the trained baseline (the default), or the baseline's initial
/// weights before any training (pruning at initialisation: SNIP, GraSP, the magnitude
/// controls of Frankle et al. 2021).
public enum PruningTime: String, Codable, Hashable, Sendable, CaseIterable {
    /// Prune the freshly initialised baseline of the trial's seed (the weights its training
    /// started from), then train the pruned network with the baseline's whole recipe
    /// (``BaselineConfiguration/trainingConfiguration``: its epochs, learning rate, cosine
    /// schedule, data order), the masks kept. The finetuning strategy is not used.
    case initialization = "init"
    /// Prune the trained baseline, then finetune with the trial's strategy.
    case trained
}

/// A sanity check of a weight criterion (Frankle et al. 2021): a control trial that
/// changes one thing about the criterion's choice, next to the criterion's own trial
/// (same seed, target, schedule, finetuning). A criterion whose per-weight choice carries
/// information beats its layer-shuffle and invert controls.
///
/// Defined for weight criteria only: on a channel criterion a layer-shuffle is the
/// `random granularity=channel` criterion (at the same per-layer fraction) and a reinit is
/// the `reinit` finetuning strategy (Liu et al. 2019), both already available.
public enum SanityCheck: String, Codable, Hashable, Sendable, CaseIterable {
    /// Each layer keeps as many weights as the criterion keeps there, placed uniformly at
    /// random within the layer (seeded by the trial's seed and the layer's path).
    case layerShuffle = "layer-shuffle"
    /// Prunes the highest-scoring weights instead of the lowest (the same count).
    case invert
    /// Keeps the criterion's mask, gives the surviving weights a fresh initialisation (a
    /// seed stream of its own), then trains as the criterion's trial does.
    case reinit
}

/// Everything that determines the baseline checkpoint a trial starts from. Trained once
/// per value and cached by ``hash``.
public struct BaselineConfiguration: Codable, Hashable, Sendable {
    /// A zoo name (`lenet-5`) or the directory of a saved model (then nothing is trained).
    public var model: String
    /// A data set name (`mnist-5k`) and, for data sets that are read from disk, their directory.
    public var dataset: String
    public var dataDirectory: String?
    /// Training images held out for validation (best-epoch selection, never the test split).
    public var validationCount: Int
    public var epochs: Int
    public var batchSize: Int
    public var learningRate: Double
    public var seed: UInt64
    /// Use only the first `trainingImages` training images (after the validation split):
    /// quick experiments and tests. `nil`: all of them.
    public var trainingImages: Int?
    /// Epochs k of the baseline's training whose weights are kept (0: the initial
    /// weights), for rewinding finetuning strategies (`FinetuneStrategy.checkpointEpochs`).
    /// Set it to the union of the experiment's strategies' needs, so every criterion shares
    /// one baseline. `nil` (the default, and absent from the hash): none.
    public var checkpointEpochs: [Int]?
    /// Random crop and flip while training the baseline. `nil` (the default, absent from the
    /// hash): on for CIFAR data sets, off otherwise.
    public var augment: Bool?
    /// How your own data (`dataset` a path) is read. `nil` (the default, absent from the
    /// hash): the defaults of ``DataSourceOptions``.
    public var dataOptions: DataSourceOptions?

    public init(model: String, dataset: String, dataDirectory: String? = nil, validationCount: Int = 500,
                epochs: Int = 10, batchSize: Int = 64, learningRate: Double = 0.05, seed: UInt64 = 0,
                trainingImages: Int? = nil, checkpointEpochs: [Int]? = nil, augment: Bool? = nil) {
        self.model = model; self.dataset = dataset; self.dataDirectory = dataDirectory
        self.validationCount = validationCount; self.epochs = epochs; self.batchSize = batchSize
        self.learningRate = learningRate; self.seed = seed; self.trainingImages = trainingImages
        self.checkpointEpochs = checkpointEpochs; self.augment = augment
    }

    /// Identifies the checkpoint: a hash of every field.
    public var hash: String { StableHash.hex(of: self) }
}

/// One trial of an experiment: fully determined by this value, identified by ``id``.
public struct TrialConfiguration: Codable, Hashable, Sendable {
    public var kind: TrialKind
    public var baseline: BaselineConfiguration
    /// A criterion id from the registry, with its `key=value` options.
    public var criterion: String
    public var criterionOptions: [String]
    /// The target (prune trials; `nil` for oracle trials).
    public var target: TrialTarget?
    public var schedule: String
    public var scheduleOptions: [String]
    public var finetune: String
    public var finetuneOptions: [String]
    /// Epochs of finetuning after pruning.
    public var finetuneEpochs: Int
    /// Calibration data for criteria that need evidence: the same batches for every
    /// criterion under one seed (a paired design).
    public var calibrationBatches: Int
    public var calibrationBatchSize: Int
    /// Residual-stream policy for channel pruning (`within-blocks` or `whole-stream`).
    public var residualPolicy: String
    /// Oracle trials: at most this many prunable layers are sampled, evenly spaced (`nil`:
    /// every prunable layer but the classifier).
    public var oracleLayers: Int?
    /// Criteria whose `regularize` hook changes training (network slimming): epochs of
    /// training with that penalty, from the baseline, before pruning. `nil`: `finetuneEpochs`.
    /// Criteria without the hook skip this phase.
    public var regularizationEpochs: Int?
    /// Timed runs per batch size when measuring latency (`nil`: 20; 0: no latency).
    public var latencyRuns: Int?
    /// The builds of the plugins that provide the criterion, the schedule and the finetuning
    /// strategy (``PluginBuild/builds(for:registry:)``), part of the trial's identity: a
    /// plugin rebuilt with other code is another trial, never a reuse of the old results.
    /// `nil` (records written before PruneKit kept them, and configurations made without a
    /// registry) is absent from the hash.
    public var plugins: [PluginBuild]?
    /// When the trial prunes; `nil` (the default, absent from the hash, so records written
    /// before it keep their ids): ``PruningTime/trained``.
    public var when: PruningTime?
    /// The sanity check this trial runs on its criterion; `nil` (absent from the hash): the
    /// criterion itself.
    public var sanity: SanityCheck?
    /// An N:M semi-structured pattern the weight criterion selects in (`2:4`, in
    /// ``NMPattern``'s text form; ``nmPattern`` reads it): every layer it covers keeps the N
    /// best-scored weights of each group of M input channels. The pattern alone fixes the
    /// masks, so the trial's ``target`` is only where it is reported: the pattern's nominal
    /// compression M/N (``TrialTarget/init(nominalOf:)``). `nil` (absent from the hash, so
    /// records written before it keep their ids): unstructured selection toward ``target``.
    public var pattern: String?
    /// The seed of this replicate: the baseline's seed, the calibration batches and the
    /// finetuning data order.
    public var seed: UInt64 { baseline.seed }
    /// ``when``, with its default.
    public var pruningTime: PruningTime { when ?? .trained }
    /// ``pattern``, parsed; `nil` for unstructured selection.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for text that is not an N:M pattern with 1 ≤ N < M.
    public var nmPattern: NMPattern? {
        get throws { try pattern.map(NMPattern.init(parsing:)) }
    }

    /// The build of the plugin that provides the criterion, where it is known.
    public var criterionBuild: PluginBuild? { plugins?.first { $0.kind == .criterion && $0.id == criterion } }

    public init(kind: TrialKind = .prune, baseline: BaselineConfiguration, criterion: String,
                criterionOptions: [String] = [], target: TrialTarget?, schedule: String = "one-shot",
                scheduleOptions: [String] = [], finetune: String = "finetune", finetuneOptions: [String] = [],
                finetuneEpochs: Int = 2, calibrationBatches: Int = 10, calibrationBatchSize: Int = 64,
                residualPolicy: String = "within-blocks", oracleLayers: Int? = nil,
                regularizationEpochs: Int? = nil, latencyRuns: Int? = nil) {
        self.kind = kind; self.baseline = baseline; self.criterion = criterion
        self.criterionOptions = criterionOptions; self.target = target; self.schedule = schedule
        self.scheduleOptions = scheduleOptions; self.finetune = finetune; self.finetuneOptions = finetuneOptions
        self.finetuneEpochs = finetuneEpochs; self.calibrationBatches = calibrationBatches
        self.calibrationBatchSize = calibrationBatchSize; self.residualPolicy = residualPolicy
        self.oracleLayers = oracleLayers; self.regularizationEpochs = regularizationEpochs; self.latencyRuns = latencyRuns
    }

    /// The trial's identity in the store: a hash of the whole configuration, with each
    /// plugin identified by what it is (``PluginBuild/identity``), not where it was loaded
    /// from: a store and its plugins can move to another directory or machine.
    public var id: String {
        var identity = self
        identity.plugins = plugins?.map(\.identity)
        if when == .trained { identity.when = nil }   // the default: one trial, one id
        return StableHash.hex(of: identity)
    }
}

/// Which build of a plugin ran a trial: what identifies it, and the file it came from.
///
/// The identity is the hash of the file's bytes (a C criterion: its manifest's and its
/// library's), with the plugin's declared version and the SDK version it was built
/// against. The content hash, not a version + build id, because it needs nothing from
/// the plugin's author: a researcher who rebuilds a criterion without touching its version
/// (the usual case while iterating) still gets new trials, and a C library linked without
/// a build id is covered too. The price: any rebuild that changes the bytes (another
/// checkout path in debug information, debug against release) runs the trials again
/// rather than reuse results that might not be the same.
public struct PluginBuild: Codable, Hashable, Sendable, CustomStringConvertible {
    public var kind: PluginKind
    /// The id the plugin registered (`global-magnitude`).
    public var id: String
    /// The file it was loaded from (a plugin library, or a C criterion's manifest), as the
    /// registry recorded it; `built-in` for code linked into the host.
    public var file: String
    /// The plugin's own version (its `prunekit_plugin_info`, or the manifest's `version`).
    public var version: String
    /// The SDK version it was built against.
    public var sdkVersion: String
    /// ``StableHash`` of the file's bytes; `nil` for built-in code (identified by the SDK version).
    public var contentHash: String?

    public init(kind: PluginKind, id: String, file: String, version: String, sdkVersion: String, contentHash: String?) {
        self.kind = kind; self.id = id; self.file = file; self.version = version
        self.sdkVersion = sdkVersion; self.contentHash = contentHash
    }

    /// The same build without where it was loaded from: what trial ids hash.
    public var identity: PluginBuild {
        var copy = self
        copy.file = ""
        return copy
    }

    /// `0.2.0, build 1a2b3c4d, libMyCriterion.so, SDK 1.0`.
    public var description: String {
        var parts = [version]
        if let contentHash { parts.append("build \(contentHash.prefix(8))") }
        parts.append((file as NSString).lastPathComponent)
        parts.append("SDK \(sdkVersion)")
        return parts.joined(separator: ", ")
    }
}

/// Accuracy on the test split (fractions in [0, 1]); top-5 where there are more than 5 classes.
public struct Accuracy: Codable, Hashable, Sendable {
    public var top1: Double
    public var top5: Double?
    public var loss: Double?
    public init(top1: Double, top5: Double? = nil, loss: Double? = nil) { self.top1 = top1; self.top5 = top5; self.loss = loss }
}

/// Inference latency: the median (and spread) over repeated runs, in seconds.
public struct Latency: Codable, Hashable, Sendable {
    public var batchSize: Int
    public var median: Double
    public var p10: Double
    public var p90: Double
    public var runs: Int
    public init(batchSize: Int, median: Double, p10: Double, p90: Double, runs: Int) {
        self.batchSize = batchSize; self.median = median; self.p10 = p10; self.p90 = p90; self.runs = runs
    }
}

/// A model's size and cost, measured the same way before and after pruning.
public struct ModelFigures: Codable, Hashable, Sendable {
    /// Every trainable scalar, and those left non-zero (masked weights are zero).
    public var parameters: Int
    public var nonzeroParameters: Int
    /// Weights of conv and linear layers (what compression is defined on), and those left.
    public var prunableWeights: Int
    public var remainingPrunableWeights: Int
    /// Multiply–accumulates of one example's forward pass through conv and linear layers,
    /// counting only non-zero weights (FLOPs = 2 × MACs).
    public var macs: Int
    /// The saved model's size on disk, in bytes (dense or sparse storage, whichever was used).
    public var fileBytes: Int?
    /// Measured inference latency (channel-pruned models, and every baseline).
    public var latency: [Latency]
    public init(parameters: Int, nonzeroParameters: Int, prunableWeights: Int, remainingPrunableWeights: Int,
                macs: Int, fileBytes: Int? = nil, latency: [Latency] = []) {
        self.parameters = parameters; self.nonzeroParameters = nonzeroParameters
        self.prunableWeights = prunableWeights; self.remainingPrunableWeights = remainingPrunableWeights
        self.macs = macs; self.fileBytes = fileBytes; self.latency = latency
    }
    public var flops: Int { 2 * macs }
}

/// What a trial produced.
public struct TrialResult: Codable, Hashable, Sendable {
    public enum Status: String, Codable, Hashable, Sendable { case succeeded, failed }
    public var status: Status
    /// Why a failed trial failed: a thrown error's message, a crash's signal, a NaN loss.
    public var failure: String?
    /// What the criterion pruned: weights (masked, same dense kernels) or channels (removed,
    /// a narrower model). `nil` in records written before it was kept.
    public var granularity: Granularity?

    public var baselineAccuracy: Accuracy?
    /// Right after pruning, and after finetuning.
    public var prunedAccuracy: Accuracy?
    public var finetunedAccuracy: Accuracy?
    public var before: ModelFigures?
    public var after: ModelFigures?
    /// The fraction that was pruned to meet the target (of prunable weights, or of channels).
    public var sparsity: Double?
    /// Where the plan differs from the request (a ratio clipped by the channel minimum, a
    /// target that could only be approached).
    public var notes: [String]
    /// Oracle trials: the Spearman correlation of the criterion's channel ranking with the
    /// oracle's, per sampled layer (dotted path), and their mean.
    public var oracleCorrelation: Double?
    public var oracleCorrelationByLayer: [String: Double]?
    /// Wall time of each phase, in seconds (`baseline`, `regularize`, `score`, `prune`,
    /// `finetune`, `evaluate`, `measure`, `oracle`; and `overhead` for a trial run in a
    /// child process: its wall time outside those phases, so the sum is the whole wall time).
    public var phaseSeconds: [String: Double]
    /// A failure of the environment, not of the criterion (a baseline cache entry that
    /// doesn't load, a child process that can't be started): the runner does not record
    /// it, so the next run tries the trial again. `nil` otherwise.
    public var transient: Bool?

    public init(status: Status, failure: String? = nil, notes: [String] = [], phaseSeconds: [String: Double] = [:]) {
        self.status = status; self.failure = failure; self.notes = notes; self.phaseSeconds = phaseSeconds
    }

    public static func failed(_ message: String, phaseSeconds: [String: Double] = [:]) -> TrialResult {
        TrialResult(status: .failed, failure: message, phaseSeconds: phaseSeconds)
    }

    /// Prunable weights before / after.
    public var compression: Double? {
        guard let b = before, let a = after else { return nil }
        return Double(b.prunableWeights) / Double(max(a.remainingPrunableWeights, 1))
    }
    /// All parameters before / after (ShrinkBench's whole-model ratio).
    public var wholeModelCompression: Double? {
        guard let b = before, let a = after else { return nil }
        return Double(b.parameters) / Double(max(a.nonzeroParameters, 1))
    }
    /// MACs before / after: the theoretical speed-up.
    public var theoreticalSpeedup: Double? {
        guard let b = before, let a = after else { return nil }
        return Double(b.macs) / Double(max(a.macs, 1))
    }
    /// Median latency before / after at `batchSize`, where both were measured.
    public func measuredSpeedup(batchSize: Int) -> Double? {
        guard let b = before?.latency.first(where: { $0.batchSize == batchSize }),
              let a = after?.latency.first(where: { $0.batchSize == batchSize }), a.median > 0 else { return nil }
        return b.median / a.median
    }
}

/// A finished trial as the store keeps it.
public struct TrialRecord: Codable, Hashable, Sendable {
    public var id: String { configuration.id }
    public var configuration: TrialConfiguration
    public var result: TrialResult
    /// When the trial finished (seconds since 1970) and on which host, for provenance.
    public var finishedAt: Double
    public var host: String
    /// The SDK version of the PruneKit that ran the trial (`nil` in records written before
    /// PruneKit kept it). The plugins' own builds are in ``TrialConfiguration/plugins``.
    public var sdkVersion: String?

    public init(configuration: TrialConfiguration, result: TrialResult,
                finishedAt: Double = Date().timeIntervalSince1970,
                host: String = ProcessInfo.processInfo.hostName, sdkVersion: String? = SDKVersion.string) {
        self.configuration = configuration; self.result = result; self.finishedAt = finishedAt; self.host = host
        self.sdkVersion = sdkVersion
    }
}

/// A hash that is the same in every process and on every machine (Swift's `Hasher` is
/// seeded per process): FNV-1a (64 bits, twice with different offsets, so 128 bits) over
/// the value's JSON with sorted keys.
public enum StableHash {
    public static func hex<T: Encodable>(of value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain Codable structs of strings and numbers can't fail.
        let bytes = (try? encoder.encode(value)) ?? Data()
        return hex(of: bytes)
    }

    public static func hex(of bytes: Data) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325, b: UInt64 = 0x6c62_272e_07bb_0142
        for byte in bytes {
            a = (a ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            b = b &+ (b >> 29)
        }
        return String(format: "%016llx%016llx", a, b)
    }
}
