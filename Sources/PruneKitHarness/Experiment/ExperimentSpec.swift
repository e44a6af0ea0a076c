import Foundation
import PruneKit
import Yams

/// A criterion of an experiment: its registry id and its `key=value` options.
public struct CriterionChoice: Codable, Hashable, Sendable, CustomStringConvertible {
    public var id: String
    public var options: [String]
    public init(_ id: String, options: [String] = []) { self.id = id; self.options = options }

    /// Parses `id key=value key=value` (the form `--criteria` and a YAML string take).
    public init(parsing text: String) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        id = words.first ?? ""
        options = Array(words.dropFirst())
    }

    /// `id` or `id key=value …`.
    public var description: String { ([id] + options).joined(separator: " ") }
}

/// How the baseline checkpoint of every seed is trained.
public struct BaselineSettings: Codable, Hashable, Sendable {
    public var epochs = 10
    public var learningRate = 0.05
    public var batchSize = 64
    /// Training images held out for validation (best-epoch choice; never the test split).
    public var validationImages = 500
    /// Use only this many training images (after the validation split); `nil`: all.
    public var trainingImages: Int?
    public init() {}
}

/// The calibration batches criteria that need data are scored on.
public struct CalibrationChoice: Codable, Hashable, Sendable {
    public var batches = 10
    public var batchSize = 64
    public init() {}
}

/// Oracle agreement trials (Molchanov et al. 2017) for channel criteria.
public struct OracleSettings: Codable, Hashable, Sendable {
    public var enabled = true
    /// How many prunable layers (evenly spaced, classifier excluded) the oracle measures;
    /// `nil`: the trial runner's default.
    public var layers: Int?
    public init() {}
}

/// An experiment: which criteria to compare, on what, toward which targets, how often.
///
/// Read from a YAML file (``load(yaml:file:)``), overridden by command-line options
/// (``Overrides``), turned into trials by ``ExperimentPlan``. With nothing given, the
/// default comparison: `lenet-5` on `mnist-5k`, every registered criterion, compression
/// targets 2×, 4×, 8×, 16×, 32×, one-shot pruning, a 2-epoch finetune, one seed, the
/// oracle on for channel criteria.
public struct ExperimentSpec: Codable, Hashable, Sendable {
    public var name = "default"
    /// A zoo name or the directory of a saved model.
    public var model = "lenet-5"
    public var dataset = DatasetCatalog.defaultName
    public var dataDirectory: String?
    /// How your own data (`dataset` a path) is read (the keys `normalize`, `image-size`,
    /// `crop`, `layout`, `arrays`, `max-unreadable`); `nil`: the defaults.
    public var dataOptions: DataSourceOptions?
    /// `nil`: every criterion in the registry.
    public var criteria: [CriterionChoice]?
    /// Targets on each axis; both `nil`: ``defaultCompressions``.
    public var compressions: [Double]?
    public var speedups: [Double]?
    public var schedule = "one-shot"
    public var scheduleOptions: [String] = []
    public var finetune = "finetune"
    public var finetuneOptions: [String] = []
    public var finetuneEpochs = 2
    /// The seeds of the replicates (one baseline per seed).
    public var seeds: [UInt64] = [0]
    /// When the trials prune: after training (the default), at initialisation, or both
    /// (each criterion × target × seed once per value, in one store and one report).
    public var when: [PruningTime] = [.trained]
    /// Sanity checks run as extra trials next to every weight criterion's own.
    public var sanity: [SanityCheck] = []
    /// N:M semi-structured patterns (`2:4`, in ``NMPattern``'s text form, as
    /// ``parsePatterns(_:option:)`` gives them): each adds one trial per weight criterion
    /// (and pruning time, sanity check, seed) next to its unstructured ones, reported at the
    /// pattern's nominal compression M/N (``TrialTarget/init(nominalOf:)``). The pattern is
    /// its own target, so the compression and speed-up targets don't apply to these trials.
    public var patterns: [String] = []
    public var baseline = BaselineSettings()
    public var calibration = CalibrationChoice()
    public var oracle = OracleSettings()
    public var residualPolicy = "within-blocks"
    /// Trials run at once (child processes); `nil`: ``ExperimentRunner/defaultJobs``.
    public var jobs: Int?
    /// The SQLite result store.
    public var store = ExperimentSpec.defaultStore
    /// Where the reports go; `nil`: `report/` next to the store.
    public var report: String?
    /// Where baseline checkpoints are cached; `nil`: `baselines/` next to the store.
    public var cache: String?
    /// Where each trial that runs keeps its pruned model, in `<models>/<trial id>`
    /// (``TrialEnvironment/modelsDirectory``); `nil` (the default): not kept.
    public var models: String?
    /// Seconds a trial may run before its child process is killed and the trial recorded
    /// as failed; `nil`: derived from the baseline's epoch time (``TrialTimeLimit/automatic(oracleEpochs:)``).
    public var trialTimeout: Double?

    public static let defaultStore = "prunekit-results/results.sqlite"
    /// The most seeds an experiment may have: each trains a baseline of its own, so even
    /// this many is weeks of work; more is a typo (and `0..<n` of a huge n can't be allocated).
    public static let maximumSeedCount = 1_000
    public static let defaultCompressions: [Double] = [2, 4, 8, 16, 32]
    public static let residualPolicies = ["within-blocks", "whole-stream"]

    public init() {}

    /// Every target, compressions first, in the order given.
    public var targets: [TrialTarget] {
        if compressions == nil && speedups == nil { return Self.defaultCompressions.map { TrialTarget(.compression, $0) } }
        return (compressions ?? []).map { TrialTarget(.compression, $0) } + (speedups ?? []).map { TrialTarget(.speedup, $0) }
    }

    /// The report directory: ``report``, or `report/` next to the store.
    public var reportDirectory: String { report ?? Self.sibling(of: store, named: "report") }
    /// The baseline cache: ``cache``, or `baselines/` next to the store.
    public var cacheDirectory: String { cache ?? Self.sibling(of: store, named: "baselines") }

    static func sibling(of file: String, named name: String) -> String {
        URL(fileURLWithPath: file).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// How long each trial may run (``trialTimeout``, or derived from the baseline).
    /// - Parameter oracleEpochs: the oracle's cost in baseline epochs (``Oracle/Cost/epochs``).
    public func trialTimeLimit(oracleEpochs: Double) -> TrialTimeLimit {
        trialTimeout.map(TrialTimeLimit.seconds) ?? .automatic(oracleEpochs: oracleEpochs)
    }

    /// The baseline of one seed.
    public func baselineConfiguration(seed: UInt64) -> BaselineConfiguration {
        // Your own data by its absolute path: trials run in other processes and folders.
        let data = DatasetCatalog.isPath(dataset) ? URL(fileURLWithPath: dataset).standardizedFileURL.path : dataset
        var b = BaselineConfiguration(model: model, dataset: data, dataDirectory: dataDirectory,
                                      validationCount: baseline.validationImages, epochs: baseline.epochs,
                                      batchSize: baseline.batchSize, learningRate: baseline.learningRate, seed: seed,
                                      trainingImages: baseline.trainingImages)
        b.dataOptions = dataOptions
        return b
    }

    /// Checks the values that don't need the registry, a model or data: counts and ranges.
    /// - Throws: ``PruneKitError`` `.invalidArgument` naming the setting and what it must be.
    public func validate() throws {
        func check(_ ok: Bool, _ key: String, _ what: String, _ value: Any) throws {
            guard ok else { throw PruneKitError(.invalidArgument, "'\(key)' must be \(what), got \(value)") }
        }
        try check(!model.isEmpty, "model", "a zoo name or a saved model directory", "''")
        if let criteria { try check(!criteria.isEmpty, "criteria", "at least one criterion id", "an empty list") }
        try check(!targets.isEmpty, "compressions/speedups", "at least one target", "none")
        for t in targets {
            guard t.value.isFinite, t.value > 1 else {
                throw PruneKitError(.invalidArgument, "the target \(t.value) (\(t.axis == .compression ? "compressions" : "speedups")) is not above 1",
                                    hint: "a target is a ratio before / after pruning: 2 halves the \(t.axis == .compression ? "weights" : "FLOPs")")
            }
        }
        try check(finetuneEpochs >= 0, "finetune-epochs", "0 or more", finetuneEpochs)
        try check(!seeds.isEmpty, "seeds", "at least one seed", "none")
        try check(seeds.count <= Self.maximumSeedCount, "seeds", "at most \(Self.maximumSeedCount) seeds", "\(seeds.count)")
        try check(Set(seeds).count == seeds.count, "seeds", "distinct", seeds)
        try check(!when.isEmpty, "when", "init, trained, or both", "an empty list")
        try check(Set(when).count == when.count, "when", "distinct values", when.map(\.rawValue).joined(separator: ", "))
        try check(Set(sanity).count == sanity.count, "sanity", "distinct checks", sanity.map(\.rawValue).joined(separator: ", "))
        _ = try Self.parsePatterns(patterns, option: "'pattern'")
        for axis in TargetAxis.allCases {
            let values = targets.filter { $0.axis == axis }.map(\.value)
            if let twice = values.first(where: { v in values.filter { $0 == v }.count > 1 }) {
                let key = axis == .compression ? "compressions" : "speedups"
                throw PruneKitError(.invalidArgument, "the target \(TrialTarget(axis, twice)) is listed twice in '\(key)'",
                                    hint: "list each target once; seeds give replicates (--seeds 3)")
            }
        }
        try check(baseline.epochs >= 0, "baseline.epochs", "0 or more", baseline.epochs)
        try check(baseline.learningRate > 0 && baseline.learningRate.isFinite, "baseline.learning-rate", "a positive number", baseline.learningRate)
        try check(baseline.batchSize >= 1, "baseline.batch-size", "at least 1", baseline.batchSize)
        try check(baseline.validationImages >= 0, "baseline.validation-images", "0 or more", baseline.validationImages)
        if let n = baseline.trainingImages { try check(n >= 1, "baseline.training-images", "at least 1", n) }
        try check(calibration.batches >= 1, "calibration.batches", "at least 1", calibration.batches)
        try check(calibration.batchSize >= 1, "calibration.batch-size", "at least 1", calibration.batchSize)
        if let n = oracle.layers { try check(n >= 1, "oracle.layers", "at least 1", n) }
        try check(Self.residualPolicies.contains(residualPolicy), "residual-policy",
                  Self.residualPolicies.joined(separator: " or "), "'\(residualPolicy)'")
        if let jobs { try check(jobs >= 1, "jobs", "at least 1", jobs) }
        if let t = trialTimeout {
            try check(t > 0 && t <= TrialTimeLimit.maximumSeconds, "trial-timeout",
                      "a positive number of seconds, at most \(Int(TrialTimeLimit.maximumSeconds)) (30 days)", t)
        }
        try check(!store.isEmpty, "store", "a file path", "''")
    }
}

// MARK: - Command-line overrides

extension ExperimentSpec {
    /// Settings given on the command line; each one that is set replaces the same key of
    /// the file (targets: `compressions` or `speedups` on the command line replace the
    /// file's targets on both axes).
    public struct Overrides: Sendable {
        public var model: String?
        public var dataset: String?
        public var dataDirectory: String?
        /// Changes to the data options (each option given on the command line).
        public var dataOptions: (@Sendable (inout DataSourceOptions) throws -> Void)?
        public var criteria: [CriterionChoice]?
        public var compressions: [Double]?
        public var speedups: [Double]?
        /// A schedule id with options (`iterative steps=3`); its options replace the file's.
        public var schedule: CriterionChoice?
        /// A finetuning strategy id with options; its options replace the file's.
        public var finetune: CriterionChoice?
        public var finetuneEpochs: Int?
        /// A count: seeds 0..<n.
        public var seeds: Int?
        public var store: String?
        public var report: String?
        public var cache: String?
        public var models: String?
        public var jobs: Int?
        public var trialTimeout: Double?
        public var when: [PruningTime]?
        public var sanity: [SanityCheck]?
        /// N:M patterns (``ExperimentSpec/patterns``); an empty list drops the file's.
        public var patterns: [String]?
        public init() {}
    }

    /// Parses a comma-separated list of `T`'s raw values (`init,trained`;
    /// `layer-shuffle,invert`), as `--when` and `--sanity` take them; `none` (where
    /// `allowsNone`) is the empty list.
    /// - Throws: ``PruneKitError`` `.invalidArgument` naming an unknown value and the valid ones.
    public static func parseList<T: RawRepresentable & CaseIterable>(_ text: String, option: String, allowsNone: Bool = false) throws -> [T]
        where T.RawValue == String {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if allowsNone && items == ["none"] { return [] }
        let valid = T.allCases.map(\.rawValue) + (allowsNone ? ["none"] : [])
        guard !items.isEmpty else {
            throw PruneKitError(.invalidArgument, "\(option) lists nothing", hint: "valid values: \(valid.joined(separator: ", "))")
        }
        return try items.map { item in
            guard let v = T(rawValue: item) else {
                throw PruneKitError(.invalidArgument, "\(option): unknown value '\(item)'", hint: "valid values: \(valid.joined(separator: ", "))")
            }
            return v
        }
    }

    /// Parses N:M patterns (`2:4`), as `--pattern 2:4,4:8` and `pattern: [2:4, 4:8]` give
    /// them: each two whole numbers with 1 ≤ N < M; `none` alone is the empty list.
    /// - Returns: the patterns in ``NMPattern``'s text form (`2:4`, whatever spaces were given).
    /// - Throws: ``PruneKitError`` `.invalidArgument` for text that is not a pattern, N ≥ M,
    ///   N or M below 1, or a pattern listed twice, naming `option`.
    public static func parsePatterns(_ items: [String], option: String) throws -> [String] {
        let items = items.map { $0.trimmingCharacters(in: .whitespaces) }
        if items == ["none"] { return [] }
        var seen = Set<NMPattern>()
        return try items.map { item in
            let pattern: NMPattern
            do { pattern = try NMPattern(parsing: item) } catch let e as PruneKitError {
                throw PruneKitError(e.kind, "\(option): \(e.message)", hint: e.hint.map { $0 + "; none for no pattern" })
            }
            guard seen.insert(pattern).inserted else {
                throw PruneKitError(.invalidArgument, "\(option): the pattern \(pattern) is listed twice", hint: "list each pattern once")
            }
            return pattern.description
        }
    }

    /// The seeds `0..<count` of a seed count.
    /// - Throws: ``PruneKitError`` `.invalidArgument` unless 1 ≤ `count` ≤ ``maximumSeedCount``.
    public static func seeds(count: Int, option: String = "--seeds") throws -> [UInt64] {
        guard count >= 1, count <= maximumSeedCount else {
            throw PruneKitError(.invalidArgument, "\(option) \(count) is not a seed count from 1 to \(maximumSeedCount)",
                                hint: "each seed trains its own baseline: 3 to 5 seeds give confidence intervals")
        }
        return (0..<UInt64(count)).map { $0 }
    }

    /// This spec with `overrides` applied.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a seed count out of range.
    public func applying(_ o: Overrides) throws -> ExperimentSpec {
        var s = self
        if let v = o.model { s.model = v }
        if let v = o.dataset { s.dataset = v }
        if let v = o.dataDirectory { s.dataDirectory = v }
        if let change = o.dataOptions {
            var d = s.dataOptions ?? DataSourceOptions()
            try change(&d)
            s.dataOptions = d
        }
        if let v = o.criteria { s.criteria = v }
        if o.compressions != nil || o.speedups != nil { s.compressions = o.compressions; s.speedups = o.speedups }
        // A plugin named again keeps the file's options unless options are given with it.
        if let v = o.schedule, v.id != s.schedule || !v.options.isEmpty { s.schedule = v.id; s.scheduleOptions = v.options }
        if let v = o.finetune, v.id != s.finetune || !v.options.isEmpty { s.finetune = v.id; s.finetuneOptions = v.options }
        if let v = o.finetuneEpochs { s.finetuneEpochs = v }
        if let v = o.seeds { s.seeds = try Self.seeds(count: v) }
        if let v = o.store { s.store = v }
        if let v = o.report { s.report = v }
        if let v = o.cache { s.cache = v }
        if let v = o.models { s.models = v }
        if let v = o.jobs { s.jobs = v }
        if let v = o.trialTimeout { s.trialTimeout = v }
        if let v = o.when { s.when = v }
        if let v = o.sanity { s.sanity = v }
        if let v = o.patterns { s.patterns = v }
        return s
    }
}

// MARK: - YAML

extension ExperimentSpec {
    /// The top-level keys of a spec file.
    public static let keys = ["name", "model", "dataset", "data-dir", "normalize", "image-size", "crop", "layout", "arrays",
                              "max-unreadable", "criteria", "compressions", "speedups",
                              "schedule", "schedule-options", "finetune", "finetune-options", "finetune-epochs",
                              "seeds", "when", "sanity", "pattern", "baseline", "calibration", "oracle", "residual-policy", "jobs", "store",
                              "report", "cache", "models", "trial-timeout"]
    static let baselineKeys = ["epochs", "learning-rate", "batch-size", "validation-images", "training-images"]
    static let calibrationKeys = ["batches", "batch-size"]
    static let oracleKeys = ["enabled", "layers"]
    static let choiceKeys = ["id", "options"]

    /// Reads a spec file.
    /// - Throws: ``PruneKitError`` `.io` if it can't be read, `.invalidArgument` as ``load(yaml:file:)``.
    public static func load(file path: String) throws -> ExperimentSpec {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PruneKitError(.io, "can't read the experiment file '\(path)'", hint: "check the path")
        }
        return try load(yaml: String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses a spec from YAML text; keys not given keep their defaults.
    ///
    /// Walks Yams' node tree (not `Decodable`) so that every error names the line and
    /// column: an unknown key (with the valid keys), a value of the wrong type (with what
    /// was expected), a value out of range.
    /// - Parameter file: the file name used in messages.
    /// - Throws: ``PruneKitError`` `.invalidArgument`.
    public static func load(yaml text: String, file: String = "<spec>") throws -> ExperimentSpec {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw PruneKitError(.invalidArgument, "\(file): not valid YAML: \(Self.describe(error, file: file))",
                                hint: "a spec is a YAML mapping of keys to values: \(keys.joined(separator: ", "))")
        }
        var spec = ExperimentSpec()
        guard let root else { return spec }   // an empty file: the defaults
        let reader = SpecReader(file: file)
        if case .scalar(let s) = root, SpecReader.isNull(s) { return spec }
        let top = try reader.mapping(root, "the spec")
        for (keyNode, value) in top {
            let key = try reader.key(keyNode, in: "the spec", valid: keys)
            switch key {
            case "name": spec.name = try reader.string(value, key)
            case "model": spec.model = try reader.string(value, key)
            case "dataset": spec.dataset = try reader.string(value, key)
            case "data-dir": spec.dataDirectory = try reader.string(value, key)
            case "normalize", "image-size", "crop", "layout", "arrays", "max-unreadable":
                var d = spec.dataOptions ?? DataSourceOptions()
                switch key {
                case "normalize": d.normalize = try reader.string(value, key)
                case "image-size": d.imageSize = try reader.int(value, key, atLeast: 1)
                case "crop": d.crop = try reader.int(value, key, atLeast: 1)
                case "layout":
                    let text = try reader.string(value, key)
                    guard let l = NumPy.Layout(rawValue: text) else {
                        throw reader.error(value, "'layout' must be one of \(NumPy.Layout.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
                    }
                    d.layout = l
                case "arrays":
                    let text = try reader.string(value, key)
                    do { d.arrayNames = try NumPy.ArrayNames.parse(text) } catch let e as PruneKitError { throw reader.error(value, e.message, hint: e.hint) }
                default: d.maxUnreadableFraction = try reader.double(value, key, above: -1)
                }
                spec.dataOptions = d
            case "criteria": spec.criteria = try reader.criteria(value)
            case "compressions": spec.compressions = try reader.targets(value, key)
            case "speedups": spec.speedups = try reader.targets(value, key)
            case "schedule":
                let c = try reader.choice(value, key)
                spec.schedule = c.id; spec.scheduleOptions += c.options
            case "schedule-options": spec.scheduleOptions += try reader.options(value, key)
            case "finetune":
                let c = try reader.choice(value, key)
                spec.finetune = c.id; spec.finetuneOptions += c.options
            case "finetune-options": spec.finetuneOptions += try reader.options(value, key)
            case "finetune-epochs": spec.finetuneEpochs = try reader.int(value, key, atLeast: 0)
            case "seeds": spec.seeds = try reader.seeds(value)
            case "when": spec.when = try reader.list(of: PruningTime.self, value, key)
            case "sanity": spec.sanity = try reader.list(of: SanityCheck.self, value, key, allowsNone: true)
            case "pattern": spec.patterns = try reader.patterns(value, key)
            case "baseline":
                for (k, v) in try reader.mapping(value, "'baseline'") {
                    switch try reader.key(k, in: "'baseline'", valid: baselineKeys) {
                    case "epochs": spec.baseline.epochs = try reader.int(v, "baseline.epochs", atLeast: 0)
                    case "learning-rate": spec.baseline.learningRate = try reader.double(v, "baseline.learning-rate", above: 0)
                    case "batch-size": spec.baseline.batchSize = try reader.int(v, "baseline.batch-size", atLeast: 1)
                    case "validation-images": spec.baseline.validationImages = try reader.int(v, "baseline.validation-images", atLeast: 0)
                    default: spec.baseline.trainingImages = try reader.int(v, "baseline.training-images", atLeast: 1)
                    }
                }
            case "calibration":
                for (k, v) in try reader.mapping(value, "'calibration'") {
                    switch try reader.key(k, in: "'calibration'", valid: calibrationKeys) {
                    case "batches": spec.calibration.batches = try reader.int(v, "calibration.batches", atLeast: 1)
                    default: spec.calibration.batchSize = try reader.int(v, "calibration.batch-size", atLeast: 1)
                    }
                }
            case "oracle":
                if let on = reader.boolIfScalar(value) { spec.oracle.enabled = on; continue }
                for (k, v) in try reader.mapping(value, "'oracle' (on, off, or a mapping)") {
                    switch try reader.key(k, in: "'oracle'", valid: oracleKeys) {
                    case "enabled": spec.oracle.enabled = try reader.bool(v, "oracle.enabled")
                    default: spec.oracle.layers = try reader.int(v, "oracle.layers", atLeast: 1)
                    }
                }
            case "residual-policy":
                spec.residualPolicy = try reader.string(value, key)
                guard residualPolicies.contains(spec.residualPolicy) else {
                    throw reader.error(value, "'residual-policy' must be \(residualPolicies.joined(separator: " or ")), got '\(spec.residualPolicy)'")
                }
            case "jobs": spec.jobs = try reader.int(value, key, atLeast: 1)
            case "store": spec.store = try reader.string(value, key)
            case "report": spec.report = try reader.string(value, key)
            case "models": spec.models = try reader.string(value, key)
            case "trial-timeout":
                if case .scalar(let v) = value, v.string == "auto" { spec.trialTimeout = nil; continue }
                spec.trialTimeout = try reader.double(value, key, above: 0)
                if let t = spec.trialTimeout, t > TrialTimeLimit.maximumSeconds {
                    throw reader.error(value, "'trial-timeout' must be at most \(Int(TrialTimeLimit.maximumSeconds)) seconds (30 days), got \(t)")
                }
            default: spec.cache = try reader.string(value, key)
            }
        }
        if let d = spec.dataOptions {
            do { try d.validate() } catch let e as PruneKitError { throw PruneKitError(e.kind, "\(file): \(e.message)", hint: e.hint) }
        }
        return spec
    }

    static func describe(_ error: YamlError, file: String) -> String {
        switch error {
        case let .scanner(_, problem, mark, _), let .parser(_, problem, mark, _), let .composer(_, problem, mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)"
        case let .duplicatedKeysInMapping(duplicates, context):
            return "line \(context.mark.line), column \(context.mark.column): the key\(duplicates.count == 1 ? "" : "s") "
                + duplicates.map { "'\($0)'" }.joined(separator: ", ") + " appear\(duplicates.count == 1 ? "s" : "") twice"
        default:
            return "\(error)"
        }
    }
}

/// Reads typed values out of Yams nodes, naming the file, line and column on every error.
struct SpecReader {
    let file: String

    /// A plain `~`, `null` or nothing (a quoted `''` is a string).
    static func isNull(_ s: Node.Scalar) -> Bool { NSNull.construct(from: s) != nil }

    func place(_ node: Node) -> String {
        guard let m = node.mark else { return file }
        return "\(file):\(m.line):\(m.column)"
    }

    func error(_ node: Node, _ message: String, hint: String? = nil) -> PruneKitError {
        PruneKitError(.invalidArgument, "\(place(node)): \(message)", hint: hint)
    }

    /// What a node is, for "got …" in messages.
    func shown(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func mapping(_ node: Node, _ what: String) throws -> [(Node, Node)] {
        guard case .mapping(let m) = node else {
            throw error(node, "\(what) must be a mapping of keys to values, got \(shown(node))")
        }
        return m.map { ($0.key, $0.value) }
    }

    func key(_ node: Node, in what: String, valid: [String]) throws -> String {
        guard case .scalar(let s) = node else { throw error(node, "a key in \(what) must be a plain word, got \(shown(node))") }
        guard valid.contains(s.string) else {
            throw error(node, "unknown key '\(s.string)' in \(what)", hint: "valid keys: \(valid.joined(separator: ", "))")
        }
        return s.string
    }

    func scalar(_ node: Node, _ key: String, _ expected: String) throws -> Node.Scalar {
        guard case .scalar(let s) = node, !Self.isNull(s) else {
            throw error(node, "'\(key)' must be \(expected), got \(node.scalar.map(Self.isNull) == true ? "nothing" : shown(node))")
        }
        return s
    }

    func string(_ node: Node, _ key: String) throws -> String {
        let s = try scalar(node, key, "a string")
        guard !s.string.isEmpty else { throw error(node, "'\(key)' must not be empty") }
        return s.string
    }

    func int(_ node: Node, _ key: String, atLeast minimum: Int) throws -> Int {
        let s = try scalar(node, key, "an integer")
        guard let v = Int(s.string.replacingOccurrences(of: "_", with: "")) else {
            throw error(node, "'\(key)' must be an integer, got '\(s.string)'")
        }
        guard v >= minimum else { throw error(node, "'\(key)' must be at least \(minimum), got \(v)") }
        return v
    }

    func double(_ node: Node, _ key: String, above minimum: Double) throws -> Double {
        let s = try scalar(node, key, "a number")
        guard let v = Double(s.string), v.isFinite else { throw error(node, "'\(key)' must be a number, got '\(s.string)'") }
        guard v > minimum else { throw error(node, "'\(key)' must be above \(minimum), got \(s.string)") }
        return v
    }

    func boolIfScalar(_ node: Node) -> Bool? {
        guard case .scalar(let s) = node else { return nil }
        switch s.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    func bool(_ node: Node, _ key: String) throws -> Bool {
        guard let b = boolIfScalar(node) else { throw error(node, "'\(key)' must be true or false, got \(shown(node))") }
        return b
    }

    func list(_ node: Node, _ key: String, of what: String) throws -> [Node] {
        guard case .sequence(let s) = node else { throw error(node, "'\(key)' must be a list of \(what), got \(shown(node))") }
        return Array(s)
    }

    /// Targets: a list of numbers above 1 (a single number is accepted as a list of one).
    func targets(_ node: Node, _ key: String) throws -> [Double] {
        let items = node.sequence != nil ? try list(node, key, of: "numbers above 1") : [node]
        guard !items.isEmpty else { throw error(node, "'\(key)' must list at least one target") }
        var seen = Set<Double>()
        return try items.map { item in
            let s = try scalar(item, key, "a list of numbers above 1")
            guard let v = Double(s.string.hasSuffix("x") || s.string.hasSuffix("×") ? String(s.string.dropLast()) : s.string),
                  v.isFinite else {
                throw error(item, "'\(key)' must be a list of numbers above 1, got '\(s.string)'")
            }
            guard v > 1 else {
                throw error(item, "the target \(s.string) in '\(key)' is not above 1",
                            hint: "a target is a ratio before / after pruning: 2 halves the \(key == "speedups" ? "FLOPs" : "weights")")
            }
            guard seen.insert(v).inserted else {
                throw error(item, "the target \(s.string) is listed twice in '\(key)'", hint: "list each target once; seeds give replicates")
            }
            return v
        }
    }

    /// A list of `T`'s raw values (`[init, trained]`), or one of them alone; `none` (where
    /// `allowsNone`) or `[]` is the empty list.
    func list<T: RawRepresentable & CaseIterable>(of type: T.Type, _ node: Node, _ key: String, allowsNone: Bool = false) throws -> [T]
        where T.RawValue == String {
        let items = node.sequence != nil ? try list(node, key, of: "values") : [node]
        if allowsNone, items.isEmpty { return [] }
        let texts = try items.map { try scalar($0, key, T.allCases.map(\.rawValue).joined(separator: ", ")).string }
        do {
            return try ExperimentSpec.parseList(texts.joined(separator: ","), option: "'\(key)'", allowsNone: allowsNone)
        } catch let e as PruneKitError {
            throw error(node, e.message, hint: e.hint)
        }
    }

    /// N:M patterns: `2:4`, `[2:4, 4:8]`, or `none` / `[]` for none.
    func patterns(_ node: Node, _ key: String) throws -> [String] {
        let items = node.sequence != nil ? try list(node, key, of: "N:M patterns") : [node]
        let texts = try items.map { try scalar($0, key, "an N:M pattern such as 2:4, or a list of them").string }
        do {
            return try ExperimentSpec.parsePatterns(texts, option: "'\(key)'")
        } catch let e as PruneKitError {
            throw error(node, e.message, hint: e.hint)
        }
    }

    /// `seeds: 3` (seeds 0, 1, 2) or `seeds: [0, 7, 42]`.
    func seeds(_ node: Node) throws -> [UInt64] {
        if node.sequence == nil {
            let n = try int(node, "seeds", atLeast: 1)
            do {
                return try ExperimentSpec.seeds(count: n, option: "'seeds:'")
            } catch let e as PruneKitError {
                throw error(node, e.message, hint: e.hint)
            }
        }
        let items = try list(node, "seeds", of: "seeds")
        guard !items.isEmpty else { throw error(node, "'seeds' must list at least one seed") }
        guard items.count <= ExperimentSpec.maximumSeedCount else {
            throw error(node, "'seeds' lists \(items.count) seeds, more than \(ExperimentSpec.maximumSeedCount)",
                        hint: "each seed trains its own baseline: 3 to 5 seeds give confidence intervals")
        }
        var seen = Set<UInt64>()
        return try items.map { item in
            let s = try scalar(item, "seeds", "a count or a list of non-negative integers")
            guard let v = UInt64(s.string) else {
                throw error(item, "'seeds' must be a count or a list of non-negative integers, got '\(s.string)'")
            }
            guard seen.insert(v).inserted else { throw error(item, "the seed \(v) is listed twice") }
            return v
        }
    }

    /// Options: a mapping (`{steps: 3}`), a list of `key=value`, or one `key=value key=value` string.
    func options(_ node: Node, _ key: String) throws -> [String] {
        switch node {
        case .mapping(let m):
            return try m.map { pair in
                guard case .scalar(let k) = pair.key else { throw error(pair.key, "an option name in '\(key)' must be a plain word") }
                let v = try scalar(pair.value, "\(key).\(k.string)", "a single value")
                return "\(k.string)=\(v.string)"
            }
        case .sequence(let s):
            return try s.map { item in
                let v = try scalar(item, key, "key=value")
                guard v.string.contains("=") else { throw error(item, "'\(key)' entries must be key=value, got '\(v.string)'") }
                return v.string
            }
        case .scalar(let s) where !Self.isNull(s):
            return s.string.split(separator: " ").map(String.init)
        default:
            throw error(node, "'\(key)' must be a mapping of option names to values, got \(shown(node))")
        }
    }

    /// A plugin choice: `id`, `id key=value …`, or `{id: …, options: {…}}`.
    func choice(_ node: Node, _ key: String) throws -> CriterionChoice {
        if case .mapping = node {
            var id: String?, options: [String] = []
            for (k, v) in try mapping(node, "'\(key)'") {
                switch try self.key(k, in: "'\(key)'", valid: SpecReader.choiceKeys) {
                case "id": id = try string(v, "\(key).id")
                default: options = try self.options(v, "\(key).options")
                }
            }
            guard let id else { throw error(node, "'\(key)' needs an 'id'") }
            return CriterionChoice(id, options: options)
        }
        return CriterionChoice(parsing: try string(node, key))
    }

    static let choiceKeys = ExperimentSpec.choiceKeys

    /// A list of choices; `all` (every registered criterion, the default) gives `nil`.
    func criteria(_ node: Node) throws -> [CriterionChoice]? {
        if case .scalar(let s) = node, s.string == "all" { return nil }
        let items = node.sequence != nil ? try list(node, "criteria", of: "criterion ids") : [node]
        guard !items.isEmpty else { throw error(node, "'criteria' must list at least one criterion id") }
        return try items.map { try choice($0, "criteria") }
    }
}
