import ArgumentParser
import Foundation
import PruneKit

/// PyTorch 2.x on this machine's CPU (2 threads): Taylor scores of vgg-small over 10
/// batches of 64 from mnist-5k, and its forward+backward passes alone; and the target.
private let taylorReference = (pytorch: 1.15, pytorchPasses: 1.0, target: 1.0)

struct CriteriaBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "criteria",
        abstract: "Time of scoring vgg-small over calibration batches from mnist-5k with each criterion (default: taylor, Molchanov et al. 2017), of the forward+backward passes alone, the time spent in the criterion's own code, and peak memory.",
        discussion: "Example: prunekit bench criteria --criteria taylor,apoz,l1-filter,fpgm,hrank,lamp,snip --repeats 3",
        aliases: ["taylor"])

    @Option(help: ArgumentHelp("Criterion ids, comma-separated, each optionally with options after a space.", valueName: "a,b,…"))
    var criteria: String = "taylor"
    @Option(help: "Zoo model (freshly initialised, seed 0).") var model: String = "vgg-small"
    @Option(help: "Calibration batches.") var batches: Int = 10
    @Option(help: "Calibration batch size.") var batchSize: Int = 64
    @Option(help: "Seed of the calibration shuffle.") var seed: UInt64 = 0
    @Option(help: "Measurements (each one times the passes alone, then every criterion's scoring).") var repeats: Int = 1
    @OptionGroup var plugins: PluginOptions
    @OptionGroup var engine: EngineOptions

    func validate() throws {
        try reportingErrors {
            guard batches >= 1 else { throw PruneKitError(.invalidArgument, "--batches must be at least 1, got \(batches)") }
            guard batchSize >= 1 else { throw PruneKitError(.invalidArgument, "--batch-size must be at least 1, got \(batchSize)") }
            guard repeats >= 1 else { throw PruneKitError(.invalidArgument, "--repeats must be at least 1, got \(repeats)") }
            guard !choices.isEmpty else { throw PruneKitError(.invalidArgument, "--criteria lists no criterion", hint: "--criteria taylor,apoz") }
        }
    }

    private var choices: [(id: String, options: [String])] {
        criteria.split(separator: ",").map { $0.split(separator: " ").map(String.init) }.filter { !$0.isEmpty }
            .map { ($0[0], Array($0.dropFirst())) }
    }

    func run() throws {
        try reportingErrors {
            try engine.apply()
            warnIfDebugBuild()
            plugins.load()
            let chosen = try choices.map { (label: ([$0.id] + $0.options).joined(separator: " "), criterion: try Registry.shared.criterion($0.id, options: $0.options)) }
            let train = try DatasetCatalog.load().train
            let net = try ModelZoo.make(model, inputShape: train.imageShape, classCount: train.classCount, seed: 0)
            let settings = CalibrationSettings(batches: batches, batchSize: batchSize, seed: seed)
            print("\(model): \(batches) batches of \(batchSize) from \(train.name), \(Parallel.threadCount) thread(s)")
            let width = max(9, chosen.map(\.label.count).max() ?? 0)
            print("run   " + "criterion".padding(toLength: width, withPad: " ", startingAt: 0)
                  + "   passes it needs   scoring    scoring − passes   in the criterion   evidence")
            for r in 0..<repeats {
                // What Model.score runs for each kind of evidence, timed once per run.
                var passTimes: [Evidence: Double] = [:]
                for (_, criterion) in chosen where passTimes[criterion.evidence] == nil {
                    passTimes[criterion.evidence] = try timePasses(net, train, settings, for: criterion.evidence)
                }
                for (label, criterion) in chosen {
                    let passes = passTimes[criterion.evidence] ?? 0
                    let clock = CriterionClock()
                    let timed = timedCriterion(criterion, clock: clock)
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    let scores = try net.score(with: timed, data: train, settings: settings)
                    let scoring = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                    guard scores.allSatisfy({ $0.scores.allSatisfy(\.isFinite) }) else {
                        throw PruneKitError(.plugin, "criterion '\(criterion.id)' returned a score that is not finite",
                                            hint: "check the plugin that registered '\(criterion.id)' (prunekit plugins)")
                    }
                    let evidence = criterion.evidence.names.joined(separator: ", ")
                    // A criterion's own passes are part of its own work: no pass is timed apart.
                    let own = criterion.evidence.contains(.ownPasses)
                    print(String(format: "%3d   %@   %@   %7.3f s   %@   %14.4f s   %@", r + 1,
                                 label.padding(toLength: width, withPad: " ", startingAt: 0),
                                 own ? "    (its own)" : String(format: "%13.3f s", passes), scoring,
                                 own ? "             —" : String(format: "%14.3f s", scoring - passes), clock.seconds,
                                 evidence.isEmpty ? "weights only" : evidence))
                }
            }
            print("passes it needs: what Model.score runs for the criterion's evidence, timed alone on the same batches: none (weights only), forward (activations), forward+backward (gradients; parameter gradients only for weight gradients); (its own): the criterion runs its passes itself (own-passes), timed in the criterion")
            let hwm = memoryStatus("VmHWM")
            let peak: Double? = hwm > 0 ? hwm / 1_048_576 : nil   // MiB; 0: /proc unreadable
            print("peak resident memory (VmHWM): " + (peak.map { String(format: "%.1f MiB", $0) } ?? "unavailable"))
            if chosen.contains(where: { $0.criterion.id == "taylor" }) {
                print(String(format: "reference: PyTorch %.2f s taylor scoring, %.2f s passes alone; target ≤ %.2f s scoring",
                             taylorReference.pytorch, taylorReference.pytorchPasses, taylorReference.target))
            }
        }
    }

    /// The passes Model.score runs for `evidence` over the same calibration batches, with no
    /// criterion and no observers: none for weights only; forward alone (inference mode) for
    /// forward-only evidence; else forward and backward in evaluation mode (cross-entropy of
    /// the labels), with parameter gradients only where weight gradients are asked for.
    private func timePasses(_ net: Model, _ data: Dataset, _ settings: CalibrationSettings, for evidence: Evidence = .weightGradients) throws -> Double {
        // A criterion's own passes are its own work, timed in it.
        guard !evidence.isEmpty, !evidence.contains(.ownPasses) else { return 0 }
        let backward = !evidence.isDisjoint(with: [.weightGradients, .activationGradients])
        let saved = net.mode
        defer { net.mode = saved; net.zeroGradients() }
        net.mode = backward ? ForwardMode(training: false, recordsForBackward: true, parameterGradients: evidence.contains(.weightGradients)) : .inference
        let loader = try DataLoader(data, batchSize: settings.batchSize, shuffle: true, seed: settings.seed, epoch: 0)
        let t0 = DispatchTime.now().uptimeNanoseconds
        for b in 0..<min(settings.batches, loader.batchCount) {
            let batch = loader.batch(b)
            let logits = net.forward(batch.images)
            if backward { net.backward(softmaxCrossEntropy(logits: logits, labels: batch.labels).gradient) }
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
/// For criteria fed by the standard calibration pass, the wrapper's `gather` runs that pass
/// and hands each batch to the timed `observe`; a criterion that runs passes of its own
/// (``Evidence/ownPasses``) is timed whole, its passes included.
struct TimedCriterion<Inner: Criterion>: Criterion {
    typealias State = Inner.State
    let inner: Inner
    let clock: CriterionClock

    init(inner: Inner, clock: CriterionClock) { self.inner = inner; self.clock = clock }

    var id: String { inner.id }
    var granularity: Granularity { inner.granularity }
    var evidence: Evidence { inner.evidence }
    var preferredScope: SelectionSettings.Scope { inner.preferredScope }

    func makeState(for layer: PrunableLayer) throws -> State { try inner.makeState(for: layer) }

    func gather(_ session: CalibrationSession, into states: inout [State]) throws {
        guard inner.evidence.contains(.ownPasses) else { return try session.gatherStandardEvidence(for: self, into: &states) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { clock.seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try inner.gather(session, into: &states)
    }

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

