import Foundation
import PruneKit

// What an experiment's records say, computed once and shared by every report format:
// per-criterion summaries over seeds, paired comparisons between criteria at each target
// (matched by seed: same baseline, same calibration batches, same finetuning data order),
// win/loss matrices, oracle agreement, and every failure with its message.

/// The whole analysis of an experiment's records (prune and oracle trials, succeeded and
/// failed, in any order).
public struct Analysis: Codable, Hashable, Sendable {
    /// Records read, and how many succeeded and failed.
    public var trials: Int
    public var succeeded: Int
    public var failed: Int
    /// Every seed that appears in the records.
    public var seeds: [UInt64]
    /// One entry per setting (model, data, schedule, finetuning, … everything but the
    /// criterion, the target and the seed), in a stable order.
    public var settings: [SettingAnalysis]
    /// Oracle agreement per criterion (Molchanov et al. 2017), from `.oracle` trials.
    public var oracle: [OracleSummary]
    /// Every failed trial with its message, and succeeded trials whose figures could not
    /// be used (a non-finite accuracy): never dropped silently.
    public var failures: [TrialFailure]
    /// Things a reader must know to read the figures right (one seed only, duplicates…).
    public var notes: [String]
    /// Every plugin build that ran the trials (criteria, schedules, finetuning strategies),
    /// with how many trials each ran: which file, version and SDK produced the results.
    public var plugins: [PluginUsage]
    /// The SDK versions of the PruneKits that ran the trials (`not recorded` for records
    /// written before PruneKit kept it).
    public var sdkVersions: [String]

    /// Analyses `records`. Cost: O(records + settings · targets · criteria² · seeds).
    public init(_ records: [TrialRecord], level: Double = 0.95) {
        trials = records.count
        succeeded = records.filter { $0.result.status == .succeeded }.count
        failed = trials - succeeded
        seeds = Array(Set(records.map(\.configuration.seed))).sorted()
        notes = []
        failures = []

        // Duplicates (merged shards that overlapped): keep the latest record per id.
        var latest: [String: TrialRecord] = [:]
        var order: [String] = []
        for r in records {
            if let old = latest[r.id] {
                if r.finishedAt >= old.finishedAt { latest[r.id] = r }
            } else {
                latest[r.id] = r; order.append(r.id)
            }
        }
        let duplicates = records.count - order.count
        if duplicates > 0 {
            notes.append("\(duplicates) duplicate record\(duplicates == 1 ? "" : "s") of the same trial: the latest of each was used.")
        }
        let unique = order.compactMap { latest[$0] }
        let criterionNames = CriterionNames(unique)
        plugins = PluginUsage.list(unique)
        sdkVersions = Array(Set(unique.map { $0.sdkVersion ?? "not recorded" })).sorted()
        if criterionNames.hasSeveralBuilds {
            notes.append("Some criteria ran in more than one build (a plugin rebuilt between runs): each build is its own row, named with its version or build; see Plugins.")
        }

        // Usable records; the rest are failures with a reason.
        var usable: [TrialRecord] = []
        for r in unique {
            if r.result.status == .failed {
                failures.append(TrialFailure(r, names: criterionNames, message: r.result.failure ?? "failed without a message"))
            } else if r.configuration.kind == .prune {
                if let top1 = Analysis.finalAccuracy(r.result)?.top1, !top1.isFinite {
                    failures.append(TrialFailure(r, names: criterionNames, message: "succeeded but reported a non-finite accuracy (\(top1)); left out of the statistics"))
                } else if Analysis.finalAccuracy(r.result) == nil {
                    failures.append(TrialFailure(r, names: criterionNames, message: "succeeded but reported no accuracy; left out of the statistics"))
                } else {
                    usable.append(r)
                }
            } else if let c = r.result.oracleCorrelation, !c.isFinite {
                failures.append(TrialFailure(r, names: criterionNames, message: "succeeded but reported a non-finite oracle correlation (\(c)); left out of the statistics"))
            } else {
                usable.append(r)
            }
        }
        failures.sort { ($0.criterion, $0.target?.axis.rawValue ?? "", $0.target?.value ?? 0, $0.seed) < ($1.criterion, $1.target?.axis.rawValue ?? "", $1.target?.value ?? 0, $1.seed) }

        // Settings: prune records grouped by everything but criterion, target and seed.
        let pruneRecords = unique.filter { $0.configuration.kind == .prune }
        var settingKeys: [TrialConfiguration] = []
        var settingRecords: [TrialConfiguration: [TrialRecord]] = [:]
        for r in pruneRecords {
            let key = Analysis.settingKey(r.configuration)
            if settingRecords[key] == nil { settingKeys.append(key) }
            settingRecords[key, default: []].append(r)
        }
        settingKeys.sort { Analysis.settingName($0) < Analysis.settingName($1) }
        var names = settingKeys.map(Analysis.settingName)
        for i in names.indices where names.filter({ $0 == names[i] }).count > 1 {
            names[i] += " [\(String(settingKeys[i].id.prefix(8)))]"
        }
        let usableIDs = Set(usable.map(\.id))
        settings = zip(settingKeys, names).map { key, name in
            let all = settingRecords[key] ?? []
            return SettingAnalysis(name: name, configuration: key, names: criterionNames,
                                   records: all.filter { usableIDs.contains($0.id) },
                                   failedRecords: all.filter { !usableIDs.contains($0.id) }, level: level)
        }

        // Oracle agreement: grouped by everything but the seed.
        var oracleKeys: [TrialConfiguration] = []
        var oracleRecords: [TrialConfiguration: [TrialRecord]] = [:]
        for r in usable where r.configuration.kind == .oracle {
            var key = r.configuration
            key.baseline.seed = 0
            if oracleRecords[key] == nil { oracleKeys.append(key) }
            oracleRecords[key, default: []].append(r)
        }
        oracle = oracleKeys.map { OracleSummary(configuration: $0, records: oracleRecords[$0] ?? [], names: criterionNames) }
            .sorted { ($0.setting, $0.criterion) < ($1.setting, $1.criterion) }

        if usable.isEmpty && !records.isEmpty {
            notes.append("No trial produced figures: every trial failed (see Failures).")
        }
        if records.isEmpty { notes.append("No trials: nothing to report yet.") }
        let maxSeeds = settings.flatMap(\.groups).map(\.seeds.count).max() ?? 0
        if !settings.isEmpty && maxSeeds < 2 {
            notes.append("One seed only: no standard deviations and no confidence intervals (they need ≥ 2 seeds); run with --seeds 2 or more to compare criteria with statistics.")
        }
        if !settings.isEmpty && maxSeeds >= 2 {
            notes.append("Mean ± sample standard deviation over seeds; differences between criteria are paired by seed (same baseline, calibration batches and finetuning data order) with a \(Analysis.percent(level)) % Student-t confidence interval; A beats B where the interval excludes zero.")
        }
        let flat = settings.flatMap { $0.comparisons.flatMap(\.pairs) }.filter { $0.verdict == .noSpread }.count
        if flat > 0 {
            notes.append("\(flat) pair\(flat == 1 ? "" : "s") of criteria differ\(flat == 1 ? "s" : "") by the same amount on every seed: a difference with zero spread is not evidence, so no winner is declared there; run more seeds.")
        }
    }
}

extension Analysis {
    /// The accuracy a trial ends with: after finetuning, or right after pruning when the
    /// finetuning strategy reported none (e.g. `none`).
    static func finalAccuracy(_ result: TrialResult) -> Accuracy? { result.finetunedAccuracy ?? result.prunedAccuracy }

    /// Everything but the criterion, the target and the seed (and the kind, and what only
    /// decides how much is measured: latency runs, the oracle's layer sample), so weight
    /// and channel criteria compete in one table.
    static func settingKey(_ c: TrialConfiguration) -> TrialConfiguration {
        var k = c
        k.kind = .prune
        k.latencyRuns = nil
        k.oracleLayers = nil
        k.criterion = ""
        k.criterionOptions = []
        // The schedule's and the finetuning strategy's builds stay (none known: nil, as in old records).
        let others = (k.plugins ?? []).filter { $0.kind != .criterion }
        k.plugins = others.isEmpty ? nil : others
        k.target = nil
        k.baseline.seed = 0
        // A sanity control sits in its criterion's setting (it is compared with it), and an
        // N:M trial beside the unstructured and channel ones (its label names the pattern);
        // the pruning time does not: init and trained trials are separate settings, never mixed.
        k.sanity = nil
        k.pattern = nil
        if k.when == .trained { k.when = nil }
        return k
    }

    /// `lenet-5 · mnist-5k · one-shot · finetune × 2 epochs` (options in brackets).
    static func settingName(_ c: TrialConfiguration) -> String {
        func withOptions(_ id: String, _ options: [String]) -> String {
            options.isEmpty ? id : "\(id)(\(options.joined(separator: ", ")))"
        }
        if c.pruningTime == .initialization {
            // Init trials train with the baseline's recipe, not the finetuning strategy.
            let e = c.baseline.epochs
            return [c.baseline.model, c.baseline.dataset, "pruned at init", withOptions(c.schedule, c.scheduleOptions),
                    "trained \(e) epoch\(e == 1 ? "" : "s") (the baseline's recipe)"].joined(separator: " · ")
        }
        var finetune = withOptions(c.finetune, c.finetuneOptions)
        if c.finetune != "none" { finetune += " × \(c.finetuneEpochs) epoch\(c.finetuneEpochs == 1 ? "" : "s")" }
        return [c.baseline.model, c.baseline.dataset, withOptions(c.schedule, c.scheduleOptions), finetune]
            .joined(separator: " · ")
    }

    /// A criterion as reports name it: its id, with its options where it has any, the N:M
    /// pattern it selected in (`global-magnitude 2:4`), and the sanity check of a control
    /// trial (`global-magnitude [layer-shuffle]`, `global-magnitude 2:4 [layer-shuffle]`).
    public static func criterionLabel(_ c: TrialConfiguration) -> String {
        var label = c.criterionOptions.isEmpty ? c.criterion : "\(c.criterion)(\(c.criterionOptions.joined(separator: ", ")))"
        if let pattern = c.pattern { label += " \(pattern)" }
        return c.sanity.map { "\(label) [\($0.rawValue)]" } ?? label
    }

    static func percent(_ level: Double) -> String {
        let p = level * 100
        return p == p.rounded() ? String(Int(p)) : String(format: "%g", p)
    }

    static func targetOrder(_ a: TrialTarget, _ b: TrialTarget) -> Bool {
        (a.axis == .compression ? 0 : 1, a.value) < (b.axis == .compression ? 0 : 1, b.value)
    }
}

/// The analysis of one setting: its groups, its comparisons and its win/loss tables.
public struct SettingAnalysis: Codable, Hashable, Sendable {
    /// `lenet-5 · mnist-5k · one-shot · finetune × 2 epochs`.
    public var name: String
    /// The setting's configuration; its criterion, target and seed carry no meaning.
    public var configuration: TrialConfiguration
    /// The baseline every criterion started from, over seeds.
    public var baseline: BaselineSummary?
    /// Criterion labels (id plus options), sorted.
    public var criteria: [String]
    /// Targets, compression first, ascending.
    public var targets: [TrialTarget]
    /// One per (criterion, target) with at least one trial.
    public var groups: [GroupSummary]
    /// One per target: every pair of criteria, and the win/loss matrix.
    public var comparisons: [TargetComparison]
    /// Per axis: the win/loss matrices of its targets added up.
    public var overall: [AxisOverall]
    /// Each weight criterion against its sanity controls, per target (layer-shuffle first):
    /// the controls are in ``groups`` and ``criteria`` but never in ``comparisons``.
    /// Optional only so that a results.json written before sanity checks still reads.
    public var sanity: [SanityVerdict]?

    init(name: String, configuration: TrialConfiguration, names: CriterionNames, records: [TrialRecord], failedRecords: [TrialRecord], level: Double) {
        self.name = name
        self.configuration = configuration
        baseline = BaselineSummary(records)
        let everything = records + failedRecords
        criteria = Array(Set(everything.map { names($0.configuration) })).sorted()
        targets = Array(Set(everything.compactMap(\.configuration.target))).sorted(by: Analysis.targetOrder)

        var byGroup: [SettingGroupKey: [TrialRecord]] = [:]
        var failedByGroup: [SettingGroupKey: [TrialRecord]] = [:]
        for r in records { if let k = SettingGroupKey(r.configuration, names: names) { byGroup[k, default: []].append(r) } }
        for r in failedRecords { if let k = SettingGroupKey(r.configuration, names: names) { failedByGroup[k, default: []].append(r) } }
        var groups: [GroupSummary] = []
        for target in targets {
            for criterion in criteria {
                let key = SettingGroupKey(criterion: criterion, target: target)
                let ok = byGroup[key] ?? [], bad = failedByGroup[key] ?? []
                if ok.isEmpty && bad.isEmpty { continue }
                groups.append(GroupSummary(criterion: criterion, target: target, records: ok, failedRecords: bad))
            }
        }
        self.groups = groups

        // Sanity controls are not rivals: they are compared with their own criterion only.
        let controls = Set(everything.filter { $0.configuration.sanity != nil }.map { names($0.configuration) })
        let criteria = self.criteria.filter { !controls.contains($0) }
        let comparisons = targets.map { target in
            TargetComparison(target: target, criteria: criteria, names: names,
                             records: records.filter { $0.configuration.target == target && $0.configuration.sanity == nil }, level: level)
        }
        sanity = SanityVerdict.all(records, targets: targets, names: names, level: level)
        self.comparisons = comparisons
        overall = TargetAxis.allCases.compactMap { axis in
            let mine = comparisons.filter { $0.target.axis == axis }
            guard !mine.isEmpty else { return nil }
            let onAxis = Set(mine.flatMap(\.matrix.criteria))
            return AxisOverall(axis: axis, matrix: WinLossMatrix(adding: mine.map(\.matrix), criteria: criteria.filter(onAxis.contains)))
        }
    }

    /// The group of `criterion` at `target`, if any trial ran.
    public func group(_ criterion: String, _ target: TrialTarget) -> GroupSummary? {
        groups.first { $0.criterion == criterion && $0.target == target }
    }

    /// What a criterion prunes (weights or channels), from its trials.
    public func granularity(of criterion: String) -> Granularity? {
        groups.lazy.filter { $0.criterion == criterion }.compactMap(\.granularity).first
    }

    /// The answer to a reader's first question, per target: who is best, whether that is
    /// shown (it beats every other criterion with a paired 95 % interval), and what it costs
    /// against the baseline. Where the best criterion prunes weights, the best channel
    /// criterion is given too: only channel pruning makes the model measurably faster.
    public var verdicts: [TargetVerdict] {
        comparisons.compactMap { c in
            /// `name`'s figures, and the rivals (all criteria, or those of `among`) it wasn't shown to beat.
            func entry(_ name: String, among: Set<String>? = nil) -> TargetVerdict.Entry? {
                guard let g = group(name, c.target), let top1 = g.finalTop1 else { return nil }
                let notBeaten = c.pairs.compactMap { p -> String? in
                    let (rival, won) = p.a == name ? (p.b, p.verdict == .aBetter) : p.b == name ? (p.a, p.verdict == .bBetter) : (nil, true)
                    guard let rival, among?.contains(rival) ?? true else { return nil }
                    return won ? nil : rival
                }
                return TargetVerdict.Entry(criterion: name, granularity: g.granularity, finalTop1: top1,
                                           costPoints: baseline.map { ($0.top1.mean - top1.mean) * 100 },
                                           notShownBetterThan: notBeaten, measuredSpeedupBatch64: g.measuredSpeedupBatch64,
                                           measuredSpeedupBatch1: g.measuredSpeedupBatch1)
            }
            guard let best = c.best, let first = entry(best) else { return nil }
            var channel: TargetVerdict.Entry?
            if first.granularity == .weight {
                let channels = criteria.filter { granularity(of: $0) == .channel }
                let means = channels.compactMap { name in group(name, c.target)?.finalTop1.map { (name, $0.mean) } }
                if let top = means.max(by: { $0.1 < $1.1 }) { channel = entry(top.0, among: Set(channels)) }
            }
            let seeds = c.pairs.compactMap(\.difference?.pairs).max() ?? 0
            return TargetVerdict(target: c.target, best: first, bestChannel: channel, seeds: seeds,
                                 criteriaCompared: c.matrix.criteria.count)
        }
    }
}

/// The verdict at one target (``SettingAnalysis/verdicts``).
public struct TargetVerdict: Codable, Hashable, Sendable {
    public struct Entry: Codable, Hashable, Sendable {
        public var criterion: String
        public var granularity: Granularity?
        public var finalTop1: MetricSummary
        /// Baseline mean − this criterion's mean final top-1, in percentage points.
        public var costPoints: Double?
        /// The criteria it was not shown to beat (paired 95 % interval not above zero, or no interval).
        public var notShownBetterThan: [String]
        public var measuredSpeedupBatch64: MetricSummary?
        public var measuredSpeedupBatch1: MetricSummary?
        /// It beats every other criterion compared at this target.
        public var beatsAll: Bool { notShownBetterThan.isEmpty }
    }
    public var target: TrialTarget
    /// The highest mean final top-1.
    public var best: Entry
    /// The best channel criterion, where ``best`` prunes weights.
    public var bestChannel: Entry?
    /// The most seeds any pair was matched on (2 or more give intervals).
    public var seeds: Int
    public var criteriaCompared: Int
}

private struct SettingGroupKey: Hashable {
    var criterion: String
    var target: TrialTarget
    init(criterion: String, target: TrialTarget) { self.criterion = criterion; self.target = target }
    init?(_ c: TrialConfiguration, names: CriterionNames) {
        guard let t = c.target else { return nil }
        self.init(criterion: names(c), target: t)
    }
}

/// The baseline model of a setting, over seeds (one value per seed).
public struct BaselineSummary: Codable, Hashable, Sendable {
    public var top1: MetricSummary
    public var top5: MetricSummary?
    /// The dense model's figures (equal for every seed).
    public var parameters: Int?
    public var prunableWeights: Int?
    public var macs: Int?
    public var fileBytes: Int?
    /// Median latency at batch 1 and 64, over seeds (seconds).
    public var latencyBatch1: MetricSummary?
    public var latencyBatch64: MetricSummary?

    init?(_ records: [TrialRecord]) {
        var perSeed: [UInt64: TrialRecord] = [:]
        for r in records where r.result.baselineAccuracy != nil && perSeed[r.configuration.seed] == nil {
            perSeed[r.configuration.seed] = r
        }
        let chosen = perSeed.keys.sorted().compactMap { perSeed[$0] }
        guard let top1 = MetricSummary(chosen.compactMap { $0.result.baselineAccuracy?.top1 }.filter(\.isFinite)) else { return nil }
        self.top1 = top1
        top5 = MetricSummary(chosen.compactMap { $0.result.baselineAccuracy?.top5 }.filter(\.isFinite))
        let before = records.compactMap(\.result.before).first
        parameters = before?.parameters
        prunableWeights = before?.prunableWeights
        macs = before?.macs
        fileBytes = before?.fileBytes
        latencyBatch1 = MetricSummary(chosen.compactMap { $0.result.before?.latency.first { $0.batchSize == 1 }?.median })
        latencyBatch64 = MetricSummary(chosen.compactMap { $0.result.before?.latency.first { $0.batchSize == 64 }?.median })
    }
}

/// One criterion at one target over seeds: every figure a trial reports, as mean ± sd.
public struct GroupSummary: Codable, Hashable, Sendable {
    public var criterion: String
    public var target: TrialTarget
    /// Weights or channels, as the trials recorded it (`nil` for records that predate it).
    public var granularity: Granularity?
    /// Seeds that succeeded, and seeds whose trial failed.
    public var seeds: [UInt64]
    public var failedSeeds: [UInt64]
    /// Top-1 / top-5 at the end (after finetuning) and right after pruning (fractions).
    public var finalTop1: MetricSummary?
    public var finalTop5: MetricSummary?
    public var prunedTop1: MetricSummary?
    public var prunedTop5: MetricSummary?
    /// Prunable weights before / after, and all parameters before / non-zero after.
    public var compression: MetricSummary?
    public var wholeModelCompression: MetricSummary?
    /// MACs before / after.
    public var theoreticalSpeedup: MetricSummary?
    /// Median latency before / after (channel-pruned models, where measured).
    public var measuredSpeedupBatch1: MetricSummary?
    public var measuredSpeedupBatch64: MetricSummary?
    /// The pruned model's file size in bytes.
    public var fileBytes: MetricSummary?
    /// The fraction pruned to meet the target.
    public var sparsity: MetricSummary?
    /// Wall time per phase (seconds), and of the whole trial.
    public var phaseSeconds: [String: MetricSummary]
    public var totalSeconds: MetricSummary?
    /// Distinct notes of the trials (a clipped ratio, a target only approached).
    public var notes: [String]

    init(criterion: String, target: TrialTarget, records: [TrialRecord], failedRecords: [TrialRecord]) {
        self.criterion = criterion
        self.target = target
        granularity = (records + failedRecords).lazy.compactMap(\.result.granularity).first
        let rs = records.sorted { $0.configuration.seed < $1.configuration.seed }
        seeds = rs.map(\.configuration.seed)
        failedSeeds = failedRecords.map(\.configuration.seed).sorted()
        func summary(_ f: (TrialResult) -> Double?) -> MetricSummary? {
            MetricSummary(rs.compactMap { f($0.result) }.filter(\.isFinite))
        }
        finalTop1 = summary { Analysis.finalAccuracy($0)?.top1 }
        finalTop5 = summary { Analysis.finalAccuracy($0)?.top5 }
        prunedTop1 = summary { $0.prunedAccuracy?.top1 }
        prunedTop5 = summary { $0.prunedAccuracy?.top5 }
        compression = summary(\.compression)
        wholeModelCompression = summary(\.wholeModelCompression)
        theoreticalSpeedup = summary(\.theoreticalSpeedup)
        measuredSpeedupBatch1 = summary { $0.measuredSpeedup(batchSize: 1) }
        measuredSpeedupBatch64 = summary { $0.measuredSpeedup(batchSize: 64) }
        fileBytes = summary { $0.after?.fileBytes.map(Double.init) }
        sparsity = summary(\.sparsity)
        let phases = Set(rs.flatMap(\.result.phaseSeconds.keys))
        var ps: [String: MetricSummary] = [:]
        for p in phases { ps[p] = summary { $0.phaseSeconds[p] } }
        phaseSeconds = ps
        totalSeconds = summary { $0.phaseSeconds.isEmpty ? nil : $0.phaseSeconds.values.reduce(0, +) }
        var seen = Set<String>()
        notes = rs.flatMap(\.result.notes).filter { seen.insert($0).inserted }
    }
}

/// Whether A beat B at one target.
public enum Verdict: String, Codable, Hashable, Sendable {
    /// The interval of A − B lies above zero.
    case aBetter
    /// The interval of A − B lies below zero.
    case bBetter
    /// The interval contains zero: no difference shown.
    case inconclusive
    /// Fewer than two matched seeds: no interval can be given.
    case needsSeeds
    /// Two or more matched seeds with the same difference on every one: zero variance is
    /// not evidence (the t interval would collapse to a point and call any difference
    /// significant), so no winner is declared.
    case noSpread
}

extension Verdict {
    /// The verdict of a paired difference A − B: its interval above or below zero, or
    /// containing it; no spread (``PairedDifference/hasNoSpread``); or too few seeds.
    init(_ d: PairedDifference?) {
        if let ci = d?.interval {
            self = ci.lower > 0 ? .aBetter : ci.upper < 0 ? .bBetter : .inconclusive
        } else if d?.hasNoSpread == true {
            self = .noSpread
        } else {
            self = .needsSeeds
        }
    }
}

/// A weight criterion against one of its sanity controls at one target: final top-1 of
/// the criterion − the control's, paired by seed (``Verdict/aBetter``: the criterion beats
/// its control).
public struct SanityVerdict: Codable, Hashable, Sendable {
    /// The criterion's label, and the control's (`global-magnitude [layer-shuffle]`).
    public var criterion: String
    public var control: String
    public var check: SanityCheck
    public var target: TrialTarget
    /// Criterion − control over the seeds where both succeeded; `nil` with none.
    public var difference: PairedDifference?
    /// Seeds where only one of the two has a usable trial.
    public var unmatched: Int
    public var verdict: Verdict

    /// Every (criterion, check, target) among `records` that has a control trial, ordered by
    /// target, criterion, then check (``SanityCheck/allCases`` order: layer-shuffle first).
    static func all(_ records: [TrialRecord], targets: [TrialTarget], names: CriterionNames, level: Double) -> [SanityVerdict] {
        struct Key: Hashable { var criterion: String; var check: SanityCheck?; var target: TrialTarget }
        var values: [Key: [UInt64: Double]] = [:]
        var controlNames: [Key: String] = [:]
        for r in records {
            guard let target = r.configuration.target, let top1 = Analysis.finalAccuracy(r.result)?.top1, top1.isFinite else { continue }
            var own = r.configuration
            own.sanity = nil
            let key = Key(criterion: names(own), check: r.configuration.sanity, target: target)
            values[key, default: [:]][r.configuration.seed] = top1
            if r.configuration.sanity != nil { controlNames[key] = names(r.configuration) }
        }
        var out: [SanityVerdict] = []
        for target in targets {
            for criterion in Set(values.keys.filter { $0.target == target }.map(\.criterion)).sorted() {
                let own = values[Key(criterion: criterion, check: nil, target: target)] ?? [:]
                for check in SanityCheck.allCases {
                    let key = Key(criterion: criterion, check: check, target: target)
                    guard let control = values[key], let name = controlNames[key] else { continue }
                    let common = Set(own.keys).intersection(control.keys).sorted()
                    let d = Statistics.pairedDifference(common.compactMap { own[$0] }, common.compactMap { control[$0] }, level: level)
                    out.append(SanityVerdict(criterion: criterion, control: name, check: check, target: target, difference: d,
                                             unmatched: Set(own.keys).symmetricDifference(control.keys).count, verdict: Verdict(d)))
                }
            }
        }
        return out
    }
}

/// Criterion A against criterion B at one target: final top-1, paired by seed.
public struct PairwiseComparison: Codable, Hashable, Sendable {
    public var a: String
    public var b: String
    /// A − B over the seeds where both succeeded (fractions of accuracy); `nil` with none.
    public var difference: PairedDifference?
    /// Seeds where exactly one of the two has a usable trial: left out of this pair.
    public var unmatched: Int
    public var verdict: Verdict
}

/// Who beat whom: `wins[i][j]` counts the targets at which `criteria[i]` beat `criteria[j]`
/// (its paired interval excluded zero), `decided[i][j]` those with an interval at all.
public struct WinLossMatrix: Codable, Hashable, Sendable {
    public var criteria: [String]
    public var wins: [[Int]]
    public var decided: [[Int]]

    /// Wins − losses of `criterion`; `nil` when it is not in the matrix.
    public func score(of criterion: String) -> Int? {
        criteria.firstIndex(of: criterion).map { score[$0] }
    }

    /// Wins − losses of each criterion (row sum minus column sum).
    public var score: [Int] {
        criteria.indices.map { i in
            criteria.indices.reduce(0) { $0 + wins[i][$1] - wins[$1][i] }
        }
    }

    init(criteria: [String], pairs: [PairwiseComparison]) {
        self.criteria = criteria
        let n = criteria.count
        wins = Array(repeating: Array(repeating: 0, count: n), count: n)
        decided = wins
        let index = Dictionary(uniqueKeysWithValues: criteria.enumerated().map { ($1, $0) })
        for p in pairs {
            guard let i = index[p.a], let j = index[p.b] else { continue }
            if p.difference?.interval != nil { decided[i][j] += 1; decided[j][i] += 1 }
            if p.verdict == .aBetter { wins[i][j] += 1 }
            if p.verdict == .bBetter { wins[j][i] += 1 }
        }
    }

    init(adding matrices: [WinLossMatrix], criteria: [String]) {
        self.criteria = criteria
        let n = criteria.count
        wins = Array(repeating: Array(repeating: 0, count: n), count: n)
        decided = wins
        let index = Dictionary(uniqueKeysWithValues: criteria.enumerated().map { ($1, $0) })
        for m in matrices {
            for (mi, a) in m.criteria.enumerated() {
                for (mj, b) in m.criteria.enumerated() {
                    guard let i = index[a], let j = index[b] else { continue }
                    wins[i][j] += m.wins[mi][mj]
                    decided[i][j] += m.decided[mi][mj]
                }
            }
        }
    }
}

/// Every pair of criteria at one target.
public struct TargetComparison: Codable, Hashable, Sendable {
    public var target: TrialTarget
    /// Pairs (a before b in the setting's criterion order), each compared by seed.
    public var pairs: [PairwiseComparison]
    public var matrix: WinLossMatrix
    /// The criterion with the highest mean final top-1 here, and whether it beat every
    /// other criterion with an interval that excludes zero.
    public var best: String?
    public var bestBeatsAll: Bool

    init(target: TrialTarget, criteria: [String], names: CriterionNames, records: [TrialRecord], level: Double) {
        self.target = target
        // criterion → seed → final top-1
        var values: [String: [UInt64: Double]] = [:]
        for r in records {
            guard let top1 = Analysis.finalAccuracy(r.result)?.top1, top1.isFinite else { continue }
            values[names(r.configuration), default: [:]][r.configuration.seed] = top1
        }
        let present = criteria.filter { values[$0] != nil }
        var pairs: [PairwiseComparison] = []
        for (i, a) in present.enumerated() {
            for b in present[(i + 1)...] {
                let va = values[a] ?? [:], vb = values[b] ?? [:]
                let common = Set(va.keys).intersection(vb.keys).sorted()
                let unmatched = Set(va.keys).symmetricDifference(vb.keys).count
                let d = Statistics.pairedDifference(common.compactMap { va[$0] }, common.compactMap { vb[$0] }, level: level)
                pairs.append(PairwiseComparison(a: a, b: b, difference: d, unmatched: unmatched, verdict: Verdict(d)))
            }
        }
        self.pairs = pairs
        matrix = WinLossMatrix(criteria: present, pairs: pairs)
        let means = present.compactMap { c in Statistics.mean(Array((values[c] ?? [:]).values)).map { (c, $0) } }
        best = means.max { $0.1 < $1.1 }?.0
        if let best, let i = present.firstIndex(of: best), present.count > 1 {
            let wins = matrix.wins
            bestBeatsAll = present.indices.allSatisfy { $0 == i || wins[i][$0] > 0 }
        } else {
            bestBeatsAll = false
        }
    }
}

/// The matrices of an axis's targets added up.
public struct AxisOverall: Codable, Hashable, Sendable {
    public var axis: TargetAxis
    public var matrix: WinLossMatrix
}

/// One criterion's agreement with the oracle ranking, over seeds.
public struct OracleSummary: Codable, Hashable, Sendable {
    /// `lenet-5 · mnist-5k`.
    public var setting: String
    public var criterion: String
    public var seeds: [UInt64]
    /// Spearman correlation with the oracle (mean over sampled layers), over seeds.
    public var correlation: MetricSummary?
    /// The same per sampled layer (dotted path), sorted by path.
    public var byLayer: [LayerCorrelation]

    init(configuration: TrialConfiguration, records: [TrialRecord], names: CriterionNames) {
        setting = "\(configuration.baseline.model) · \(configuration.baseline.dataset)"
        criterion = names(configuration)
        let rs = records.sorted { $0.configuration.seed < $1.configuration.seed }
        seeds = rs.map(\.configuration.seed)
        correlation = MetricSummary(rs.compactMap(\.result.oracleCorrelation).filter(\.isFinite))
        let layers = Set(rs.flatMap { $0.result.oracleCorrelationByLayer?.keys.map { $0 } ?? [] }).sorted()
        byLayer = layers.compactMap { layer in
            MetricSummary(rs.compactMap { $0.result.oracleCorrelationByLayer?[layer] }.filter(\.isFinite))
                .map { LayerCorrelation(layer: layer, correlation: $0) }
        }
    }
}

public struct LayerCorrelation: Codable, Hashable, Sendable {
    public var layer: String
    public var correlation: MetricSummary
}

/// A trial that produced no usable figures, and why.
public struct TrialFailure: Codable, Hashable, Sendable {
    public var id: String
    public var kind: TrialKind
    public var criterion: String
    public var target: TrialTarget?
    public var seed: UInt64
    public var setting: String
    public var message: String

    init(_ r: TrialRecord, names: CriterionNames, message: String) {
        id = r.id
        kind = r.configuration.kind
        criterion = names(r.configuration)
        target = r.configuration.target
        seed = r.configuration.seed
        setting = Analysis.settingName(Analysis.settingKey(r.configuration))
        self.message = message
    }
}

/// How the analysis names criteria: ``Analysis/criterionLabel(_:)``, and where the records
/// hold more than one build of a criterion (a plugin rebuilt between runs), the build
/// too: its version where the builds' versions differ (`my-criterion(p=2) [0.2.0]`), else
/// its content hash (`[0.1.0, build 1a2b3c4d]`); `[build not recorded]` for records
/// written before builds were kept. One build: the plain label, as before.
struct CriterionNames {
    /// Label → the distinct criterion builds (identities) among the records.
    private let builds: [String: [PluginBuild?]]

    init(_ records: [TrialRecord]) {
        var builds: [String: [PluginBuild?]] = [:]
        for r in records {
            let label = Analysis.criterionLabel(r.configuration), build = r.configuration.criterionBuild?.identity
            if !(builds[label] ?? []).contains(build) { builds[label, default: []].append(build) }
        }
        self.builds = builds
    }

    var hasSeveralBuilds: Bool { builds.values.contains { $0.count > 1 } }

    func callAsFunction(_ c: TrialConfiguration) -> String {
        let label = Analysis.criterionLabel(c)
        guard let all = builds[label], all.count > 1 else { return label }
        guard let build = c.criterionBuild else { return label + " [build not recorded]" }
        let sameVersion = all.filter { $0?.version == build.version }.count > 1
        let hash = build.contentHash.map { String($0.prefix(8)) } ?? "built-in"
        return label + (sameVersion ? " [\(build.version), build \(hash)]" : " [\(build.version)]")
    }
}

/// One plugin build and how many of the records it ran: provenance for the reports.
public struct PluginUsage: Codable, Hashable, Sendable {
    public var kind: PluginKind
    public var id: String
    /// `nil`: the records don't say (written before PruneKit kept plugin builds).
    public var build: PluginBuild?
    public var trials: Int

    /// The builds in `records`, by kind (criteria first), id, then version.
    static func list(_ records: [TrialRecord]) -> [PluginUsage] {
        var counts: [PluginUsage: Int] = [:]
        for r in records {
            let c = r.configuration
            for (kind, id) in [(PluginKind.criterion, c.criterion), (.schedule, c.schedule), (.finetune, c.finetune)] {
                let build = c.plugins?.first { $0.kind == kind && $0.id == id }
                counts[PluginUsage(kind: kind, id: id, build: build, trials: 0), default: 0] += 1
            }
        }
        let order: [PluginKind] = [.criterion, .schedule, .finetune]
        return counts.map { usage, n in var u = usage; u.trials = n; return u }.sorted {
            (order.firstIndex(of: $0.kind) ?? 0, $0.id, $0.build?.version ?? "", $0.build?.contentHash ?? "")
                < (order.firstIndex(of: $1.kind) ?? 0, $1.id, $1.build?.version ?? "", $1.build?.contentHash ?? "")
        }
    }
}
