import Foundation
import PruneKit
import XCTest
@testable import PruneKitHarness

/// report.html opened as a person opens it: in a real browser (headless Chromium, Debian's
/// `chromium`, installed by `.ci/install`). The page must load without errors, and the
/// rendered page must hold the verdict and the charts.
final class HTMLRenderTests: XCTestCase {
    /// Chromium on PATH; in CI (`CI` set) its absence is a failure, not a skip.
    private func chromium() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            for name in ["chromium", "chromium-browser", "google-chrome"] {
                let candidate = "\(dir)/\(name)"
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("no chromium on PATH: .ci/install installs Debian's chromium")
        }
        throw XCTSkip("no chromium on PATH (apt-get install chromium, or run .ci/install)")
    }

    /// Runs headless Chromium on `url` with `arguments`; returns its status, stdout and stderr.
    private func run(_ chromium: String, _ arguments: [String], _ url: URL, profile: URL) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: chromium)
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                             "--user-data-dir=\(profile.path)", "--enable-logging=stderr", "--v=0"] + arguments + [url.absoluteString]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var e = Data()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { e = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
        let timer = DispatchWorkItem { process.terminate() }
        DispatchQueue.global().asyncAfter(deadline: .now() + 90, execute: timer)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        timer.cancel()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testTheReportRendersInChromiumWithItsVerdictAndCharts() throws {
        let browser = try chromium()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-render-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Weight and channel criteria, three seeds, one that collapses.
        var records = Synthetic.threeCriteria()
        for seed in 0..<3 {
            let s = UInt64(seed), lift = 0.002 * Double(seed)
            records.append(Synthetic.record("global-magnitude", Synthetic.c2, seed: s, top1: 0.95 + lift, granularity: .weight))
            records.append(Synthetic.record("global-magnitude", Synthetic.c4, seed: s, top1: 0.94 + lift, granularity: .weight))
            records.append(Synthetic.record("random", Synthetic.c4, seed: s, top1: 0.10, granularity: .weight))
        }
        let paths = try Report.write(records, to: dir.path, title: "render test")
        let page = URL(fileURLWithPath: try XCTUnwrap(paths.first { $0.hasSuffix("report.html") }))
        let profile = dir.appendingPathComponent("profile")

        let (status, dom, log) = try run(browser, ["--dump-dom"], page, profile: profile)
        XCTAssertEqual(status, 0, log)
        let errors = log.split(separator: "\n").filter { $0.contains("CONSOLE") || $0.contains("Uncaught") || $0.contains("net::ERR") }
        XCTAssertTrue(errors.isEmpty, "the page logged errors: \(errors.joined(separator: "\n"))")
        XCTAssertTrue(dom.contains("id=\"verdict\""), "the rendered page has the verdict")
        XCTAssertTrue(dom.contains("2× compression: best global-magnitude (weight)"), dom.prefix(4000).description)
        XCTAssertTrue(dom.contains("Best channel criterion: A"))
        XCTAssertGreaterThanOrEqual(dom.components(separatedBy: "<svg").count - 1, 4, "the charts are in the rendered page")

        // And it paints: a screenshot of real content, not a blank page.
        let shot = dir.appendingPathComponent("report.png")
        let (shotStatus, _, shotLog) = try run(browser, ["--screenshot=\(shot.path)", "--window-size=1280,1600", "--hide-scrollbars"],
                                               page, profile: profile)
        XCTAssertEqual(shotStatus, 0, shotLog)
        let png = try Data(contentsOf: shot)
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "a PNG")
        XCTAssertGreaterThan(png.count, 40_000, "a page with text and charts compresses to more than a blank one")
    }
}
