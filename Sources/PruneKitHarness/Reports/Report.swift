import Foundation
import PruneKit

/// What `results.json` holds: the records and their analysis, so a reader needs nothing
/// else (and `Analysis` can be recomputed from the records).
public struct ReportDocument: Codable, Sendable {
    /// `prunekit-results`; ``version`` changes when the layout does (2: the records carry
    /// their plugin builds and SDK version, the analysis lists the builds).
    public var format: String
    public var version: Int
    public var title: String
    /// ISO 8601, UTC.
    public var generatedAt: String
    public var records: [TrialRecord]
    public var analysis: Analysis

    public init(title: String, records: [TrialRecord], analysis: Analysis, generatedAt: Date = Date()) {
        format = "prunekit-results"
        version = 2
        self.title = title
        self.generatedAt = ISO8601DateFormatter().string(from: generatedAt)
        self.records = records
        self.analysis = analysis
    }
}

/// The harness's reports: a terminal table, and `report.md`, `trials.csv`, `results.json`
/// and a self-contained `report.html` (inline CSS and SVG charts; no network, no script).
public enum Report {
    /// The files ``write(_:to:title:)`` writes, in order.
    public static let fileNames = ["report.md", "trials.csv", "results.json", "report.html"]

    /// Writes the four reports of `records` into `directory` (created if missing), each
    /// atomically (a temporary file in the same directory, then a rename), so a reader
    /// never sees half a report and an old report survives a failed write.
    ///
    /// Every file is written in full before any is moved into place. When one can't be
    /// written (a full disk), every temporary file is removed, and so are the directories
    /// this call made: a failed write leaves nothing behind.
    /// - Returns: the paths written, in the order of ``fileNames``.
    /// - Throws: `PruneKitError(.io)` when the directory can't be made or a file can't be written.
    public static func write(_ records: [TrialRecord], to directory: String, title: String) throws -> [String] {
        try write(records, to: directory, title: title) { data, path in try data.write(to: URL(fileURLWithPath: path)) }
    }

    /// ``write(_:to:title:)`` with the function that writes one file given (tests make it
    /// fail half-way, as a full disk does).
    static func write(_ records: [TrialRecord], to directory: String, title: String,
                      writingFile: (Data, String) throws -> Void) throws -> [String] {
        let analysis = Analysis(records)
        let contents: [Data] = [
            Data(markdown(analysis, title: title).utf8),
            Data(csv(records).utf8),
            try json(records, analysis: analysis, title: title),
            Data(html(analysis, title: title).utf8),
        ]
        let created = try FileSystem.makeDirectories(directory, for: "the reports",
                                                     hint: "pass a directory you can write to with --report (compare) or --out (report)")
        var temporaries: [String] = []
        func undo() {
            for temporary in temporaries { unlink(temporary) }
            FileSystem.removeCreated(created)
        }
        for name in fileNames {
            let temporary = (directory as NSString).appendingPathComponent(".\(name).\(UUID().uuidString).tmp")
            temporaries.append(temporary)
            do {
                try writingFile(contents[temporaries.count - 1], temporary)
            } catch {
                undo()
                let reason = FileSystem.reason(error)
                throw PruneKitError(.io, "can't write the report \(name) in \(directory): \(reason)",
                                    hint: "check that \(directory) is writable and the disk is not full; nothing was left there")
            }
        }
        var written: [String] = []
        for (name, temporary) in zip(fileNames, temporaries) {
            let path = (directory as NSString).appendingPathComponent(name)
            if rename(temporary, path) != 0 {
                let reason = String(cString: strerror(errno))
                for left in temporaries.dropFirst(written.count) { unlink(left) }
                throw PruneKitError(.io, "can't move the new report into place at \(path): \(reason)",
                                    hint: "check that \(path) is not a directory and \(directory) is writable")
            }
            written.append(path)
        }
        return written
    }

    /// `results.json`: a ``ReportDocument``, pretty-printed with sorted keys. Non-finite
    /// numbers (a diverged trial's NaN loss) are written as the strings `"nan"`, `"inf"`,
    /// `"-inf"`.
    public static func json(_ records: [TrialRecord], analysis: Analysis, title: String) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            return try encoder.encode(ReportDocument(title: title, records: records, analysis: analysis))
        } catch {
            throw PruneKitError(.io, "can't encode the results as JSON: \(error)")
        }
    }

    /// Reads a `results.json` back (the decoder matching ``json(_:analysis:title:)``).
    public static func readJSON(_ data: Data) throws -> ReportDocument {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            return try decoder.decode(ReportDocument.self, from: data)
        } catch {
            throw PruneKitError(.invalidFile, "not a PruneKit results.json: \(error)",
                                hint: "rebuild the reports from the store with `prunekit report`")
        }
    }
}

// MARK: - Formatting shared by the formats

extension Report {
    /// `98.12` for 0.98123 (a fraction shown as a percentage).
    static func percentValue(_ v: Double, decimals: Int = 2) -> String {
        String(format: "%.\(decimals)f", v * 100)
    }

    /// `98.12 ± 0.21` (percent), `98.12` with one value, `—` with none.
    static func accuracy(_ s: MetricSummary?, decimals: Int = 2) -> String {
        guard let s else { return "—" }
        guard let sd = s.standardDeviation else { return percentValue(s.mean, decimals: decimals) }
        return "\(percentValue(s.mean, decimals: decimals)) ± \(percentValue(sd, decimals: decimals))"
    }

    /// `4.02×`, `4.02× ± 0.03` with a spread worth showing.
    static func ratio(_ s: MetricSummary?) -> String {
        guard let s else { return "—" }
        let m = String(format: s.mean >= 100 ? "%.0f×" : s.mean >= 10 ? "%.1f×" : "%.2f×", s.mean)
        guard let sd = s.standardDeviation, sd >= 0.005 else { return m }
        return "\(m) ± \(String(format: "%.2f", sd))"
    }

    /// `+0.45` / `-1.20` percentage points.
    static func signedPoints(_ v: Double) -> String {
        let p = v * 100
        return (p >= 0 ? "+" : "-") + String(format: "%.2f", abs(p))
    }

    /// `+0.45 [+0.12, +0.78]`, or the reason there is no interval.
    static func difference(_ p: PairwiseComparison) -> String {
        guard let d = p.difference else { return "no matched seeds" }
        guard let ci = d.interval else {
            return "\(signedPoints(d.mean)) " + (d.hasNoSpread ? "(same on every seed: no spread)" : "(needs ≥ 2 seeds)")
        }
        return "\(signedPoints(d.mean)) [\(signedPoints(ci.lower)), \(signedPoints(ci.upper))]"
    }

    static func verdictText(_ p: PairwiseComparison) -> String {
        switch p.verdict {
        case .aBetter: return "\(p.a) better"
        case .bBetter: return "\(p.b) better"
        case .inconclusive: return "no difference shown"
        case .needsSeeds: return "needs ≥ 2 seeds"
        case .noSpread: return "no spread: not evidence"
        }
    }

    static func bytes(_ s: MetricSummary?) -> String { s.map { Units.bytes($0.mean) } ?? "—" }

    static func seconds(_ s: MetricSummary?) -> String { s.map { Units.duration($0.mean) } ?? "—" }

    /// `2×`, `1.5×`.
    static func times(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? "\(Int(v))×" : String(format: "%g×", v)
    }

    /// What a target axis means, for captions.
    static func axisDescription(_ axis: TargetAxis) -> String {
        switch axis {
        case .compression: return "compression targets (prunable weights before / after)"
        case .speedup: return "speed-up targets (FLOPs before / after)"
        }
    }

    /// One sentence per target answering "who wins, is it shown, at what cost": the
    /// opening of report.md and report.html (``SettingAnalysis/verdicts``).
    static func verdictSentences(_ s: SettingAnalysis) -> [(target: TrialTarget, text: String)] {
        s.verdicts.map { v in
            func who(_ e: TargetVerdict.Entry) -> String {
                "\(e.criterion) (\(e.granularity?.rawValue ?? "granularity not recorded"))"
            }
            func cost(_ e: TargetVerdict.Entry) -> String {
                var text = "\(accuracy(e.finalTop1)) % top-1"
                if let c = e.costPoints {
                    text += abs(c) < 0.005 ? ", level with the baseline"
                        : String(format: ", %.2f points %@ the baseline", abs(c), c > 0 ? "below" : "above")
                }
                if let m = e.measuredSpeedupBatch64 {
                    text += m.mean >= 1 ? ", measured \(ratio(m)) faster at batch 64"
                        : ", measured slower at batch 64 (\(ratio(m)) the baseline's speed)"
                }
                else if e.granularity == .weight { text += ", no measured speed-up (masked weights run dense)" }
                return text
            }
            func shown(_ e: TargetVerdict.Entry, rivals: String) -> String {
                if v.seeds < 2 { return "not tested against the others (one seed)" }
                if e.beatsAll { return "beats every other \(rivals) (paired 95 % CI, \(v.seeds) seeds)" }
                let names = e.notShownBetterThan
                return "not shown to beat " + (names.count <= 3 ? names.joined(separator: ", ") : "\(names.count) others")
                    + " (paired 95 % CI, \(v.seeds) seeds)"
            }
            var text = "\(v.target): best \(who(v.best)), \(cost(v.best)); \(shown(v.best, rivals: "criterion"))."
            if let c = v.bestChannel {
                text += " Best channel criterion: \(c.criterion), \(cost(c)); \(shown(c, rivals: "channel criterion"))."
            }
            return (v.target, text)
        }
    }

    /// One sentence per criterion, target and sanity check (``SettingAnalysis/sanity``):
    /// whether the criterion beats its control with a paired 95 % interval —
    /// `4× compression: global-magnitude beats its layer-shuffle control by +3.10 points
    /// [+2.00, +4.20] (paired 95 % CI, 3 seeds).`
    static func sanitySentences(_ s: SettingAnalysis) -> [String] {
        (s.sanity ?? []).map { v in
            let control = "its \(v.check.rawValue) control"
            let head = "\(v.target): \(v.criterion)"
            guard let d = v.difference else { return "\(head) and \(control) have no seed in common: not compared." }
            let seeds = "\(d.pairs) seed\(d.pairs == 1 ? "" : "s")"
            let figure = "\(signedPoints(d.mean)) points" + (d.interval.map { " [\(signedPoints($0.lower)), \(signedPoints($0.upper))]" } ?? "")
            switch v.verdict {
            case .aBetter: return "\(head) beats \(control) by \(figure) (paired 95 % CI, \(seeds))."
            case .bBetter: return "\(head) is beaten by \(control): \(figure) (paired 95 % CI, \(seeds))."
            case .inconclusive: return "\(head) is not shown to beat \(control): \(figure) (paired 95 % CI, \(seeds))."
            case .noSpread:
                return abs(d.mean) < 1e-12
                    ? "\(head) and \(control) score the same on every one of \(seeds): no spread, not evidence."
                    : "\(head) differs from \(control) by the same \(figure) on every one of \(seeds): no spread, not evidence."
            case .needsSeeds: return "\(head) against \(control): \(figure) on one seed; not tested (run ≥ 2 seeds)."
            }
        }
    }

    /// The most seeds any group of a setting has.
    static func seedCount(_ s: SettingAnalysis) -> Int { s.groups.map(\.seeds.count).max() ?? 0 }

    static func baselineLine(_ b: BaselineSummary?) -> String {
        guard let b else { return "baseline: no figures" }
        var parts = ["baseline top-1 \(accuracy(b.top1)) %"]
        if let t5 = b.top5 { parts.append("top-5 \(accuracy(t5)) %") }
        parts.append("\(b.top1.count) seed\(b.top1.count == 1 ? "" : "s")")
        if let p = b.parameters { parts.append("\(Units.count(p)) parameters") }
        if let m = b.macs { parts.append(Units.macs(m)) }
        if let f = b.fileBytes { parts.append(Units.bytes(f)) }
        return parts.joined(separator: " · ")
    }

    /// Text safe inside XML/HTML elements and attribute values.
    static func escapeXML(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters other than tab and newline are not allowed in XML 1.0.
                if scalar.value < 0x20 && scalar != "\t" && scalar != "\n" && scalar != "\r" {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// A CSV field per RFC 4180: quoted (with `"` doubled) when it holds a comma, a quote,
    /// CR or LF, or leading/trailing space.
    static func csvField(_ s: String) -> String {
        let needsQuotes = s.contains { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
            || s.hasPrefix(" ") || s.hasSuffix(" ")
        return needsQuotes ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    /// A Markdown table cell: pipes escaped, line breaks flattened, HTML characters escaped
    /// (Markdown renderers pass raw HTML through).
    static func markdownCell(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;")
            .replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "|", with: "\\|")
            .replacingOccurrences(of: "\r\n", with: " ")
            .replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: "\r", with: " ")
    }
}
