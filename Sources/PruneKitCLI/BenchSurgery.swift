import ArgumentParser
import Dispatch
import Foundation
import PruneKit
import PruneKitHarness

struct SurgeryBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "surgery",
        abstract: "vgg-small with half of every conv layer's channels removed (l1-filter): inference time against the unpruned model.",
        discussion: "The two models run side by side, alternately, in the same process (median over --runs, batch 1 and 64). Target: at least 2.5× faster.")

    @Option(help: "Timed inference passes per model and batch size (the median is reported).") var runs: Int = 30
    @Flag(help: "Also print each layer's forward time at batch 64, unpruned beside pruned.") var profile = false
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            warnIfDebugBuild()
            guard runs >= 1 else { throw PruneKitError(.invalidArgument, "--runs must be at least 1, got \(runs)") }
            plugins.load()
            let criterion = try Registry.shared.criterion("l1-filter")
            let dense = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0)
            let masked = try dense.clone()
            try masked.prune(with: criterion, toward: .sparsity(0.5), settings: TargetedPruningSettings(scope: .perLayer), data: nil)
            let cut = try masked.removingPrunedChannels()
            let pruned = cut.model
            let scratch = FileManager.default.temporaryDirectory.path
            print("PruneKit surgery benchmark — vgg-small on 1×28×28, \(Parallel.threadCount) thread(s); l1-filter, half of every conv layer's channels removed")
            print("  " + cut.widths.filter { $0.kind == .conv2d }.map { "\($0.path) \($0.before)→\($0.after)" }.joined(separator: ", "))
            let theoretical = Double(dense.macs) / Double(pruned.macs)
            print(String(format: "MACs per image: %d → %d (theoretical speed-up %.2f×)", dense.macs, pruned.macs, theoretical))
            print(String(format: "parameters: %d → %d (%.2f×); file: %@ → %@", dense.parameterCount, pruned.parameterCount,
                         Double(dense.parameterCount) / Double(pruned.parameterCount), Units.bytes(try Measure.savedBytes(dense, scratch: scratch)),
                         Units.bytes(try Measure.savedBytes(pruned, scratch: scratch))))
            print("batch   unpruned (ms)   pruned (ms)   real speed-up   theoretical   target ≥ 2.5×")
            for batch in [1, 64] {
                let (a, b) = sideBySide(dense, pruned, batch: batch, runs: runs)
                print(String(format: "%5d   %13.3f   %11.3f   %12.2f×   %10.2f×   %@", batch, a * 1e3, b * 1e3, a / b, theoretical,
                             a / b >= 2.5 ? "met" : "NOT met"))
            }
            if profile { printProfile(dense, pruned) }
        }
    }

    /// Each node's forward seconds per batch of 64 (mean over --runs passes), both models.
    private func printProfile(_ a: Model, _ b: Model) {
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.randomNormal([64] + a.inputShape, using: &rng)
        let (pa, pb) = (ModelProfile(nodeCount: a.nodes.count), ModelProfile(nodeCount: b.nodes.count))
        a.profile = pa; b.profile = pb
        defer { a.profile = nil; b.profile = nil }
        for _ in 0..<runs { _ = a.forward(x); _ = b.forward(x) }
        print("layer (batch 64)       unpruned (ms)   pruned (ms)   speed-up")
        for (i, node) in a.nodes.enumerated() {
            let (ta, tb) = (pa.forward[i] / Double(runs), pb.forward[i] / Double(runs))
            print(node.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                  + String(format: "%15.3f %13.3f %9.2f×  %@", ta * 1e3, tb * 1e3, ta / max(tb, 1e-12), node.layer.kind.rawValue))
        }
    }

    /// Median seconds of one inference pass of each model, timed alternately so that load
    /// from other processes falls on both alike.
    private func sideBySide(_ a: Model, _ b: Model, batch: Int, runs: Int) -> (Double, Double) {
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.randomNormal([batch] + a.inputShape, using: &rng)
        a.mode = .inference; b.mode = .inference
        for _ in 0..<3 { _ = a.forward(x); _ = b.forward(x) }
        var ta: [Double] = [], tb: [Double] = []
        for _ in 0..<runs {
            for (model, out) in [(a, 0), (b, 1)] {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = model.forward(x)
                let t = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                if out == 0 { ta.append(t) } else { tb.append(t) }
            }
        }
        return (median(ta), median(tb))
    }
}
