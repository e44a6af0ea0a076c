import ArgumentParser
import Foundation
import PruneKit

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print figures (build with -c release).",
        subcommands: [EngineBench.self, AccuracyBench.self, PluginBench.self, CriteriaBench.self, SelectionBench.self,
                      SurgeryBench.self, StorageBench.self, DataBench.self, ONNXBench.self])
}

/// The figures the engine issue compares against: PyTorch 2.15 on this machine's CPU
/// (2 threads, data in memory), seconds per epoch over the 4,000 bundled images.
private let reference: [String: (pytorch: Double, target: Double)] = [
    "lenet-300-100": (0.110, 0.07), "lenet-5": (0.514, 0.25), "vgg-small": (6.0, 4.8),
]

struct EngineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "sgemm GFLOP/s and the time of one training epoch (4,000 images, batch 64, SGD) per model.")

    @Option(parsing: .upToNextOption, help: "Models to time.")
    var models: [String] = ["lenet-300-100", "lenet-5", "vgg-small"]
    @Option(help: "Epochs timed per model (the median is reported).") var epochs: Int = 3
    @Flag(help: "Print each layer's forward and backward time for one more epoch.") var profile = false
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            warnIfDebugBuild()
            let threads = Parallel.threadCount
            print("PruneKit engine benchmark — \(threads) thread(s)")
            var peak = 0.0
            for n in [1024, 2048] {
                let multi = sgemmRate(n)
                Parallel.setThreadCount(1)
                let single = sgemmRate(n)
                Parallel.setThreadCount(threads)
                peak = max(peak, multi)
                print(String(format: "sgemm %4d³: %6.1f GFLOP/s on %d thread(s), %6.1f on 1", n, multi, threads, single))
            }
            let train = try DatasetCatalog.load().train
            var config = TrainingConfiguration()
            config.epochs = 1
            print("\nepoch over \(train.count) images, batch \(config.batchSize), SGD (median of \(epochs)):")
            print("model            seconds   images/s   PyTorch   target")
            for name in models {
                let model = try ModelZoo.make(name, inputShape: train.imageShape, classCount: train.classCount, seed: 0)
                var times: [Double] = []
                for e in 0..<max(epochs, 1) {
                    config.seed = UInt64(e)
                    let r = try model.fit(train, configuration: config)
                    times.append(r[0].seconds)
                }
                let t = median(times)
                var line = name.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + String(format: "%7.3f  %9.0f", t, Double(train.count) / t)
                if let ref = reference[name] {
                    line += String(format: "   %7.3f   %6.3f  %@", ref.pytorch, ref.target, t <= ref.target ? "met" : "NOT met")
                }
                print(line)
                if name == "vgg-small" { try convolutionShare(model, train, config, peak: peak) }
                if profile { try printProfile(model, train, config) }
            }
        }
    }

    /// Times one more epoch with per-layer profiling and reports the convolutions' GFLOP/s
    /// as a share of the sgemm peak measured above. The flops are those of a direct
    /// convolution (2·MACs per pass); Winograd layers do fewer multiplications, so this is
    /// an *effective* rate and can exceed what the GEMMs themselves run at.
    private func convolutionShare(_ model: Model, _ train: Dataset, _ config: TrainingConfiguration, peak: Double) throws {
        let profile = ModelProfile(nodeCount: model.nodes.count)
        model.profile = profile
        defer { model.profile = nil }
        try model.fit(train, configuration: config)
        var seconds = 0.0, flops = 0.0
        for (i, node) in model.nodes.enumerated() where node.layer.kind == .conv2d {
            seconds += profile.forward[i] + profile.backward[i]
            let macs = Double(node.layer.macs(inputShapes: model.inputShapes(ofNode: i))) * Double(train.count)
            // forward, weight gradient, and input gradient unless the layer reads the model input
            let passes = node.inputs.contains(Model.inputIndex) ? 2.0 : 3.0
            flops += 2 * macs * passes
        }
        let total = profile.forward.reduce(0, +) + profile.backward.reduce(0, +)
        print(String(format: "  vgg-small convolutions: %.2f s of %.2f s in layers, %.1f effective GFLOP/s (direct-convolution flops; Winograd does fewer) = %.0f%% of the sgemm peak (%.1f)",
                     seconds, total, flops / seconds / 1e9, 100 * flops / seconds / 1e9 / peak, peak))
    }

    private func printProfile(_ model: Model, _ train: Dataset, _ config: TrainingConfiguration) throws {
        let profile = ModelProfile(nodeCount: model.nodes.count)
        model.profile = profile
        defer { model.profile = nil }
        let t0 = Date()
        try model.fit(train, configuration: config)
        let wall = Date().timeIntervalSince(t0)
        print("  layer                      forward  backward   (seconds over one epoch)")
        for (i, node) in model.nodes.enumerated() {
            print("  " + node.name.padding(toLength: 24, withPad: " ", startingAt: 0)
                  + String(format: "%9.3f %9.3f  %@", profile.forward[i], profile.backward[i], node.layer.kind.rawValue))
        }
        let layers = profile.forward.reduce(0, +) + profile.backward.reduce(0, +)
        print(String(format: "  in layers %.3f s of %.3f s (the rest: data, loss, optimiser)", layers, wall))
    }

    private func sgemmRate(_ n: Int) -> Double {
        var rng = RandomGenerator(seed: 1)
        let a = Tensor.randomNormal([n, n], using: &rng), b = Tensor.randomNormal([n, n], using: &rng)
        _ = a.matmul(b)
        var rates: [Double] = []
        for _ in 0..<5 {
            let t0 = Date()
            _ = a.matmul(b)
            rates.append(2 * Double(n * n * n) / Date().timeIntervalSince(t0) / 1e9)
        }
        return median(rates)
    }
}

struct AccuracyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "accuracy",
        abstract: "Train lenet-5 and vgg-small for 10 epochs on mnist-5k and print test accuracy.")

    @Option(help: "Seed.") var seed: UInt64 = 0
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            let splits = try DatasetCatalog.load()
            var config = TrainingConfiguration()
            config.seed = seed
            for (name, target, pytorch) in [("lenet-5", 0.955, 0.959), ("vgg-small", 0.97, 0.972)] {
                let model = try ModelZoo.make(name, inputShape: splits.train.imageShape, classCount: 10, seed: seed)
                let t0 = Date()
                try model.fit(splits.train, configuration: config)
                let e = model.evaluate(splits.test)
                print(String(format: "%@: top-1 %.2f%% after %d epochs (%.1f s); target ≥ %.1f%% %@ (PyTorch %.1f%%)",
                             name, e.top1 * 100, config.epochs, Date().timeIntervalSince(t0), target * 100,
                             e.top1 >= target ? "met" : "NOT met", pytorch * 100))
            }
        }
    }
}

/// Benchmarks print figures; a debug build's figures mean nothing, so say so.
func warnIfDebugBuild() {
    #if DEBUG
    print("warning: this is a debug build; build with `swift build -c release` for meaningful figures")
    #endif
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}
