import Foundation
import PruneKit
import XCTest

/// `prunekit compare`, `merge` and `report` end to end: resuming after kill -9, shards,
/// and bad input refused before any trial runs.
final class CompareCommandTests: XCTestCase {
    private var executable: URL { TestSupport.prunekitExecutable }

    private func run(_ arguments: [String], in directory: URL) throws -> (status: Int32, out: String, err: String) {
        try TestSupport.runPrunekit(arguments, in: directory)
    }

    private func scratch() throws -> URL {
        try temporaryScratchDirectory("prunekit-compare")
    }

    /// A tiny comparison: lenet-300-100, 300 training images, 1 baseline epoch, 1 finetune
    /// epoch, 2 criteria × 2 targets = 4 trials.
    private let tinySpec = """
        name: tiny
        model: lenet-300-100
        criteria: [global-magnitude, layer-magnitude]
        compressions: [2, 4]
        finetune-epochs: 1
        baseline: {epochs: 1, training-images: 300, validation-images: 100}
        calibration: {batches: 2, batch-size: 32}
        jobs: 1
        """

    /// Kill -9 after the first trial is in the store, run the same command again: only the
    /// missing trials run, and every planned trial is in the store exactly once.
    func testResumeAfterKillRunsOnlyTheMissingTrials() throws {
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let arguments = ["compare", "tiny.yaml", "--store", "out/results.sqlite"]

        // First run: read its output as it comes; a trial's line is printed after its
        // transaction commits, so "[1/4]" means one trial is in the store.
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = dir
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        let buffer = LockedText()
        out.fileHandleForReading.readabilityHandler = { buffer.append($0.availableData) }
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while !buffer.text.contains("[1/4]"), process.isRunning, Date() < deadline { usleep(20_000) }
        XCTAssert(buffer.text.contains("[1/4]"), "the first trial never finished: \(buffer.text)")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        let firstRunDone = buffer.text.components(separatedBy: "\n").filter { $0.hasPrefix("[") }.count
        XCTAssertGreaterThanOrEqual(firstRunDone, 1)
        XCTAssertLessThan(firstRunDone, 4, "killed before the end: \(buffer.text)")

        // Second run: the same command.
        let second = try run(arguments, in: dir)
        XCTAssertEqual(second.status, 0, second.err + second.out)
        let skipped = try XCTUnwrap(firstNumber(after: "resuming: ", in: second.out), second.out)
        XCTAssertGreaterThanOrEqual(skipped, firstRunDone, "everything the first run reported is kept")
        XCTAssert(second.out.contains("resuming: \(skipped) of 4 trials are already in the store and are skipped; \(4 - skipped) to run"), second.out)
        XCTAssert(second.out.contains("trials: 4 in this run, \(skipped) already in the store (skipped), \(4 - skipped) run now, 0 failed"), second.out)
        XCTAssertEqual(second.out.components(separatedBy: "\n").filter { $0.hasPrefix("[") }.count, 4 - skipped,
                       "only the missing trials ran: \(second.out)")

        // Every planned trial is in the store, exactly once: a third run skips all four, and
        // the store holds four records.
        let third = try run(arguments, in: dir)
        XCTAssertEqual(third.status, 0, third.err)
        XCTAssert(third.out.contains("resuming: 4 of 4 trials are already in the store and are skipped; 0 to run"), third.out)
        let report = try run(["report", "--store", "out/results.sqlite", "--out", "rebuilt"], in: dir)
        XCTAssertEqual(report.status, 0, report.err)
        XCTAssert(report.out.contains("4 trials; reports: "), report.out)
    }

    /// Two shards and a merge hold the same trials as the whole experiment.
    func testShardsThenMerge() throws {
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        var lines: [String] = []
        for i in 1...2 {
            let r = try run(["compare", "tiny.yaml", "--shard", "\(i)/2", "--store", "s\(i).sqlite", "--cache", "cache"], in: dir)
            XCTAssertEqual(r.status, 0, r.err)
            XCTAssert(r.out.contains("shard \(i)/2: 2"), r.out)
            lines += r.out.components(separatedBy: "\n").filter { $0.hasPrefix("[") }
        }
        XCTAssertEqual(lines.count, 4)
        let merge = try run(["merge", "--store", "all.sqlite", "s1.sqlite", "s2.sqlite"], in: dir)
        XCTAssertEqual(merge.status, 0, merge.err)
        let whole = try run(["compare", "tiny.yaml", "--store", "all.sqlite", "--cache", "cache"], in: dir)
        XCTAssertEqual(whole.status, 0, whole.err)
        XCTAssert(whole.out.contains("resuming: 4 of 4 trials"), whole.out)
    }

    /// A plugin that crashes (SIGSEGV) or throws fails only its own trials; the run goes on
    /// and records each failure with its message.
    func testACrashingPluginDoesNotTakeTheRunDown() throws {
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let plugin = executable.deletingLastPathComponent().appendingPathComponent("libPruneKitFixtureCrashing.so").path
        let r = try run(["compare", "tiny.yaml", "--plugin", plugin, "--criteria", "fixture-segfault,fixture-throws,global-magnitude",
                         "--compressions", "2"], in: dir)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("fixture-segfault 2× compression, seed 0: FAILED: crashed with SIGSEGV"), r.out)
        XCTAssert(r.out.contains("fixture-throws 2× compression, seed 0: FAILED: criterion 'fixture-throws' failed on layer 'fc1': the fixture criterion refuses to score"), r.out)
        XCTAssert(r.out.contains("global-magnitude 2× compression, seed 0: top-1 "), r.out)
        XCTAssert(r.out.contains("trials: 3 in this run, 0 already in the store (skipped), 3 run now, 2 failed"), r.out)
    }

    private var crashingFixture: String {
        executable.deletingLastPathComponent().appendingPathComponent("libPruneKitFixtureCrashing.so").path
    }

    /// Issue 15, defect 3: channel criteria that need no data are scored while the
    /// comparison is planned; one that segfaults, throws or returns NaN there fails only
    /// its own trials (the probe runs in a child process), and the run goes on.
    func testABrokenChannelPluginFailsOnlyItsTrialsWhilePlanning() throws {
        let dir = try scratch()
        try Data((tinySpec + "\noracle: off\n").utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let r = try run(["compare", "tiny.yaml", "--plugin", crashingFixture, "--compressions", "2",
                         "--criteria", "fixture-channel-segfault,fixture-channel-throws,fixture-channel-nan,global-magnitude"], in: dir)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("fixture-channel-segfault 2× compression, seed 0: FAILED: crashed with SIGSEGV"), r.out)
        XCTAssert(r.out.contains("fixture-channel-throws 2× compression, seed 0: FAILED: ") && r.out.contains("refuses to score"), r.out)
        XCTAssert(r.out.contains("fixture-channel-nan 2× compression, seed 0: FAILED: "), r.out)
        XCTAssert(r.out.contains("global-magnitude 2× compression, seed 0: top-1 "), r.out)
        XCTAssert(r.out.contains("trials: 4 in this run, 0 already in the store (skipped), 4 run now, 3 failed"), r.out)
    }

    /// Issue 15, defect 7: a plugin that hangs is killed at `--trial-timeout` and its trial
    /// recorded as failed; the others run.
    func testAHangingPluginTimesOut() throws {
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let r = try run(["compare", "tiny.yaml", "--plugin", crashingFixture, "--compressions", "2",
                         "--criteria", "fixture-hangs,global-magnitude", "--trial-timeout", "4"], in: dir)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("fixture-hangs 2× compression, seed 0: FAILED: timed out after 4 s"), r.out)
        XCTAssert(r.out.contains("global-magnitude 2× compression, seed 0: top-1 "), r.out)
        let bad = try run(["compare", "--trial-timeout", "0"], in: dir)
        XCTAssertEqual(bad.status, 64, bad.err)
        XCTAssert(bad.err.contains("--trial-timeout must be a positive number of seconds"), bad.err)
    }

    /// Processes whose environment names `parent` as the runner that started them.
    private func trialChildren(of parent: pid_t) -> [pid_t] {
        let mark = Data("PRUNEKIT_PARENT_PID=\(parent)\0".utf8)
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid_t($0) }
        return pids.filter { pid in
            guard let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            return env.range(of: mark) != nil && !isZombie(pid)
        }
    }

    private func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// Starts `compare` on a hanging trial with its own TMPDIR; returns once the trial's child runs.
    private func startHangingCompare(in dir: URL, temporary: URL) throws -> (Process, [pid_t]) {
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let process = Process()
        process.executableURL = executable
        process.arguments = ["compare", "tiny.yaml", "--plugin", crashingFixture, "--compressions", "2", "--criteria", "fixture-hangs"]
        process.currentDirectoryURL = dir
        process.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": temporary.path]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        var children: [pid_t] = []
        while Date() < deadline, process.isRunning {
            children = trialChildren(of: process.processIdentifier)
            let work = temporary.appendingPathComponent("prunekit-trials-\(process.processIdentifier)").path
            let trialStarted = ((try? FileManager.default.contentsOfDirectory(atPath: work)) ?? []).contains { $0.hasPrefix("trial-") }
            if trialStarted && !children.isEmpty { break }
            usleep(50_000)
        }
        return (process, children)
    }

    private func waitUntilGone(_ pids: [pid_t], seconds: Double = 10) -> [pid_t] {
        let deadline = Date().addingTimeInterval(seconds)
        var alive = pids
        while !alive.isEmpty, Date() < deadline {
            usleep(50_000)
            alive = alive.filter { kill($0, 0) == 0 && !isZombie($0) }
        }
        return alive
    }

    /// Issue 15, defect 13: a finished run leaves no work folder behind; SIGTERM kills the
    /// running trials and removes it; after kill -9 the trial children die with their
    /// parent, and the next run removes the folder the dead run left.
    func testTrialsDieWithTheRunAndLeaveNoTemporaryFolders() throws {
        let dir = try scratch(), temporary = dir.appendingPathComponent("tmp")
        try FileManager.default.createDirectory(at: temporary, withIntermediateDirectories: true)
        func leftovers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? []).filter { $0.hasPrefix("prunekit-trials-") }
        }

        // SIGTERM: the trial is killed, the folder removed.
        let (terminated, termChildren) = try startHangingCompare(in: dir, temporary: temporary)
        XCTAssertFalse(termChildren.isEmpty, "the trial's child never started")
        kill(terminated.processIdentifier, SIGTERM)
        terminated.waitUntilExit()
        XCTAssertEqual(terminated.terminationStatus, 128 + SIGTERM)
        XCTAssertEqual(waitUntilGone(termChildren), [], "SIGTERM leaves no trial running")
        XCTAssertEqual(leftovers(), [])

        // kill -9: nothing runs in the parent, yet its children die with it.
        let (killed, children) = try startHangingCompare(in: dir, temporary: temporary)
        XCTAssertFalse(children.isEmpty, "the trial's child never started")
        kill(killed.processIdentifier, SIGKILL)
        killed.waitUntilExit()
        XCTAssertEqual(waitUntilGone(children), [], "orphaned trial children keep running")
        XCTAssertEqual(leftovers(), ["prunekit-trials-\(killed.processIdentifier)"])

        // The next run removes the dead run's folder, and its own when it ends.
        let process = Process()
        process.executableURL = executable
        process.arguments = ["compare", "tiny.yaml", "--compressions", "2", "--criteria", "global-magnitude"]
        process.currentDirectoryURL = dir
        process.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": temporary.path]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(leftovers(), [], "stale and own work folders removed")
    }

    func testBadInputIsRefusedBeforeAnyTrialAndLeavesTheStoreAlone() throws {
        let dir = try scratch()
        let unknown = try run(["compare", "--criteria", "global-magnitude,magnitood", "--store", "r.sqlite"], in: dir)
        XCTAssertEqual(unknown.status, 64)
        XCTAssert(unknown.err.contains("error: unknown criterion 'magnitood'") && unknown.err.contains("hint: known: "), unknown.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r.sqlite").path), "nothing created")

        try Data("model: lenet-5\nfinetune-epoch: 2\n".utf8).write(to: dir.appendingPathComponent("bad.yaml"))
        let yaml = try run(["compare", "bad.yaml"], in: dir)
        XCTAssertNotEqual(yaml.status, 0)
        XCTAssert(yaml.err.contains("bad.yaml:2:1: unknown key 'finetune-epoch'"), yaml.err)

        let target = try run(["compare", "--criteria", "global-magnitude", "--compressions", "2,100"], in: dir)
        XCTAssertNotEqual(target.status, 0)
        XCTAssert(target.err.contains("can't be met") && target.err.contains("73.2×"), target.err)

        let small = try run(["compare", "--compressions", "1"], in: dir)
        XCTAssert(small.err.contains("not above 1"), small.err)

        let shard = try run(["compare", "--shard", "3/2"], in: dir)
        XCTAssert(shard.err.contains("shard 3/2 does not exist"), shard.err)

        // Refused at parse time, with the usual exit status: before, a huge count allocated
        // 0..<n and crashed, and a target given twice ran one trial id twice.
        for count in ["1000000000", "9223372036854775807"] {
            let seeds = try run(["compare", "--seeds", count], in: dir)
            XCTAssertEqual(seeds.status, 64, seeds.err)
            XCTAssert(seeds.err.hasPrefix("error: --seeds \(count) is not a seed count from 1 to 1000"), seeds.err)
        }
        let twice = try run(["compare", "--compressions", "2,2"], in: dir)
        XCTAssertEqual(twice.status, 64, twice.err)
        XCTAssert(twice.err.contains("is listed twice in 'compressions'"), twice.err)
        let schedule = try run(["compare", "--schedule", "iterative stepz=3", "--criteria", "global-magnitude", "--compressions", "2"], in: dir)
        XCTAssertNotEqual(schedule.status, 0)
        XCTAssert(schedule.err.contains("stepz") && !schedule.err.contains("unknown schedule"),
                  "the id is read before the space, the option after it: \(schedule.err)")

        // A file that is not a result store is refused and left exactly as it was.
        let junk = dir.appendingPathComponent("junk.sqlite")
        let bytes = Data("not a database, but someone's file".utf8)
        try bytes.write(to: junk)
        let store = try run(["compare", "--criteria", "global-magnitude", "--compressions", "2", "--store", junk.path], in: dir)
        XCTAssertNotEqual(store.status, 0)
        XCTAssert(store.err.hasPrefix("error: "), store.err)
        XCTAssertEqual(try Data(contentsOf: junk), bytes)
        XCTAssertFalse(store.out.contains("[1/"), "no trial ran")
    }

    /// `--when` and `--sanity`: an unknown value at parse time; a check on a channel
    /// criterion and rewinding at initialisation refused by the plan, before any trial.
    func testWhenAndSanityBadInputIsRefusedWithTheReason() throws {
        let dir = try scratch()
        let check = try run(["compare", "--sanity", "layer-shuffle,shuffle"], in: dir)
        XCTAssertEqual(check.status, 64, check.err)
        XCTAssert(check.err.contains("--sanity: unknown value 'shuffle'") && check.err.contains("layer-shuffle, invert, reinit"), check.err)
        let channel = try run(["compare", "--criteria", "l1-filter", "--sanity", "layer-shuffle", "--compressions", "2", "--store", "r.sqlite"], in: dir)
        XCTAssertNotEqual(channel.status, 0)
        XCTAssert(channel.err.contains("'l1-filter' ranks channels") && channel.err.contains("random granularity=channel"), channel.err)
        let rewind = try run(["compare", "--criteria", "snip", "--when", "init", "--finetune", "rewind epoch=0", "--compressions", "2", "--store", "r.sqlite"], in: dir)
        XCTAssertNotEqual(rewind.status, 0)
        XCTAssert(rewind.err.contains("no trained model"), rewind.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r.sqlite").path), "nothing created")
    }

    /// `--pattern 2:4` end to end: the 2:4 trial runs beside the unstructured one at 2×, its
    /// saved model (`--models`) has at most 2 non-zero weights in every group of 4
    /// consecutive inputs of each layer it covers (the unstructured model does not: the check
    /// can fail), the reports name it, and a second run reuses both trials from the store.
    func testComparePattern24KeepsTwoOfEveryFourWeights() throws {
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let arguments = ["compare", "tiny.yaml", "--criteria", "global-magnitude", "--compressions", "2", "--pattern", "2:4",
                         "--store", "out/results.sqlite", "--models", "out/models"]
        let first = try run(arguments, in: dir)
        XCTAssertEqual(first.status, 0, first.err + first.out)
        XCTAssert(first.out.contains("note: the N:M pattern 2:4 is its own target") && first.out.contains("1.99× on lenet-300-100"), first.out)
        XCTAssert(first.out.contains("global-magnitude 2:4, seed 0: top-1"), first.out)

        // trials.csv: which trial is which (the columns before any quoted field).
        let csv = try String(contentsOf: dir.appendingPathComponent("out/report/trials.csv"), encoding: .utf8)
        let rows = csv.components(separatedBy: "\r\n").filter { !$0.isEmpty }.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let id = try XCTUnwrap(rows[0].firstIndex(of: "id")), pattern = try XCTUnwrap(rows[0].firstIndex(of: "pattern"))
        XCTAssertEqual(rows.dropFirst().map { $0[pattern] }.sorted(), ["", "2:4"])
        let nmID = try XCTUnwrap(rows.first { $0[pattern] == "2:4" }?[id]), plainID = try XCTUnwrap(rows.dropFirst().first { $0[pattern] == "" }?[id])
        let report = try String(contentsOf: dir.appendingPathComponent("out/report/report.md"), encoding: .utf8)
        XCTAssert(report.contains("| global-magnitude 2:4 |") && report.contains("| global-magnitude |"), report)

        /// Groups of 4 consecutive input channels (at one output and kernel position) with
        /// more than 2 non-zero weights, per prunable layer, and its zero count.
        func violations(_ id: String) throws -> [String: (overfull: Int, zeros: Int, weights: Int)] {
            let folder = dir.appendingPathComponent("out/models/\(id)").path
            let model = try Model.load(from: folder)
            var out: [String: (overfull: Int, zeros: Int, weights: Int)] = [:]
            for layer in model.prunableLayers() {
                let shape = layer.weightShape, w = layer.weights.scalars
                let outputs = shape[0], inputs = shape[1], inner = shape.dropFirst(2).reduce(1, *)
                var overfull = 0
                for o in 0..<outputs {
                    for g in 0..<(inputs / 4) {
                        for k in 0..<inner {
                            let nonzero = (0..<4).filter { w[(o * inputs + g * 4 + $0) * inner + k] != 0 }.count
                            if nonzero > 2 { overfull += 1 }
                        }
                    }
                }
                out[layer.path] = (overfull, w.filter { $0 == 0 }.count, w.count)
            }
            return out
        }
        let nm = try violations(nmID)
        XCTAssertEqual(try Model.savedMetadata(in: dir.appendingPathComponent("out/models/\(nmID)").path)["prunekit.pattern"], "2:4")
        for path in ["fc1", "fc2"] {     // [300, 784], [100, 300]
            let l = try XCTUnwrap(nm[path], "\(nm.keys)")
            XCTAssertEqual(l.overfull, 0, "\(path): every group of 4 keeps at most 2")
            XCTAssertGreaterThanOrEqual(l.zeros, l.weights / 2, "\(path): half pruned")
        }
        XCTAssertEqual(nm["fc3"]?.zeros, 0, "the classifier is kept whole")
        let plain = try violations(plainID)
        XCTAssertGreaterThan(plain["fc1"]?.overfull ?? 0, 0, "unstructured pruning at 2× breaks the pattern: the check discriminates")

        let again = try run(arguments, in: dir)
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssert(again.out.contains("trials: 2 in this run, 2 already in the store (skipped), 0 run now"), again.out)
    }

    /// Bad patterns at parse time (exit 64, nothing created); a channel criterion named with
    /// a pattern refused by the plan, and a --models that can't be a folder, before any trial.
    func testPatternBadInputIsRefusedBeforeAnyTrial() throws {
        let dir = try scratch()
        for (value, message) in [("5:4", "N must be less than M"), ("0:4", "needs N and M of at least 1"), ("2:4,2:4", "listed twice"), ("two:four", "is not an N:M pattern")] {
            let r = try run(["compare", "--pattern", value, "--store", "r.sqlite"], in: dir)
            XCTAssertEqual(r.status, 64, r.err)
            XCTAssert(r.err.hasPrefix("error: --pattern: ") && r.err.contains(message) && r.err.contains("hint: "), r.err)
        }
        let channel = try run(["compare", "--criteria", "global-magnitude,l1-filter", "--pattern", "2:4", "--compressions", "2", "--store", "r.sqlite"], in: dir)
        XCTAssertEqual(channel.status, 64, channel.err)
        XCTAssert(channel.err.contains("'l1-filter' is a channel criterion") && channel.err.contains("hint: leave 'l1-filter' out of --criteria"), channel.err)
        // --models that can't be a folder: refused before the store is created.
        try Data("a file".utf8).write(to: dir.appendingPathComponent("afile"))
        let models = try run(["compare", "--criteria", "global-magnitude", "--pattern", "2:4", "--compressions", "2", "--models", "afile/m", "--store", "r.sqlite"], in: dir)
        XCTAssertNotEqual(models.status, 0)
        XCTAssert(models.err.contains("could not create the directory afile/m for the pruned models (--models): Not a directory"), models.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r.sqlite").path), "nothing created")
    }

    /// Issue 15, defect 14, as a researcher meets it: a C criterion rebuilt with inverted
    /// scores (version 2.0) against the same store runs again (before: "2 already in the
    /// store (skipped)" and the old figures), and the report shows both builds apart, with
    /// the plugin file, version and SDK that produced each.
    func testARebuiltCriterionRunsAgainAndTheReportNamesEachBuild() throws {
        let cc = "/usr/bin/cc"
        guard FileManager.default.isExecutableFile(atPath: cc) else { throw XCTSkip("no C compiler at \(cc)") }
        let dir = try scratch()
        let template = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Templates/c-criterion")
        let source = try String(contentsOf: template.appendingPathComponent("l1_filter.c"), encoding: .utf8)
        let manifest = try String(contentsOf: template.appendingPathComponent("criterion.json"), encoding: .utf8)
        func build(_ source: String, _ manifest: String) throws {
            try Data(source.utf8).write(to: dir.appendingPathComponent("l1_filter.c"))
            try Data(manifest.utf8).write(to: dir.appendingPathComponent("criterion.json"))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: cc)
            process.arguments = ["-O2", "-shared", "-fPIC", "-o", dir.appendingPathComponent("libl1_filter.so").path,
                                 dir.appendingPathComponent("l1_filter.c").path, "-lm"]
            try process.run()
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
        }
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let arguments = ["compare", "tiny.yaml", "--plugin", dir.appendingPathComponent("criterion.json").path, "--criteria", "c-l1",
                         "--compressions", "2", "--store", "out/results.sqlite"]
        try build(source, manifest)
        let first = try run(arguments, in: dir)
        XCTAssertEqual(first.status, 0, first.err + first.out)
        XCTAssert(first.out.contains("2 run now"), first.out)          // the prune trial and the oracle trial

        let inverted = source.replacingOccurrences(of: "scores[j] = (float)sum;", with: "scores[j] = (float)-sum;")
        XCTAssertNotEqual(inverted, source)
        try build(inverted, manifest.replacingOccurrences(of: "\"version\": \"1.0\"", with: "\"version\": \"2.0\""))
        let second = try run(arguments, in: dir)
        XCTAssertEqual(second.status, 0, second.err + second.out)
        XCTAssert(second.out.contains("trials: 2 in this run, 0 already in the store (skipped), 2 run now"), second.out)
        let report = try String(contentsOf: dir.appendingPathComponent("out/report/report.md"), encoding: .utf8)
        XCTAssert(report.contains("| c-l1 [1.0] |") && report.contains("| c-l1 [2.0] |"), report)
        XCTAssert(report.contains("## Plugins") && report.contains("| criterion | c-l1 | 2.0 | \(dir.appendingPathComponent("criterion.json").path) |"), report)
    }

    /// Issue 15, defect 19: `compare --criteria X` against a store that holds more writes
    /// the report of the whole store, and `prunekit report` writes the same report (same
    /// title, same trials) instead of retitling it.
    func testCompareOfSomeCriteriaAndReportAgreeOnTheWholeStore() throws {
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        for criterion in ["global-magnitude", "layer-magnitude"] {
            let r = try run(["compare", "tiny.yaml", "--criteria", criterion, "--compressions", "2", "--store", "out/results.sqlite"], in: dir)
            XCTAssertEqual(r.status, 0, r.err + r.out)
        }
        let fromCompare = try String(contentsOf: dir.appendingPathComponent("out/report/report.md"), encoding: .utf8)
        XCTAssert(fromCompare.hasPrefix("# tiny\n"), fromCompare)
        XCTAssert(fromCompare.contains("2 trials") && fromCompare.contains("| global-magnitude |") && fromCompare.contains("| layer-magnitude |"), fromCompare)
        let report = try run(["report", "--store", "out/results.sqlite"], in: dir)
        XCTAssertEqual(report.status, 0, report.err)
        let fromReport = try String(contentsOf: dir.appendingPathComponent("out/report/report.md"), encoding: .utf8)
        XCTAssertEqual(fromReport, fromCompare)
    }

    /// Issue 15, defects 6 and 8, for real: as `nobody` (root ignores permission bits), a
    /// store in a directory it can't write is read by `report` (before: "could not be read
    /// as an SQLite database: attempt to write a readonly database … may be damaged"), with
    /// nothing created beside it; and a new store there is refused with the reason and a hint.
    func testAStoreInADirectoryThatCantBeWrittenIsReadAndNotWritten() throws {
        guard TestSupport.canRunAsNobody else { throw XCTSkip("needs root and \(TestSupport.setpriv) to run prunekit as nobody") }
        let dir = try scratch()
        try Data(tinySpec.utf8).write(to: dir.appendingPathComponent("tiny.yaml"))
        let made = try run(["compare", "tiny.yaml", "--criteria", "global-magnitude", "--compressions", "2", "--store", "w/results.sqlite"], in: dir)
        XCTAssertEqual(made.status, 0, made.err)
        let fm = FileManager.default
        let ro = dir.appendingPathComponent("ro"), out = dir.appendingPathComponent("out")
        try fm.createDirectory(at: ro, withIntermediateDirectories: true)
        try fm.createDirectory(at: out, withIntermediateDirectories: true)
        try fm.copyItem(at: dir.appendingPathComponent("w/results.sqlite"), to: ro.appendingPathComponent("results.sqlite"))
        try fm.setAttributes([.posixPermissions: 0o555], ofItemAtPath: ro.path)
        try fm.setAttributes([.posixPermissions: 0o777], ofItemAtPath: out.path)

        let report = try TestSupport.runPrunekit(["report", "--store", "ro/results.sqlite", "--out", "out/report"], in: dir, asUser: "nobody")
        XCTAssertEqual(report.status, 0, report.err)
        XCTAssert(report.out.contains("1 trials; reports: "), report.out)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: ro.path), ["results.sqlite"], "nothing written beside the store")

        let create = try TestSupport.runPrunekit(["compare", "tiny.yaml", "--criteria", "global-magnitude", "--compressions", "2",
                                                  "--store", "ro/new.sqlite"], in: dir, asUser: "nobody")
        XCTAssertEqual(create.status, 1, create.err)
        XCTAssert(create.err.hasPrefix("error: can't create a result store at ro/new.sqlite: the directory ro is not writable (Permission denied)."), create.err)
        XCTAssert(create.err.contains("\nhint: "), create.err)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: ro.path), ["results.sqlite"])
    }

    /// Issue 15, defect 8: a store where no directory can be made (here a file is in the
    /// way; a read-only disk refuses the same way) is an `error:` line with the system's
    /// reason and a `hint:`, not Foundation's "Error Domain=NSCocoaErrorDomain Code=…".
    func testAStoreThatCantBeCreatedIsAnErrorWithAHint() throws {
        let dir = try scratch()
        try Data("x".utf8).write(to: dir.appendingPathComponent("file.txt"))
        let r = try run(["compare", "--criteria", "global-magnitude", "--compressions", "2", "--store", "file.txt/out/results.sqlite"], in: dir)
        XCTAssertEqual(r.status, 1, r.err)
        XCTAssert(r.err.hasPrefix("error: could not create the directory file.txt/out for the result store"), r.err)
        XCTAssert(r.err.contains("Not a directory") && r.err.contains("\nhint: "), r.err)
        XCTAssertFalse(r.err.contains("NSCocoaErrorDomain"), r.err)
    }

    private func firstNumber(after prefix: String, in text: String) -> Int? {
        guard let range = text.range(of: prefix) else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }
}

/// Text appended from a pipe's handler thread and read from the test's.
private final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.lock(); data.append(d); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}
