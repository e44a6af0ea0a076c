import Foundation
import PruneKit

// report.html: one self-contained file (inline CSS, inline SVG, no script, no network),
// written as well-formed XHTML so any XML parser can check it.

extension Report {
    /// `report.html`: charts of accuracy against compression and against speed-up (one
    /// line per criterion with its mean ± sd band, log-scale x axis, the baseline as a
    /// reference line) and every table of ``markdown(_:title:)``. All text is escaped.
    public static func html(_ analysis: Analysis, title: String) -> String {
        var h: [String] = []
        h.append("<!DOCTYPE html>")
        h.append("<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">")
        h.append("<head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>")
        h.append("<title>\(escapeXML(title))</title>")
        h.append("<style>\(stylesheet)</style></head>")
        h.append("<body><main>")
        h.append("<header><h1>\(escapeXML(title))</h1>")
        let date = ISO8601DateFormatter().string(from: Date())
        h.append("<p class=\"meta\">PruneKit comparison · generated \(escapeXML(date))</p></header>")

        let criteria = Set(analysis.settings.flatMap(\.criteria)).count
        h.append("<section class=\"cards\">")
        h.append(card("\(analysis.trials)", "trials"))
        h.append(card("\(analysis.succeeded)", "succeeded"))
        h.append(card("\(analysis.failed)", "failed", warn: analysis.failed > 0))
        h.append(card("\(analysis.seeds.count)", analysis.seeds.count == 1 ? "seed" : "seeds"))
        h.append(card("\(criteria)", criteria == 1 ? "criterion" : "criteria"))
        h.append("</section>")
        let verdicts = analysis.settings.filter { !$0.verdicts.isEmpty }
        if !verdicts.isEmpty {
            h.append("<section class=\"verdict\" id=\"verdict\"><h2>Verdict</h2>")
            for setting in verdicts {
                if verdicts.count > 1 { h.append("<h3>\(escapeXML(setting.name))</h3>") }
                h.append("<ul>")
                for (_, text) in verdictSentences(setting) { h.append("<li>\(escapeXML(text))</li>") }
                for text in sanitySentences(setting) { h.append("<li class=\"sanity\">\(escapeXML(text))</li>") }
                h.append("</ul>")
            }
            if verdicts.contains(where: { $0.verdicts.contains { $0.seeds < 2 } }) {
                h.append("<p class=\"legend\">With one seed no difference is tested: run ≥ 2 seeds (--seeds 3) for paired 95 % intervals.</p>")
            }
            h.append("<p class=\"legend\">Best: the highest mean final top-1 at the target. Weight criteria mask weights (a smaller file, no measured speed-up: the masked model runs the same dense kernels); channel criteria remove channels (a narrower model, timed at batch 1 and 64).</p>")
            h.append("</section>")
        }
        for note in analysis.notes { h.append("<p class=\"note\">\(escapeXML(note))</p>") }

        for (si, setting) in analysis.settings.enumerated() {
            h.append("<section class=\"setting\">")
            h.append("<h2>\(escapeXML(setting.name))</h2>")
            h.append("<p class=\"baseline\">\(escapeXML(baselineLine(setting.baseline)))</p>")
            h.append("<div class=\"charts\">")
            for spec in chartSpecs(setting) {
                h.append("<figure>")
                h.append("<figcaption><strong>\(escapeXML(spec.title))</strong><br/><span>\(escapeXML(spec.caption))</span></figcaption>")
                h.append(svgChart(spec, id: "c\(si)-\(spec.key)"))
                h.append("</figure>")
            }
            h.append("</div>")
            for axis in TargetAxis.allCases {
                let targets = setting.targets.filter { $0.axis == axis }
                if targets.isEmpty { continue }
                h.append("<h3>Final top-1 accuracy (%) at \(escapeXML(axisDescription(axis)))</h3>")
                h.append(summaryTable(setting, targets: targets, axis: axis))
                h.append("<p class=\"legend\">\(escapeXML(summaryLegend(setting)))</p>")
            }
            h.append("<h3>Details per criterion and target</h3>")
            h.append("<p class=\"legend\">\(escapeXML(detailLegend))</p>")
            h.append(htmlTable(detailHeader, setting.groups.map(detailRow), numericFrom: 3))
            let phases = Array(Set(setting.groups.flatMap(\.phaseSeconds.keys))).sorted(by: phaseOrder)
            if !phases.isEmpty {
                h.append("<details><summary>Wall time per phase (mean over seeds)</summary>")
                h.append(htmlTable(["criterion", "target"] + phases + ["total"], phaseRows(setting, phases), numericFrom: 2))
                h.append("</details>")
            }
            let anyPairs = setting.comparisons.contains { !$0.pairs.isEmpty }
            let anyInterval = setting.comparisons.contains { $0.pairs.contains { $0.verdict != .needsSeeds } }
            if anyPairs && !anyInterval {
                h.append("<h3>Who beats whom</h3>")
                h.append("<p class=\"note\">\(escapeXML(needSeedsText))</p>")
            } else if anyPairs {
                h.append("<h3>Who beats whom</h3>")
                h.append("<p class=\"legend\">Row against column, final top-1. Paired by seed; W: the row's 95 % CI of the difference lies above zero, L: below, =: it contains zero, ?: needs ≥ 2 seeds, ~: the same difference on every seed (no spread: not evidence).</p>")
                for o in setting.overall {
                    h.append("<h4>Overall at \(escapeXML(axisDescription(o.axis))): targets won–lost</h4>")
                    h.append(overallMatrix(o.matrix))
                }
                for c in setting.comparisons where !c.pairs.isEmpty {
                    h.append("<details><summary>Win/loss at \(escapeXML(c.target.description))</summary>")
                    h.append(winLossMatrix(c))
                    h.append("</details>")
                }
                let pairs = setting.comparisons.flatMap { c in c.pairs.map { (c.target, $0) } }
                h.append("<details\(pairs.count <= 30 ? " open=\"open\"" : "")><summary>Paired differences of final top-1: \(pairs.count) pairs (A − B, percentage points, 95 % CI)</summary>")
                h.append(pairTable(pairs))
                h.append("<p class=\"legend\">A seed where only one of the two succeeded is left out of that pair and counted as unmatched.</p>")
                h.append("</details>")
            }
            h.append("</section>")
        }

        if !analysis.oracle.isEmpty {
            h.append("<section><h2>Oracle agreement</h2>")
            h.append("<p class=\"legend\">Spearman ρ between each criterion's channel ranking and the oracle's: the loss increase from removing each channel alone, on calibration data, for a sample of layers (Molchanov et al. 2017). Mean ± sd over seeds; 1 is perfect agreement.</p>")
            let layers = Array(Set(analysis.oracle.flatMap { $0.byLayer.map(\.layer) })).sorted()
            let rows = analysis.oracle.map { o in
                [o.criterion, o.setting, "\(o.seeds.count)", o.correlation.map(correlation) ?? "—"]
                    + layers.map { l in o.byLayer.first { $0.layer == l }.map { correlation($0.correlation) } ?? "—" }
            }
            h.append(htmlTable(["criterion", "setting", "seeds", "ρ (mean of layers)"] + layers, rows, numericFrom: 2))
            h.append("</section>")
        }
        if !analysis.failures.isEmpty {
            h.append("<section><h2>Failures</h2>")
            h.append("<p class=\"legend\">Trials that produced no usable figures, with their messages. They are left out of every statistic above.</p>")
            let rows = analysis.failures.map { f in
                [f.criterion, f.kind == .oracle ? "oracle" : (f.target?.description ?? "—"), "\(f.seed)", f.setting, f.message]
            }
            h.append(htmlTable(["criterion", "target", "seed", "setting", "message"], rows, numericFrom: 99, messageColumn: 4))
            h.append("</section>")
        }
        if !analysis.plugins.isEmpty {
            h.append("<section><h2>Plugins</h2>")
            h.append("<p class=\"legend\">\(escapeXML(pluginCaption(analysis)))</p>")
            h.append(htmlTable(pluginHeader, pluginRows(analysis), numericFrom: 6))
            h.append("</section>")
        }
        h.append("<footer>Made by PruneKit. This file is self-contained: it needs no network and no script.</footer>")
        h.append("</main></body></html>")
        return h.joined(separator: "\n") + "\n"
    }

    static func card(_ value: String, _ label: String, warn: Bool = false) -> String {
        "<div class=\"card\(warn ? " warn" : "")\"><div class=\"v\">\(escapeXML(value))</div><div class=\"l\">\(escapeXML(label))</div></div>"
    }

    static func htmlTable(_ header: [String], _ rows: [[String]], numericFrom: Int, messageColumn: Int? = nil) -> String {
        var t = "<div class=\"scroll\"><table><thead><tr>"
        for (i, c) in header.enumerated() { t += "<th\(i >= numericFrom ? " class=\"n\"" : "")>\(escapeXML(c))</th>" }
        t += "</tr></thead><tbody>"
        for r in rows {
            t += "<tr>"
            for (i, c) in r.enumerated() {
                let cls = i == messageColumn ? " class=\"msg\"" : i >= numericFrom ? " class=\"n\"" : ""
                t += "<td\(cls)>\(escapeXML(c))</td>"
            }
            t += "</tr>"
        }
        return t + "</tbody></table></div>"
    }

    static func summaryTable(_ s: SettingAnalysis, targets: [TrialTarget], axis: TargetAxis) -> String {
        let score = s.overall.first { $0.axis == axis }?.matrix
        let hasDecisions = score.map { $0.decided.joined().contains { $0 > 0 } } ?? false
        var t = "<div class=\"scroll\"><table class=\"summary\"><thead><tr><th>criterion</th>"
        for target in targets { t += "<th class=\"n\">\(escapeXML(times(target.value)))</th>" }
        if hasDecisions { t += "<th class=\"n\">wins − losses</th>" }
        t += "</tr></thead><tbody>"
        for (ci, criterion) in s.criteria.enumerated() where onAxis(s, criterion, axis) {
            t += "<tr><td><span class=\"swatch\" style=\"background:\(color(ci))\"></span>\(escapeXML(criterion))</td>"
            for target in targets {
                let best = s.comparisons.first { $0.target == target }?.best == criterion
                t += "<td class=\"n\(best ? " best" : "")\">\(escapeXML(cell(s, criterion, target, marker: true)))</td>"
            }
            if hasDecisions { t += "<td class=\"n\">\(escapeXML(score?.score(of: criterion).map(signedInt) ?? "—"))</td>" }
            t += "</tr>"
        }
        return t + "</tbody></table></div>"
    }

    static func winLossMatrix(_ c: TargetComparison) -> String {
        let m = c.matrix
        var t = "<div class=\"scroll\"><table class=\"matrix\"><thead><tr><th></th>"
        for name in m.criteria { t += "<th class=\"rot\"><span>\(escapeXML(name))</span></th>" }
        t += "<th class=\"n\">wins − losses</th></tr></thead><tbody>"
        for i in m.criteria.indices {
            t += "<tr><th>\(escapeXML(m.criteria[i]))</th>"
            for j in m.criteria.indices {
                let s = winLossSymbol(c, i, j)
                let cls = s == "W" ? "w" : s == "L" ? "l" : i == j ? "self" : "o"
                t += "<td class=\"\(cls)\">\(escapeXML(s))</td>"
            }
            t += "<td class=\"n\">\(escapeXML(signedInt(m.score[i])))</td></tr>"
        }
        return t + "</tbody></table></div>"
    }

    static func overallMatrix(_ m: WinLossMatrix) -> String {
        var t = "<div class=\"scroll\"><table class=\"matrix\"><thead><tr><th></th>"
        for name in m.criteria { t += "<th class=\"rot\"><span>\(escapeXML(name))</span></th>" }
        t += "<th class=\"n\">wins − losses</th></tr></thead><tbody>"
        for i in m.criteria.indices {
            t += "<tr><th>\(escapeXML(m.criteria[i]))</th>"
            for j in m.criteria.indices {
                if i == j { t += "<td class=\"self\"></td>"; continue }
                let w = m.wins[i][j], l = m.wins[j][i]
                let cls = w > l ? "w" : l > w ? "l" : "o"
                t += "<td class=\"\(cls)\">\(m.decided[i][j] == 0 ? "?" : "\(w)–\(l)")</td>"
            }
            t += "<td class=\"n\">\(escapeXML(signedInt(m.score[i])))</td></tr>"
        }
        return t + "</tbody></table></div>"
    }

    static func pairTable(_ pairs: [(TrialTarget, PairwiseComparison)]) -> String {
        var t = "<div class=\"scroll\"><table><thead><tr><th>target</th><th>A</th><th>B</th><th class=\"n\">A − B [95 % CI]</th><th class=\"n\">pairs</th><th class=\"n\">unmatched</th><th>verdict</th></tr></thead><tbody>"
        for (target, p) in pairs {
            let cls = p.verdict == .aBetter || p.verdict == .bBetter ? "sig" : "ns"
            t += "<tr><td>\(escapeXML(target.description))</td><td>\(escapeXML(p.a))</td><td>\(escapeXML(p.b))</td>"
            t += "<td class=\"n\">\(escapeXML(difference(p)))</td><td class=\"n\">\(p.difference?.pairs ?? 0)</td><td class=\"n\">\(p.unmatched)</td>"
            t += "<td class=\"\(cls)\">\(escapeXML(verdictText(p)))</td></tr>"
        }
        return t + "</tbody></table></div>"
    }

    // MARK: Charts

    /// One line of a chart: a criterion's points (x, mean y, sd of y), in target order.
    struct ChartSeries {
        var name: String
        var index: Int
        /// Weight criteria are drawn dashed, channel criteria solid.
        var granularity: Granularity?
        var points: [(x: Double, y: Double, sd: Double?, label: String)]
    }

    struct ChartSpec {
        var key: String
        var title: String
        var caption: String
        var xLabel: String
        var yLabel: String
        var series: [ChartSeries]
        var baseline: MetricSummary?
        /// The x of the dense model (1× for ratios, its file size for sizes), kept in view.
        var denseX: Double? = 1
        /// Tick labels of the (log-scale) x axis.
        var xTick: (Double) -> String = tickLabel
    }

    /// The charts of a setting: accuracy against compression (every criterion), against the
    /// speed-up measured at batch 64 and at batch 1 (channel criteria: only their models
    /// run faster), against the file size, right after pruning, and against the theoretical
    /// speed-up, labelled as such. Weight criteria are dashed, channel criteria solid.
    static func chartSpecs(_ s: SettingAnalysis) -> [ChartSpec] {
        func series(_ groups: [GroupSummary], x: (GroupSummary) -> Double?, y: (GroupSummary) -> MetricSummary?,
                    xText: (Double) -> String) -> [ChartSeries] {
            s.criteria.enumerated().compactMap { ci, criterion in
                let pts = groups.filter { $0.criterion == criterion }.compactMap { g -> (x: Double, y: Double, sd: Double?, label: String)? in
                    guard let xv = x(g), xv.isFinite, xv > 0, let ys = y(g) else { return nil }
                    let label = "\(criterion) · \(g.target): \(accuracy(ys)) % top-1 at \(xText(xv)) (\(ys.count) seed\(ys.count == 1 ? "" : "s"))"
                    return (xv, ys.mean * 100, ys.standardDeviation.map { $0 * 100 }, label)
                }   // in target order: a measured speed-up need not grow with the target
                return pts.isEmpty ? nil : ChartSeries(name: criterion, index: ci, granularity: s.granularity(of: criterion), points: pts)
            }
        }
        let seeds = seedCount(s)
        let spread = seeds >= 2 ? "Lines: mean over \(seeds) seeds; bands and bars: ± 1 sd." : "One seed: no spread to show."
        let styles = "Weight criteria dashed, channel criteria solid."
        let missing = s.groups.filter { $0.finalTop1 == nil }.count
        let missingText = missing > 0 ? " \(missing) criterion–target pair\(missing == 1 ? "" : "s") without figures (see Failures)." : ""
        let channel = s.groups.filter { $0.granularity == .channel }
        let times = { (v: Double) in String(format: "%.2f×", v) }
        let finalY: (GroupSummary) -> MetricSummary? = { $0.finalTop1 }
        let finalLabel = "top-1 accuracy after finetuning (%)"
        var specs = [
            ChartSpec(key: "compression", title: "Top-1 accuracy against compression",
                      caption: "x: achieved compression of the prunable weights (before / after), log scale. \(styles) \(spread)\(missingText)",
                      xLabel: "compression (prunable weights before / after)", yLabel: finalLabel,
                      series: series(s.groups, x: { $0.compression?.mean }, y: finalY, xText: times), baseline: s.baseline?.top1),
        ]
        for batch in [64, 1] {
            let x: (GroupSummary) -> Double? = { (batch == 64 ? $0.measuredSpeedupBatch64 : $0.measuredSpeedupBatch1)?.mean }
            guard channel.contains(where: { x($0) != nil }) else { continue }
            specs.append(ChartSpec(
                key: "measured\(batch)", title: "Top-1 accuracy against measured speed-up, batch \(batch)",
                caption: "Channel criteria (their pruned models are narrower); x: median latency before / after at batch \(batch), measured, log scale; left of 1× is slower. \(spread)",
                xLabel: "measured speed-up at batch \(batch) (latency before / after)", yLabel: finalLabel,
                series: series(channel, x: x, y: finalY, xText: times), baseline: s.baseline?.top1))
        }
        if s.groups.contains(where: { $0.fileBytes != nil }) {
            specs.append(ChartSpec(
                key: "size", title: "Top-1 accuracy against file size",
                caption: "x: the pruned model's saved size (sparse storage for weight criteria, the narrower model for channel criteria), log scale; left is smaller. \(styles) \(spread)",
                xLabel: "file size", yLabel: finalLabel,
                series: series(s.groups, x: { $0.fileBytes?.mean }, y: finalY, xText: Units.bytes), baseline: s.baseline?.top1,
                denseX: s.baseline?.fileBytes.map(Double.init), xTick: Units.bytes))
        }
        specs.append(ChartSpec(
            key: "pruned", title: "Top-1 right after pruning, before finetuning",
            caption: "x: achieved compression of the prunable weights, log scale. How much each criterion's choice alone preserves. \(styles) \(spread)",
            xLabel: "compression (prunable weights before / after)", yLabel: "top-1 accuracy before finetuning (%)",
            series: series(s.groups, x: { $0.compression?.mean }, y: { $0.prunedTop1 }, xText: times), baseline: s.baseline?.top1))
        specs.append(ChartSpec(
            key: "theoretical", title: "Top-1 accuracy against theoretical speed-up (MACs, not measured)",
            caption: "x: MACs before / after, counted, not timed: a weight criterion's MACs of non-zero weights, which dense kernels don't skip. Measured speed-ups are in the charts above. \(styles) \(spread)",
            xLabel: "theoretical speed-up (MACs before / after, not measured)", yLabel: finalLabel,
            series: series(s.groups, x: { $0.theoreticalSpeedup?.mean }, y: finalY, xText: times), baseline: s.baseline?.top1))
        return specs
    }

    /// The y range of a chart, in %: fitted to the criteria that matter. Points more than 15
    /// points below the best figure (a criterion that collapsed, as random does at high
    /// compression) are left out of the range when most points are within it; they are
    /// drawn on the bottom edge, so they are shown but don't squash the rest.
    static func yRange(_ points: [(x: Double, y: Double, sd: Double?, label: String)], baseline: MetricSummary?) -> (lo: Double, hi: Double, step: Double) {
        let top = max(points.map(\.y).max() ?? 100, baseline.map { $0.mean * 100 } ?? -.infinity)
        let near = points.filter { $0.y >= top - 15 }
        let fitted = near.count * 2 >= points.count ? near : points
        var lo = fitted.map { $0.y - ($0.sd ?? 0) }.min() ?? 0
        var hi = fitted.map { $0.y + ($0.sd ?? 0) }.max() ?? 100
        if let b = baseline {
            lo = min(lo, (b.mean - (b.standardDeviation ?? 0)) * 100)
            hi = max(hi, (b.mean + (b.standardDeviation ?? 0)) * 100)
        }
        if hi - lo < 0.5 { lo -= 0.25; hi += 0.25 }
        let step = niceStep(hi - lo)
        lo = max(0, floor(lo / step) * step)
        hi = min(100, ceil(hi / step) * step)
        if hi <= lo { hi = lo + step }
        return (lo, hi, step)
    }

    /// Tableau 10, then six darker hues for larger comparisons (the default one has 13
    /// criteria): with the five marker shapes, no two of the first 16 criteria look alike.
    static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                          "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#79706e",
                          "#1b3a6b", "#a13d00", "#6a1b9a", "#00695c", "#827717", "#37474f"]

    static func color(_ i: Int) -> String { palette[i % palette.count] }

    /// Weight criteria dashed; channel criteria solid.
    static func dash(_ s: ChartSeries) -> String { s.granularity == .weight ? " stroke-dasharray=\"6 3\"" : "" }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// A marker of shape `i % 5` (circle, square, triangle, diamond, inverted triangle) at (x, y).
    static func marker(_ i: Int, x: Double, y: Double, color: String, title: String?) -> String {
        let r = 4.5
        let tip = title.map { "<title>\(escapeXML($0))</title>" } ?? ""
        let style = "fill=\"\(color)\" stroke=\"#fff\" stroke-width=\"1.2\""
        switch i % 5 {
        case 0: return "<circle cx=\"\(f(x))\" cy=\"\(f(y))\" r=\"\(f(r))\" \(style)>\(tip)</circle>"
        case 1: return "<rect x=\"\(f(x - r * 0.9))\" y=\"\(f(y - r * 0.9))\" width=\"\(f(r * 1.8))\" height=\"\(f(r * 1.8))\" \(style)>\(tip)</rect>"
        case 2: return "<polygon points=\"\(f(x)),\(f(y - r * 1.15)) \(f(x + r)),\(f(y + r * 0.75)) \(f(x - r)),\(f(y + r * 0.75))\" \(style)>\(tip)</polygon>"
        case 3: return "<polygon points=\"\(f(x)),\(f(y - r * 1.2)) \(f(x + r * 1.05)),\(f(y)) \(f(x)),\(f(y + r * 1.2)) \(f(x - r * 1.05)),\(f(y))\" \(style)>\(tip)</polygon>"
        default: return "<polygon points=\"\(f(x)),\(f(y + r * 1.15)) \(f(x + r)),\(f(y - r * 0.75)) \(f(x - r)),\(f(y - r * 0.75))\" \(style)>\(tip)</polygon>"
        }
    }

    /// Ticks for a log-scale axis over [lo, hi] (both > 0): powers of two when at least
    /// three fit, otherwise 1–1.25–1.5–2–2.5–3–4–5–6–8 steps.
    static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
        var powers: [Double] = []
        var k = floor(log2(lo))
        while pow(2, k) <= hi * (1 + 1e-9) {
            let v = pow(2, k)
            if v >= lo * (1 - 1e-9) { powers.append(v) }
            k += 1
        }
        if powers.count >= 3 { return powers }
        var fine: [Double] = []
        var decade = pow(10, floor(log10(lo)))
        while decade <= hi {
            for m in [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8] {
                let v = m * decade
                if v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9) { fine.append(v) }
            }
            decade *= 10
        }
        return fine
    }

    /// A step of 1, 2 or 5 × 10ᵏ giving about five intervals over `span`.
    static func niceStep(_ span: Double) -> Double {
        guard span > 0 else { return 1 }
        let raw = span / 5
        let magnitude = pow(10, floor(log10(raw)))
        let m = raw / magnitude
        return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * magnitude
    }

    static func tickLabel(_ v: Double) -> String {
        let s = v == v.rounded() ? String(Int(v)) : String(format: "%g", v)
        return s + "×"
    }

    /// The SVG of one chart: plot area, log-x grid and ticks, y grid and ticks, axis labels,
    /// the baseline (dashed line with its ± sd band), a band, error bars, a line and markers
    /// per series, and a legend on the right.
    static func svgChart(_ spec: ChartSpec, id: String) -> String {
        let width = 800.0, height = 430.0
        let left = 62.0, right = 550.0, top = 22.0, bottom = 360.0
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-labelledby=\"\(id)-t\" class=\"chart\">"
        svg += "<title id=\"\(id)-t\">\(escapeXML(spec.title)): \(escapeXML(spec.yLabel)) against \(escapeXML(spec.xLabel))</title>"
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(right - left))\" height=\"\(f(bottom - top))\" fill=\"#fbfbfd\" stroke=\"#d0d4dc\"/>"

        let points = spec.series.flatMap(\.points)
        guard !points.isEmpty else {
            svg += "<text x=\"\(f((left + right) / 2))\" y=\"\(f((top + bottom) / 2))\" text-anchor=\"middle\" class=\"empty\">no figures to plot</text>"
            return svg + "</svg>"
        }
        // x: log2 scale over the achieved values and the dense model's x (1× for ratios).
        let xs = points.map(\.x) + (spec.denseX.map { [$0] } ?? [])
        let xLo = xs.min() ?? 1, xHi = max(xs.max() ?? 2, xLo * 2)
        let l0 = log2(xLo), l1 = log2(xHi), pad = (l1 - l0) * 0.06
        let d0 = l0 - pad, d1 = l1 + pad
        func px(_ x: Double) -> Double { left + (log2(x) - d0) / (d1 - d0) * (right - left) }
        // y: accuracy in %, fitted to the criteria that matter (``yRange``).
        let (yLo, yHi, step) = yRange(points, baseline: spec.baseline)
        func py(_ y: Double) -> Double { bottom - (y - yLo) / (yHi - yLo) * (bottom - top) }

        svg += "<defs><clipPath id=\"\(id)-clip\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(right - left))\" height=\"\(f(bottom - top))\"/></clipPath></defs>"
        // Grid and ticks.
        var yTick = yLo
        while yTick <= yHi + step * 1e-6 {
            let y = py(yTick)
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(right))\" y2=\"\(f(y))\" class=\"grid\"/>"
            svg += "<text x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\" class=\"tick\">\(escapeXML(String(format: step < 1 ? "%.1f" : "%.0f", yTick)))</text>"
            yTick += step
        }
        for t in logTicks(pow(2, d0), pow(2, d1)) {
            let x = px(t)
            svg += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(bottom))\" class=\"grid\"/>"
            svg += "<line x1=\"\(f(x))\" y1=\"\(f(bottom))\" x2=\"\(f(x))\" y2=\"\(f(bottom + 5))\" class=\"axis\"/>"
            svg += "<text x=\"\(f(x))\" y=\"\(f(bottom + 19))\" text-anchor=\"middle\" class=\"tick\">\(escapeXML(spec.xTick(t)))</text>"
        }
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(bottom))\" x2=\"\(f(right))\" y2=\"\(f(bottom))\" class=\"axis\"/>"
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(bottom))\" class=\"axis\"/>"
        svg += "<text x=\"\(f((left + right) / 2))\" y=\"\(f(bottom + 44))\" text-anchor=\"middle\" class=\"label\">\(escapeXML(spec.xLabel)) →</text>"
        svg += "<text transform=\"translate(16 \(f((top + bottom) / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"label\">\(escapeXML(spec.yLabel))</text>"

        svg += "<g clip-path=\"url(#\(id)-clip)\">"
        // Baseline reference.
        if let b = spec.baseline {
            let y = py(b.mean * 100)
            if let sd = b.standardDeviation, sd > 0 {
                let y0 = py((b.mean + sd) * 100), y1 = py((b.mean - sd) * 100)
                svg += "<rect x=\"\(f(left))\" y=\"\(f(y0))\" width=\"\(f(right - left))\" height=\"\(f(max(0, y1 - y0)))\" fill=\"#888\" fill-opacity=\"0.10\"/>"
            }
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(right))\" y2=\"\(f(y))\" class=\"baseline\"><title>\(escapeXML("baseline: \(accuracy(b)) % top-1"))</title></line>"
        }
        // Bands first (under every line), then lines, error bars and markers.
        for s in spec.series where s.points.count >= 2 && s.points.contains(where: { $0.sd != nil }) {
            let upper = s.points.map { "\(f(px($0.x))),\(f(py($0.y + ($0.sd ?? 0))))" }
            let lower = s.points.reversed().map { "\(f(px($0.x))),\(f(py($0.y - ($0.sd ?? 0))))" }
            svg += "<polygon points=\"\((upper + lower).joined(separator: " "))\" fill=\"\(color(s.index))\" fill-opacity=\"0.13\" stroke=\"none\"/>"
        }
        for s in spec.series {
            let c = color(s.index)
            if s.points.count >= 2 {
                let d = s.points.enumerated().map { "\($0 == 0 ? "M" : "L")\(f(px($1.x))),\(f(py(max($1.y, yLo))))" }.joined(separator: " ")
                svg += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" stroke-linejoin=\"round\"\(dash(s))/>"
            }
            for p in s.points {
                if let sd = p.sd, sd > 0 {
                    let x = px(p.x), y0 = py(p.y + sd), y1 = py(p.y - sd)
                    svg += "<path d=\"M\(f(x)),\(f(y0)) V\(f(y1)) M\(f(x - 3)),\(f(y0)) H\(f(x + 3)) M\(f(x - 3)),\(f(y1)) H\(f(x + 3))\" stroke=\"\(c)\" stroke-width=\"1.2\" fill=\"none\"/>"
                }
            }
            for p in s.points where p.y >= yLo { svg += marker(s.index, x: px(p.x), y: py(p.y), color: c, title: p.label) }
        }
        svg += "</g>"
        // Points below the fitted range: on the bottom edge, pointing down, still hoverable.
        let below = spec.series.flatMap { s in s.points.filter { $0.y < yLo }.map { (s, $0) } }
        for (s, p) in below {
            let x = px(p.x), y = bottom - 2
            svg += "<polygon points=\"\(f(x - 5)),\(f(y - 8)) \(f(x + 5)),\(f(y - 8)) \(f(x)),\(f(y))\" fill=\"\(color(s.index))\" fill-opacity=\"0.75\" class=\"collapsed\"><title>\(escapeXML(p.label + " (below the axis)"))</title></polygon>"
        }
        if !below.isEmpty {
            let names = Array(Set(below.map(\.0.name))).sorted()
            svg += "<text x=\"\(f(left))\" y=\"\(f(bottom + 64))\" class=\"baselabel\">▼ below \(escapeXML(String(format: "%g", yLo))) %: \(escapeXML(names.joined(separator: ", ")))</text>"
        }
        // Legend, beside the plot (it never covers data): weight criteria, then channel criteria.
        let lx = right + 18
        var y = top + 6
        let groups: [(String, [ChartSeries])] = [("weight criteria", spec.series.filter { $0.granularity == .weight }),
                                                 ("channel criteria", spec.series.filter { $0.granularity == .channel }),
                                                 ("criteria", spec.series.filter { $0.granularity == nil })]
        for (heading, members) in groups where !members.isEmpty {
            svg += "<text x=\"\(f(lx))\" y=\"\(f(y + 4))\" class=\"legendtitle\">\(escapeXML(heading))</text>"
            y += 19
            for s in members {
                let c = color(s.index)
                svg += "<line x1=\"\(f(lx))\" y1=\"\(f(y))\" x2=\"\(f(lx + 26))\" y2=\"\(f(y))\" stroke=\"\(c)\" stroke-width=\"2\"\(dash(s))/>"
                svg += marker(s.index, x: lx + 13, y: y, color: c, title: nil)
                let name = s.name.count > 28 ? String(s.name.prefix(27)) + "…" : s.name
                svg += "<text x=\"\(f(lx + 34))\" y=\"\(f(y + 4))\" class=\"legend\">\(escapeXML(name))<title>\(escapeXML(s.name))</title></text>"
                y += 19
            }
            y += 6
        }
        if let b = spec.baseline {
            svg += "<line x1=\"\(f(lx))\" y1=\"\(f(y))\" x2=\"\(f(lx + 26))\" y2=\"\(f(y))\" class=\"baseline\"/>"
            svg += "<text x=\"\(f(lx + 34))\" y=\"\(f(y + 4))\" class=\"legend\">baseline \(escapeXML(accuracy(b))) %</text>"
        }
        return svg + "</svg>"
    }

    static let stylesheet = """
    :root{--ink:#1d2330;--muted:#5d6677;--line:#e3e6ec;--bg:#ffffff;--soft:#f6f7fa;--accent:#4e79a7}
    *{box-sizing:border-box}
    body{margin:0;background:var(--soft);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
    main{max-width:1240px;margin:0 auto;padding:28px 28px 48px}
    header h1{margin:0 0 2px;font-size:26px;letter-spacing:-.01em}
    .meta{margin:0 0 18px;color:var(--muted)}
    h2{font-size:20px;margin:0 0 4px}
    h3{font-size:16px;margin:26px 0 8px}
    h4{font-size:14px;margin:18px 0 6px;color:var(--muted)}
    section{background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:20px 22px;margin:18px 0;box-shadow:0 1px 2px rgba(20,30,50,.04)}
    section.cards{display:flex;flex-wrap:wrap;gap:12px;background:none;border:none;box-shadow:none;padding:0}
    .card{background:var(--bg);border:1px solid var(--line);border-radius:10px;padding:10px 18px;min-width:120px}
    .card .v{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
    .card .l{color:var(--muted);font-size:13px}
    .card.warn .v{color:#b3261e}
    .note{background:#fff8e1;border:1px solid #f3dc93;border-radius:8px;padding:8px 12px;margin:10px 0}
    .baseline{color:var(--muted);margin:0 0 12px}
    .legend{color:var(--muted);font-size:13px;margin:6px 0}
    .charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:18px}
    figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:10px 10px 4px;background:#fff}
    figcaption{font-size:13px;color:var(--muted);margin:0 4px 6px}
    figcaption strong{color:var(--ink);font-size:14px}
    svg.chart{width:100%;height:auto;display:block;font-family:inherit}
    svg .grid{stroke:#e6e9ef;stroke-width:1}
    svg .axis{stroke:#7a8292;stroke-width:1}
    svg .tick{fill:#5d6677;font-size:12px}
    svg .label{fill:#1d2330;font-size:13px}
    svg .legend{fill:#1d2330;font-size:12.5px}
    svg .legendtitle{fill:#5d6677;font-size:12px;font-weight:600}
    svg .baseline{stroke:#555;stroke-width:1.4;stroke-dasharray:5 4}
    svg .baselabel{fill:#444;font-size:12px}
    svg .empty{fill:#5d6677;font-size:14px}
    .scroll{overflow-x:auto}
    table{border-collapse:collapse;font-size:13.5px;margin:4px 0 8px;font-variant-numeric:tabular-nums}
    th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
    thead th{background:var(--soft);font-weight:600;border-bottom:1px solid #cfd4dd}
    tbody tr:hover{background:#f3f6fb}
    .n{text-align:right}
    td.best{font-weight:700;background:#eaf4ec}
    td.msg{white-space:pre-wrap;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px;max-width:640px}
    .swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:8px;vertical-align:baseline}
    table.matrix td{text-align:center;min-width:44px;font-weight:600}
    table.matrix th.rot{vertical-align:bottom;font-size:12.5px;padding:6px 4px}
    table.matrix th.rot span{writing-mode:vertical-rl;transform:rotate(180deg);display:inline-block;max-height:220px;overflow:hidden;text-overflow:ellipsis}
    td.w{background:#dcefe0;color:#1e6b34}
    td.l{background:#fbe3e1;color:#a12a22}
    td.o{color:#8a91a0}
    td.self{background:var(--soft)}
    td.sig{font-weight:600;color:#1e6b34}
    td.ns{color:var(--muted)}
    details{margin:10px 0}
    summary{cursor:pointer;font-weight:600;font-size:14px;padding:4px 0}
    footer{color:var(--muted);font-size:12.5px;text-align:center;margin-top:28px}
    """
}
