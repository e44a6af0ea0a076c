import ArgumentParser
import Dispatch
import Foundation
import PruneKit

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune a model toward a compression, speed-up or sparsity, finetune it, remove pruned channels and save it.",
        discussion: """
            Examples:
              prunekit prune --model runs/lenet5 --criterion l1-filter --speedup 2 --finetune finetune --finetune-option epochs=2 --out runs/lenet5-x2
              prunekit prune --model lenet-5 --epochs 10 --criterion global-magnitude --compression 10 --out runs/lenet5-c10

            A zoo name is trained first, for --epochs epochs on the training split (--epochs 0 prunes it as initialised).
            Finetuning strategies choose on a validation split held out from the training data (--validation); the test
            split only reports accuracy. Channel criteria prune along dependency groups and the pruned channels are
            removed physically; weight criteria save the masked model. Nothing is written unless everything succeeds.
            """)

    @Option(help: "A saved model folder, or a zoo name (trained first for --epochs).") var model: String
    @Option(help: "Criterion id (see `prunekit plugins`).") var criterion: String
    @Option(name: .customLong("option"), help: ArgumentHelp("A criterion option, key=value (repeatable).", valueName: "key=value"))
    var options: [String] = []
    @Option(help: "Target: prunable weights before / after (> 1).") var compression: Double?
    @Option(help: "Target: MACs of one example before / after (> 1).") var speedup: Double?
    @Option(help: "Target: the fraction of weights (or of channels) to prune, in [0, 1).") var sparsity: Double?
    @Option(help: "Schedule id.") var schedule: String = "one-shot"
    @Option(name: .customLong("schedule-option"), help: ArgumentHelp("A schedule option, key=value (repeatable).", valueName: "key=value"))
    var scheduleOptions: [String] = []
    @Option(help: "Finetuning strategy id.") var finetune: String = "none"
    @Option(name: .customLong("finetune-option"), help: ArgumentHelp("A finetuning option, key=value (repeatable).", valueName: "key=value"))
    var finetuneOptions: [String] = []
    @Option(help: "Epochs of the training run: a zoo model is trained this long first; rewinding strategies and training-time schedules replay it.")
    var epochs: Int = 10
    @Option(help: "Selection scope: global or layer (default: the criterion's).") var scope: String?
    @Option(name: .customLong("exclude"), help: ArgumentHelp("A layer never pruned, by dotted path (repeatable).", valueName: "path"))
    var excluded: [String] = []
    @Option(help: "Channels every layer keeps at least (channel criteria).") var minimumChannels: Int = 1
    @Option(help: "Residual additions (channel criteria): within-blocks or whole-stream.") var residualPolicy: String = "within-blocks"
    @Option(help: "A channel group's score from its layers' (channel criteria): mean, max or sum.") var groupScore: String = "mean"
    @OptionGroup var data: DataOptions
    @Option(help: "Training images held out for validation (finetuning chooses on them; never the test split).")
    var validation: Int = 500
    @Option(help: "Calibration batches (for criteria that need data).") var batches: Int = 10
    @Option(help: "Calibration batch size.") var batchSize: Int = 64
    @Option(help: "Seed: a zoo model's weights and training, the validation split, calibration images.") var seed: UInt64 = 0
    @Option(help: "Timed runs per latency figure (the median is printed).") var latencyRuns: Int = 10
    @Option(help: "Folder to save the pruned model in (must not exist, or be empty).") var out: String
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            let target = try parsedTarget()
            let policy = try parsed(ResidualPolicy.allCases, residualPolicy, "--residual-policy")
            let reduction = try parsed(GroupScoreReduction.allCases, groupScore, "--group-score")
            let scopeValue = try scope.map { try parsed([SelectionSettings.Scope.global, .perLayer], $0, "--scope") }
            guard epochs >= 0 else { throw PruneKitError(.invalidArgument, "--epochs must be 0 or more, got \(epochs)") }
            guard latencyRuns >= 1 else { throw PruneKitError(.invalidArgument, "--latency-runs must be at least 1, got \(latencyRuns)") }
            guard minimumChannels >= 1 else {
                throw PruneKitError(.invalidArgument, "--minimum-channels must be at least 1, got \(minimumChannels)", hint: "a layer never goes to zero channels")
            }
            try checkOutput()
            plugins.load()
            let c = try Registry.shared.criterion(criterion, options: options)
            let s = try Registry.shared.schedule(schedule, options: scheduleOptions)
            let f = try Registry.shared.finetune(finetune, options: finetuneOptions)
            let splits = try data.load(validation: validation, seed: seed)

            // The model, checked before any training.
            let isSaved = FileManager.default.fileExists(atPath: model)
            let net: Model
            var savedMetadata: [String: String] = [:]
            if isSaved {
                net = try Model.load(from: model)
                savedMetadata = (try? Model.savedMetadata(in: model)) ?? [:]
            } else if ModelZoo.names.contains(model) {
                net = try ModelZoo.make(model, inputShape: splits.train.imageShape, classCount: splits.train.classCount, seed: seed)
            } else {
                throw PruneKitError(.invalidArgument, "'\(model)' is neither a saved model folder nor a zoo model",
                                    hint: "zoo models: \(ModelZoo.names.joined(separator: ", "))")
            }
            try net.checkFits(splits.train)
            let paths = net.prunableLayers().map(\.path)
            if let bad = excluded.first(where: { !paths.contains($0) }) {
                throw PruneKitError(.invalidArgument, "--exclude \(bad) names no prunable layer of the model",
                                    hint: "prunable layers: \(paths.joined(separator: ", "))")
            }
            if c.granularity == .channel { _ = try net.channelDependencies(policy: policy) }
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
            let before = try measure(net, splits.test)

            var context = FinetuneContext(train: splits.train, validation: splits.validation, training: training,
                                          checkpoints: checkpoints)
            context.originalMACs = net.macs
            context.epochEnded = { print("  finetune " + epochLine($0, of: nil)) }
            let settings = TargetedPruningSettings(scope: scopeValue, excluded: Set(excluded), minimumChannels: minimumChannels,
                                                   policy: policy, reduction: reduction)
            print("pruning with \(c.id) (\(c.granularity.rawValue)) toward \(target), schedule \(type(of: s).id), finetuning \(type(of: f).id)")
            let steps = try net.prune(with: c, schedule: s, finetune: f, toward: target, context: context, settings: settings,
                                      data: splits.train, calibration: CalibrationSettings(batches: batches, batchSize: batchSize, seed: seed))
            for (i, step) in steps.enumerated() { print("  step \(i + 1)/\(steps.count): \(step.summary)") }
            let notes = steps.last?.notes ?? []

            var final = net
            var metadata = ["dataset": splits.train.name, "seed": "\(seed)", "prunekit.criterion": c.id, "prunekit.target": "\(target)"]
            var surgeryNotes: [String] = []
            if c.granularity == .channel {
                let cut = try net.removingPrunedChannels(policy: policy, minimumChannels: minimumChannels)
                final = cut.model
                surgeryNotes = cut.notes
                metadata.merge(originalWidths(cut, earlier: savedMetadata[SurgeryResult.originalWidthsKey])) { _, new in new }
                print("removed \(cut.removedChannels) channels: " + cut.widths.filter { $0.before != $0.after }
                    .map { "\($0.path) \($0.before)→\($0.after)" }.joined(separator: ", "))
            }
            let after = try measure(final, splits.test)
            for note in notes + surgeryNotes { print("note: \(note)") }
            printComparison(before, after)

            // Everything into a temporary folder beside --out, renamed at the end.
            let staging = URL(fileURLWithPath: out).deletingLastPathComponent()
                .appendingPathComponent(".\(URL(fileURLWithPath: out).lastPathComponent).partial-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: staging) }
            try final.save(to: staging, metadata: metadata, storage: .automatic)
            if let plan = steps.last?.plan { try plan.save(to: staging + "/plan.json") }
            try writeReport(to: staging + "/pruning.json", c, target, steps, before, after, notes + surgeryNotes)
            try? FileManager.default.removeItem(atPath: out)   // empty, checked above
            do {
                try FileManager.default.moveItem(atPath: staging, toPath: out)
            } catch {
                throw PruneKitError(.io, "could not move the pruned model to \(out): \(error.localizedDescription)")
            }
            print("saved to \(out)")
        }
    }

    /// Exactly one target, in its axis' range.
    private func parsedTarget() throws -> PruningTarget {
        let given = [compression.map(PruningTarget.compression), speedup.map(PruningTarget.speedup), sparsity.map(PruningTarget.sparsity)].compactMap { $0 }
        guard given.count == 1 else {
            throw PruneKitError(.invalidArgument, given.isEmpty ? "no target given" : "more than one target given",
                                hint: "give exactly one of --compression R, --speedup S or --sparsity F")
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

    private func parsed<T: RawRepresentable>(_ cases: [T], _ text: String, _ option: String) throws -> T where T.RawValue == String {
        guard let v = cases.first(where: { $0.rawValue == text }) else {
            throw PruneKitError(.invalidArgument, "\(option) '\(text)' is not known",
                                hint: "use one of: \(cases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
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

    private func measure(_ net: Model, _ test: Dataset) throws -> ModelFigures {
        let e = net.evaluate(test)
        let nonzero = net.trainableParameters.reduce(0) { total, p in
            total + (p.mask.map { m in m.scalars.filter { $0 != 0 }.count } ?? p.value.count)
        }
        return ModelFigures(accuracy: e.top1, parameters: net.parameterCount, nonzeroParameters: nonzero, macs: net.macs,
                            latency1: try latency(net, batch: 1, runs: latencyRuns),
                            latency64: try latency(net, batch: 64, runs: latencyRuns),
                            fileBytes: try savedSize(net))
    }

    private func printComparison(_ b: ModelFigures, _ a: ModelFigures) {
        func row(_ name: String, _ x: String, _ y: String, _ ratio: String = "") {
            print(name.padding(toLength: 22, withPad: " ", startingAt: 0) + x.padding(toLength: 16, withPad: " ", startingAt: 0)
                  + "→ " + y.padding(toLength: 16, withPad: " ", startingAt: 0) + ratio)
        }
        func times(_ x: Double, _ y: Double) -> String { y > 0 ? String(format: "(%.2f×)", x / y) : "" }
        print("")
        row("", "before", "after")
        row("test accuracy (top-1)", percent(b.accuracy), percent(a.accuracy))
        row("parameters", "\(b.parameters)", "\(a.parameters)", times(Double(b.parameters), Double(a.parameters)))
        row("non-zero parameters", "\(b.nonzeroParameters)", "\(a.nonzeroParameters)", times(Double(b.nonzeroParameters), Double(a.nonzeroParameters)))
        row("FLOPs (2·MACs)", "\(2 * b.macs)", "\(2 * a.macs)", times(Double(b.macs), Double(a.macs)))
        row("latency, batch 1", milliseconds(b.latency1), milliseconds(a.latency1), times(b.latency1, a.latency1))
        row("latency, batch 64", milliseconds(b.latency64), milliseconds(a.latency64), times(b.latency64, a.latency64))
        row("file size", bytes(b.fileBytes), bytes(a.fileBytes), times(Double(b.fileBytes), Double(a.fileBytes)))
    }

    private func writeReport(to path: String, _ c: any Criterion, _ target: PruningTarget, _ steps: [TargetedPruning],
                             _ before: ModelFigures, _ after: ModelFigures, _ notes: [String]) throws {
        let object: [String: Any] = [
            "model": model, "criterion": c.id, "options": options, "target": "\(target)",
            "schedule": schedule, "schedule_options": scheduleOptions, "finetune": finetune, "finetune_options": finetuneOptions,
            "epochs": epochs, "residual_policy": residualPolicy, "group_score": groupScore, "excluded": excluded,
            "steps": steps.map { ["sparsity": $0.sparsity, "achieved": $0.achieved.isFinite ? $0.achieved : -1] },
            "before": before.json, "after": after.json, "notes": notes,
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        do { try data.write(to: URL(fileURLWithPath: path)) } catch {
            throw PruneKitError(.io, "could not write \(path): \(error.localizedDescription)")
        }
    }
}

/// What `prunekit prune` prints before and after.
struct ModelFigures {
    var accuracy: Double
    var parameters: Int, nonzeroParameters: Int
    var macs: Int
    /// Median seconds of one inference pass.
    var latency1: Double, latency64: Double
    var fileBytes: Int

    var json: [String: Any] {
        ["top1": accuracy, "parameters": parameters, "nonzero_parameters": nonzeroParameters, "macs": macs, "flops": 2 * macs,
         "latency_batch1_s": latency1, "latency_batch64_s": latency64, "file_bytes": fileBytes]
    }
}

/// The median seconds of `runs` inference passes over a random batch (``Model/measureLatency(batchSize:runs:warmup:)``).
func latency(_ model: Model, batch: Int, runs: Int) throws -> Double {
    try model.measureLatency(batchSize: batch, runs: runs, warmup: 2).median
}

/// Bytes the model takes saved with automatic storage (sparse where that is smaller),
/// measured in a temporary folder.
func savedSize(_ model: Model) throws -> Int {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-size-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try model.save(to: dir, storage: .automatic)
    return try ModelIO.savedSize(of: dir)
}

func milliseconds(_ s: Double) -> String { String(format: "%.3f ms", s * 1e3) }

func bytes(_ n: Int) -> String {
    n >= 1 << 20 ? String(format: "%.2f MiB", Double(n) / Double(1 << 20))
        : n >= 1 << 10 ? String(format: "%.1f KiB", Double(n) / 1024) : "\(n) B"
}

private func epochLine(_ r: EpochRecord, of total: Int?) -> String {
    var line = "epoch \(r.epoch + 1)\(total.map { "/\($0)" } ?? ""): loss " + String(format: "%.4f", r.trainLoss)
        + ", train accuracy \(percent(r.trainAccuracy))"
    if let v = r.validationAccuracy { line += ", validation \(percent(v))" }
    return line
}
