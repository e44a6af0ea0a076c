import ArgumentParser
import Foundation
import PruneKit

/// `prunekit bench storage`: the saved size of magnitude-pruned models, dense vs sparse,
/// and 2:4-pruned models in the N:M form beside the bitmask form.
struct StorageBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Saved model size at several sparsities: dense, dense with masks, and sparse storage (checked to reload exactly); then 2:4 sparsity in the N:M form beside the bitmask form.")

    @Option(parsing: .upToNextOption, help: "Zoo models (input 1×28×28, 10 classes).")
    var models: [String] = ["lenet-300-100", "lenet-5", "vgg-small"]
    @Option(parsing: .upToNextOption, help: "Fractions of each conv and linear weight to mask (smallest |w| per layer).")
    var sparsities: [Double] = [0, 0.5, 0.9, 0.98]
    @Option(help: "Seed of the models' weights.") var seed: UInt64 = 0

    func run() throws {
        try reportingErrors {
            for s in sparsities where !(0..<1).contains(s) {
                throw PruneKitError(.invalidArgument, "a sparsity must lie in [0, 1), got \(s)", hint: "for example --sparsities 0.5 0.9 0.98")
            }
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-bench-storage-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: scratch) }
            print("Saved size (model.json + model.safetensors + masks.safetensors), bytes; sparse = save(to:storage: .automatic)")
            print("model".padding(toLength: 15, withPad: " ", startingAt: 0)
                  + ["sparsity", "plain dense", "dense+masks", "sparse", "sparse/plain"].map { $0.leftPadded(13) }.joined())
            for name in models {
                let base = try ModelZoo.make(name, inputShape: [1, 28, 28], classCount: 10, seed: seed)
                try base.save(to: scratch + "/plain")
                let plain = try ModelIO.savedSize(of: scratch + "/plain")
                for s in sparsities {
                    let model = try base.clone()
                    if s > 0 { Self.maskSmallest(model, fraction: s) }
                    try model.save(to: scratch + "/dense", storage: .dense)
                    try model.save(to: scratch + "/sparse", storage: .automatic)
                    let dense = try ModelIO.savedSize(of: scratch + "/dense")
                    let sparse = try ModelIO.savedSize(of: scratch + "/sparse")
                    let back = try Model.load(from: scratch + "/sparse")
                    for ((path, p), (_, q)) in zip(model.namedParameters, back.namedParameters)
                    where p.value.scalars != q.value.scalars || p.mask?.scalars != q.mask?.scalars {
                        throw PruneKitError(.invalidFile, "\(name) at \(s): '\(path)' did not reload exactly from sparse storage")
                    }
                    print(name.padding(toLength: 15, withPad: " ", startingAt: 0)
                          + String(format: "%12.0f%%", s * 100)
                          + [plain, dense, sparse].map { String($0).leftPadded(13) }.joined()
                          + String(format: "%12.1f%%", 100 * Double(sparse) / Double(plain)))
                }
            }
            print("")
            print("2:4 sparsity (the 2 largest |w| of every 4 input channels, every layer whose input size is a multiple of 4, the classifier too)")
            print("model".padding(toLength: 15, withPad: " ", startingAt: 0)
                  + ["sparsity", "bitmask", "N:M", "N:M/bitmask"].map { $0.leftPadded(13) }.joined() + "   layers left dense")
            for name in models {
                let model = try ModelZoo.make(name, inputShape: [1, 28, 28], classCount: 10, seed: seed)
                let plan = try Self.pruneTwoFour(model)
                try model.save(to: scratch + "/bitmask", storage: .bitmask)
                try model.save(to: scratch + "/nm", storage: .automatic)
                let bitmask = try ModelIO.savedSize(of: scratch + "/bitmask")
                let nm = try ModelIO.savedSize(of: scratch + "/nm")
                for dir in ["bitmask", "nm"] {
                    let back = try Model.load(from: scratch + "/" + dir)
                    for ((path, p), (_, q)) in zip(model.namedParameters, back.namedParameters)
                    where p.value.scalars != q.value.scalars || p.mask?.scalars != q.mask?.scalars {
                        throw PruneKitError(.invalidFile, "\(name) at 2:4: '\(path)' did not reload exactly from the \(dir) form")
                    }
                }
                let dense = plan.layers.filter { $0.keptCount == $0.units }.map(\.path)
                let c = model.compression
                let sparsity: Double = 100 * Double(c.prunedWeights) / Double(max(c.prunableWeights, 1))
                let sizes: String = [bitmask, nm].map { String($0).leftPadded(13) }.joined()
                let ratio: String = String(format: "%12.1f%%", 100 * Double(nm) / Double(bitmask))
                let denseNames: String = dense.isEmpty ? "none" : dense.joined(separator: ", ")
                print(name.padding(toLength: 15, withPad: " ", startingAt: 0) + String(format: "%12.1f%%", sparsity) + sizes + ratio + "   " + denseNames)
            }
        }
    }

    /// Masks `model` 2:4 by |w| (``SelectionSettings/pattern``), every layer in scope.
    static func pruneTwoFour(_ model: Model) throws -> PruningPlan {
        let sources = model.prunableLayers().map { layer in
            var s = ScoreSource(path: layer.path, scores: layer.weights.scalars.map(abs), isClassifier: layer.isClassifier)
            s.weightShape = layer.weightShape
            return s
        }
        var settings = SelectionSettings(scope: .perLayer, sparsity: 0, keepClassifier: false)
        settings.pattern = try NMPattern(n: 2, m: 4)
        let plan = try selectPruning(sources, granularity: .weight, settings: settings, criterion: "magnitude")
        try plan.apply(to: model)
        return plan
    }

    /// Masks the `round(fraction · n)` smallest-magnitude weights of every conv and linear layer.
    static func maskSmallest(_ model: Model, fraction: Double) {
        for node in model.nodes where node.layer.kind == .conv2d || node.layer.kind == .linear {
            guard let w = node.layer.parameter(named: "weight") else { continue }
            let values = w.value.scalars
            let pruned = Int((fraction * Double(values.count)).rounded())
            let order = values.indices.sorted { (abs(values[$0]), $0) < (abs(values[$1]), $1) }
            var mask = [Float](repeating: 1, count: values.count)
            for i in order.prefix(pruned) { mask[i] = 0 }
            w.mask = Tensor(shape: w.value.shape, scalars: mask)
        }
    }
}
