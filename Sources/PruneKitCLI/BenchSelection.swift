import ArgumentParser
import Foundation
import PruneKit

/// `prunekit bench selection`: global magnitude selection over VGG-16's weights.
///
/// ImageNet VGG-16 has 138,357,544 parameters: 138,344,128 weights in 13 convolutions and
/// 3 linear layers, and 13,416 biases. The figures PruneKit is measured against
/// (`torch.nn.utils.prune.global_unstructured` and `np.partition`) selected over
/// 138,357,544 floats, so by default the biases are scored too, as layers of their own
/// (`--weights-only` leaves them out). The tensors are made directly (no model object:
/// the model zoo's VGG-16 is the CIFAR one) and wrapped as ``PrunableLayer`` views.
struct SelectionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selection",
        abstract: "Global magnitude selection over VGG-16's 138,357,544 parameters: time, exact count, peak memory.")

    @Option(help: "Fraction of the parameters to prune.") var sparsity = 0.9
    @Option(help: "Selections timed (the median is reported).") var repeats = 3
    @Option(help: "Scores per chunk per thread.") var chunk = 1 << 16
    @Option(help: "Seed of the random weights.") var seed: UInt64 = 0
    @Option(help: "Criterion to select with (a registered weight criterion).") var criterion = "global-magnitude"
    @Flag(help: "Select over the 138,344,128 weights only, not the biases.") var weightsOnly = false
    @Flag(help: "Use an in-process |w| source instead of the criterion from the plugin registry.") var inProcess = false
    @Flag(help: "Skip the check that every pruned |w| ≤ every kept |w| (one more pass, untimed).") var noCheck = false
    @OptionGroup var engine: EngineOptions
    @OptionGroup var plugins: PluginOptions

    /// ImageNet VGG-16 (configuration D): (outputs, inputs, kernel side).
    static let shapes: [(String, Int, Int, Int)] = {
        let convs = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
                     (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
        let fcs = [(4096, 25088), (4096, 4096), (1000, 4096)]
        return convs.enumerated().map { ("features.\($0.offset)", $0.element.0, $0.element.1, 3) }
            + fcs.enumerated().map { ("classifier.\($0.offset)", $0.element.0, $0.element.1, 1) }
    }()

    func run() throws {
        try reportingErrors {
            try engine.apply()
            warnIfDebugBuild()
            let rssBefore = memoryStatus("VmRSS")
            // The layers: weights He-initialised (std √(2/fan-in)), biases N(0, 0.01²).
            var layers: [PrunableLayer] = []
            for (k, (path, outputs, inputs, side)) in Self.shapes.enumerated() {
                let fanIn = inputs * side * side
                let shape = side == 1 ? [outputs, inputs] : [outputs, inputs, side, side]
                let w = randomTensor(shape, std: (2 / Double(fanIn)).squareRoot(), stream: "vgg16:\(path).weight")
                layers.append(PrunableLayer(path: path, kind: side == 1 ? .linear : .conv2d, weights: w.reshaped([outputs, fanIn]),
                                            weightShape: shape, bias: nil, macs: 0, index: layers.count,
                                            isClassifier: k == Self.shapes.count - 1))
                if !weightsOnly {
                    let b = randomTensor([outputs, 1], std: 0.01, stream: "vgg16:\(path).bias")
                    layers.append(PrunableLayer(path: path + ".bias", kind: .linear, weights: b, weightShape: [outputs],
                                                bias: nil, macs: 0, index: layers.count, isClassifier: false))
                }
            }
            let total = layers.reduce(0) { $0 + $1.weights.count }
            let weightBytes = total * MemoryLayout<Float>.size
            let baseline = memoryStatus("VmHWM")

            // The sources: the registered criterion's (streamed when it computes chunks on
            // its own), or |w| computed here.
            let sources: [ScoreSource]
            let how: String
            if inProcess {
                how = "in-process |w| source"
                sources = layers.map { layer in
                    ScoreSource(path: layer.path, count: layer.weights.count) { range, buffer in
                        layer.weights.withUnsafeBufferPointer { p in
                            for (i, j) in range.enumerated() { buffer[i] = abs(p[j]) }
                        }
                    }
                }
            } else {
                plugins.load()
                let c = try Registry.shared.criterion(criterion)
                guard c.granularity == .weight, c.evidence.isEmpty else {
                    throw PruneKitError(.invalidArgument, "criterion '\(criterion)' needs data or is not a weight criterion")
                }
                how = "criterion '\(criterion)' from the plugin registry (\(c.scoresInChunks ? "streamed in chunks" : "NOT chunked: scores held per layer"))"
                sources = try layers.map { layer in
                    let context = ScoringContext(rng: RandomGenerator(seed: seed, stream: "criterion:\(c.id):\(layer.path)"))
                    return try ScoreSource(layer: layer, criterion: c, context: context)
                }
            }
            let settings = SelectionSettings(scope: .global, sparsity: sparsity, keepClassifier: false)
            let expected = total - Int((Double(total) * (1 - sparsity)).rounded())
            print("PruneKit selection benchmark — VGG-16 (ImageNet) shapes, \(Parallel.threadCount) thread(s), chunk \(chunk)")
            print("units: \(total) \(weightsOnly ? "weights (biases left out)" : "parameters (weights and biases)"), \(String(format: "%.1f", Double(weightBytes) / 1e6)) MB of float32")
            print("scores: \(how)")
            var times: [Double] = [], pruned = 0
            var plan: PruningPlan?
            for _ in 0..<max(repeats, 1) {
                plan = nil
                let start = DispatchTime.now().uptimeNanoseconds
                let p = try selectPruning(sources, granularity: .weight, settings: settings, criterion: criterion, chunkSize: chunk)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                pruned = p.layers.reduce(0) { $0 + $1.units - $1.keptCount }
                plan = p
            }
            let peak = memoryStatus("VmHWM")
            let t = median(times)
            print(String(format: "selection: %.3f s median of %d (%@)", t, times.count,
                         times.map { String(format: "%.3f", $0) }.joined(separator: ", ")))
            print("pruned: \(pruned) of \(total) (expected \(expected): \(pruned == expected ? "exact" : "WRONG"))")
            if !noCheck, let plan { print("check: " + thresholdCheck(plan, layers)) }
            print(String(format: "RSS before the weights: %.1f MB; peak after making the weights: %.1f MB; peak after selection: %.1f MB",
                         rssBefore / 1e6, baseline / 1e6, peak / 1e6))
            print(String(format: "peak / weights: %.3f× (selection added %.1f MB = %.3f× the weights)",
                         peak / Double(weightBytes), (peak - baseline) / 1e6, (peak - baseline) / Double(weightBytes)))
            print(String(format: "targets: time ≤ 0.4 s %@, peak ≤ 1.3× the weights %@",
                         t <= 0.4 ? "met" : "NOT met", peak <= 1.3 * Double(weightBytes) ? "met" : "NOT met"))
        }
    }

    /// A seeded random-normal tensor, written in place (no temporary copy).
    private func randomTensor(_ shape: [Int], std: Double, stream: String) -> Tensor {
        var t = Tensor(shape: shape)
        let s = Float(std)
        var rng = RandomGenerator(seed: seed, stream: stream)
        t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = rng.nextNormal() * s } }
        return t
    }

    /// Whether every pruned |w| ≤ every kept |w| (the plan is a threshold on magnitude).
    private func thresholdCheck(_ plan: PruningPlan, _ layers: [PrunableLayer]) -> String {
        var maxPruned: Float = 0, minKept = Float.infinity
        for (l, layer) in zip(plan.layers, layers) {
            layer.weights.withUnsafeBufferPointer { p in
                for i in p.indices {
                    if l.isKept(i) { minKept = min(minKept, abs(p[i])) } else { maxPruned = max(maxPruned, abs(p[i])) }
                }
            }
        }
        return String(format: "largest pruned |w| %.6g ≤ smallest kept |w| %.6g: %@", maxPruned, minKept,
                      maxPruned <= minKept ? "ok" : "FAILED")
    }
}

/// A field of /proc/self/status in bytes (`VmHWM`: the peak resident set; `VmRSS`: now).
func memoryStatus(_ field: String) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kb = Double(parts[1]) { return kb * 1024 }
    }
    return 0
}
