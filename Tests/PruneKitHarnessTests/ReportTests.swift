import Foundation
import PruneKit
import XCTest
#if canImport(FoundationXML)
import FoundationXML
#endif
import PruneKit
@testable import PruneKitHarness

/// Synthetic records: no training, every figure chosen so the expected statistics can be
/// worked out by hand.
enum Synthetic {
    static let c2 = TrialTarget(.compression, 2)
    static let c4 = TrialTarget(.compression, 4)

    static func record(_ criterion: String, _ target: TrialTarget?, seed: UInt64, top1: Double = 0.9,
                       pruned: Double? = nil, baseline: Double = 0.99, kind: TrialKind = .prune,
                       failure: String? = nil, finishedAt: Double = 1_700_000_000, granularity: Granularity? = .channel) -> TrialRecord {
        let config = TrialConfiguration(kind: kind, baseline: BaselineConfiguration(model: "lenet-5", dataset: "mnist-5k", seed: seed),
                                        criterion: criterion, target: target)
        if let failure {
            return TrialRecord(configuration: config, result: .failed(failure, phaseSeconds: ["score": 0.5]), finishedAt: finishedAt, host: "test")
        }
        var r = TrialResult(status: .succeeded, phaseSeconds: ["score": 0.25, "finetune": 1.5])
        r.granularity = granularity
        r.baselineAccuracy = Accuracy(top1: baseline)
        if kind == .oracle { return TrialRecord(configuration: config, result: r, finishedAt: finishedAt, host: "test") }
        r.prunedAccuracy = Accuracy(top1: pruned ?? top1 - 0.1)
        r.finetunedAccuracy = Accuracy(top1: top1, top5: 0.995, loss: 0.3)
        let v = target?.value ?? 1
        r.before = ModelFigures(parameters: 1100, nonzeroParameters: 1100, prunableWeights: 1000, remainingPrunableWeights: 1000,
                                macs: 8000, fileBytes: 4400,
                                latency: [Latency(batchSize: 1, median: 0.002, p10: 0.0019, p90: 0.0022, runs: 20)])
        r.after = ModelFigures(parameters: 1100, nonzeroParameters: 100 + Int(1000 / v), prunableWeights: 1000,
                               remainingPrunableWeights: Int(1000 / v), macs: Int(8000 / v), fileBytes: Int(4400 / v),
                               latency: [Latency(batchSize: 1, median: 0.001, p10: 0.0009, p90: 0.0011, runs: 20)])
        r.sparsity = 1 - 1 / v
        return TrialRecord(configuration: config, result: r, finishedAt: finishedAt, host: "test")
    }

    /// A, B, C at 2× and 4×, three seeds: A − B = [.05, .04, .06] (interval [.025, .075]),
    /// A − C = [.051, .038, .062] (mean .050333, sd .012014, interval [.0205, .0802]),
    /// B − C = [.001, −.002, .002] (interval contains zero).
    static func threeCriteria() -> [TrialRecord] {
        let a = [0.90, 0.91, 0.92], b = [0.85, 0.87, 0.86], c = [0.849, 0.872, 0.858]
        var out: [TrialRecord] = []
        for target in [c2, c4] {
            for seed in 0..<3 {
                out.append(record("A", target, seed: UInt64(seed), top1: a[seed]))
                out.append(record("B", target, seed: UInt64(seed), top1: b[seed]))
                out.append(record("C", target, seed: UInt64(seed), top1: c[seed]))
            }
        }
        return out
    }
}

final class ReportTests: XCTestCase {
    /// Per group: means and sample sds over seeds of every figure; the ratios from the figures.
    func testGroupSummaries() throws {
        // A at 2×: final top-1 .90/.91/.92 → mean .91, sd .01; pruned = top-1 − .1 → .81 ± .01.
        let analysis = Analysis(Synthetic.threeCriteria())
        XCTAssertEqual(analysis.trials, 18)
        XCTAssertEqual(analysis.failed, 0)
        XCTAssertEqual(analysis.seeds, [0, 1, 2])
        let setting = try XCTUnwrap(analysis.settings.first)
        XCTAssertEqual(analysis.settings.count, 1)
        XCTAssertEqual(setting.name, "lenet-5 · mnist-5k · one-shot · finetune × 2 epochs")
        XCTAssertEqual(setting.criteria, ["A", "B", "C"])
        XCTAssertEqual(setting.targets, [Synthetic.c2, Synthetic.c4])
        let g = try XCTUnwrap(setting.group("A", Synthetic.c2))
        XCTAssertEqual(g.seeds, [0, 1, 2])
        XCTAssertEqual(try XCTUnwrap(g.finalTop1).mean, 0.91, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(g.finalTop1?.standardDeviation), 0.01, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(g.prunedTop1).mean, 0.81, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(g.finalTop5).mean, 0.995, accuracy: 1e-12)
        // 1000 → 500 prunable weights: 2×; 1100 → 600 parameters: 1.8333×; 8000 → 4000 MACs: 2×;
        // latency 2 ms → 1 ms: 2×; 4400 / 2 = 2200 bytes; phases .25 + 1.5 = 1.75 s.
        XCTAssertEqual(try XCTUnwrap(g.compression).mean, 2, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(g.wholeModelCompression).mean, 1100.0 / 600, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(g.theoreticalSpeedup).mean, 2, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(g.measuredSpeedupBatch1).mean, 2, accuracy: 1e-12)
        XCTAssertNil(g.measuredSpeedupBatch64)
        XCTAssertEqual(try XCTUnwrap(g.fileBytes).mean, 2200)
        XCTAssertEqual(try XCTUnwrap(g.phaseSeconds["finetune"]).mean, 1.5)
        XCTAssertEqual(try XCTUnwrap(g.totalSeconds).mean, 1.75)
        XCTAssertEqual(try XCTUnwrap(setting.baseline).top1.mean, 0.99, accuracy: 1e-12)
        XCTAssertEqual(setting.baseline?.top1.count, 3, "one baseline value per seed, not per trial")
    }

    /// A beats B and C (their intervals lie above zero); B against C is inconclusive. At each
    /// target: A +2, B −1, C −1; over both targets: A +4, B −2, C −2.
    func testWinLossOnConstructedRecords() throws {
        let setting = try XCTUnwrap(Analysis(Synthetic.threeCriteria()).settings.first)
        let comparison = try XCTUnwrap(setting.comparisons.first { $0.target == Synthetic.c2 })
        func pair(_ a: String, _ b: String) throws -> PairwiseComparison {
            try XCTUnwrap(comparison.pairs.first { $0.a == a && $0.b == b })
        }
        let ab = try pair("A", "B"), ac = try pair("A", "C"), bc = try pair("B", "C")
        XCTAssertEqual(ab.verdict, .aBetter)
        XCTAssertEqual(try XCTUnwrap(ab.difference).mean, 0.05, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(ab.difference?.interval).lower, 0.05 - 0.0248414, accuracy: 1e-7)
        XCTAssertEqual(ac.verdict, .aBetter)
        XCTAssertEqual(try XCTUnwrap(ac.difference?.interval).lower, 0.0205, accuracy: 1e-4)
        XCTAssertEqual(bc.verdict, .inconclusive)
        XCTAssertEqual(comparison.pairs.count, 3)
        XCTAssertEqual(comparison.matrix.wins, [[0, 1, 1], [0, 0, 0], [0, 0, 0]])
        XCTAssertEqual(comparison.matrix.score, [2, -1, -1])
        XCTAssertEqual(comparison.best, "A")
        XCTAssertTrue(comparison.bestBeatsAll)
        let overall = try XCTUnwrap(setting.overall.first)
        XCTAssertEqual(setting.overall.count, 1, "one axis")
        XCTAssertEqual(overall.axis, .compression)
        XCTAssertEqual(overall.matrix.wins, [[0, 2, 2], [0, 0, 0], [0, 0, 0]])
        XCTAssertEqual(overall.matrix.decided[1][2], 2)
        XCTAssertEqual(overall.matrix.score, [4, -2, -2])
    }

    /// Issue 15, defect 16: two seeds with the same difference on both (A − B = +5 points
    /// twice) is not a win: no winner is declared, the verdict says why, and every report
    /// says so.
    func testTiesOnEverySeedAreNotAWin() throws {
        let records = [Synthetic.record("A", Synthetic.c2, seed: 0, top1: 0.91), Synthetic.record("B", Synthetic.c2, seed: 0, top1: 0.86),
                       Synthetic.record("A", Synthetic.c2, seed: 1, top1: 0.90), Synthetic.record("B", Synthetic.c2, seed: 1, top1: 0.85)]
        let analysis = Analysis(records)
        let comparison = try XCTUnwrap(analysis.settings.first?.comparisons.first)
        let pair = try XCTUnwrap(comparison.pairs.first)
        XCTAssertEqual(pair.verdict, .noSpread)
        XCTAssertNil(pair.difference?.interval)
        XCTAssertEqual(comparison.matrix.wins, [[0, 0], [0, 0]])
        XCTAssertFalse(comparison.bestBeatsAll)
        XCTAssertTrue(analysis.notes.contains { $0.contains("same amount on every seed") && $0.contains("not evidence") }, "\(analysis.notes)")
        let markdown = Report.markdown(analysis, title: "ties")
        XCTAssertTrue(markdown.contains("no spread: not evidence"), markdown)
        XCTAssertTrue(markdown.contains("+5.00 (same on every seed: no spread)"), markdown)
        XCTAssertFalse(markdown.contains("A better"), markdown)
        let setting = try XCTUnwrap(analysis.settings.first)
        XCTAssertFalse(Report.cell(setting, "A", Synthetic.c2, marker: true).contains("▲"))
        let html = Report.html(analysis, title: "ties")
        XCTAssertTrue(html.contains("no spread: not evidence"))
        XCTAssertFalse(Report.terminalTable(analysis).contains("beats 1 of 1"), Report.terminalTable(analysis))
    }

    /// Issue 15, defect 14: every report says which plugin file, version and SDK produced
    /// the results, and two builds of one criterion (rebuilt between runs) are two rows,
    /// never one group that mixes their seeds.
    func testReportsNameThePluginBuildsAndKeepBuildsApart() throws {
        func build(_ version: String, _ hash: String) -> PluginBuild {
            PluginBuild(kind: .criterion, id: "A", file: "/plugins/libA.so", version: version, sdkVersion: "1.0", contentHash: hash)
        }
        var records: [TrialRecord] = []
        for seed: UInt64 in 0..<2 {
            for (b, top1) in [(build("0.1.0", "1111aaaa2222bbbb"), 0.9), (build("0.2.0", "3333cccc4444dddd"), 0.5)] {
                var r = Synthetic.record("A", Synthetic.c2, seed: seed, top1: top1 + Double(seed) / 100)
                r.configuration.plugins = [b]
                records.append(r)
            }
            records.append(Synthetic.record("B", Synthetic.c2, seed: seed, top1: 0.8))
        }
        let analysis = Analysis(records)
        let setting = try XCTUnwrap(analysis.settings.first)
        XCTAssertEqual(analysis.settings.count, 1)
        XCTAssertEqual(setting.criteria, ["A [0.1.0]", "A [0.2.0]", "B"])
        XCTAssertEqual(try XCTUnwrap(setting.group("A [0.2.0]", Synthetic.c2)?.finalTop1).mean, 0.505, accuracy: 1e-12)
        XCTAssertEqual(analysis.plugins.filter { $0.id == "A" }.map(\.build?.version), ["0.1.0", "0.2.0"])
        XCTAssertEqual(analysis.sdkVersions, [SDKVersion.string])

        let markdown = Report.markdown(analysis, title: "builds")
        XCTAssertTrue(markdown.contains("## Plugins"), markdown)
        XCTAssertTrue(markdown.contains("| criterion | A | 0.2.0 | /plugins/libA.so | 1.0 | 3333cccc4444dddd | 2 |"), markdown)
        XCTAssertTrue(markdown.contains("| criterion | B | not recorded |"), markdown)
        XCTAssertTrue(markdown.contains("run by PruneKit SDK \(SDKVersion.string)"), markdown)
        let html = Report.html(analysis, title: "builds")
        XCTAssertTrue(html.contains("<h2>Plugins</h2>") && html.contains("/plugins/libA.so"))
        let csv = Report.csv(records)
        let header = try XCTUnwrap(csv.components(separatedBy: "\r\n").first)
        XCTAssertTrue(header.hasSuffix(",criterion_file,criterion_version,criterion_build,criterion_sdk_version,plugins,sdk_version"), header)
        XCTAssertTrue(csv.contains(",/plugins/libA.so,0.2.0,3333cccc4444dddd,1.0,"), csv)
        let json = String(decoding: try Report.json(records, analysis: analysis, title: "builds"), as: UTF8.self)
        XCTAssertTrue(json.contains("\"contentHash\" : \"3333cccc4444dddd\"") && json.contains("\"sdkVersion\""), json)
    }

    /// Issue 15, defect 19: a store's report covers the whole store, titled by the
    /// experiments that wrote to it, whoever asks (compare after a run of some criteria, or
    /// report later).
    func testAStoreReportCoversTheWholeStoreUnderOneTitle() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("results.sqlite").path
        let store = try ExperimentParts.openStore(path)
        XCTAssertEqual(try ExperimentParts.reportTitle(of: store, path: path), "results", "no experiment yet: the file name")
        try store.remember(experimentID: "e0", specification: #"{"name": "default", "model": "lenet-5"}"#)
        XCTAssertEqual(try ExperimentParts.reportTitle(of: store, path: path), "results", "an unnamed experiment")
        try store.remember(experimentID: "e1", specification: #"{"name": "sweep", "criteria": ["A", "B"]}"#)
        for r in Synthetic.threeCriteria().filter({ $0.configuration.criterion != "C" }) { try store.add(r) }
        try store.remember(experimentID: "e2", specification: #"{"name": "sweep", "criteria": ["C"], "seeds": [0]}"#)
        try store.remember(experimentID: "e3", specification: #"{"name": "new idea", "criteria": ["C"]}"#)
        for r in Synthetic.threeCriteria().filter({ $0.configuration.criterion == "C" }) { try store.add(r) }

        let report = try ExperimentParts.storeReport(store, path: path)
        XCTAssertEqual(report.title, "sweep + new idea")
        XCTAssertEqual(report.records.count, 18, "every trial in the store, not only the last run's C")
        XCTAssertEqual(Analysis(report.records).settings.first?.criteria, ["A", "B", "C"])
        let reader = try ExperimentParts.openExistingStore(path)
        XCTAssertEqual(try ExperimentParts.storeReport(reader, path: path).title, report.title, "report titles it as compare does")
        XCTAssertEqual(try ExperimentParts.storeReport(reader, path: path, title: "mine").title, "mine")
    }

    /// A weight criterion's trials measure no latency (`latencyRuns: 0`), a channel
    /// criterion's do, and oracle trials sample layers: they still compete in one setting.
    func testMeasurementSettingsDoNotSplitTheComparison() throws {
        var weight = Synthetic.record("W", Synthetic.c2, seed: 0, top1: 0.95)
        weight.configuration.latencyRuns = 0
        let channel = Synthetic.record("C", Synthetic.c2, seed: 0, top1: 0.93)
        var oracle = Synthetic.record("C", nil, seed: 0, kind: .oracle)
        oracle.configuration.oracleLayers = 2
        oracle.result.oracleCorrelation = 0.5
        let analysis = Analysis([weight, channel, oracle])
        XCTAssertEqual(analysis.settings.count, 1)
        XCTAssertEqual(Set(try XCTUnwrap(analysis.settings.first).criteria), ["W", "C"])
        XCTAssertEqual(try XCTUnwrap(analysis.settings.first?.comparisons.first).best, "W")
    }

    /// Pairing is by seed: B's seed 2 failed and seed 3 of A has no partner, so A − B uses
    /// seeds 0 and 1 only (differences .05 and .04: mean .045) and reports 2 unmatched.
    func testPairingBySeedExcludesRecordsWithoutPartner() throws {
        let t = Synthetic.c2
        let records = [
            Synthetic.record("A", t, seed: 0, top1: 0.90), Synthetic.record("B", t, seed: 0, top1: 0.85),
            Synthetic.record("A", t, seed: 1, top1: 0.91), Synthetic.record("B", t, seed: 1, top1: 0.87),
            Synthetic.record("A", t, seed: 2, top1: 0.99), Synthetic.record("B", t, seed: 2, failure: "plugin crashed: signal 11"),
            Synthetic.record("A", t, seed: 3, top1: 0.10),
        ]
        let analysis = Analysis(records)
        let p = try XCTUnwrap(analysis.settings.first?.comparisons.first?.pairs.first)
        XCTAssertEqual(p.difference?.pairs, 2)
        XCTAssertEqual(try XCTUnwrap(p.difference).mean, 0.045, accuracy: 1e-12)
        XCTAssertEqual(p.unmatched, 2)
        XCTAssertEqual(analysis.failures.count, 1)
        XCTAssertEqual(analysis.failures.first?.message, "plugin crashed: signal 11")
        XCTAssertEqual(analysis.settings.first?.group("B", t)?.failedSeeds, [2])
        XCTAssertTrue(Report.markdown(analysis, title: "t").contains("| 2× compression | A | B | +4.50 [-"))
    }

    /// One seed: no sd, no interval, a note that says why; no ± anywhere in the terminal table.
    func testOneSeed() throws {
        let records = Synthetic.threeCriteria().filter { $0.configuration.seed == 0 }
        let analysis = Analysis(records)
        let setting = try XCTUnwrap(analysis.settings.first)
        XCTAssertNil(setting.group("A", Synthetic.c2)?.finalTop1?.standardDeviation)
        XCTAssertTrue(setting.comparisons.allSatisfy { $0.pairs.allSatisfy { $0.verdict == .needsSeeds && $0.difference?.interval == nil } })
        XCTAssertTrue(analysis.notes.contains { $0.contains("One seed only") && $0.contains("≥ 2 seeds") })
        let table = Report.terminalTable(analysis)
        XCTAssertFalse(table.contains("±"), table)
        XCTAssertTrue(table.contains("90.00"))
        XCTAssertTrue(Report.markdown(analysis, title: "one seed").contains(Report.needSeedsText))
        XCTAssertTrue(Report.html(analysis, title: "one seed").contains(Report.escapeXML(Report.needSeedsText)))
    }

    /// Every trial failed: all listed with messages, a note, well-formed reports without figures.
    func testAllFailed() throws {
        let records = (0..<3).map { Synthetic.record("taylor", Synthetic.c4, seed: UInt64($0), failure: "NaN loss in epoch \($0)") }
        let analysis = Analysis(records)
        XCTAssertEqual(analysis.failed, 3)
        XCTAssertEqual(analysis.failures.map(\.message), ["NaN loss in epoch 0", "NaN loss in epoch 1", "NaN loss in epoch 2"])
        XCTAssertTrue(analysis.notes.contains { $0.contains("every trial failed") })
        let table = Report.terminalTable(analysis)
        XCTAssertTrue(table.contains("failed (3)"), table)
        XCTAssertTrue(table.contains("NaN loss in epoch 2"), table)
        let html = Report.html(analysis, title: "all failed")
        try assertWellFormed(html)
        XCTAssertTrue(html.contains("no figures to plot"))
        XCTAssertTrue(Report.markdown(analysis, title: "all failed").contains("## Failures"))
    }

    /// A "succeeded" trial with a NaN accuracy is listed, not averaged.
    func testNonFiniteAccuracyIsAFailureNotAFigure() throws {
        var records = Synthetic.threeCriteria()
        records[0].result.finetunedAccuracy = Accuracy(top1: .nan)
        let analysis = Analysis(records)
        XCTAssertEqual(analysis.failures.count, 1)
        XCTAssertTrue(try XCTUnwrap(analysis.failures.first).message.contains("non-finite"))
        XCTAssertEqual(analysis.settings.first?.group("A", Synthetic.c2)?.seeds, [1, 2])
    }

    /// Oracle agreement over seeds, overall and per layer: ρ = .6/.7/.8 → .7 ± .1.
    func testOracleAgreement() throws {
        var records: [TrialRecord] = []
        for (seed, rho) in [0.6, 0.7, 0.8].enumerated() {
            var r = Synthetic.record("taylor", nil, seed: UInt64(seed), kind: .oracle)
            r.result.oracleCorrelation = rho
            r.result.oracleCorrelationByLayer = ["features.0": rho - 0.1, "features.3": rho + 0.1]
            records.append(r)
        }
        let analysis = Analysis(records)
        XCTAssertTrue(analysis.settings.isEmpty)
        let o = try XCTUnwrap(analysis.oracle.first)
        XCTAssertEqual(o.criterion, "taylor")
        XCTAssertEqual(try XCTUnwrap(o.correlation).mean, 0.7, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(o.correlation?.standardDeviation), 0.1, accuracy: 1e-12)
        XCTAssertEqual(o.byLayer.map(\.layer), ["features.0", "features.3"])
        XCTAssertEqual(o.byLayer[1].correlation.mean, 0.8, accuracy: 1e-12)
        XCTAssertTrue(Report.terminalTable(analysis).contains("0.700 ± 0.100"))
    }

    func testCSVFieldQuoting() {
        XCTAssertEqual(Report.csvField("plain"), "plain")
        XCTAssertEqual(Report.csvField("a,b"), "\"a,b\"")
        XCTAssertEqual(Report.csvField("say \"hi\""), "\"say \"\"hi\"\"\"")
        XCTAssertEqual(Report.csvField("two\nlines"), "\"two\nlines\"")
        XCTAssertEqual(Report.csvField("cr\r\nlf"), "\"cr\r\nlf\"")
        XCTAssertEqual(Report.csvField(""), "")
    }

    /// The whole CSV parses back (RFC 4180) into rows of the header's width, and hostile
    /// fields come back unchanged.
    func testCSVRoundTripsThroughAnRFC4180Parser() throws {
        var records = Synthetic.threeCriteria()
        records[0].configuration.criterion = "evil, \"quoted\"\nname"
        records.append(Synthetic.record("B", Synthetic.c2, seed: 9, failure: "boom, \"bang\"\r\nline 2"))
        let text = Report.csv(records)
        XCTAssertTrue(text.hasSuffix("\r\n"))
        let rows = parseCSV(text)
        XCTAssertEqual(rows.count, records.count + 1)
        let header = rows[0]
        XCTAssertTrue(rows.allSatisfy { $0.count == header.count })
        let criterion = try XCTUnwrap(header.firstIndex(of: "criterion"))
        let failure = try XCTUnwrap(header.firstIndex(of: "failure"))
        let top1 = try XCTUnwrap(header.firstIndex(of: "finetuned_top1"))
        let compression = try XCTUnwrap(header.firstIndex(of: "compression"))
        XCTAssertEqual(rows[1][criterion], "evil, \"quoted\"\nname")
        XCTAssertEqual(rows[1][top1], "0.9")
        XCTAssertEqual(rows[1][compression], "2.0")
        XCTAssertEqual(rows.last?[failure], "boom, \"bang\"\r\nline 2")
        XCTAssertEqual(rows.last?[top1], "")
        XCTAssertTrue(header.contains("before_latency_b1_median_s"))
        XCTAssertTrue(header.contains("finetune_s"))
    }

    /// The HTML parses as XML, has one <svg> per chart (three per setting), escapes a hostile
    /// criterion everywhere, puts data markers inside the plot area, and draws the baseline.
    func testHTMLIsWellFormedWithChartsAndEscapes() throws {
        var records = Synthetic.threeCriteria()
        let hostile = "<script>alert('x')</script> & \"co\""
        for i in records.indices where records[i].configuration.criterion == "C" { records[i].configuration.criterion = hostile }
        let html = Report.html(Analysis(records), title: "A <b>bold</b> title & more")
        XCTAssertFalse(html.contains("<script"), "no raw script element")
        XCTAssertFalse(html.contains("<b>bold"))
        XCTAssertTrue(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;"))
        XCTAssertFalse(html.contains("http://") && html.contains("src=\"http"), "nothing loaded from the network")
        try assertWellFormed(html)

        let elements = try parseElements(html)
        let charts = elements.filter { $0.name == "svg" }.compactMap { $0.attributes["aria-labelledby"] }
        XCTAssertEqual(charts, ["c0-compression-t", "c0-measured1-t", "c0-size-t", "c0-pruned-t", "c0-theoretical-t"],
                       "compression, measured speed-up at batch 1 (no batch-64 figures), file size, after pruning, theoretical")
        XCTAssertTrue(elements.contains { $0.name == "line" && $0.attributes["class"] == "baseline" })
        // Data markers (the ones with a tooltip) of A (circles) lie inside the plot area
        // x ∈ [62, 550], y ∈ [22, 360]; the legend's lie right of it.
        let circles = elements.filter { $0.name == "circle" && $0.hasTitle }
        XCTAssertFalse(circles.isEmpty)
        for c in circles {
            let x = try XCTUnwrap(Double(c.attributes["cx"] ?? "")), y = try XCTUnwrap(Double(c.attributes["cy"] ?? ""))
            XCTAssertTrue((62...550).contains(x) && (22...360).contains(y), "marker at \(x), \(y)")
        }
        // Log axis: 1×, 2×, 4× ticks are equally spaced.
        XCTAssertEqual(Report.logTicks(1, 40), [1, 2, 4, 8, 16, 32])
        XCTAssertEqual(Report.logTicks(1, 1.8), [1, 1.25, 1.5])
    }

    /// Issue 15: a write that fails half-way (a full disk) leaves no `.tmp` file, no empty
    /// report folder it made, and the old reports as they were.
    func testAFailedWriteLeavesNothingBehind() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var calls = 0
        let fullDisk: (Data, String) throws -> Void = { data, path in
            calls += 1
            if calls < 3 { return try data.write(to: URL(fileURLWithPath: path)) }
            try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))      // what fit
            throw NSError(domain: NSCocoaErrorDomain, code: CocoaError.fileWriteOutOfSpace.rawValue,
                          userInfo: [NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(ENOSPC))])
        }
        let fresh = root.appendingPathComponent("new/report").path
        XCTAssertThrowsError(try Report.write(Synthetic.threeCriteria(), to: fresh, title: "t", writingFile: fullDisk)) { error in
            let e = error as? PruneKitError
            XCTAssertEqual(e?.kind, .io)
            XCTAssertTrue(e?.message.contains("No space left on device") == true, "\(error)")
            XCTAssertNotNil(e?.hint)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("new").path), "the folders it made are gone")

        // Into a folder with earlier reports: they stay as they were, no temporary is left.
        let existing = root.appendingPathComponent("old").path
        let old = try Report.write(Synthetic.threeCriteria(), to: existing, title: "old")
        let oldBytes = try old.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        calls = 0
        XCTAssertThrowsError(try Report.write([], to: existing, title: "new", writingFile: fullDisk))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: existing).sorted(), Report.fileNames.sorted())
        XCTAssertEqual(try old.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }, oldBytes)
    }

    /// Four files, written atomically (no temporary left over); results.json reads back,
    /// NaN included.
    func testWriteAllFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-report-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var records = Synthetic.threeCriteria()
        records[1].result.finetunedAccuracy?.loss = .nan
        let paths = try Report.write(records, to: dir + "/nested", title: "write test")
        XCTAssertEqual(paths.map { ($0 as NSString).lastPathComponent }, ["report.md", "trials.csv", "results.json", "report.html"])
        let listing = try FileManager.default.contentsOfDirectory(atPath: dir + "/nested").sorted()
        XCTAssertEqual(listing, ["report.html", "report.md", "results.json", "trials.csv"])
        let document = try Report.readJSON(Data(contentsOf: URL(fileURLWithPath: paths[2])))
        XCTAssertEqual(document.format, "prunekit-results")
        XCTAssertEqual(document.records.count, records.count)
        XCTAssertTrue(try XCTUnwrap(document.records[1].result.finetunedAccuracy?.loss).isNaN)
        XCTAssertEqual(document.analysis.settings.first?.criteria, ["A", "B", "C"])
        // Writing again replaces the files.
        _ = try Report.write(Array(records.prefix(3)), to: dir + "/nested", title: "again")
        XCTAssertEqual(try Report.readJSON(Data(contentsOf: URL(fileURLWithPath: paths[2]))).records.count, 3)
        // A file where the directory should be: a clear error.
        XCTAssertThrowsError(try Report.write(records, to: paths[0], title: "x")) { error in
            XCTAssertTrue("\(error)".contains("is a file"), "\(error)")
        }
    }

    func testTerminalTableShowsMeansWinnersAndScores() {
        let table = Report.terminalTable(Analysis(Synthetic.threeCriteria()))
        XCTAssertTrue(table.contains("91.00 ± 1.00 ▲"), table)
        XCTAssertTrue(table.contains("compression targets"), table)
        XCTAssertTrue(table.contains("2× A (beats 2 of 2)"), table)
        XCTAssertTrue(table.contains("+4"), table)
    }

    // MARK: helpers

    func assertWellFormed(_ html: String, file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try parseElements(html)
    }

    struct Element {
        var name: String
        var attributes: [String: String]
        var hasTitle: Bool
    }

    /// Parses `xml` with Foundation's XMLParser (fails on any well-formedness error) and
    /// returns its elements in document order.
    func parseElements(_ xml: String) throws -> [Element] {
        final class Collector: NSObject, XMLParserDelegate {
            var elements: [Element] = []
            var stack: [Int] = []
            func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                        attributes: [String: String] = [:]) {
                if name == "title", let parent = stack.last { elements[parent].hasTitle = true }
                stack.append(elements.count)
                elements.append(Element(name: name, attributes: attributes, hasTitle: false))
            }
            func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
                stack.removeLast()
            }
        }
        let parser = XMLParser(data: Data(xml.utf8))
        let collector = Collector()
        parser.delegate = collector
        guard parser.parse() else {
            throw NSError(domain: "xml", code: 1, userInfo: [NSLocalizedDescriptionKey:
                "not well-formed: \(parser.parserError.map { "\($0)" } ?? "?") at line \(parser.lineNumber)"])
        }
        return collector.elements
    }

    /// A minimal RFC 4180 reader: quoted fields, doubled quotes, CRLF records.
    func parseCSV(_ text: String) -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var quoted = false
        var chars = Array(text.unicodeScalars)[...]
        while let ch = chars.popFirst() {
            if quoted {
                if ch == "\"" {
                    if chars.first == "\"" { field.unicodeScalars.append("\""); chars.removeFirst() } else { quoted = false }
                } else { field.unicodeScalars.append(ch) }
            } else if ch == "\"" {
                quoted = true
            } else if ch == "," {
                row.append(field); field = ""
            } else if ch == "\r" && chars.first == "\n" {
                chars.removeFirst()
                row.append(field); rows.append(row); row = []; field = ""
            } else {
                field.unicodeScalars.append(ch)
            }
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }

    // MARK: Issue 16: a verdict at a glance, labelled granularity, charts fitted to what matters

    /// Per target: the best criterion, whether it beats every other (paired 95 % CI), and
    /// its cost against the baseline — by hand from ``Synthetic/threeCriteria()``.
    func testVerdictNamesTheBestItsEvidenceAndItsCost() throws {
        let setting = try XCTUnwrap(Analysis(Synthetic.threeCriteria()).settings.first)
        let verdicts = setting.verdicts
        XCTAssertEqual(verdicts.map(\.target), [Synthetic.c2, Synthetic.c4])
        let v = try XCTUnwrap(verdicts.first)
        XCTAssertEqual(v.best.criterion, "A")
        XCTAssertTrue(v.best.beatsAll, "A − B and A − C intervals lie above zero")
        XCTAssertEqual(v.seeds, 3)
        XCTAssertEqual(try XCTUnwrap(v.best.costPoints), 8, accuracy: 1e-9, "baseline 99 % − mean 91 %")
        XCTAssertNil(v.bestChannel, "the best already prunes channels")
        let sentence = try XCTUnwrap(Report.verdictSentences(setting).first?.text)
        XCTAssertEqual(sentence, "2× compression: best A (channel), 91.00 ± 1.00 % top-1, 8.00 points below the baseline; beats every other criterion (paired 95 % CI, 3 seeds).")
        let md = Report.markdown(Analysis(Synthetic.threeCriteria()), title: "t")
        XCTAssertTrue(md.contains("## Verdict\n\n- 2× compression: best A (channel)"), md)
        let html = Report.html(Analysis(Synthetic.threeCriteria()), title: "t")
        XCTAssertTrue(html.contains("<section class=\"verdict\" id=\"verdict\"><h2>Verdict</h2>"))
        XCTAssertLessThan(try XCTUnwrap(html.range(of: "id=\"verdict\"")).lowerBound, try XCTUnwrap(html.range(of: "<svg")).lowerBound,
                          "the verdict comes before the charts")
    }

    /// B is not shown to beat C (their interval contains zero); one seed tests nothing; a
    /// weight winner brings the best channel criterion with it.
    func testVerdictSaysWhatIsNotShown() throws {
        var records = Synthetic.threeCriteria().filter { $0.configuration.criterion != "A" }
        var setting = try XCTUnwrap(Analysis(records).settings.first)
        let v = try XCTUnwrap(setting.verdicts.first)
        XCTAssertFalse(v.best.beatsAll)
        XCTAssertEqual(v.best.notShownBetterThan.count, 1)
        XCTAssertTrue(try XCTUnwrap(Report.verdictSentences(setting).first?.text).contains("not shown to beat"))

        records = [Synthetic.record("W", Synthetic.c2, seed: 0, top1: 0.95, granularity: .weight),
                   Synthetic.record("K", Synthetic.c2, seed: 0, top1: 0.90, granularity: .channel)]
        setting = try XCTUnwrap(Analysis(records).settings.first)
        let one = try XCTUnwrap(setting.verdicts.first)
        XCTAssertEqual(one.best.criterion, "W")
        XCTAssertEqual(one.bestChannel?.criterion, "K")
        let text = try XCTUnwrap(Report.verdictSentences(setting).first?.text)
        XCTAssertTrue(text.contains("best W (weight)") && text.contains("no measured speed-up") && text.contains("Best channel criterion: K"), text)
        XCTAssertTrue(text.contains("not tested against the others (one seed)"), text)

        // A channel-pruned model that runs slower is said to be slower, not "0.85× faster".
        var slow = Synthetic.record("K", Synthetic.c2, seed: 0, top1: 0.90, granularity: .channel)
        slow.result.before?.latency = [Latency(batchSize: 64, median: 0.010, p10: 0.009, p90: 0.011, runs: 20)]
        slow.result.after?.latency = [Latency(batchSize: 64, median: 0.020, p10: 0.019, p90: 0.021, runs: 20)]
        let slower = try XCTUnwrap(Report.verdictSentences(try XCTUnwrap(Analysis([slow]).settings.first)).first?.text)
        XCTAssertTrue(slower.contains("measured slower at batch 64 (0.50× the baseline's speed)"), slower)
        XCTAssertFalse(slower.contains("faster"), slower)
    }

    /// CSV and JSON say which criteria prune weights and which prune channels.
    func testGranularityIsInCSVAndJSON() throws {
        let records = [Synthetic.record("W", Synthetic.c2, seed: 0, granularity: .weight),
                       Synthetic.record("K", Synthetic.c2, seed: 0, granularity: .channel)]
        let rows = Report.csv(records).components(separatedBy: "\r\n").map { $0.components(separatedBy: ",") }
        let column = try XCTUnwrap(rows[0].firstIndex(of: "granularity"))
        XCTAssertEqual([rows[1][column], rows[2][column]], ["weight", "channel"])
        let json = String(decoding: try Report.json(records, analysis: Analysis(records), title: "t"), as: UTF8.self)
        XCTAssertTrue(json.contains("\"granularity\" : \"weight\"") && json.contains("\"granularity\" : \"channel\""), json)
    }

    /// A criterion that collapsed (random at 10 %) is drawn on the bottom edge, not allowed to
    /// stretch the axis over the 88–97 % band where the others differ.
    func testChartRangeFitsTheCriteriaThatMatter() throws {
        var records = Synthetic.threeCriteria()
        records += (0..<3).map { Synthetic.record("random", Synthetic.c2, seed: UInt64($0), top1: 0.10) }
        let setting = try XCTUnwrap(Analysis(records).settings.first)
        let spec = try XCTUnwrap(Report.chartSpecs(setting).first { $0.key == "compression" })
        let range = Report.yRange(spec.series.flatMap(\.points), baseline: spec.baseline)
        XCTAssertGreaterThanOrEqual(range.lo, 80, "fitted to 84–99 %, not 0–100 %")
        XCTAssertLessThanOrEqual(range.hi, 100)
        let html = Report.html(Analysis(records), title: "t")
        XCTAssertTrue(html.contains("class=\"collapsed\""), "the collapsed points are still drawn")
        XCTAssertTrue(html.contains("below \(String(format: "%g", range.lo)) %: random"))
    }

    /// The seed count reads as a count; wall times are folded away.
    func testSeedsAndWallTimeAreNotNoise() throws {
        let one = [Synthetic.record("A", Synthetic.c2, seed: 0)]
        XCTAssertTrue(Report.terminalTable(Analysis(one)).contains("· 1 seed (0)"))
        XCTAssertTrue(Report.markdown(Analysis(Synthetic.threeCriteria()), title: "t").contains("· 3 seeds (0, 1, 2)"))
        let html = Report.html(Analysis(Synthetic.threeCriteria()), title: "t")
        XCTAssertTrue(html.contains("<details><summary>Wall time per phase (mean over seeds)</summary>"))
    }
}
