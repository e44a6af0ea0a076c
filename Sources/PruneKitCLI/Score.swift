import ArgumentParser
import Foundation
import PruneKit

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print each layer's scores under a criterion, to inspect one or put two side by side.",
        discussion: "Example: prunekit score --criterion l1-filter --model runs/lenet5 --format table")

    @Option(help: "Criterion id (see `prunekit plugins`).") var criterion: String
    @Option(name: .customLong("option"), help: ArgumentHelp("A criterion option, key=value (repeatable).", valueName: "key=value"))
    var options: [String] = []
    @Option(help: "A saved model folder, an ONNX file, or a zoo name (freshly initialised with --seed).") var model: String
    @OptionGroup var data: DataOptions
    @Option(help: "Calibration batches (for criteria that need data).") var batches: Int = 10
    @Option(help: "Calibration batch size.") var batchSize: Int = 64
    @Option(help: "Seed: calibration images, random criteria, and a zoo model's weights.") var seed: UInt64 = 0
    @Option(help: "Output format.") var format: OutputFormat = .table
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            plugins.load()
            let c = try Registry.shared.criterion(criterion, options: options)
            let splits = try data.load(seed: seed)
            let net = try ModelSource.load(model) { (splits.train.imageShape, splits.train.classCount, seed) }.model
            try net.checkFits(splits.train)
            let scores = try net.score(with: c, data: splits.train,
                                       settings: CalibrationSettings(batches: batches, batchSize: batchSize, seed: seed))
            format == .json ? try printJSON(c, scores) : printTable(c, scores)
        }
    }

    private func printJSON(_ c: any Criterion, _ scores: [LayerScores]) throws {
        let object: [String: Any] = [
            "criterion": c.id, "granularity": c.granularity.rawValue, "options": options,
            "layers": scores.map { s -> [String: Any] in
                ["path": s.layer.path, "shape": s.layer.weightShape, "scores": s.scores.map(Double.init)]
            },
        ]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }

    private func printTable(_ c: any Criterion, _ scores: [LayerScores]) {
        print("\(c.id) (\(c.granularity.rawValue) scores; higher is kept)")
        for s in scores {
            let sorted = s.scores.sorted()
            let mean = s.scores.reduce(0, +) / Float(max(s.scores.count, 1))
            print(s.layer.path.padding(toLength: 16, withPad: " ", startingAt: 0)
                  + String(format: "%8d scores  min %.4g  median %.4g  mean %.4g  max %.4g", s.scores.count,
                           sorted.first ?? 0, sorted.isEmpty ? 0 : sorted[sorted.count / 2], mean, sorted.last ?? 0))
            if c.granularity == .channel {
                let values = s.scores.map { String(format: "%.4g", $0) }
                for chunk in stride(from: 0, to: values.count, by: 10) {
                    print("    [\(chunk)…] " + values[chunk..<min(chunk + 10, values.count)].joined(separator: " "))
                }
            }
        }
    }
}
