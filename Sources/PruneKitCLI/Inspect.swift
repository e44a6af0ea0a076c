import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness
import PruneKitONNX

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a model's per-layer cost: channels before → after, parameters, MACs, FLOPs; its file size; its latency.",
        discussion: """
            MACs are the multiply–accumulates of convolution and linear layers for one example's \
            forward pass; FLOPs = 2 × MACs; BatchNorm, activations and pooling are not counted. \
            "nz MACs" counts only multiplications by non-zero weights (unstructured sparsity). \
            Channels before come from the metadata key prunekit.original-widths that pruning writes.
            Example: prunekit inspect --model runs/lenet5-pruned --latency
            """)

    @Option(help: "A saved model folder, an ONNX file, or a zoo name (freshly initialised).") var model: String
    @Option(help: "For a zoo model: the data set whose input shape and classes to use.")
    var dataset: String = DatasetCatalog.defaultName
    @Flag(help: "Measure inference latency at batch 1 and 64 (use a release build).") var latency = false
    @Option(help: "Timed forward passes per batch size (with --latency).") var latencyRuns: Int = 20
    @Option(name: .customLong("runs"), help: .hidden) var runsAlias: Int?
    @Option(help: "Untimed warm-up passes per batch size (with --latency).") var latencyWarmup: Int = 3
    @Option(name: .customLong("warmup"), help: .hidden) var warmupAlias: Int?
    @Option(help: "Output format.") var format: OutputFormat = .table
    @Flag(name: .customLong("json"), help: .hidden) var jsonAlias = false
    @OptionGroup var engine: EngineOptions

    private var runs: Int { runsAlias ?? latencyRuns }
    private var warmup: Int { warmupAlias ?? latencyWarmup }

    func validate() throws {
        try reportingErrors {
            guard runs >= 1, warmup >= 0 else {
                throw PruneKitError(.invalidArgument, "--latency-runs must be at least 1 and --latency-warmup at least 0, got \(runs) and \(warmup)",
                                    hint: "the defaults, --latency-runs 20 --latency-warmup 3, give a stable median")
            }
        }
    }

    /// The metadata key holding {dotted path: output channels before pruning}.
    static let originalWidthsKey = "prunekit.original-widths"

    func run() throws {
        try reportingErrors {
            try engine.apply()
            let net: Model
            var file: FileFacts?
            var before: [String: Int] = [:]
            if ONNX.isONNXPath(model) {
                net = try ModelSource.load(model, zoo: nil).model
                let bytes = (try? FileManager.default.attributesOfItem(atPath: model)[.size] as? Int) ?? 0
                file = FileFacts(files: [(URL(fileURLWithPath: model).lastPathComponent, bytes)], sparse: [],
                                 parameterTensors: net.namedParameters.count)
            } else if FileManager.default.fileExists(atPath: model) {
                net = try Model.load(from: model)
                let metadata = try Model.savedMetadata(in: model)
                before = try Inspect.originalWidths(metadata[Inspect.originalWidthsKey], source: model)
                file = FileFacts(files: try ModelIO.savedFiles(of: model), sparse: try ModelIO.sparseTensors(in: model),
                                 parameterTensors: net.namedParameters.count)
            } else if ModelZoo.names.contains(model) {
                let (shape, classes) = try Inspect.inputShape(of: dataset)
                net = try ModelZoo.make(model, inputShape: shape, classCount: classes, seed: 0)
                // What it would take on disk: save it, dense, to a scratch directory.
                let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-inspect-\(UUID().uuidString)").path
                defer { try? FileManager.default.removeItem(atPath: scratch) }
                try net.save(to: scratch)
                file = FileFacts(files: try ModelIO.savedFiles(of: scratch), sparse: [], parameterTensors: net.namedParameters.count,
                                 unsaved: true)
            } else {
                throw ModelSource.unknown(model, zooAllowed: true)
            }
            let cost = net.cost
            let unknown = before.keys.filter { cost.layer($0) == nil }.sorted()
            guard unknown.isEmpty else {
                throw PruneKitError(.invalidFile, "\(model): '\(Inspect.originalWidthsKey)' names \(unknown.map { "'\($0)'" }.joined(separator: ", ")), which the model has no layer of",
                                    hint: "the metadata does not belong to this model; save it again")
            }
            var latencies: [LatencyMeasurement] = []
            if latency {
                for batch in [1, 64] { latencies.append(try net.measureLatency(batchSize: batch, runs: runs, warmup: warmup)) }
            }
            if format == .json || jsonAlias {
                try printJSON(net, cost, before: before, file: file, latencies: latencies)
            } else {
                printTable(net, cost, before: before, file: file, latencies: latencies)
            }
        }
    }

    struct FileFacts {
        var files: [(name: String, bytes: Int)]
        var sparse: [String]
        var parameterTensors: Int
        var unsaved = false
        var bytes: Int { files.reduce(0) { $0 + $1.bytes } }
        var storage: String {
            sparse.isEmpty ? "dense" : sparse.count == parameterTensors ? "sparse" : "mixed"
        }
    }

    /// Reads `prunekit.original-widths`: a JSON object {dotted path: channels}.
    static func originalWidths(_ text: String?, source: String) throws -> [String: Int] {
        guard let text else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw PruneKitError(.invalidFile, "\(source): the metadata '\(originalWidthsKey)' is not a JSON object {dotted path: channels}")
        }
        var widths: [String: Int] = [:]
        for (path, value) in object {
            guard let n = value as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue >= 0 else {
                throw PruneKitError(.invalidFile, "\(source): the metadata '\(originalWidthsKey)' gives '\(path)' the width \(value), not a channel count")
            }
            widths[path] = n.intValue
        }
        return widths
    }

    /// The per-example input shape and class count of a data set, without reading it.
    static func inputShape(of dataset: String) throws -> ([Int], Int) {
        switch dataset.lowercased().replacingOccurrences(of: "_", with: "-") {
        case "mnist-5k", "mnist", "fashion-mnist": return ([1, 28, 28], 10)
        case "cifar-10": return ([3, 32, 32], 10)
        case "cifar-100": return ([3, 32, 32], 100)
        default:
            throw PruneKitError(.invalidArgument, "unknown data set '\(dataset)'",
                                hint: "known data sets: \(DatasetCatalog.names.joined(separator: ", "))")
        }
    }

    private func printTable(_ net: Model, _ cost: ModelCost, before: [String: Int], file: FileFacts?, latencies: [LatencyMeasurement]) {
        let sparse = cost.sparseMACs != cost.macs
        let group = Units.count
        func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
            s.count >= width ? s : left ? s + String(repeating: " ", count: width - s.count)
                                        : String(repeating: " ", count: width - s.count) + s
        }
        let pathWidth = max(14, cost.layers.map(\.path.count).max() ?? 0) + 2
        print("\(net.architecture), input \(net.inputShape.map(String.init).joined(separator: "×")), \(cost.layers.count) layers with parameters or MACs")
        var header = pad("layer", pathWidth, left: true) + pad("kind", 11, left: true) + pad("out channels", 14, left: true)
            + pad("params", 12) + pad("non-zero", 12) + pad("MACs", 14) + pad("FLOPs", 14)
        if sparse { header += pad("nz MACs", 14) }
        print(header)
        for l in cost.layers {
            let b = before[l.path] ?? l.outputChannels
            var row = pad(l.path, pathWidth, left: true) + pad(l.kind.rawValue, 11, left: true)
                + pad("\(b) → \(l.outputChannels)", 14, left: true)
                + pad(group(l.parameters), 12) + pad(group(l.nonZeroParameters), 12)
                + pad(group(l.macs), 14) + pad(group(l.flops), 14)
            if sparse { row += pad(group(l.sparseMACs), 14) }
            print(row)
        }
        var total = pad("total", pathWidth + 25, left: true) + pad(group(cost.parameters), 12)
            + pad(group(cost.nonZeroParameters), 12) + pad(group(cost.macs), 14) + pad(group(cost.flops), 14)
        if sparse { total += pad(group(cost.sparseMACs), 14) }
        print(total)
        print("MACs: multiply–accumulates of conv and linear layers for one example; FLOPs = 2 × MACs.")
        if let file {
            let parts = file.files.map { "\($0.name) \(Units.bytes($0.bytes))" }.joined(separator: ", ")
            if file.unsaved {
                print("file: not saved; dense it takes \(Units.bytes(file.bytes)) (\(parts))")
            } else {
                print("file: \(Units.bytes(file.bytes)) (\(parts)); storage: \(file.storage)"
                      + (file.storage == "mixed" ? " (\(file.sparse.count) of \(file.parameterTensors) tensors sparse)" : ""))
            }
        }
        for m in latencies {
            print("latency, batch \(m.batchSize): median \(Units.duration(m.median)) (p10 \(Units.duration(m.p10)), p90 \(Units.duration(m.p90)); "
                  + "\(m.runs) runs, \(m.threads) threads), \(Units.count(Int(m.throughput.rounded()))) images/s")
        }
    }

    private func printJSON(_ net: Model, _ cost: ModelCost, before: [String: Int], file: FileFacts?, latencies: [LatencyMeasurement]) throws {
        var object: [String: Any] = [
            "model": model, "architecture": net.architecture, "input_shape": net.inputShape,
            "layers": cost.layers.map { l -> [String: Any] in
                ["path": l.path, "kind": l.kind.rawValue,
                 "input_channels": l.inputChannels, "output_channels": l.outputChannels,
                 "output_channels_before": before[l.path] ?? l.outputChannels,
                 "parameters": l.parameters, "non_zero_parameters": l.nonZeroParameters,
                 "macs": l.macs, "flops": l.flops, "sparse_macs": l.sparseMACs, "sparse_flops": l.sparseFLOPs]
            },
            "totals": ["parameters": cost.parameters, "non_zero_parameters": cost.nonZeroParameters,
                       "macs": cost.macs, "flops": cost.flops, "sparse_macs": cost.sparseMACs, "sparse_flops": cost.sparseFLOPs],
            "convention": "MACs: multiply-accumulates of conv and linear layers for one example's forward pass; FLOPs = 2 x MACs",
        ]
        if let file {
            object["file"] = ["bytes": file.bytes, "saved": !file.unsaved, "storage": file.storage,
                              "sparse_tensors": file.sparse,
                              "files": Dictionary(uniqueKeysWithValues: file.files.map { ($0.name, $0.bytes) })] as [String: Any]
        }
        if !latencies.isEmpty {
            object["latency"] = latencies.map { m -> [String: Any] in
                ["batch_size": m.batchSize, "runs": m.runs, "warmup": m.warmup, "threads": m.threads,
                 "median_seconds": m.median, "p10_seconds": m.p10, "p90_seconds": m.p90, "images_per_second": m.median > 0 ? m.throughput : 0]
            }
        }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
