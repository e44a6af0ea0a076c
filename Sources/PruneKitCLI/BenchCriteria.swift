import ArgumentParser
import Foundation
import PruneKit

/// PyTorch 2.x on this machine's CPU (2 threads): Taylor scores of vgg-small over 10
/// batches of 64 from mnist-5k, and its forward+backward passes alone; and the target.
private let taylorReference = (pytorch: 1.15, pytorchPasses: 1.0, target: 1.0)

struct TaylorBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "taylor",
        abstract: "Time of Taylor scoring (Molchanov et al. 2017) of vgg-small over calibration batches from mnist-5k, of the forward+backward passes alone, and peak memory.")

    @Option(help: "Zoo model (freshly initialised, seed 0).") var model: String = "vgg-small"
    @Option(help: "Calibration batches.") var batches: Int = 10
    @Option(help: "Calibration batch size.") var batchSize: Int = 64
    @Option(help: "Seed of the calibration shuffle.") var seed: UInt64 = 0
    @Option(help: "Measurements (each one times the passes alone, then the scoring).") var repeats: Int = 1
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            warnIfDebugBuild()
            plugins.load()
            let taylor = try Registry.shared.criterion("taylor")
            let train = try DatasetCatalog.load().train
            let net = try ModelZoo.make(model, inputShape: train.imageShape, classCount: train.classCount, seed: 0)
            let settings = CalibrationSettings(batches: batches, batchSize: batchSize, seed: seed)
            print("taylor on \(model): \(batches) batches of \(batchSize) from \(train.name), \(Parallel.threadCount) thread(s)")
            print("run   passes alone   taylor scoring   scoring − passes   in the criterion")
            for r in 0..<max(repeats, 1) {
                let passes = try timePasses(net, train, settings)
                let clock = CriterionClock()
                let timed = timedCriterion(taylor, clock: clock)
                let t0 = DispatchTime.now().uptimeNanoseconds
                let scores = try net.score(with: timed, data: train, settings: settings)
                let scoring = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                guard scores.allSatisfy({ $0.scores.allSatisfy(\.isFinite) }) else {
                    throw PruneKitError(.plugin, "criterion 'taylor' returned a score that is not finite",
                                        hint: "check the plugin that registered 'taylor' (prunekit plugins)")
                }
                print(String(format: "%3d   %10.3f s   %12.3f s   %14.3f s   %12.4f s", r + 1, passes, scoring,
                             scoring - passes, clock.seconds))
            }
            let peak = peakResidentMiB()
            print("peak resident memory (VmHWM): " + (peak.map { String(format: "%.1f MiB", $0) } ?? "unavailable"))
            print(String(format: "reference: PyTorch %.2f s scoring, %.2f s passes alone; target ≤ %.2f s scoring",
                         taylorReference.pytorch, taylorReference.pytorchPasses, taylorReference.target))
        }
    }

    /// The forward and backward passes of the same calibration batches as Model.score
    /// (evaluation mode, cross-entropy of the labels), with no criterion and no observers.
    private func timePasses(_ net: Model, _ data: Dataset, _ settings: CalibrationSettings) throws -> Double {
        let saved = net.mode
        defer { net.mode = saved; net.zeroGradients() }
        net.mode = .evaluationWithGradients
        let loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed, epoch: 0)
        let t0 = DispatchTime.now().uptimeNanoseconds
        for b in 0..<min(settings.batches, loader.batchCount) {
            let batch = loader.batch(b)
            net.backward(softmaxCrossEntropy(logits: net.forward(batch.images), labels: batch.labels).gradient)
        }
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }
}

/// Seconds spent inside a criterion's own methods.
final class CriterionClock { var seconds = 0.0 }

/// `inner`, its own work timed on `clock`.
func timedCriterion(_ inner: any Criterion, clock: CriterionClock) -> any Criterion {
    func wrap<C: Criterion>(_ c: C) -> any Criterion { TimedCriterion<C>(inner: c, clock: clock) }
    return wrap(inner)
}

/// Wraps a criterion and adds the time spent in its `observe` and `scores` to `clock`,
/// so a benchmark can separate the criterion's own work from the passes that feed it.
/// For criteria fed by the standard calibration pass: the wrapper's own (default) `gather`
/// runs that pass and hands each batch to the timed `observe`.
struct TimedCriterion<Inner: Criterion>: Criterion {
    typealias State = Inner.State
    static var id: String { "timed" }
    let inner: Inner
    let clock: CriterionClock

    init(inner: Inner, clock: CriterionClock) { self.inner = inner; self.clock = clock }
    init(options: OptionValues) throws {
        throw PruneKitError(.invalidArgument, "a timed criterion wraps another; it is not created from options")
    }

    var id: String { inner.id }
    var granularity: Granularity { inner.granularity }
    var evidence: Evidence { inner.evidence }
    var preferredScope: SelectionSettings.Scope { inner.preferredScope }

    func makeState(for layer: PrunableLayer) throws -> State { try inner.makeState(for: layer) }

    func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { clock.seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try inner.observe(batch, layer: layer, state: &state)
    }

    func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { clock.seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        return try inner.scores(for: layer, state: state, context: context)
    }
}

/// The process's peak resident set size in MiB (VmHWM in /proc/self/status), on Linux.
func peakResidentMiB() -> Double? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
    let kb = line.split(separator: " ").dropFirst().first.flatMap { Double($0) }
    return kb.map { $0 / 1024 }
}
