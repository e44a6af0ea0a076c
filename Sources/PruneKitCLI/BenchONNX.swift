import ArgumentParser
import Dispatch
import Foundation
import PruneKit
import PruneKitHarness
import PruneKitONNX

/// `prunekit bench onnx`: ONNX models (full-size torchvision exports) imported, pruned to a
/// MACs speed-up with a data-free channel criterion, cut, exported, and run in ONNX Runtime
/// before and after; PruneKit's own forward beside ONNX Runtime's on the same inputs' shape.
struct ONNXBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx",
        abstract: "ONNX models imported, pruned to a speed-up, exported: import time and memory, params and MACs, ONNX Runtime latency before → after, PruneKit's forward beside ONNX Runtime's.",
        discussion: """
        Each FILE is imported (time, and how far the process's resident memory rose at its peak during the import), \
        pruned toward --speedup with --criterion (a data-free channel criterion: l1-filter, fpgm), \
        its pruned channels removed, and exported to ONNX before and after. ONNX Runtime (from \
        --python, which must import onnxruntime and numpy) times both exports at each batch size \
        with --threads intra-op threads; PruneKit times its own forward of the unpruned model at the \
        same batch sizes and threads, in this process, just before.

        Full-size torchvision exports: Tests/Fixtures/ONNX/export_torchvision.py --out DIR \
        (random weights; timing does not depend on them).

        Example:
          prunekit bench onnx /tmp/tv/resnet50.onnx /tmp/tv/vgg16_bn.onnx --batch-sizes 1,32 --threads 2
        """)

    @Argument(help: ArgumentHelp("ONNX files to benchmark.", valueName: "file"))
    var files: [String]
    @Option(help: "The channel criterion to prune with (data-free).") var criterion = "l1-filter"
    @Option(help: "The MACs speed-up to prune toward.") var speedup = 2.0
    @Option(help: "Round kept channel counts up to a multiple of this (see prune --channel-multiple).") var channelMultiple = 1
    @Option(help: "Residual additions (see prune --residual-policy).") var residualPolicy: ResidualPolicy = .withinBlocks
    @Option(help: "Batch sizes to time, comma-separated.") var batchSizes = "1,32"
    @Option(help: "Timed passes per model and batch size (the median is reported).") var runs = 5
    @Option(help: ArgumentHelp("A Python with onnxruntime and numpy (default: .build/onnx-venv/bin/python if it exists, else python3).", valueName: "path"))
    var python: String?
    @Option(help: ArgumentHelp("Keep the exported models in this directory (default: a temporary one, removed).", valueName: "dir"))
    var out: String?
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        guard speedup.isFinite, speedup > 1 else { throw ValidationError("--speedup must be a number above 1, got \(speedup)") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
        guard channelMultiple >= 1 else { throw ValidationError("--channel-multiple must be at least 1, got \(channelMultiple)") }
        guard (try? parsedBatchSizes()) != nil else { throw ValidationError("--batch-sizes takes positive integers separated by commas, got '\(batchSizes)'") }
    }

    private func parsedBatchSizes() throws -> [Int] {
        let sizes = batchSizes.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw ValidationError("bad batch sizes") }
        return sizes.map { $0! }
    }

    func run() throws {
        try reportingErrors {
            try engine.apply()
            warnIfDebugBuild()
            plugins.load()
            let batches = try parsedBatchSizes()
            let c = try Registry.shared.criterion(criterion)
            guard c.granularity == .channel, c.evidence.isEmpty else {
                throw PruneKitError(.invalidArgument, "bench onnx prunes without data, with a channel criterion; '\(c.id)' is a \(c.granularity.rawValue) criterion\(c.evidence.isEmpty ? "" : " that needs data")",
                                    hint: "use l1-filter or fpgm")
            }
            let runtime = try ONNXRuntimeTimer(python: python)
            let fm = FileManager.default
            let directory = out ?? fm.temporaryDirectory.appendingPathComponent("prunekit-bench-onnx-\(getpid())").path
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { if out == nil { try? fm.removeItem(atPath: directory) } }

            print("PruneKit ONNX benchmark — \(Parallel.threadCount) thread(s); \(c.id) toward a \(Units.ratio(speedup, 1)) MACs speed-up"
                  + (channelMultiple > 1 ? ", kept channels in multiples of \(channelMultiple)" : "")
                  + ", residual policy \(residualPolicy.rawValue); \(runtime.version)")
            var rows: [Row] = [], failures: [(name: String, error: String)] = []
            for file in files {
                let name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
                print("\n\(name): importing \(file)")
                do {
                    let resident = PeakMemory.reset()
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let imported = try ONNX.importModel(contentsOf: file)
                    let importSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                    let peak = PeakMemory.rise(since: resident)
                    let model = imported.model
                    model.mode = .inference
                    let before = (params: model.parameterCount, macs: model.macs)
                    let densePath = "\(directory)/\(name).onnx", prunedPath = "\(directory)/\(name)-pruned.onnx"
                    try ONNX.export(model, to: densePath, initializerNames: imported.initializerNames)
                    // Both exports run in ONNX Runtime on two random examples, against PruneKit's outputs.
                    var rng = RandomGenerator(seed: 0, stream: "bench-onnx")
                    let probe = Tensor.randomNormal([2] + model.inputShape, using: &rng)
                    let denseOutput = model.forward(probe)

                    var ownTimes: [Int: Double] = [:]
                    for b in batches { ownTimes[b] = try model.measureLatency(batchSize: b, runs: runs, warmup: 1).median }

                    var settings = TargetedPruningSettings(policy: residualPolicy)
                    settings.channelMultiple = channelMultiple
                    let pruning = try model.prune(with: c, toward: .speedup(speedup), settings: settings, data: nil)
                    let cut = try model.removingPrunedChannels(policy: residualPolicy)
                    let pruned = cut.model
                    let after = (params: pruned.parameterCount, macs: pruned.macs)
                    try ONNX.export(pruned, to: prunedPath, initializerNames: imported.initializerNames)
                    for note in pruning.notes + cut.notes { print("  note: \(note)") }

                    pruned.mode = .inference
                    let checks = [densePath: ONNXRuntimeTimer.Check(input: probe, output: denseOutput),
                                  prunedPath: ONNXRuntimeTimer.Check(input: probe, output: pruned.forward(probe))]
                    let ort = try runtime.medians(files: [densePath, prunedPath], batches: batches, runs: runs, checks: checks, scratch: directory)
                    let row = Row(name: name, importSeconds: importSeconds, peakBytes: peak, before: before, after: after,
                                  ortBefore: ort.times[densePath] ?? [:], ortAfter: ort.times[prunedPath] ?? [:], own: ownTimes,
                                  errors: (ort.errors[densePath] ?? .infinity, ort.errors[prunedPath] ?? .infinity))
                    rows.append(row)
                    print(row.detail(batches: batches))
                } catch {
                    // One model that can't be carried does not stop the others.
                    let message = (error as? PruneKitError)?.message ?? "\(error)"
                    failures.append((name, message))
                    print("  not carried: \(message)")
                }
            }
            print("\nmodel              import   mem rise   params before → after        MACs before → after        ONNX Runtime vs PruneKit (before, after)")
            for r in rows { print(r.summaryLine) }
            let differing = rows.filter { !$0.agrees }.map(\.name)
            print("\(rows.count - differing.count) of \(files.count) models imported, pruned, exported and agree with ONNX Runtime"
                  + (differing.isEmpty ? "" : "; differ: \(differing.joined(separator: ", "))"))
            for f in failures { print("not carried: \(f.name): \(f.error)") }
            print("\nONNX Runtime latency (ms), unpruned → pruned export, and PruneKit's forward of the unpruned model beside ONNX Runtime's")
            print("model            " + batches.map { String(format: "  batch %-3d  ORT before → after (speed-up)   PruneKit / ORT", $0) }.joined())
            for r in rows { print(r.latencyLine(batches: batches)) }
            if !failures.isEmpty || !differing.isEmpty {
                throw PruneKitError(.invalidFile, "\(failures.count + differing.count) of \(files.count) models were not carried end to end",
                                    hint: "the lines 'not carried' and 'differ' above say which and why")
            }
        }
    }

    struct Row {
        let name: String
        let importSeconds: Double
        let peakBytes: Int?
        let before: (params: Int, macs: Int)
        let after: (params: Int, macs: Int)
        let ortBefore: [Int: Double], ortAfter: [Int: Double], own: [Int: Double]
        /// ONNX Runtime's largest output difference from PruneKit's, relative, before and after.
        let errors: (before: Double, after: Double)

        /// Whether ONNX Runtime's outputs agree with PruneKit's to 1e-4 of the largest, both exports.
        var agrees: Bool { errors.before <= 1e-4 && errors.after <= 1e-4 }

        var summaryLine: String {
            name.padding(toLength: 17, withPad: " ", startingAt: 0)
                + String(format: "%6.2f s  %9@   %@ → %@ (%@)   %@ → %@ (%@)   %@ (%.1e, %.1e)", importSeconds, peakBytes.map(Units.bytes) ?? "?",
                         Units.count(before.params), Units.count(after.params), Units.ratio(Double(before.params), Double(after.params)),
                         Units.macs(before.macs), Units.macs(after.macs), Units.ratio(Double(before.macs), Double(after.macs)),
                         agrees ? "agree" : "DIFFER", errors.before, errors.after)
        }

        func latencyLine(batches: [Int]) -> String {
            name.padding(toLength: 17, withPad: " ", startingAt: 0) + batches.map { b -> String in
                guard let x = ortBefore[b], let y = ortAfter[b], let o = own[b] else { return "  (not timed)" }
                return String(format: "  %9.1f → %8.1f (%@)        %@", x * 1e3, y * 1e3, Units.ratio(x, y), Units.ratio(o, x))
            }.joined()
        }

        func detail(batches: [Int]) -> String {
            "  " + summaryLine.trimmingCharacters(in: .whitespaces) + "\n  " + latencyLine(batches: batches).trimmingCharacters(in: .whitespaces)
        }
    }
}

/// How much the process's resident memory rose at its peak during a step: the high-water
/// mark (`VmHWM`) is reset to the current resident size (Linux `clear_refs` 5) before it,
/// and read after it. Memory freed earlier but kept by malloc counts as resident, so the
/// figure is the rise above what the process already held.
enum PeakMemory {
    /// Resets the high-water mark; returns the resident bytes now, or nil where it can't.
    static func reset() -> Int? {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard write(fd, "5", 1) == 1 else { return nil }
        let resident = memoryStatus("VmRSS")
        return resident > 0 ? Int(resident) : nil
    }

    /// The rise of the high-water mark above `start` (from ``reset()``), in bytes.
    static func rise(since start: Int?) -> Int? {
        let peak = memoryStatus("VmHWM")
        guard let start, peak > 0 else { return nil }
        return max(Int(peak) - start, 0)
    }
}

/// Times ONNX files in ONNX Runtime, in a Python subprocess: median seconds of one
/// `InferenceSession.run` per file and batch size, on random float32 inputs, with the
/// engine's thread count as intra-op threads (sequential execution, default graph
/// optimisations, the CPU provider).
struct ONNXRuntimeTimer {
    let python: String
    let version: String

    private static let script = #"""
    import json, sys, time
    import numpy as np
    import onnxruntime as ort
    args = json.loads(sys.argv[1])
    options = ort.SessionOptions()
    options.intra_op_num_threads = args["threads"]
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    result = {}
    for path in args["files"]:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in first.shape]
        times = {}
        check = args["checks"].get(path)
        if check:
            x = np.fromfile(check["input"], dtype=np.float32).reshape(check["input_shape"])
            expected = np.fromfile(check["output"], dtype=np.float32)
            got = session.run(None, {first.name: x})[0].astype(np.float32).reshape(-1)
            scale = max(float(np.abs(expected).max()), 1e-12)
            times["error"] = float(np.abs(got - expected).max()) / scale if got.shape == expected.shape else float("inf")
        for batch in args["batches"]:
            x = np.random.default_rng(0).standard_normal([batch] + shape[1:]).astype(np.float32)
            session.run(None, {first.name: x})
            seconds = []
            for _ in range(args["runs"]):
                t = time.perf_counter()
                session.run(None, {first.name: x})
                seconds.append(time.perf_counter() - t)
            times[str(batch)] = sorted(seconds)[len(seconds) // 2]
        result[path] = times
    print(json.dumps(result))
    """#

    init(python given: String?) throws {
        let local = FileManager.default.currentDirectoryPath + "/.build/onnx-venv/bin/python"
        python = given ?? (FileManager.default.isExecutableFile(atPath: local) ? local : "python3")
        let probe = try ONNXRuntimeTimer.run(python, ["-c", "import onnxruntime, numpy; print(onnxruntime.__version__)"])
        guard probe.status == 0 else {
            throw PruneKitError(.invalidArgument, "\(python) cannot import onnxruntime and numpy: \(probe.output.split(separator: "\n").last ?? "")",
                                hint: "python3 -m venv .build/onnx-venv && .build/onnx-venv/bin/pip install onnxruntime numpy (or pass --python)")
        }
        version = "ONNX Runtime " + probe.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// What ONNX Runtime's output on `input` is checked against: PruneKit's `output`.
    struct Check {
        let input: Tensor
        let output: Tensor
    }

    /// {file: {batch size: median seconds}}, and each checked file's largest output
    /// difference from PruneKit's, relative to PruneKit's largest output (key `error`).
    func medians(files: [String], batches: [Int], runs: Int, checks: [String: Check] = [:], scratch: String) throws -> (times: [String: [Int: Double]], errors: [String: Double]) {
        var checkFiles: [String: Any] = [:]
        for (file, check) in checks {
            let stem = scratch + "/" + URL(fileURLWithPath: file).lastPathComponent
            try check.input.scalars.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: stem + ".input.bin")) }
            try check.output.scalars.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: stem + ".output.bin")) }
            checkFiles[file] = ["input": stem + ".input.bin", "output": stem + ".output.bin", "input_shape": check.input.shape]
        }
        let request: [String: Any] = ["files": files, "batches": batches, "runs": runs, "threads": Parallel.threadCount, "checks": checkFiles]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: request), as: UTF8.self)
        let result = try ONNXRuntimeTimer.run(python, ["-c", ONNXRuntimeTimer.script, json])
        guard result.status == 0, let line = result.output.split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [String: Double]] else {
            throw PruneKitError(.io, "ONNX Runtime could not run \(files.joined(separator: ", ")): \(result.output.suffix(600))",
                                hint: "check the exported files with .ci/onnx-check, or run them in onnxruntime by hand")
        }
        return (object.mapValues { Dictionary(uniqueKeysWithValues: $0.compactMap { k, v in Int(k).map { ($0, v) } }) },
                object.compactMapValues { $0["error"] })
    }

    private static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch {
            throw PruneKitError(.invalidArgument, "cannot run \(executable): \(error.localizedDescription)", hint: "pass --python PATH")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
