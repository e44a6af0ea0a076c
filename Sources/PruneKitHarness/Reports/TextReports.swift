import Foundation

// The plain-text formats: the terminal table, report.md and trials.csv.

extension Report {
    // MARK: Terminal

    /// A fixed-width summary for the terminal: per setting and axis, criteria × targets of
    /// final top-1 (mean ± sd over seeds), the best criterion per target, wins − losses,
    /// oracle agreement, and the failures.
    public static func terminalTable(_ analysis: Analysis) -> String {
        var out: [String] = []
        out.append("\(analysis.trials) trial\(analysis.trials == 1 ? "" : "s"): \(analysis.succeeded) succeeded, \(analysis.failed) failed · \(seedList(analysis.seeds))")
        for setting in analysis.settings {
            out.append("")
            out.append(setting.name)
            out.append(baselineLine(setting.baseline))
            for axis in TargetAxis.allCases {
                let targets = setting.targets.filter { $0.axis == axis }
                if targets.isEmpty { continue }
                out.append("")
                let seeds = seedCount(setting)
                out.append("Final top-1 (%) at \(axisDescription(axis)), \(seeds == 1 ? "one seed" : "mean ± sd over \(seeds) seeds")")
                let score = setting.overall.first { $0.axis == axis }?.matrix
                let hasDecisions = score.map { $0.decided.joined().contains { $0 > 0 } } ?? false
                var header = ["criterion"] + targets.map { times($0.value) }
                if hasDecisions { header.append("wins−losses") }
                var rows: [[String]] = []
                for criterion in setting.criteria where onAxis(setting, criterion, axis) {
                    var row = [criterion]
                    for target in targets { row.append(cell(setting, criterion, target, marker: true)) }
                    if hasDecisions { row.append(score?.score(of: criterion).map(signedInt) ?? "—") }
                    rows.append(row)
                }
                out.append(fixedWidth(header: header, rows: rows))
                var best: [String] = []
                for c in setting.comparisons where c.target.axis == axis {
                    guard let b = c.best else { continue }
                    let others = c.pairs.filter { $0.a == b || $0.b == b }.count
                    let beaten = c.pairs.filter { ($0.a == b && $0.verdict == .aBetter) || ($0.b == b && $0.verdict == .bBetter) }.count
                    let decided = c.pairs.contains { ($0.a == b || $0.b == b) && $0.difference?.interval != nil }
                    best.append("\(times(c.target.value)) \(b)" + (decided ? " (beats \(beaten) of \(others))" : ""))
                }
                let oneLine = "best: " + best.joined(separator: " · ")
                if oneLine.count <= 120 {
                    if !best.isEmpty { out.append(oneLine) }
                } else {
                    out.append("best:")
                    out.append(contentsOf: best.map { "  \($0)" })
                }
            }
            out.append(contentsOf: sanitySentences(setting).map { "sanity: \($0)" })
        }
        if !analysis.settings.isEmpty {
            out.append("▲ best mean that beats every other criterion (paired 95 % CI excludes zero); △ best mean, not shown to beat all.")
        }
        if !analysis.oracle.isEmpty {
            out.append("")
            out.append("Oracle agreement: Spearman ρ of each criterion's channel ranking with the loss increase of removing each channel alone")
            let rows = analysis.oracle.map { o in
                [o.criterion, o.setting, o.correlation.map { correlation($0) } ?? "—", "\(o.seeds.count)"]
            }
            out.append(fixedWidth(header: ["criterion", "setting", "ρ", "seeds"], rows: rows))
        }
        if !analysis.failures.isEmpty {
            out.append("")
            out.append("\(analysis.failures.count) trial\(analysis.failures.count == 1 ? "" : "s") without figures:")
            for f in analysis.failures.prefix(10) {
                out.append("  \(failureSubject(f)): \(oneLine(f.message, limit: 140))")
            }
            if analysis.failures.count > 10 { out.append("  … and \(analysis.failures.count - 10) more (see report.md)") }
        }
        if !analysis.notes.isEmpty {
            out.append("")
            out.append(contentsOf: analysis.notes.map { "note: \($0)" })
        }
        return out.joined(separator: "\n") + "\n"
    }

    /// The cell of `criterion` at `target`: `98.90 ± 0.05`, a best marker, failures.
    static func cell(_ s: SettingAnalysis, _ criterion: String, _ target: TrialTarget, marker: Bool) -> String {
        guard let g = s.group(criterion, target) else { return "—" }
        guard g.finalTop1 != nil else { return "failed (\(g.failedSeeds.count))" }
        var text = accuracy(g.finalTop1)
        if marker, let c = s.comparisons.first(where: { $0.target == target }), c.best == criterion {
            text += c.bestBeatsAll ? " ▲" : " △"
        }
        if !g.failedSeeds.isEmpty { text += " (\(g.failedSeeds.count) failed)" }
        return text
    }

    /// Whether `criterion` has a trial at a target on `axis` (tables per axis show only those).
    static func onAxis(_ s: SettingAnalysis, _ criterion: String, _ axis: TargetAxis) -> Bool {
        s.groups.contains { $0.criterion == criterion && $0.target.axis == axis }
    }

    static func correlation(_ s: MetricSummary) -> String {
        let m = String(format: "%.3f", s.mean)
        return s.standardDeviation.map { "\(m) ± \(String(format: "%.3f", $0))" } ?? m
    }

    static func signedInt(_ v: Int) -> String { v > 0 ? "+\(v)" : v < 0 ? "−\(-v)" : "0" }

    /// `1 seed (0)`, `3 seeds (0, 1, 2)`: a count first, so "seeds 0" can't read as none.
    static func seedList(_ seeds: [UInt64]) -> String {
        seeds.isEmpty ? "no seeds" : "\(seeds.count) seed\(seeds.count == 1 ? "" : "s") (\(seeds.map(String.init).joined(separator: ", ")))"
    }

    static func failureSubject(_ f: TrialFailure) -> String {
        var s = f.kind == .oracle ? "\(f.criterion) (oracle)" : f.criterion
        if let t = f.target { s += " @ \(t)" }
        return s + ", seed \(f.seed)"
    }

    static func oneLine(_ s: String, limit: Int) -> String {
        let flat = s.split(whereSeparator: \.isNewline).joined(separator: " ⏎ ")
        return flat.count > limit ? String(flat.prefix(limit - 1)) + "…" : flat
    }

    /// Left-aligned first column, right-aligned others, two spaces between.
    static func fixedWidth(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
        func line(_ r: [String]) -> String {
            r.enumerated().map { i, c in
                let pad = String(repeating: " ", count: max(0, widths[i] - c.count))
                return i == 0 ? c + pad : pad + c
            }.joined(separator: "  ")
        }
        let rule = widths.map { String(repeating: "─", count: $0) }.joined(separator: "  ")
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }

    // MARK: Markdown

    /// `report.md`: the same figures as the HTML report, as Markdown tables.
    public static func markdown(_ analysis: Analysis, title: String) -> String {
        var md: [String] = []
        md.append("# \(markdownCell(title))")
        md.append("")
        md.append("\(analysis.trials) trials: \(analysis.succeeded) succeeded, \(analysis.failed) failed · \(seedList(analysis.seeds))")
        for setting in analysis.settings where !setting.verdicts.isEmpty {
            md.append("")
            md.append("## Verdict" + (analysis.settings.count > 1 ? ": \(markdownCell(setting.name))" : ""))
            md.append("")
            md.append(contentsOf: verdictSentences(setting).map { "- " + markdownCell($0.text) })
            md.append(contentsOf: sanitySentences(setting).map { "- " + markdownCell($0) })
            if setting.verdicts.contains(where: { $0.seeds < 2 }) {
                md.append("")
                md.append("With one seed no difference is tested: run ≥ 2 seeds (`--seeds 3`) for paired 95 % intervals.")
            }
        }
        if !analysis.notes.isEmpty {
            md.append("")
            md.append(contentsOf: analysis.notes.map { "> \(markdownCell($0))" })
        }
        for setting in analysis.settings {
            md.append("")
            md.append("## \(markdownCell(setting.name))")
            md.append("")
            md.append(markdownCell(baselineLine(setting.baseline)))
            for axis in TargetAxis.allCases {
                let targets = setting.targets.filter { $0.axis == axis }
                if targets.isEmpty { continue }
                let score = setting.overall.first { $0.axis == axis }?.matrix
                md.append("")
                md.append("### Final top-1 accuracy (%) at \(axisDescription(axis))")
                md.append("")
                var header = ["criterion"] + targets.map { times($0.value) }
                let hasDecisions = score.map { $0.decided.joined().contains { $0 > 0 } } ?? false
                if hasDecisions { header.append("wins − losses") }
                let rows: [[String]] = setting.criteria.filter { onAxis(setting, $0, axis) }.map { criterion in
                    var row = [criterion] + targets.map { target -> String in
                        let text = cell(setting, criterion, target, marker: true)
                        let best = setting.comparisons.first { $0.target == target }?.best == criterion
                        return best ? "**\(text)**" : text
                    }
                    if hasDecisions { row.append(score?.score(of: criterion).map(signedInt) ?? "—") }
                    return row
                }
                md.append(markdownTable(header, rows, numericFrom: 1))
                md.append("")
                md.append(summaryLegend(setting))
            }
            md.append("")
            md.append("### Details per criterion and target")
            md.append("")
            md.append(detailLegend)
            md.append("")
            md.append(markdownTable(detailHeader, setting.groups.map(detailRow), numericFrom: 3))
            let phases = Array(Set(setting.groups.flatMap(\.phaseSeconds.keys))).sorted(by: phaseOrder)
            if !phases.isEmpty {
                md.append("")
                md.append("<details><summary>Wall time per phase (mean over seeds)</summary>")
                md.append("")
                md.append(markdownTable(["criterion", "target"] + phases + ["total"], phaseRows(setting, phases), numericFrom: 2))
                md.append("")
                md.append("</details>")
            }
            let pairs = setting.comparisons.flatMap { c in c.pairs.map { (c.target, $0) } }
            if !pairs.isEmpty && pairs.allSatisfy({ $0.1.verdict == .needsSeeds }) {
                md.append("")
                md.append(needSeedsText)
            } else if !pairs.isEmpty {
                md.append("")
                md.append("### Paired differences of final top-1 (A − B, percentage points, 95 % CI)")
                md.append("")
                let rows = pairs.map { t, p in
                    [t.description, p.a, p.b, difference(p), "\(p.difference?.pairs ?? 0)", "\(p.unmatched)", verdictText(p)]
                }
                md.append(markdownTable(["target", "A", "B", "A − B [95 % CI]", "pairs", "unmatched", "verdict"], rows, numericFrom: 3))
                md.append("")
                md.append("Pairs are matched by seed; a seed where only one of the two succeeded is left out of that pair (unmatched).")
                md.append("")
                md.append("### Win/loss (row against column: W wins, L loses, = no difference shown, ? needs ≥ 2 seeds, ~ same difference on every seed: no spread, not evidence)")
                for c in setting.comparisons {
                    md.append("")
                    md.append("**\(markdownCell(c.target.description))**")
                    md.append("")
                    md.append(markdownTable(["", ] + c.matrix.criteria + ["wins − losses"], winLossRows(c), numericFrom: 1))
                }
                for o in setting.overall {
                    md.append("")
                    md.append("**Overall, \(axisDescription(o.axis)): targets won–lost**")
                    md.append("")
                    let m = o.matrix
                    let rows = m.criteria.indices.map { i in
                        [m.criteria[i]] + m.criteria.indices.map { j in i == j ? "" : "\(m.wins[i][j])–\(m.wins[j][i])" } + [signedInt(m.score[i])]
                    }
                    md.append(markdownTable([""] + m.criteria + ["wins − losses"], rows, numericFrom: 1))
                }
            }
        }
        if !analysis.oracle.isEmpty {
            md.append("")
            md.append("## Oracle agreement")
            md.append("")
            md.append("Spearman ρ between each criterion's channel ranking and the oracle's (the loss increase from removing each channel alone, on calibration data; Molchanov et al. 2017), mean ± sd over seeds.")
            md.append("")
            let layers = Array(Set(analysis.oracle.flatMap { $0.byLayer.map(\.layer) })).sorted()
            let rows = analysis.oracle.map { o in
                [o.criterion, o.setting, "\(o.seeds.count)", o.correlation.map(correlation) ?? "—"]
                    + layers.map { l in o.byLayer.first { $0.layer == l }.map { correlation($0.correlation) } ?? "—" }
            }
            md.append(markdownTable(["criterion", "setting", "seeds", "ρ (mean of layers)"] + layers, rows, numericFrom: 2))
        }
        if !analysis.failures.isEmpty {
            md.append("")
            md.append("## Failures")
            md.append("")
            let rows = analysis.failures.map { f in
                [f.criterion, f.kind == .oracle ? "oracle" : (f.target?.description ?? "—"), "\(f.seed)", f.setting, f.message]
            }
            md.append(markdownTable(["criterion", "target", "seed", "setting", "message"], rows, numericFrom: 99))
        }
        if !analysis.plugins.isEmpty {
            md.append("")
            md.append("## Plugins")
            md.append("")
            md.append(markdownCell(pluginCaption(analysis)))
            md.append("")
            md.append(markdownTable(pluginHeader, pluginRows(analysis), numericFrom: 6))
        }
        return md.joined(separator: "\n") + "\n"
    }

    /// The plugin builds that ran the trials, one row each: kind, id, version, file, the SDK
    /// it was built against, its build (content hash), trials.
    static func pluginRows(_ analysis: Analysis) -> [[String]] {
        analysis.plugins.map { u in
            guard let b = u.build else { return [u.kind.rawValue, u.id, "not recorded", "—", "—", "—", "\(u.trials)"] }
            return [u.kind.rawValue, u.id, b.version, b.file, b.sdkVersion, b.contentHash.map { String($0.prefix(16)) } ?? "built-in", "\(u.trials)"]
        }
    }

    static let pluginHeader = ["kind", "id", "version", "file", "built against SDK", "build", "trials"]

    static func pluginCaption(_ analysis: Analysis) -> String {
        "The plugin builds that produced these results (build: the hash of the plugin file's bytes, part of each trial's identity), run by PruneKit SDK \(analysis.sdkVersions.joined(separator: ", "))."
    }

    /// What the summary tables show: "mean ± sd" only where there are seeds to spread.
    static func summaryLegend(_ s: SettingAnalysis) -> String {
        let seeds = seedCount(s)
        return (seeds >= 2 ? "Mean ± sd over \(seeds) seeds. " : "One seed: single values, no spread. ")
            + "▲ best mean and beats every other criterion (paired 95 % CI excludes zero); △ best mean, not shown to beat all."
    }

    static let needSeedsText = "Paired differences and win/loss need ≥ 2 seeds: with one seed there is no spread to test a difference against."

    /// The per-trial table keeps what a reader compares (accuracy, measured speed-up, file
    /// size); every other figure is in trials.csv.
    static let detailHeader = ["criterion", "prunes", "target", "top-1 pruned (%)", "top-1 final (%)",
                               "compression", "speed-up: measured b1 · b64", "theoretical (MACs)", "file size"]

    static let detailLegend = "Compression: prunable weights before / after. Speed-up: median latency before / after, "
        + "measured at batch 1 and 64 for channel criteria (a weight criterion's masked model runs the same dense kernels: "
        + "\"dense\"); the theoretical speed-up counts MACs only. Seeds, top-5, the whole-model ratio and wall times: trials.csv."

    static func detailRow(_ g: GroupSummary) -> [String] {
        var final = accuracy(g.finalTop1)
        if !g.failedSeeds.isEmpty { final += " (\(g.failedSeeds.count) failed)" }
        let measured = g.granularity == .weight ? "dense"
            : "\(ratio(g.measuredSpeedupBatch1)) · \(ratio(g.measuredSpeedupBatch64))"
        return [g.criterion, g.granularity?.rawValue ?? "?", g.target.description, accuracy(g.prunedTop1), final,
                ratio(g.compression), measured, ratio(g.theoreticalSpeedup), bytes(g.fileBytes)]
    }

    static func phaseRows(_ s: SettingAnalysis, _ phases: [String]) -> [[String]] {
        s.groups.map { g in [g.criterion, g.target.description] + phases.map { seconds(g.phaseSeconds[$0]) } + [seconds(g.totalSeconds)] }
    }

    /// Phases in the order a trial runs them, then any others alphabetically.
    static func phaseOrder(_ a: String, _ b: String) -> Bool {
        let known = ["baseline", "score", "prune", "finetune", "evaluate", "measure", "oracle"]
        let ia = known.firstIndex(of: a) ?? known.count, ib = known.firstIndex(of: b) ?? known.count
        return (ia, a) < (ib, b)
    }

    /// Rows of a target's win/loss matrix: W / L / = / ?, and wins − losses.
    static func winLossRows(_ c: TargetComparison) -> [[String]] {
        let m = c.matrix
        return m.criteria.indices.map { i in
            [m.criteria[i]] + m.criteria.indices.map { j in winLossSymbol(c, i, j) } + [signedInt(m.score[i])]
        }
    }

    static func winLossSymbol(_ c: TargetComparison, _ i: Int, _ j: Int) -> String {
        let m = c.matrix
        if i == j { return "" }
        if m.wins[i][j] > 0 { return "W" }
        if m.wins[j][i] > 0 { return "L" }
        let a = m.criteria[i], b = m.criteria[j]
        guard let p = c.pairs.first(where: { ($0.a == a && $0.b == b) || ($0.a == b && $0.b == a) }) else { return "—" }
        switch p.verdict {
        case .needsSeeds: return "?"
        case .noSpread: return "~"
        default: return "="
        }
    }

    static func markdownTable(_ header: [String], _ rows: [[String]], numericFrom: Int) -> String {
        func line(_ cells: [String]) -> String { "| " + cells.map(markdownCell).joined(separator: " | ") + " |" }
        let align = header.indices.map { $0 >= numericFrom ? "---:" : "---" }
        return ([line(header), "| " + align.joined(separator: " | ") + " |"] + rows.map(line)).joined(separator: "\n")
    }

    // MARK: CSV

    /// `trials.csv`: one row per record, every field flattened (RFC 4180: CRLF line ends,
    /// fields quoted where needed). Accuracies are fractions; times in seconds; empty
    /// cells where a figure does not exist. Latency columns for every batch size measured
    /// in any record, phase columns for every phase that occurs.
    public static func csv(_ records: [TrialRecord]) -> String {
        let batchSizes = Array(Set(records.flatMap { r in
            (r.result.before?.latency ?? []).map(\.batchSize) + (r.result.after?.latency ?? []).map(\.batchSize)
        })).sorted()
        let phases = Array(Set(records.flatMap(\.result.phaseSeconds.keys))).sorted(by: phaseOrder)
        func n<T>(_ v: T?) -> String { v.map { "\($0)" } ?? "" }

        var header = ["id", "kind", "status", "failure", "model", "dataset", "data_directory", "validation_count",
                      "baseline_epochs", "baseline_batch_size", "baseline_learning_rate", "seed", "training_images",
                      "criterion", "criterion_options", "when", "sanity", "pattern", "granularity", "target_axis", "target_value", "schedule", "schedule_options",
                      "finetune", "finetune_options", "finetune_epochs", "calibration_batches", "calibration_batch_size",
                      "residual_policy"]
        for stage in ["baseline", "pruned", "finetuned"] { header += ["\(stage)_top1", "\(stage)_top5", "\(stage)_loss"] }
        for side in ["before", "after"] {
            header += ["\(side)_parameters", "\(side)_nonzero_parameters", "\(side)_prunable_weights",
                       "\(side)_remaining_prunable_weights", "\(side)_macs", "\(side)_file_bytes"]
            for b in batchSizes { header += ["\(side)_latency_b\(b)_median_s", "\(side)_latency_b\(b)_p10_s", "\(side)_latency_b\(b)_p90_s", "\(side)_latency_b\(b)_runs"] }
        }
        header += ["compression", "whole_model_compression", "theoretical_speedup"]
        header += batchSizes.map { "measured_speedup_b\($0)" }
        header += ["sparsity", "oracle_correlation", "oracle_correlation_by_layer", "notes"]
        header += phases.map { "\($0)_s" } + ["total_s", "finished_at", "host"]
        header += ["criterion_file", "criterion_version", "criterion_build", "criterion_sdk_version", "plugins", "sdk_version"]

        let iso = ISO8601DateFormatter()
        var lines = [header.map(csvField).joined(separator: ",")]
        for r in records {
            let c = r.configuration, res = r.result, b = c.baseline
            var row = [r.id, c.kind.rawValue, res.status.rawValue, res.failure ?? "", b.model, b.dataset, b.dataDirectory ?? "",
                       "\(b.validationCount)", "\(b.epochs)", "\(b.batchSize)", "\(b.learningRate)", "\(b.seed)", n(b.trainingImages),
                       c.criterion, c.criterionOptions.joined(separator: " "), c.pruningTime.rawValue, c.sanity?.rawValue ?? "", c.pattern ?? "",
                       res.granularity?.rawValue ?? "",
                       c.target?.axis.rawValue ?? "", n(c.target?.value),
                       c.schedule, c.scheduleOptions.joined(separator: " "), c.finetune, c.finetuneOptions.joined(separator: " "),
                       "\(c.finetuneEpochs)", "\(c.calibrationBatches)", "\(c.calibrationBatchSize)", c.residualPolicy]
            for a in [res.baselineAccuracy, res.prunedAccuracy, res.finetunedAccuracy] {
                row += [n(a?.top1), n(a?.top5 ?? nil), n(a?.loss ?? nil)]
            }
            for f in [res.before, res.after] {
                row += [n(f?.parameters), n(f?.nonzeroParameters), n(f?.prunableWeights), n(f?.remainingPrunableWeights),
                        n(f?.macs), n(f?.fileBytes ?? nil)]
                for bs in batchSizes {
                    let l = f?.latency.first { $0.batchSize == bs }
                    row += [n(l?.median), n(l?.p10), n(l?.p90), n(l?.runs)]
                }
            }
            row += [n(res.compression), n(res.wholeModelCompression), n(res.theoreticalSpeedup)]
            row += batchSizes.map { n(res.measuredSpeedup(batchSize: $0)) }
            let byLayer = (res.oracleCorrelationByLayer ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            row += [n(res.sparsity), n(res.oracleCorrelation), byLayer.joined(separator: " "), res.notes.joined(separator: "; ")]
            row += phases.map { n(res.phaseSeconds[$0]) }
            row.append(res.phaseSeconds.isEmpty ? "" : "\(res.phaseSeconds.values.reduce(0, +))")
            row += [iso.string(from: Date(timeIntervalSince1970: r.finishedAt)), r.host]
            let p = c.criterionBuild
            row += [p?.file ?? "", p?.version ?? "", p?.contentHash ?? "", p?.sdkVersion ?? "",
                    (c.plugins ?? []).map { "\($0.kind.rawValue) \($0.id) \($0.description)" }.joined(separator: "; "), r.sdkVersion ?? ""]
            lines.append(row.map(csvField).joined(separator: ","))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }
}
