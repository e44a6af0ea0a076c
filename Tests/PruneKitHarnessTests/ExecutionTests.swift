import Foundation
import PruneKit
import XCTest
@testable import PruneKitHarness

/// Trials end to end: baselines, one trial in process, the oracle, and trials in child
/// processes with a crashing plugin. Tiny and fast (debug build): a few hundred images,
/// one baseline epoch, one finetuning epoch.
final class ExecutionTests: XCTestCase {
    // MARK: Support

    /// The build directory: the plugin libraries and the `prunekit` executable.
    static let buildDirectory: URL? = {
        var candidates: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        var dir = Bundle(for: ExecutionTests.self).bundleURL
        while dir.path != "/" { candidates.append(dir); dir = dir.deletingLastPathComponent() }
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("libPruneKitRandom.so").path) }
    }()

    func buildDirectory() throws -> URL {
        guard let dir = Self.buildDirectory else { throw XCTSkip("the plugins are not built next to the tests (swift build --build-tests)") }
        return dir
    }

    /// A fresh registry with every built-in plugin, loaded from its library.
    func registry() throws -> Registry { try Self.builtInRegistry() }

    /// A fresh registry with every built-in plugin, for every harness test that needs one.
    /// - Throws: `XCTSkip` when the plugins are not built next to the tests.
    static func builtInRegistry() throws -> Registry {
        guard let dir = buildDirectory else { throw XCTSkip("the plugins are not built next to the tests (swift build --build-tests)") }
        let loader = PluginLoader(registry: Registry())
        let report = loader.loadAll(PluginSearchPath(directories: [dir.path], files: []))
        XCTAssert(report.failures.isEmpty, "\(report.failures)")
        return loader.registry
    }

    func scratch(_ prefix: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.path
    }

    /// 300 training images, 100 held out for validation, one epoch.
    func tinyBaseline(_ model: String = "lenet-5", seed: UInt64 = 0) -> BaselineConfiguration {
        BaselineConfiguration(model: model, dataset: "mnist-5k", validationCount: 100, epochs: 1, batchSize: 32,
                              learningRate: 0.05, seed: seed, trainingImages: 300)
    }

    func tinyTrial(_ criterion: String, _ target: TrialTarget, baseline: BaselineConfiguration) -> TrialConfiguration {
        TrialConfiguration(baseline: baseline, criterion: criterion, target: target, finetune: "finetune",
                           finetuneEpochs: 1, calibrationBatches: 2, calibrationBatchSize: 32, latencyRuns: 2)
    }

    // MARK: Baselines

    /// Trained once; the second call finds it; two callers at once train it once.
    func testBaselineIsTrainedOnceAndCached() throws {
        let cache = try scratch("baselines")
        let b = tinyBaseline("lenet-300-100")
        var results: [BaselineArtifact?] = [nil, nil]
        var errors: [Error?] = [nil, nil]
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            do {
                let a = try BaselineCache.ensure(b, cacheDirectory: cache)
                lock.lock(); results[i] = a; lock.unlock()
            } catch { lock.lock(); errors[i] = error; lock.unlock() }
        }
        XCTAssertNil(errors[0] ?? errors[1])
        let a = try XCTUnwrap(results[0]), c = try XCTUnwrap(results[1])
        XCTAssertEqual([a.trainedNow, c.trainedNow].filter { $0 }.count, 1, "exactly one of two concurrent callers trains")
        XCTAssertEqual(a.directory, c.directory)
        XCTAssertEqual(a.directory, "\(URL(fileURLWithPath: cache).standardizedFileURL.path)/\(b.hash)/model")
        // A trainer killed mid-way leaves its temporary folder; the next one to train removes it.
        try FileManager.default.createDirectory(atPath: "\(cache)/.\(b.hash).tmp-1-dead", withIntermediateDirectories: true)
        try FileManager.default.removeItem(atPath: "\(cache)/\(b.hash)")
        XCTAssert(try BaselineCache.ensure(b, cacheDirectory: cache).trainedNow, "a removed entry is trained again")
        let again = try BaselineCache.ensure(b, cacheDirectory: cache)
        XCTAssertFalse(again.trainedNow)
        XCTAssertEqual(again.testAccuracy, a.testAccuracy)
        XCTAssert((0...1).contains(a.testAccuracy.top1))
        XCTAssertNotNil(a.testAccuracy.top5, "10 classes: top-5 is reported")
        XCTAssertNotNil(a.validationAccuracy)
        XCTAssertEqual(a.epochs.count, 1)
        // The saved model is the trained one: its test accuracy evaluates to the recorded one.
        let model = try Model.load(from: a.directory)
        XCTAssertEqual(model.evaluate(try b.loadData().test).top1, a.testAccuracy.top1, accuracy: 1e-12)
        // Nothing half-written is left next to the entry.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: cache).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    /// The data of a baseline: validation carved from training, training cut to
    /// `trainingImages`, test untouched and disjoint.
    func testBaselineDataSplits() throws {
        let splits = try tinyBaseline().loadData()
        XCTAssertEqual(splits.train.count, 300)
        XCTAssertEqual(splits.validation?.count, 100)
        XCTAssertEqual(splits.test.count, 1000)
        let train = Set(splits.train.sourceIndices), validation = Set(splits.validation!.sourceIndices)
        XCTAssert(train.isDisjoint(with: validation))
    }

    /// Rewinding needs checkpoints: kept when asked, and a missing one is a clear error.
    func testCheckpointsAreKeptForRewinding() throws {
        let cache = try scratch("baselines")
        var b = tinyBaseline("lenet-300-100")
        b.checkpointEpochs = [0, 1]
        let a = try BaselineCache.ensure(b, cacheDirectory: cache)
        XCTAssertEqual(a.checkpointEpochs, [0, 1])
        let c = try a.loadCheckpoints([1])
        let model = try Model.load(from: a.directory)
        XCTAssertEqual(c[1]?["fc1.weight"]?.scalars, model.namedParameters.first { $0.path == "fc1.weight" }?.parameter.value.scalars,
                       "the checkpoint after the last epoch is the trained model")
        XCTAssertThrowsError(try a.loadCheckpoints([2])) { XCTAssert("\($0)".contains("no checkpoint of epoch 2"), "\($0)") }
    }

    // MARK: One trial in process

    /// A weight criterion to 4×: the figures agree with the target and with each other,
    /// accuracies are fractions, every phase is timed.
    func testWeightTrialEndToEnd() throws {
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: try scratch("cache"))
        let c = tinyTrial("global-magnitude", TrialTarget(.compression, 4), baseline: tinyBaseline())
        let r = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        let before = try XCTUnwrap(r.before), after = try XCTUnwrap(r.after)
        // lenet-5: 150 + 2,400 + 48,000 + 10,080 + 840 weights.
        XCTAssertEqual(before.prunableWeights, 61_470)
        XCTAssertEqual(before.remainingPrunableWeights, 61_470)
        XCTAssertEqual(after.prunableWeights, 61_470)
        XCTAssertEqual(try XCTUnwrap(r.compression), 4, accuracy: 0.01)
        XCTAssertEqual(before.parameters - after.nonzeroParameters, before.prunableWeights - after.remainingPrunableWeights,
                       "only weights are pruned: biases stay")
        XCTAssertGreaterThan(try XCTUnwrap(r.theoreticalSpeedup), 1)
        for a in [r.baselineAccuracy, r.prunedAccuracy, r.finetunedAccuracy] {
            let a = try XCTUnwrap(a)
            XCTAssert((0...1).contains(a.top1) && (0...1).contains(a.top5 ?? 0), "\(a)")
            XCTAssert(a.loss?.isFinite ?? false)
        }
        XCTAssertEqual(before.latency.map(\.batchSize), [1, 64])
        // Sparse storage: a quarter of the weights kept takes ⌈n/8⌉ + 4k bytes instead of 4n.
        XCTAssertLessThan(try XCTUnwrap(after.fileBytes), try XCTUnwrap(before.fileBytes) / 2)
        // Scoring is part of the SDK's pruning pipeline: a prune trial times it under "prune".
        for phase in ["baseline", "prune", "finetune", "evaluate", "measure"] {
            XCTAssertGreaterThan(r.phaseSeconds[phase] ?? 0, 0, phase)
        }
        XCTAssertNil(r.phaseSeconds["score"])
        XCTAssertEqual(try XCTUnwrap(r.sparsity), 0.75, accuracy: 0.001, "a quarter of every prunable weight remains")
        // The baseline is measured once: a second trial from it reports the same figures.
        let second = try TrialExecutor.run(tinyTrial("layer-magnitude", TrialTarget(.compression, 2), baseline: tinyBaseline()), environment: env)
        XCTAssertEqual(second.status, .succeeded, second.failure ?? "")
        XCTAssertEqual(second.before, r.before)
        XCTAssertEqual(try XCTUnwrap(second.compression), 2, accuracy: 0.01)
    }

    /// The sparsity search finds the smallest pruning that meets a speed-up (weight
    /// criterion, MACs of the non-zero weights) or a compression (channel criterion).
    func testTargetSearchFindsTheSmallestSparsity() throws {
        let registry = try registry()
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let data = try tinyBaseline().loadData().train
        let calibration = CalibrationSettings(batches: 1, batchSize: 8, seed: 0)
        for (id, target) in [("global-magnitude", TrialTarget(.speedup, 3)), ("l1-filter", TrialTarget(.compression, 2))] {
            let criterion = try registry.criterion(id)
            let s = try model.sparsity(toward: TargetSearch.goal(for: target), with: criterion, data: data, calibration: calibration)
            func reached(_ s: Double) throws -> Double {
                let copy = try model.clone()
                try copy.prune(with: criterion, toward: .sparsity(s), data: data, calibration: calibration)
                let pruned = criterion.granularity == .channel ? try copy.removingPrunedChannels().model : copy
                let before = Measure.figures(model), after = Measure.figures(pruned)
                return target.axis == .speedup ? Double(before.macs) / Double(after.macs)
                    : Double(before.prunableWeights) / Double(after.remainingPrunableWeights)
            }
            XCTAssertGreaterThanOrEqual(try reached(s), target.value, id)
            XCTAssertLessThan(try reached(s - 0.01), target.value, "\(id): a little less pruning misses the target")
        }
        XCTAssertEqual(Measure.figures(model).remainingPrunableWeights, 61_470, "the model searched on is not changed")
    }

    /// A channel criterion reaches the target by its channel fraction; a target it can't
    /// reach fails, naming the closest; an unknown criterion fails listing the known ones.
    func testChannelTrialAndClearFailures() throws {
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: try scratch("cache"))
        let r = try TrialExecutor.run(tinyTrial("l1-filter", TrialTarget(.compression, 2), baseline: tinyBaseline()), environment: env)
        XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        let compression = try XCTUnwrap(r.compression)
        XCTAssertGreaterThanOrEqual(compression, 2)
        XCTAssertLessThan(compression, 2.2, "the smallest channel fraction that meets the target")
        // The after-figures come from the physically pruned model: its weights are fewer,
        // none of them masked, and its file and MACs shrink with it.
        let before = try XCTUnwrap(r.before), after = try XCTUnwrap(r.after)
        XCTAssertLessThan(after.prunableWeights, before.prunableWeights)
        XCTAssertEqual(after.remainingPrunableWeights, after.prunableWeights)
        XCTAssertLessThan(try XCTUnwrap(after.fileBytes), try XCTUnwrap(before.fileBytes))
        XCTAssertGreaterThan(try XCTUnwrap(r.theoreticalSpeedup), 1)
        XCTAssertEqual(after.latency.map(\.batchSize), [1, 64])
        let far = try TrialExecutor.run(tinyTrial("l1-filter", TrialTarget(.compression, 10_000), baseline: tinyBaseline()), environment: env)
        XCTAssertEqual(far.status, .failed)
        XCTAssert(far.failure?.contains("can't be reached") ?? false, far.failure ?? "")
        let unknown = try TrialExecutor.run(tinyTrial("no-such-criterion", TrialTarget(.compression, 2), baseline: tinyBaseline()), environment: env)
        XCTAssertEqual(unknown.status, .failed)
        XCTAssert(unknown.failure?.contains("l1-filter") ?? false, "lists the known criteria: \(unknown.failure ?? "")")
        // Slimming ranks BatchNorm scales: lenet-5 has none.
        let slim = try TrialExecutor.run(tinyTrial("slimming", TrialTarget(.compression, 2), baseline: tinyBaseline()), environment: env)
        XCTAssertEqual(slim.status, .failed)
        XCTAssert(slim.failure?.contains("BatchNorm") ?? false, slim.failure ?? "")
    }

    /// A saved model is imported as the baseline (nothing trained); a criterion whose
    /// `regularize` hook changes training (slimming's L1 on γ) trains with it before pruning.
    func testSavedModelBaselineAndSlimming() throws {
        var rng = RandomGenerator(seed: 5)
        var builder = ModelBuilder(architecture: "tiny-bn", inputShape: [1, 28, 28])
        builder.add("conv", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, stride: 2, rng: &rng))
        builder.add("bn", BatchNorm(featureCount: 4))
        builder.add("relu", ReLU())
        builder.add("pool", GlobalAvgPool())
        builder.add("fc", Linear(inFeatures: 4, outFeatures: 10, rng: &rng))
        let dir = try scratch("model")
        try builder.build().save(to: dir)
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: try scratch("cache"))
        let base = tinyBaseline(dir)
        let artifact = try BaselineCache.ensure(base, cacheDirectory: env.cacheDirectory)
        XCTAssertEqual(artifact.seconds, 0)
        XCTAssertEqual(artifact.epochs, [], "a saved model is not trained")
        var c = tinyTrial("slimming", TrialTarget(.compression, 1.3), baseline: base)
        c.regularizationEpochs = 1
        let r = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        XCTAssertGreaterThan(r.phaseSeconds["regularize"] ?? 0, 0)
        XCTAssert(r.notes.contains { $0.contains("penalty") }, "\(r.notes)")
        // conv 4×9 and fc 4×10 weights, the classifier kept whole: removing one channel removes
        // its filter (9) and its fc inputs (10), so 57 of 76 are left, 1.33× ≥ 1.3×.
        XCTAssertEqual(try XCTUnwrap(r.compression), 76.0 / 57.0, accuracy: 1e-9)
        XCTAssertEqual(r.after?.prunableWeights, 57, "the after-figures are the narrower model's")
        // l1-filter has no penalty: no such phase.
        let l1 = try TrialExecutor.run(tinyTrial("l1-filter", TrialTarget(.compression, 1.3), baseline: base), environment: env)
        XCTAssertEqual(l1.status, .succeeded, l1.failure ?? "")
        XCTAssertNil(l1.phaseSeconds["regularize"])
    }

    /// Weight rewinding finds its checkpoint in the baseline, or fails saying what to set.
    func testRewindingUsesTheBaselinesCheckpoints() throws {
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: try scratch("cache"))
        var c = tinyTrial("global-magnitude", TrialTarget(.compression, 2), baseline: tinyBaseline("lenet-300-100"))
        c.finetune = "rewind"; c.finetuneOptions = ["epoch=0"]; c.latencyRuns = 0
        let missing = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(missing.status, .failed)
        XCTAssert(missing.failure?.contains("no checkpoint of epoch 0") ?? false, missing.failure ?? "")
        c.baseline.checkpointEpochs = [0]
        let r = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        XCTAssertEqual(try XCTUnwrap(r.compression), 2, accuracy: 0.01)
    }

    /// The paired design: two different criteria under one seed see the same calibration
    /// batches and the same finetuning data and seed; the strategy's validation split is
    /// the held-out training images, never the test split.
    func testCalibrationAndFinetuningAreShared() throws {
        let registry = try registry()
        Probe.reset()
        try registry.register(criterion: ProbeA.self)
        try registry.register(criterion: ProbeB.self)
        try registry.register(finetune: ProbeStrategy.self)
        let env = TrialEnvironment(registry: registry, cacheDirectory: try scratch("cache"))
        for id in [ProbeA.id, ProbeB.id] {
            var c = tinyTrial(id, TrialTarget(.compression, 2), baseline: tinyBaseline())
            c.finetune = ProbeStrategy.id; c.latencyRuns = 0
            let r = try TrialExecutor.run(c, environment: env)
            XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        }
        XCTAssertEqual(Probe.calibration.count, 2)
        XCTAssertEqual(Probe.calibration[ProbeA.id], Probe.calibration[ProbeB.id], "same calibration batches")
        XCTAssertEqual(Probe.calibration[ProbeA.id]?.count, 2, "two calibration batches")
        XCTAssertEqual(Probe.finetuning.count, 2)
        XCTAssertEqual(Probe.finetuning[0], Probe.finetuning[1], "same finetuning data, seed and settings")
        let splits = try tinyBaseline().loadData()
        XCTAssertEqual(Probe.finetuning[0].validation, splits.validation!.sourceIndices)
        XCTAssertEqual(Probe.finetuning[0].train, splits.train.sourceIndices)
    }

    // MARK: Oracle

    /// The oracle's loss increases against a direct computation: on a two-layer network
    /// (4 → 3 → 2), each hidden unit is removed by hand (its row of W1 and b1, its column
    /// of W2 dropped) and the cross-entropy computed from scratch.
    func testOracleAgainstDirectComputation() throws {
        var rng = RandomGenerator(seed: 7)
        var b = ModelBuilder(architecture: "tiny", inputShape: [4])
        b.add("fc1", Linear(inFeatures: 4, outFeatures: 3, rng: &rng))
        b.add("relu", ReLU())
        b.add("fc2", Linear(inFeatures: 3, outFeatures: 2, rng: &rng))
        let model = try b.build()
        let pixels: [UInt8] = [12, 200, 45, 90, 250, 3, 77, 130, 60, 60, 180, 20, 5, 99, 240, 160, 33, 210, 120, 8]
        let data = try Dataset(name: "tiny", imageShape: [1, 2, 2], classCount: 2, pixels: pixels, labels: [0, 1, 1, 0, 1],
                               normalization: Normalization(mean: [0.5], std: [0.25]))
        let all = CalibrationSettings(batches: 1, batchSize: 5, seed: 3)
        let oracle = try Oracle.values(model: model, data: data, calibration: all, layers: ["fc1"])

        let w1 = model.nodes[0].layer.parameter(named: "weight")!.value.scalars, b1 = model.nodes[0].layer.parameter(named: "bias")!.value.scalars
        let w2 = model.nodes[2].layer.parameter(named: "weight")!.value.scalars, b2 = model.nodes[2].layer.parameter(named: "bias")!.value.scalars
        let x = data.normalizedImages().scalars
        func loss(removing removed: Int?) -> Double {
            var total = 0.0
            for e in 0..<5 {
                var h: [Double] = []
                for j in 0..<3 where j != removed {
                    var s = Double(b1[j])
                    for i in 0..<4 { s += Double(w1[j * 4 + i]) * Double(x[e * 4 + i]) }
                    h.append(max(0, s))
                }
                let kept = (0..<3).filter { $0 != removed }
                let z = (0..<2).map { k in Double(b2[k]) + zip(kept, h).reduce(0) { $0 + Double(w2[k * 3 + $1.0]) * $1.1 } }
                let label = Int(data.labels[e])
                total += log(exp(z[0]) + exp(z[1])) - z[label]
            }
            return total / 5
        }
        XCTAssertEqual(oracle.baseLoss, loss(removing: nil), accuracy: 1e-6)
        XCTAssertEqual(oracle.examples, 5)
        XCTAssertEqual(oracle.layers.map(\.path), ["fc1"])
        for j in 0..<3 {
            XCTAssertEqual(oracle.layers[0].lossIncrease[j], loss(removing: j) - loss(removing: nil), accuracy: 1e-6, "unit \(j)")
        }
        XCTAssertEqual(model.nodes[0].layer.parameter(named: "weight")!.value.scalars, w1, "the model is restored")
        // A criterion that ranks exactly as the oracle agrees perfectly; the reverse, not at all.
        let view = model.prunableLayers()[0]
        let same = LayerScores(layer: view, scores: oracle.layers[0].lossIncrease.map(Float.init))
        XCTAssertEqual(Oracle.agreement(scores: [same], oracle: oracle).mean ?? 0, 1, accuracy: 1e-12)
        let reversed = LayerScores(layer: view, scores: oracle.layers[0].lossIncrease.map { Float(-$0) })
        XCTAssertEqual(Oracle.agreement(scores: [reversed], oracle: oracle).mean ?? 0, -1, accuracy: 1e-12)
    }

    func testOracleLayerSampling() throws {
        let model = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let all = Oracle.sampledLayers(of: model)
        XCTAssertEqual(all, model.prunableLayers().filter { !$0.isClassifier }.map(\.path))
        XCTAssertEqual(all.count, 5)
        XCTAssertEqual(Oracle.sampledLayers(of: model, cap: 3), [all[0], all[2], all[4]])
        XCTAssertEqual(Oracle.sampledLayers(of: model, cap: 1), [all[0]])
    }

    /// An oracle trial fills the correlations, and caches the oracle beside the baseline.
    func testOracleTrial() throws {
        let cache = try scratch("cache")
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: cache)
        var c = TrialConfiguration(kind: .oracle, baseline: tinyBaseline(), criterion: "l1-filter", target: nil,
                                   calibrationBatches: 1, calibrationBatchSize: 32, oracleLayers: 2)
        let r = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(r.status, .succeeded, r.failure ?? "")
        let byLayer = try XCTUnwrap(r.oracleCorrelationByLayer)
        XCTAssertEqual(Set(byLayer.keys), ["features.0", "classifier.2"])
        XCTAssert(byLayer.values.allSatisfy { (-1...1).contains($0) })
        XCTAssertEqual(try XCTUnwrap(r.oracleCorrelation), byLayer.values.reduce(0, +) / Double(byLayer.count), accuracy: 1e-12)
        let entry = "\(URL(fileURLWithPath: cache).standardizedFileURL.path)/\(c.baseline.hash)"
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: entry).filter { $0.hasPrefix("oracle-") && $0.hasSuffix(".json") }.count, 1)
        c.criterion = "random"; c.criterionOptions = ["granularity=channel"]
        let again = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(again.status, .succeeded, again.failure ?? "")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: entry).filter { $0.hasPrefix("oracle-") && $0.hasSuffix(".json") }.count, 1,
                       "one oracle per baseline and calibration, whatever the criterion")
        c.criterion = "global-magnitude"; c.criterionOptions = []
        XCTAssertEqual(try TrialExecutor.run(c, environment: env).status, .failed, "oracle trials are for channel criteria")
    }

    // MARK: Child processes

    /// A criterion that segfaults, one that aborts, one that throws and one that returns NaN
    /// each fail only their own trial, with the signal or message; a normal trial run by
    /// the same runner succeeds; a timeout kills the child.
    func testChildProcessesContainCrashes() throws {
        let dir = try buildDirectory()
        let exe = dir.appendingPathComponent("prunekit").path, fixture = dir.appendingPathComponent("libPruneKitFixtureCrashing.so").path
        guard FileManager.default.fileExists(atPath: exe), FileManager.default.fileExists(atPath: fixture) else {
            throw XCTSkip("prunekit and the crashing fixture are not built (swift build --build-tests)")
        }
        let cache = try scratch("cache")
        let baseline = tinyBaseline()
        let runner = ChildProcessTrialRunner(executable: exe, cacheDirectory: cache, pluginFiles: [fixture], threads: 1,
                                             workDirectory: try scratch("work"))
        let artifact = try runner.ensureBaseline(baseline)
        XCTAssert(artifact.trainedNow)
        XCTAssertFalse(try runner.ensureBaseline(baseline).trainedNow)

        let segfault = runner.run(tinyTrial("fixture-segfault", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(segfault.status, .failed)
        XCTAssert(segfault.failure?.hasPrefix("crashed with SIGSEGV (signal 11)") ?? false, segfault.failure ?? "")
        XCTAssert(segfault.failure?.contains("trial fixture-segfault: prune and finetune") ?? false,
                  "the last output says where it was: \(segfault.failure ?? "")")
        let abort = runner.run(tinyTrial("fixture-abort", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(abort.status, .failed)
        XCTAssert(abort.failure?.contains("SIGABRT") ?? false, abort.failure ?? "")
        let throwing = runner.run(tinyTrial("fixture-throws", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(throwing.status, .failed)
        XCTAssert(throwing.failure?.contains("the fixture criterion refuses to score") ?? false, throwing.failure ?? "")
        let nan = runner.run(tinyTrial("fixture-nan", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(nan.status, .failed)
        XCTAssert(nan.failure?.contains("non-finite") ?? false, nan.failure ?? "")

        let normal = runner.run(tinyTrial("global-magnitude", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(normal.status, .succeeded, normal.failure ?? "")
        XCTAssertEqual(try XCTUnwrap(normal.compression), 2, accuracy: 0.01)
        XCTAssertGreaterThan(normal.phaseSeconds["overhead"] ?? 0, 0, "starting a process costs something")
        XCTAssertLessThan(normal.phaseSeconds["overhead"] ?? .infinity, 30)

        var impatient = runner
        impatient.timeLimit = .seconds(0.2)
        let slow = impatient.run(tinyTrial("global-magnitude", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(slow.status, .failed)
        XCTAssertEqual(slow.failure, "timed out after 0.2 s")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runner.workDirectory), [], "no files left behind")

        var missing = runner
        missing.executable = "/nonexistent/prunekit"
        let none = missing.run(tinyTrial("global-magnitude", TrialTarget(.compression, 2), baseline: baseline))
        XCTAssertEqual(none.status, .failed)
        XCTAssert(none.failure?.contains("could not start /nonexistent/prunekit") ?? false, none.failure ?? "")
    }

    /// Issue 15, defect 7: a plugin that hangs is killed at the time limit and its trial
    /// fails "timed out after N s"; the automatic limit follows the baseline's epoch time,
    /// and the spec's `trial-timeout` sets it.
    func testAHangingPluginTimesOut() throws {
        let dir = try buildDirectory()
        let exe = dir.appendingPathComponent("prunekit").path, fixture = dir.appendingPathComponent("libPruneKitFixtureCrashing.so").path
        guard FileManager.default.fileExists(atPath: exe), FileManager.default.fileExists(atPath: fixture) else {
            throw XCTSkip("prunekit and the crashing fixture are not built (swift build --build-tests)")
        }
        let runner = ChildProcessTrialRunner(executable: exe, cacheDirectory: try scratch("cache"), pluginFiles: [fixture], threads: 1,
                                             timeLimit: .seconds(2), workDirectory: try scratch("work"))
        let t0 = Date()
        let hung = runner.run(tinyTrial("fixture-hangs", TrialTarget(.compression, 2), baseline: tinyBaseline()))
        XCTAssertEqual(hung.status, .failed)
        XCTAssertEqual(hung.failure, "timed out after 2 s")
        XCTAssertNil(hung.transient, "a hang is the criterion's failure: recorded")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 30)

        let prune = tinyTrial("global-magnitude", TrialTarget(.compression, 2), baseline: tinyBaseline())
        var oracle = prune; oracle.kind = .oracle; oracle.target = nil
        XCTAssertNil(TrialTimeLimit.none.seconds(for: prune, epochSeconds: 10))
        XCTAssertEqual(TrialTimeLimit.seconds(5).seconds(for: prune, epochSeconds: 10), 5)
        let auto = TrialTimeLimit.automatic(oracleEpochs: 9)
        // 1 finetuning epoch + 1 regularisation epoch + 1: 3 epochs of work, 20 × 3 × 100 s.
        XCTAssertEqual(auto.seconds(for: prune, epochSeconds: 100), 6000)
        XCTAssertEqual(auto.seconds(for: oracle, epochSeconds: 100), 20 * 10 * 100)
        XCTAssertEqual(auto.seconds(for: prune, epochSeconds: 0.01), TrialTimeLimit.minimumSeconds, "at least 10 minutes")
        XCTAssertEqual(auto.seconds(for: prune, epochSeconds: nil), TrialTimeLimit.fallbackSeconds, "an imported model has no epoch time")
        var endless = prune; endless.finetuneEpochs = .max
        XCTAssertEqual(auto.seconds(for: endless, epochSeconds: 1e300), TrialTimeLimit.maximumSeconds, "no overflow")
        XCTAssertThrowsError(try ExperimentSpec.load(yaml: "trial-timeout: 1e12")) { XCTAssert("\($0)".contains("at most"), "\($0)") }

        XCTAssertEqual(try ExperimentSpec.load(yaml: "trial-timeout: 90").trialTimeLimit(oracleEpochs: 0), .seconds(90))
        XCTAssertEqual(try ExperimentSpec.load(yaml: "trial-timeout: auto").trialTimeLimit(oracleEpochs: 2), .automatic(oracleEpochs: 2))
        XCTAssertEqual(ExperimentSpec().trialTimeLimit(oracleEpochs: 0), .automatic(oracleEpochs: 0))
        XCTAssertThrowsError(try ExperimentSpec.load(yaml: "trial-timeout: 0")) { XCTAssert("\($0)".contains("'trial-timeout' must be above 0"), "\($0)") }
        var timed = ExperimentSpec(); timed.trialTimeout = 30
        XCTAssertEqual(ExperimentRunner.experimentID(timed), ExperimentRunner.experimentID(ExperimentSpec()),
                       "the time limit doesn't change results: same experiment")
    }

    /// Issue 15, defect 13: the work folders of runs that are gone are removed, a live
    /// run's never; the runner removes its own.
    func testStaleWorkDirectoriesAreRemoved() throws {
        let temporary = try scratch("tmp")
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run(); gone.waitUntilExit()
        let dead = ChildProcessTrialRunner.defaultWorkDirectory(in: temporary, pid: gone.processIdentifier)
        let live = ChildProcessTrialRunner.defaultWorkDirectory(in: temporary, pid: getppid())
        let mine = ChildProcessTrialRunner.defaultWorkDirectory(in: temporary, pid: getpid())
        for d in [dead, live, mine] { try FileManager.default.createDirectory(atPath: d + "/x", withIntermediateDirectories: true) }
        XCTAssertEqual(ChildProcessTrialRunner.removeStaleWorkDirectories(in: temporary), [dead])
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: temporary)),
                       Set([live, mine].map { URL(fileURLWithPath: $0).lastPathComponent }))
        ChildProcessTrialRunner(cacheDirectory: temporary, workDirectory: mine).removeWorkDirectory()
        XCTAssertFalse(FileManager.default.fileExists(atPath: mine))
    }

    /// Issue 15, defect 15: two trials asking for the same oracle at once compute it once
    /// (a lock, as for baselines); the other reads the cached file.
    func testOracleIsComputedOnceWhenTwoTrialsAskAtOnce() throws {
        let cache = try scratch("cache")
        let b = tinyBaseline()
        let artifact = try BaselineCache.ensure(b, cacheDirectory: cache)
        let data = try b.loadData().train
        let calibration = CalibrationSettings(batches: 1, batchSize: 32, seed: 0)
        let models = [try Model.load(from: artifact.directory), try Model.load(from: artifact.directory)]
        let layers = Oracle.sampledLayers(of: models[0])
        var computed: [Bool?] = [nil, nil], values: [OracleValues?] = [nil, nil]
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let r = try? Oracle.cachedValues(model: models[i], artifact: artifact, data: data, calibration: calibration, layers: layers)
            lock.lock(); computed[i] = r?.computedNow; values[i] = r?.values; lock.unlock()
        }
        XCTAssertEqual(computed.compactMap { $0 }.filter { $0 }.count, 1, "exactly one of two concurrent trials computes the oracle: \(computed)")
        XCTAssertEqual(values[0], values[1])
        // Said before any trial runs: what it costs, in baseline epochs.
        let cost = Oracle.cost(of: models[0], layers: layers, calibration: CalibrationChoice(), trainingImages: 300, baselineEpochs: 1)
        XCTAssertEqual(cost.channels, 6 + 16 + 120 + 84)
        XCTAssertEqual(cost.examples, 300, "no more examples than training images")
        XCTAssertEqual(cost.epochs, Double(227 * 300) / 900, accuracy: 1e-9)
        XCTAssert(cost.isExpensive)
        XCTAssert(cost.summary.contains("226 channels") && cost.summary.contains("more than training the baseline"), cost.summary)
    }

    /// A baseline cache entry that doesn't load fails the trial as not recorded
    /// (`transient`), with a hint that says what to remove; the runner keeps it out of the
    /// store, so a plain rerun runs it again.
    func testACacheFailureIsNotRecordedAsDone() throws {
        let cache = try scratch("cache")
        let env = TrialEnvironment(registry: try registry(), cacheDirectory: cache)
        let c = tinyTrial("global-magnitude", TrialTarget(.compression, 2), baseline: tinyBaseline())
        let artifact = try BaselineCache.ensure(c.baseline, cacheDirectory: cache)
        try Data("truncated".utf8).write(to: URL(fileURLWithPath: "\(artifact.directory)/\(Model.weightsFileName)"))
        let r = try TrialExecutor.run(c, environment: env)
        XCTAssertEqual(r.status, .failed)
        XCTAssertEqual(r.transient, true)
        XCTAssert(r.failure?.contains("the baseline could not be loaded from the cache") ?? false, r.failure ?? "")
        XCTAssert(r.failure?.contains(artifact.entryDirectory) ?? false, "names the entry to remove: \(r.failure ?? "")")
        // A criterion's own failure stays recorded.
        XCTAssertNil(try TrialExecutor.run(tinyTrial("no-such-criterion", TrialTarget(.compression, 2), baseline: c.baseline), environment: env).transient)

        let plan = ExperimentPlan(spec: { var s = ExperimentSpec(); s.compressions = [2, 4]; return s }(),
                                  criteria: [(CriterionChoice("global-magnitude"), .weight)])
        let store = ExperimentRunnerTests.MemoryStore(), trials = ExperimentRunnerTests.FakeTrials()
        trials.onRun = { n in n == 1 ? { var f = TrialResult.failed("the baseline could not be loaded"); f.transient = true; return f }() : nil }
        let summary = try ExperimentRunner(plan: plan, jobs: 1, store: store, runner: trials, baselines: trials).run()
        XCTAssertEqual(summary.failed, 1); XCTAssertEqual(summary.notRecorded, 1)
        XCTAssertEqual(store.records.map(\.id), [plan.trials[1].id], "the cache's failure is not recorded")
        let again = ExperimentRunnerTests.FakeTrials()
        _ = try ExperimentRunner(plan: plan, jobs: 1, store: store, runner: again, baselines: again).run()
        XCTAssertEqual(again.ran, [plan.trials[0].id], "a plain rerun runs it again")
    }

    /// `prunekit trial` with bad input: a clear error and a non-zero exit.
    func testTrialCommandBadInput() throws {
        let exe = try buildDirectory().appendingPathComponent("prunekit").path
        guard FileManager.default.fileExists(atPath: exe) else { throw XCTSkip("prunekit is not built") }
        let dir = try scratch("cli")
        func run(_ arguments: [String]) throws -> (Int32, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = arguments
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return (p.terminationStatus, text)
        }
        let neither = try run(["trial", "--result", "\(dir)/r.json"])
        XCTAssertEqual(neither.0, 64)
        XCTAssert(neither.1.contains("error: give exactly one of --config, --baseline and --probe"), neither.1)
        try Data("{\"kind\": \"prune\"}".utf8).write(to: URL(fileURLWithPath: "\(dir)/bad.json"))
        let bad = try run(["trial", "--config", "\(dir)/bad.json", "--result", "\(dir)/r.json"])
        XCTAssertEqual(bad.0, 1)
        XCTAssert(bad.1.contains("is not a valid TrialConfiguration"), bad.1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/r.json"), "no result is written")
    }

    func testSignalNames() {
        XCTAssertEqual(signalName(SIGSEGV), "SIGSEGV")
        XCTAssertEqual(signalName(SIGABRT), "SIGABRT")
        XCTAssertEqual(signalName(SIGILL), "SIGILL")
        XCTAssertEqual(signalName(63), "signal 63")
    }
}

// MARK: Probes for the paired design

/// What the probe criteria and strategy saw.
enum Probe {
    nonisolated(unsafe) static var calibration: [String: [[Int]]] = [:]
    nonisolated(unsafe) static var finetuning: [Seen] = []

    struct Seen: Equatable {
        var train: [Int], validation: [Int]?, seed: UInt64, epochs: Int, learningRate: Float
    }

    static func reset() { calibration = [:]; finetuning = [] }
}

/// Records a fingerprint of every calibration batch it observes (layer 0's activations).
protocol ProbeCriterion: Criterion, OptionConstructible {}
extension ProbeCriterion {
    var granularity: Granularity { .weight }
    var evidence: Evidence { .activations }
    func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout Void) throws {
        guard layer.index == 0, let a = batch.activations else { return }
        let fingerprint = a.scalars.prefix(64).map { Int(($0 * 1000).rounded()) }
        Probe.calibration[id, default: []].append(fingerprint)
    }
}

struct ProbeA: ProbeCriterion {
    static let id = "probe-a"
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.scalars.map { abs($0) }
    }
}

struct ProbeB: ProbeCriterion {
    static let id = "probe-b"
    init(options: OptionValues) {}
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        layer.weights.scalars.map { -abs($0) }
    }
}

/// Records the finetuning context it is given; trains nothing.
struct ProbeStrategy: FinetuneStrategy, OptionConstructible {
    static let id = "probe-finetune"
    init(options: OptionValues) {}
    func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws {
        Probe.finetuning.append(Probe.Seen(train: context.train.sourceIndices, validation: context.validation?.sourceIndices,
                                           seed: context.training.seed, epochs: context.training.epochs,
                                           learningRate: context.training.learningRate))
    }
}
