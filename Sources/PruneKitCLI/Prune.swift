import ArgumentParser
import Dispatch
import Foundation
import PruneKit
import PruneKitHarness
import PruneKitONNX

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune a model toward a compression, speed-up or sparsity, finetune it, remove pruned channels and save it.",
        discussion: """
            Examples:
              prunekit prune --model runs/lenet5 --criterion l1-filter --speedup 2 --out runs/lenet5-x2
              prunekit prune --model lenet-5 --epochs 10 --criterion global-magnitude --compression 10 --finetune 'finetune epochs=5' --out runs/lenet5-c10
              prunekit prune --model runs/lenet5 --criterion layer-magnitude --pattern 2:4 --out runs/lenet5-2of4

            By default the pruned model is finetuned briefly ('finetune epochs=2'; --finetune none opts out), and a \
            warning says when its test accuracy falls by more than --warn-drop points.

            A zoo name is trained first, for --epochs epochs on the training split (--epochs 0 prunes it as initialised).
            Finetuning strategies choose on a validation split held out from the training data (--validation); the test
            split only reports accuracy. Channel criteria prune along dependency groups and the pruned channels are
            removed physically; weight criteria save the masked model. Nothing is written unless everything succeeds.
            """)

    @Option(help: "A saved model folder, an ONNX file, or a zoo name (trained first for --epochs).") var model: String
    @Option(help: "Criterion id (see `prunekit plugins`), optionally with options after a space ('random granularity=channel').") var criterion: String
    @Option(name: .customLong("option"), help: ArgumentHelp("A criterion option, key=value (repeatable).", valueName: "key=value"))
    var options: [String] = []
    @Option(help: "Target: prunable weights before / after (> 1).") var compression: Double?
    @Option(help: "Target: MACs of one example before / after (> 1).") var speedup: Double?
    @Option(help: "Target: the fraction of weights (or of channels) to prune, in [0, 1).") var sparsity: Double?
    @Option(help: ArgumentHelp("N:M sparsity (weight criteria): keep the N best of every M consecutive input channels of each layer, such as 2:4. The pattern is the target (sparsity 1 − N/M); layers whose input size is not a multiple of M stay dense.", valueName: "N:M"))
    var pattern: String?
    @Option(help: "Schedule id, optionally with options after a space ('iterative steps=3').") var schedule: String = "one-shot"
    @Option(name: .customLong("schedule-option"), help: ArgumentHelp("A schedule option, key=value (repeatable).", valueName: "key=value"))
    var scheduleOptions: [String] = []
    @Option(help: "Finetuning strategy id, optionally with options after a space; 'none' opts out.") var finetune: String = "finetune epochs=2"
    @Option(name: .customLong("finetune-option"), help: ArgumentHelp("A finetuning option, key=value (repeatable).", valueName: "key=value"))
    var finetuneOptions: [String] = []
    @Option(help: "Epochs of the training run: a zoo model is trained this long first; rewinding strategies and training-time schedules replay it.")
    var epochs: Int = 10
    @Option(help: "Selection scope (default: the criterion's).") var scope: ScopeName?
    @Option(name: .customLong("exclude"), help: ArgumentHelp("A layer never pruned, by dotted path (repeatable).", valueName: "path"))
    var excluded: [String] = []
    @Flag(help: "Prune the classifier (the last linear layer) too; by default it is kept whole.") var pruneClassifier = false
    @Option(help: "Channels every layer keeps at least (channel criteria).") var minimumChannels: Int = 1
    @Option(help: "Round kept channel counts up to a multiple of this (channel criteria; 8 suits CPU runtimes, Torch-Pruning's round_to).")
    var channelMultiple: Int = 1
    @Option(help: "Residual additions (channel criteria).") var residualPolicy: ResidualPolicy = .withinBlocks
    @Option(help: "A channel group's score from its layers' (channel criteria).") var groupScore: GroupScoreReduction = .mean
    @OptionGroup var data: DataOptions
    @Option(help: "Training images held out for validation (finetuning chooses on them; never the test split).")
    var validation: Int = defaultValidationImages
    @Option(help: "Calibration batches (for criteria that need data).") var batches: Int = 10
    @Option(help: "Calibration batch size.") var batchSize: Int = 64
    @Option(help: "Seed: a zoo model's weights and training, the validation split, calibration images.") var seed: UInt64 = 0
    @Option(help: "Timed runs per latency figure (the median is printed).") var latencyRuns: Int = 10
    @Option(help: "Warn when the test accuracy falls by more than this many percentage points.") var warnDrop: Double = 2
    @Option(help: "Folder to save the pruned model in (must not exist, or be empty); a path ending in .onnx writes it as an ONNX file instead.") var out: String
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    /// Every option checked at parse time: the target finite and in its range, counts in range, names known.
    func validate() throws {
        try reportingErrors {
            _ = try parsedTarget()
            _ = try parsedSettings()
            guard epochs >= 0 else { throw PruneKitError(.invalidArgument, "--epochs must be 0 or more, got \(epochs)") }
            guard latencyRuns >= 1 else { throw PruneKitError(.invalidArgument, "--latency-runs must be at least 1, got \(latencyRuns)") }
            guard validation >= 0 else { throw PruneKitError(.invalidArgument, "--validation must be 0 or more, got \(validation)") }
            guard batches >= 1 else { throw PruneKitError(.invalidArgument, "--batches must be at least 1, got \(batches)") }
            guard batchSize >= 1 else { throw PruneKitError(.invalidArgument, "--batch-size must be at least 1, got \(batchSize)") }
            guard warnDrop.isFinite, warnDrop >= 0 else {
                throw PruneKitError(.invalidArgument, "--warn-drop must be 0 or more percentage points, got \(warnDrop)")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            try engine.apply()
            let target = try parsedTarget()
            let settings = try parsedSettings()
            try checkOutput()
            plugins.load()
            // Each id may carry options after a space ('iterative steps=3'), as in compare.
            let (cc, sc, fc) = (CriterionChoice(parsing: criterion), CriterionChoice(parsing: schedule), CriterionChoice(parsing: finetune))
            let (cOptions, sOptions, fOptions) = (merged(cc.options, options), merged(sc.options, scheduleOptions), merged(fc.options, finetuneOptions))
            let c = try Registry.shared.criterion(cc.id, options: cOptions)
            if let p = settings.pattern, c.granularity != .weight {
                throw PruneKitError(.invalidArgument, "--pattern \(p) selects single weights, but '\(c.id)' is a \(c.granularity.rawValue) criterion",
                                    hint: "use a weight criterion (global-magnitude, layer-magnitude, …) with --pattern")
            }
            let s = try Registry.shared.schedule(sc.id, options: sOptions)
            try settings.pattern?.check(s)
            let f = try Registry.shared.finetune(fc.id, options: fOptions)
            let splits = try data.load(validation: validation, seed: seed)

            // The model, checked before any training.
            let source = try ModelSource.load(model) { (splits.train.imageShape, splits.train.classCount, seed) }
            let isSaved = source.origin != .zoo   // a saved or imported model is pruned as it is, not trained first
            let net = source.model
            let savedMetadata = source.metadata
            try net.checkFits(splits.train)
            let paths = net.prunableLayers().map(\.path)
            if let bad = excluded.first(where: { !paths.contains($0) }) {
                throw PruneKitError(.invalidArgument, "--exclude \(bad) names no prunable layer of the model",
                                    hint: "prunable layers: \(paths.joined(separator: ", "))")
            }
            if c.granularity == .channel { _ = try net.channelDependencies(policy: settings.policy) }
            if let problem = try net.channelRankingProblem(with: c, beforeTraining: !isSaved && epochs > 0) { throw problem }

            var training = TrainingConfiguration()
            training.epochs = epochs; training.seed = seed
            try training.validate()
            var checkpoints: [Int: [String: Tensor]] = [:]
            if !isSaved {
                if epochs == 0 {
                    print("note: '\(model)' is a zoo name and --epochs is 0: pruning the freshly initialised model")
                } else {
                    print("training \(model) for \(epochs) epochs on \(splits.train.name) (\(splits.train.count) images) before pruning")
                    let run = try net.fit(splits.train, validation: splits.validation, configuration: training,
                                          checkpointEpochs: f.checkpointEpochs, regularizer: { c.regularize($0) },
                                          epochEnded: { print(epochLine($0, of: epochs)) })
                    checkpoints = run.checkpoints
                }
            }
            let before = try measure(net, splits.test, latency: true)

            var context = FinetuneContext(train: splits.train, validation: splits.validation, training: training,
                                          checkpoints: checkpoints)
            context.originalMACs = net.macs
            context.epochEnded = { print("  finetune " + epochLine($0, of: nil)) }
            func named(_ id: String, _ options: [String]) -> String { ([id] + options).joined(separator: " ") }
            print("pruning with \(named(c.id, cOptions)) (\(c.granularity.rawValue)) toward \(target)"
                  + (settings.pattern.map { " in the N:M pattern \($0)" } ?? "") + ", schedule \(named(sc.id, sOptions)), "
                  + "finetuning \(named(fc.id, fOptions))")
            let steps = try net.prune(with: c, schedule: s, finetune: f, toward: target, context: context, settings: settings,
                                      data: splits.train, calibration: CalibrationSettings(batches: batches, batchSize: batchSize, seed: seed))
            for (i, step) in steps.enumerated() { print("  step \(i + 1)/\(steps.count): \(step.summary)") }
            let notes = steps.last?.notes ?? []

            var final = net
            var metadata = ["dataset": splits.train.name, "seed": "\(seed)", "prunekit.criterion": c.id, "prunekit.target": "\(target)"]
            metadata.merge(source.inheritedMetadata) { own, _ in own }
            if let p = settings.pattern { metadata["prunekit.pattern"] = p.description }
            var surgeryNotes: [String] = []
            if c.granularity == .channel {
                let cut = try net.removingPrunedChannels(policy: settings.policy, minimumChannels: minimumChannels)
                final = cut.model
                surgeryNotes = cut.notes
                metadata.merge(originalWidths(cut, earlier: savedMetadata[SurgeryResult.originalWidthsKey])) { _, new in new }
                print("removed \(cut.removedChannels) channels: " + cut.widths.filter { $0.before != $0.after }
                    .map { "\($0.path) \($0.before)→\($0.after)" }.joined(separator: ", "))
            }
            // Masked weights run through the same dense kernels: no latency change to measure.
            let after = try measure(final, splits.test, latency: c.granularity == .channel)
            for note in notes + surgeryNotes { print("note: \(note)") }
            printComparison(before, after)
            let drop = (before.accuracy - after.accuracy) * 100
            if drop > warnDrop {
                print("warning: test accuracy fell by " + String(format: "%.1f", drop) + " points (more than --warn-drop "
                      + String(format: "%g", warnDrop) + "): finetune longer (--finetune 'finetune epochs=10') or prune less")
            }

            if ONNX.isONNXPath(out) {
                try exportONNX(final, initializerNames: source.onnxInitializerNames)
                if c.granularity == .weight {
                    print("note: the ONNX file holds the weights dense, the pruned ones as zeros; for a file that stores only the kept weights, save to a folder (sparse safetensors)")
                }
                print("saved to \(out) (ONNX opset \(ONNX.exportOpset))")
                return
            }
            // Everything into a temporary folder beside --out, renamed at the end.
            let staging = URL(fileURLWithPath: out).deletingLastPathComponent()
                .appendingPathComponent(".\(URL(fileURLWithPath: out).lastPathComponent).partial-\(UUID().uuidString)").path
            var finished = false   // from then on the staging folder is either --out or named in the error
            defer { if !finished { try? FileManager.default.removeItem(atPath: staging) } }
            try final.save(to: staging, metadata: metadata, storage: .automatic)
            if let plan = steps.last?.plan { try plan.save(to: staging + "/plan.json") }
            let plugins: [String: Any] = ["options": cOptions, "schedule": sc.id, "schedule_options": sOptions,
                                          "finetune": fc.id, "finetune_options": fOptions]
            try writeReport(to: staging + "/pruning.json", c, plugins, target, steps, before, after, notes + surgeryNotes)
            finished = true
            try publish(staging, as: out)
            print("saved to \(out)")
        }
    }

    /// Exactly one target, in its axis' range; with --pattern, the pattern's own sparsity
    /// (no other target, or --sparsity 1 − N/M).
    private func parsedTarget() throws -> PruningTarget {
        let given = [compression.map(PruningTarget.compression), speedup.map(PruningTarget.speedup), sparsity.map(PruningTarget.sparsity)].compactMap { $0 }
        if let pattern = try parsedPattern() {
            let own = PruningTarget.sparsity(pattern.sparsity)
            guard given.allSatisfy({ if case let .sparsity(s) = $0 { return abs(s - pattern.sparsity) < 1e-9 } else { return false } }) else {
                throw PruneKitError(.invalidArgument, "--pattern \(pattern) fixes the sparsity of the layers it covers at \(pattern.sparsity); it can't prune toward \(given.map(\.description).joined(separator: " and "))",
                                    hint: "give --pattern alone (its target is sparsity 1 − N/M), or drop --pattern to reach another target")
            }
            return own
        }
        guard given.count == 1 else {
            throw PruneKitError(.invalidArgument, given.isEmpty ? "no target given" : "more than one target given",
                                hint: "give exactly one of --compression R, --speedup S or --sparsity F (or an N:M --pattern such as 2:4)")
        }
        switch given[0] {
        case let .sparsity(v) where !(v >= 0 && v < 1):
            throw PruneKitError(.invalidArgument, "--sparsity \(v) is outside [0, 1)", hint: "give the fraction to prune, such as 0.5")
        case let .compression(v) where !(v > 1 && v.isFinite):
            throw PruneKitError(.invalidArgument, "--compression \(v) must be greater than 1", hint: "a ratio of weights before / after, such as 4")
        case let .speedup(v) where !(v > 1 && v.isFinite):
            throw PruneKitError(.invalidArgument, "--speedup \(v) must be greater than 1", hint: "a ratio of MACs before / after, such as 2")
        default: return given[0]
        }
    }

    /// The selection settings the options describe.
    private func parsedSettings() throws -> TargetedPruningSettings {
        guard minimumChannels >= 1 else {
            throw PruneKitError(.invalidArgument, "--minimum-channels must be at least 1, got \(minimumChannels)", hint: "a layer never goes to zero channels")
        }
        guard channelMultiple >= 1 else {
            throw PruneKitError(.invalidArgument, "--channel-multiple must be at least 1, got \(channelMultiple)", hint: "8 or 16 for CPU runtimes; 1 keeps counts as selected")
        }
        var settings = TargetedPruningSettings(
            scope: scope?.scope,
            excluded: Set(excluded), keepClassifier: !pruneClassifier, minimumChannels: minimumChannels,
            policy: residualPolicy, reduction: groupScore)
        settings.channelMultiple = channelMultiple
        settings.pattern = try parsedPattern()
        return settings
    }

    /// `--pattern N:M`, checked: two whole numbers, 1 ≤ N < M.
    private func parsedPattern() throws -> NMPattern? {
        guard let pattern else { return nil }
        do { return try NMPattern(parsing: pattern) } catch let e as PruneKitError {
            throw PruneKitError(e.kind, "--pattern: \(e.message)", hint: e.hint)
        }
    }

    /// Options given with an id ('finetune epochs=2') and by the repeatable option: a key given
    /// by the option replaces the same key given with the id.
    private func merged(_ inline: [String], _ given: [String]) -> [String] {
        let keys = Set(given.map { $0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? $0 })
        return inline.filter { !keys.contains($0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? $0) } + given
    }

    /// Renames the finished `staging` folder to `out` in one step that never replaces
    /// anything but an empty folder: rename(2) fails when `out` has gained files since the
    /// start (or was written by another `prune`), and then the result stays in `staging`,
    /// named in the error, so neither this run's work nor the files in `out` are lost.
    private func publish(_ staging: String, as out: String) throws {
        guard rename(staging, out) == 0 else {
            let reason = errno == ENOTEMPTY || errno == EEXIST || errno == ENOTDIR
                ? "\(out) was created or filled by something else while this command ran" : String(cString: strerror(errno))
            throw PruneKitError(.io, "could not save the pruned model to \(out): \(reason); nothing in it was touched",
                                hint: "the pruned model is kept in \(staging): move it where you want it (mv \(staging) NEW-FOLDER)")
        }
    }

    /// Writes `model` to `--out` as ONNX: into a temporary sibling first, then linked to
    /// `out`, which fails rather than replace a file that appeared meanwhile.
    private func exportONNX(_ model: Model, initializerNames: [String: String]) throws {
        let url = URL(fileURLWithPath: out)
        let staging = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(UUID().uuidString)").path
        defer { unlink(staging) }
        try ONNX.export(model, to: staging, initializerNames: initializerNames)
        guard link(staging, out) == 0 else {
            throw PruneKitError(.io, "could not save the pruned model to \(out): \(errno == EEXIST ? "the file was created by something else while this command ran" : String(cString: strerror(errno)))",
                                hint: "choose another --out; nothing was replaced")
        }
    }

    private func checkOutput() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) else { return }
        let empty = isDirectory.boolValue && ((try? FileManager.default.contentsOfDirectory(atPath: out))?.isEmpty ?? false)
        guard empty else {
            throw PruneKitError(.invalidArgument, "--out \(out) already exists", hint: "choose a new folder, or remove it first")
        }
    }

    /// The widths before this surgery, or before an earlier one when the model had been cut already.
    private func originalWidths(_ cut: SurgeryResult, earlier: String?) -> [String: String] {
        guard let earlier, let data = earlier.data(using: .utf8),
              let old = (try? JSONSerialization.jsonObject(with: data)) as? [String: Int] else { return cut.metadata }
        var widths = cut.originalWidths
        widths.merge(old) { _, first in first }
        guard let json = try? JSONSerialization.data(withJSONObject: widths, options: [.sortedKeys]) else { return cut.metadata }
        return [SurgeryResult.originalWidthsKey: String(decoding: json, as: UTF8.self)]
    }

    /// Test accuracy, and the figures a trial of the harness takes (``Measure/model(_:latencyRuns:scratch:)``).
    private func measure(_ net: Model, _ test: Dataset, latency timed: Bool) throws -> PruneFigures {
        let e = try net.evaluate(test).requiringFiniteOutputs("the model on \(test.name)'s test split")
        let scratch = FileManager.default.temporaryDirectory.path
        return PruneFigures(accuracy: e.top1, figures: try Measure.model(net, latencyRuns: timed ? latencyRuns : 0, scratch: scratch))
    }

    private func printComparison(_ b: PruneFigures, _ a: PruneFigures) {
        func row(_ name: String, _ x: String, _ y: String, _ ratio: String = "") {
            print(name.padding(toLength: 22, withPad: " ", startingAt: 0) + x.padding(toLength: 16, withPad: " ", startingAt: 0)
                  + "→ " + y.padding(toLength: 16, withPad: " ", startingAt: 0) + ratio)
        }
        func times(_ x: Double, _ y: Double) -> String { "(" + Units.ratio(x, y) + ")" }
        func latencyRow(_ name: String, _ x: Double?, _ y: Double?) {
            guard let x else { return }
            guard let y else { return row(name, Units.duration(x), "—", "no change expected: masked weights run on the same dense kernels") }
            row(name, Units.duration(x), Units.duration(y), times(x, y))
        }
        print("")
        row("", "before", "after")
        row("test accuracy (top-1)", percent(b.accuracy), percent(a.accuracy))
        let (bf, af) = (b.figures, a.figures)
        row("parameters", Units.count(bf.parameters), Units.count(af.parameters), times(Double(bf.parameters), Double(af.parameters)))
        row("non-zero parameters", Units.count(bf.nonzeroParameters), Units.count(af.nonzeroParameters),
            times(Double(bf.nonzeroParameters), Double(af.nonzeroParameters)))
        row("MACs (FLOPs = 2·MACs)", Units.macs(bf.macs), Units.macs(af.macs), times(Double(bf.macs), Double(af.macs)))
        latencyRow("latency, batch 1", b.latency(batch: 1), a.latency(batch: 1))
        latencyRow("latency, batch 64", b.latency(batch: 64), a.latency(batch: 64))
        row("file size", Units.bytes(b.fileBytes), Units.bytes(a.fileBytes), times(Double(b.fileBytes), Double(a.fileBytes)))
    }

    /// `pruning.json`: what was asked (the plugins with every option in effect) and what came of it.
    private func writeReport(to path: String, _ c: any Criterion, _ plugins: [String: Any], _ target: PruningTarget,
                             _ steps: [TargetedPruning], _ before: PruneFigures, _ after: PruneFigures, _ notes: [String]) throws {
        let object: [String: Any] = plugins.merging([
            "model": model, "criterion": c.id, "target": "\(target)", "pattern": pattern.flatMap { try? NMPattern(parsing: $0).description } ?? NSNull(), "epochs": epochs, "residual_policy": residualPolicy.rawValue, "group_score": groupScore.rawValue, "excluded": excluded,
            "steps": steps.map { ["sparsity": $0.sparsity, "achieved": $0.achieved.isFinite ? $0.achieved : -1] },
            "before": before.json, "after": after.json, "notes": notes,
        ]) { _, own in own }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw PruneKitError(.io, "could not write \(path): \(error.localizedDescription)")
        }
    }
}

/// What `prunekit prune` prints before and after: the test accuracy, and the figures a
/// trial of the harness takes of a model.
struct PruneFigures {
    var accuracy: Double
    var figures: ModelFigures

    var fileBytes: Int { figures.fileBytes ?? 0 }

    /// The median seconds of one inference pass at `batch`; `nil` where not measured (a
    /// masked model runs the same dense kernels as before pruning).
    func latency(batch: Int) -> Double? { figures.latency.first { $0.batchSize == batch }?.median }

    var json: [String: Any] {
        ["top1": accuracy, "parameters": figures.parameters, "nonzero_parameters": figures.nonzeroParameters,
         "macs": figures.macs, "flops": figures.flops,
         "latency_batch1_s": latency(batch: 1) ?? NSNull(), "latency_batch64_s": latency(batch: 64) ?? NSNull(),
         "file_bytes": fileBytes]
    }
}

private func epochLine(_ r: EpochRecord, of total: Int?) -> String {
    var line = "epoch \(r.epoch + 1)\(total.map { "/\($0)" } ?? ""): loss " + String(format: "%.4f", r.trainLoss)
        + ", train accuracy \(percent(r.trainAccuracy))"
    if let v = r.validationAccuracy { line += ", validation \(percent(v))" }
    return line
}
