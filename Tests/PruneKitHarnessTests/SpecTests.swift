import PruneKit
import XCTest
@testable import PruneKitHarness

/// The experiment spec: every YAML key, the defaults, command-line overrides, and errors
/// that name the line.
final class SpecTests: XCTestCase {
    func testDefaultsAreTheDefaultComparison() throws {
        for spec in [ExperimentSpec(), try ExperimentSpec.load(yaml: ""), try ExperimentSpec.load(yaml: "# nothing\n")] {
            XCTAssertEqual(spec.model, "lenet-5")
            XCTAssertEqual(spec.dataset, "mnist-5k")
            XCTAssertNil(spec.criteria, "every registered criterion")
            XCTAssertEqual(spec.targets, [2, 4, 8, 16, 32].map { TrialTarget(.compression, $0) })
            XCTAssertEqual(spec.schedule, "one-shot")
            XCTAssertEqual(spec.finetune, "finetune")
            XCTAssertEqual(spec.finetuneEpochs, 2)
            XCTAssertEqual(spec.seeds, [0])
            XCTAssertTrue(spec.oracle.enabled)
            XCTAssertEqual(spec.store, "prunekit-results/results.sqlite")
            XCTAssertEqual(spec.reportDirectory, FileManager.default.currentDirectoryPath + "/prunekit-results/report")
            XCTAssertEqual(spec.cacheDirectory, FileManager.default.currentDirectoryPath + "/prunekit-results/baselines")
            XCTAssertNoThrow(try spec.validate())
        }
    }

    func testEveryKey() throws {
        let yaml = """
        name: study
        model: lenet-300-100
        dataset: fashion-mnist
        data-dir: /data/fm
        criteria:
          - global-magnitude
          - random granularity=channel
          - id: slimming
            options: {s: 0.001}
        compressions: [2, 4.5]
        speedups: [1.5]
        schedule: iterative
        schedule-options: {steps: 3, decay: geometric}
        finetune: {id: finetune, options: [learning-rate=0.01]}
        finetune-options: keep-best=false
        finetune-epochs: 3
        seeds: [0, 7]
        baseline:
          epochs: 4
          learning-rate: 0.1
          batch-size: 32
          validation-images: 200
          training-images: 1000
        calibration: {batches: 3, batch-size: 16}
        oracle: {enabled: false, layers: 2}
        residual-policy: whole-stream
        jobs: 2
        store: out/r.sqlite
        report: out/rep
        cache: out/cache
        models: out/models
        pattern: [2:4, 1:4]
        """
        let s = try ExperimentSpec.load(yaml: yaml)
        XCTAssertEqual(s.name, "study")
        XCTAssertEqual(s.model, "lenet-300-100")
        XCTAssertEqual(s.dataset, "fashion-mnist")
        XCTAssertEqual(s.dataDirectory, "/data/fm")
        XCTAssertEqual(s.criteria, [CriterionChoice("global-magnitude"), CriterionChoice("random", options: ["granularity=channel"]),
                                    CriterionChoice("slimming", options: ["s=0.001"])])
        XCTAssertEqual(s.targets, [TrialTarget(.compression, 2), TrialTarget(.compression, 4.5), TrialTarget(.speedup, 1.5)])
        XCTAssertEqual(s.schedule, "iterative")
        XCTAssertEqual(s.scheduleOptions, ["steps=3", "decay=geometric"])
        XCTAssertEqual(s.finetune, "finetune")
        XCTAssertEqual(s.finetuneOptions, ["learning-rate=0.01", "keep-best=false"])
        XCTAssertEqual(s.finetuneEpochs, 3)
        XCTAssertEqual(s.seeds, [0, 7])
        XCTAssertEqual(s.baseline.epochs, 4)
        XCTAssertEqual(s.baseline.learningRate, 0.1)
        XCTAssertEqual(s.baseline.batchSize, 32)
        XCTAssertEqual(s.baseline.validationImages, 200)
        XCTAssertEqual(s.baseline.trainingImages, 1000)
        XCTAssertEqual(s.calibration.batches, 3)
        XCTAssertEqual(s.calibration.batchSize, 16)
        XCTAssertFalse(s.oracle.enabled)
        XCTAssertEqual(s.oracle.layers, 2)
        XCTAssertEqual(s.residualPolicy, "whole-stream")
        XCTAssertEqual(s.jobs, 2)
        XCTAssertEqual(s.store, "out/r.sqlite")
        XCTAssertEqual(s.reportDirectory, "out/rep")
        XCTAssertEqual(s.cacheDirectory, "out/cache")
        XCTAssertEqual(s.models, "out/models")
        XCTAssertEqual(s.patterns, ["2:4", "1:4"])
        XCTAssertNoThrow(try s.validate())
        let b = s.baselineConfiguration(seed: 7)
        XCTAssertEqual(b, BaselineConfiguration(model: "lenet-300-100", dataset: "fashion-mnist", dataDirectory: "/data/fm",
                                                validationCount: 200, epochs: 4, batchSize: 32, learningRate: 0.1, seed: 7,
                                                trainingImages: 1000))
    }

    func testShortForms() throws {
        let s = try ExperimentSpec.load(yaml: "seeds: 3\nspeedups: [2, 3x]\noracle: off\ncriteria: all\nschedule: agp steps=100 every=10\n")
        XCTAssertEqual(s.seeds, [0, 1, 2])
        XCTAssertEqual(s.targets, [TrialTarget(.speedup, 2), TrialTarget(.speedup, 3)], "speed-ups alone: no compressions")
        XCTAssertFalse(s.oracle.enabled)
        XCTAssertNil(s.criteria)
        XCTAssertEqual(s.schedule, "agp")
        XCTAssertEqual(s.scheduleOptions, ["steps=100", "every=10"])
    }

    func testCommandLineOverridesTheFile() throws {
        let file = try ExperimentSpec.load(yaml: """
            model: lenet-300-100
            compressions: [2, 4]
            speedups: [2]
            seeds: [5, 6]
            schedule: iterative steps=3
            finetune-epochs: 1
            store: a.sqlite
            """)
        var o = ExperimentSpec.Overrides()
        o.model = "lenet-5"; o.speedups = [1.5]; o.seeds = 2; o.schedule = CriterionChoice("agp"); o.store = "b.sqlite"
        o.criteria = [CriterionChoice(parsing: "l1-filter")]
        let s = try file.applying(o)
        XCTAssertEqual(s.model, "lenet-5")
        XCTAssertEqual(s.targets, [TrialTarget(.speedup, 1.5)], "a target option replaces the file's targets on both axes")
        XCTAssertEqual(s.seeds, [0, 1])
        XCTAssertEqual(s.schedule, "agp")
        XCTAssertEqual(s.scheduleOptions, [], "the file's options belong to the file's schedule")
        XCTAssertEqual(s.finetuneEpochs, 1, "not overridden")
        XCTAssertEqual(s.store, "b.sqlite")
        XCTAssertEqual(s.criteria, [CriterionChoice("l1-filter")])
        XCTAssertEqual(try file.applying(ExperimentSpec.Overrides()), file, "no options: the file as it is")
    }

    /// `--schedule "iterative steps=3"` carries its options, as `--criteria` does; naming the
    /// file's schedule again without options keeps the file's.
    func testScheduleAndFinetuneOverridesTakeOptionsAfterASpace() throws {
        let file = try ExperimentSpec.load(yaml: "schedule: iterative steps=5\nfinetune: finetune epochs=3\n")
        var o = ExperimentSpec.Overrides()
        o.schedule = CriterionChoice(parsing: "iterative steps=3"); o.finetune = CriterionChoice(parsing: "finetune learning-rate=0.01")
        let s = try file.applying(o)
        XCTAssertEqual([s.schedule] + s.scheduleOptions, ["iterative", "steps=3"])
        XCTAssertEqual([s.finetune] + s.finetuneOptions, ["finetune", "learning-rate=0.01"])
        o.schedule = CriterionChoice("iterative"); o.finetune = nil
        let same = try file.applying(o)
        XCTAssertEqual([same.schedule] + same.scheduleOptions, ["iterative", "steps=5"])
        XCTAssertEqual([same.finetune] + same.finetuneOptions, ["finetune", "epochs=3"])
    }

    /// A huge seed count is refused with a message before anything is allocated.
    func testHugeSeedCountsAreRefused() throws {
        for n in [1_001, 1_000_000_000, Int.max] {
            var o = ExperimentSpec.Overrides(); o.seeds = n
            XCTAssertThrowsError(try ExperimentSpec().applying(o)) { e in
                XCTAssertEqual((e as? PruneKitError)?.message, "--seeds \(n) is not a seed count from 1 to 1000", "\(e)")
            }
            let yaml = try XCTUnwrap(error("seeds: \(n)\n"))
            XCTAssertEqual(yaml.message, "spec.yaml:1:8: 'seeds:' \(n) is not a seed count from 1 to 1000")
        }
        var o = ExperimentSpec.Overrides(); o.seeds = 1_000
        XCTAssertEqual(try ExperimentSpec().applying(o).seeds.count, 1_000, "the bound itself is allowed")
        var many = ExperimentSpec(); many.seeds = (0..<1_001).map { $0 }
        XCTAssertThrowsError(try many.validate())
    }

    /// The same target twice would plan two trials with one id.
    func testDuplicateTargetsAreRefused() throws {
        let yaml = try XCTUnwrap(error("compressions: [2, 4, 2.0]\n"))
        XCTAssertEqual(yaml.message, "spec.yaml:1:22: the target 2.0 is listed twice in 'compressions'")
        var o = ExperimentSpec.Overrides(); o.compressions = [2, 2]
        XCTAssertThrowsError(try ExperimentSpec().applying(o).validate()) { e in
            XCTAssertEqual((e as? PruneKitError)?.message, "the target \(TrialTarget(.compression, 2)) is listed twice in 'compressions'")
        }
        o = ExperimentSpec.Overrides(); o.compressions = [2]; o.speedups = [2]
        XCTAssertNoThrow(try ExperimentSpec().applying(o).validate(), "the same value on two axes is two targets")
    }

    private func error(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> PruneKitError? {
        do {
            _ = try ExperimentSpec.load(yaml: yaml, file: "spec.yaml")
            XCTFail("accepted: \(yaml)", file: file, line: line)
            return nil
        } catch let e as PruneKitError {
            return e
        } catch {
            XCTFail("not a PruneKitError: \(error)", file: file, line: line)
            return nil
        }
    }

    func testUnknownKeyNamesLineColumnAndValidKeys() throws {
        let e = try XCTUnwrap(error("model: lenet-5\ndataset: mnist-5k\nfinetune-epoch: 2\n"))
        XCTAssert(e.message.hasPrefix("spec.yaml:3:1: unknown key 'finetune-epoch'"), e.message)
        XCTAssert(e.hint?.contains("finetune-epochs") == true && e.hint?.contains("residual-policy") == true, e.hint ?? "")
        let nested = try XCTUnwrap(error("baseline:\n  epochs: 2\n  lr: 0.1\n"))
        XCTAssert(nested.message.hasPrefix("spec.yaml:3:3: unknown key 'lr' in 'baseline'"), nested.message)
        XCTAssertEqual(nested.hint, "valid keys: epochs, learning-rate, batch-size, validation-images, training-images")
    }

    func testWrongTypeNamesTheLine() throws {
        let e = try XCTUnwrap(error("model: lenet-5\nfinetune-epochs: two\n"))
        XCTAssertEqual(e.message, "spec.yaml:2:18: 'finetune-epochs' must be an integer, got 'two'")
        let list = try XCTUnwrap(error("compressions:\n  - 2\n  - four\n"))
        XCTAssertEqual(list.message, "spec.yaml:3:5: 'compressions' must be a list of numbers above 1, got 'four'")
        let map = try XCTUnwrap(error("model: [lenet-5]\n"))
        XCTAssertEqual(map.message, "spec.yaml:1:8: 'model' must be a string, got a list")
        let top = try XCTUnwrap(error("- model\n"))
        XCTAssert(top.message.hasPrefix("spec.yaml:1:1: the spec must be a mapping"), top.message)
        let seeds = try XCTUnwrap(error("seeds: [1, -2]\n"))
        XCTAssertEqual(seeds.message, "spec.yaml:1:12: 'seeds' must be a count or a list of non-negative integers, got '-2'")
        let bool = try XCTUnwrap(error("oracle:\n  enabled: maybe\n"))
        XCTAssertEqual(bool.message, "spec.yaml:2:12: 'oracle.enabled' must be true or false, got 'maybe'")
    }

    func testOutOfRangeValuesNameTheLine() throws {
        let t = try XCTUnwrap(error("compressions: [2, 1]\n"))
        XCTAssertEqual(t.message, "spec.yaml:1:19: the target 1 in 'compressions' is not above 1")
        let policy = try XCTUnwrap(error("residual-policy: sometimes\n"))
        XCTAssert(policy.message.hasPrefix("spec.yaml:1:18: 'residual-policy' must be within-blocks or whole-stream"), policy.message)
        let jobs = try XCTUnwrap(error("jobs: 0\n"))
        XCTAssertEqual(jobs.message, "spec.yaml:1:7: 'jobs' must be at least 1, got 0")
    }

    func testBrokenYAMLAndDuplicateKeysNameTheLine() throws {
        let broken = try XCTUnwrap(error("model: lenet-5\ncriteria: [a, b\n"))
        XCTAssert(broken.message.hasPrefix("spec.yaml: not valid YAML: line "), broken.message)
        let dup = try XCTUnwrap(error("model: a\nmodel: b\n"))
        XCTAssert(dup.message.contains("'model'") && dup.message.contains("twice"), dup.message)
    }

    func testValidateCatchesCommandLineValues() {
        var o = ExperimentSpec.Overrides()
        o.compressions = [0.5]
        XCTAssertThrowsError(try ExperimentSpec().applying(o).validate()) { e in
            XCTAssert((e as? PruneKitError)?.message.contains("0.5") == true, "\(e)")
        }
        o = ExperimentSpec.Overrides(); o.seeds = 0
        XCTAssertThrowsError(try ExperimentSpec().applying(o))
        o = ExperimentSpec.Overrides(); o.finetuneEpochs = -1
        XCTAssertThrowsError(try ExperimentSpec().applying(o).validate())
    }
    func testYourOwnDataKeysReachTheBaselines() throws {
        let spec = try ExperimentSpec.load(yaml: """
            dataset: data/photos
            normalize: 0.5,0.5,0.5/0.25,0.25,0.25
            image-size: 160
            crop: 128
            layout: nhwc
            arrays: a,b,c,d
            max-unreadable: 0.05
            """)
        let d = try XCTUnwrap(spec.dataOptions)
        XCTAssertEqual(d.normalize, "0.5,0.5,0.5/0.25,0.25,0.25")
        XCTAssertEqual(d.imageSize, 160); XCTAssertEqual(d.crop, 128); XCTAssertEqual(d.layout, .nhwc)
        XCTAssertEqual(d.arrayNames.all, ["a", "b", "c", "d"]); XCTAssertEqual(d.maxUnreadableFraction, 0.05)
        let b = spec.baselineConfiguration(seed: 0)
        XCTAssertEqual(b.dataOptions, d)
        XCTAssertEqual(b.dataset, FileManager.default.currentDirectoryPath + "/data/photos", "a path is made absolute for the trials")
        XCTAssertNotEqual(b.hash, ExperimentSpec().baselineConfiguration(seed: 0).hash)
        // Without these keys nothing changes: the baseline's hash is the one of before.
        XCTAssertNil(ExperimentSpec().baselineConfiguration(seed: 0).dataOptions)
        var o = ExperimentSpec.Overrides()
        o.dataOptions = { $0.crop = 96 }
        XCTAssertEqual(try spec.applying(o).dataOptions?.crop, 96)
        XCTAssertEqual(try spec.applying(o).dataOptions?.imageSize, 160, "the file's other keys stay")
        for (yaml, message) in [("crop: 300", "image size 256 and crop 300"), ("normalize: dim", "normalisation 'dim'"),
                                ("layout: chw", "'layout' must be one of auto, nchw, nhwc"), ("arrays: x,y", "not four distinct names"),
                                ("crop: 0", "'crop' must be at least 1")] {
            XCTAssertTrue(error(yaml)?.message.contains(message) == true, "\(yaml): \(String(describing: error(yaml)))")
        }
    }
}
