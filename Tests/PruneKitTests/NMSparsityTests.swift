import Foundation
import PruneKit
import XCTest

/// N:M semi-structured sparsity: selection against a naive reference (conv and linear,
/// ties, layers left dense), bad patterns and targets, the N:M storage form (byte by byte,
/// round trips, size against the bitmask, damaged files), the pattern kept through
/// finetuning and a reload, and `prunekit prune --pattern`.
final class NMSparsityTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try temporaryScratchDirectory("prunekit-nm-tests")   // removed after each test
    }

    private func dir(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    private func magnitude() throws -> any Criterion { try TestSupport.builtInRegistry().criterion("layer-magnitude") }

    /// The naive reference: for every group (o, g, k) of M input channels, sort its
    /// (score, position) pairs ascending and prune the first M − N.
    private func reference(_ scores: [Float], shape: [Int], n: Int, m: Int) -> [Bool] {
        let (out, c) = (shape[0], shape[1]), k = shape.dropFirst(2).reduce(1, *)
        var keep = [Bool](repeating: true, count: scores.count)
        for o in 0..<out {
            for g in 0..<(c / m) {
                for kk in 0..<k {
                    let positions = (0..<m).map { j in (o * c + g * m + j) * k + kk }
                    let order = positions.enumerated().sorted { (scores[$0.element], $0.offset) < (scores[$1.element], $1.offset) }
                    for (_, p) in order.prefix(m - n) { keep[p] = false }
                }
            }
        }
        return keep
    }

    /// Seeded scores from a few levels, so that groups hold many ties.
    private func scores(_ count: Int, levels: UInt64, seed: UInt64) -> [Float] {
        var rng = RandomGenerator(seed: seed)
        return (0..<count).map { _ in Float(rng.next() % levels) / 4 }
    }

    private func source(_ path: String, _ scores: [Float], shape: [Int]) -> ScoreSource {
        var s = ScoreSource(path: path, scores: scores)
        s.weightShape = shape
        return s
    }

    private func settings(_ pattern: NMPattern) -> SelectionSettings {
        var s = SelectionSettings(scope: .global, sparsity: 0, keepClassifier: false)
        s.pattern = pattern
        return s
    }

    // MARK: Selection

    func testSelectionMatchesTheNaiveReferenceOnConvAndLinearLayers() throws {
        let layers: [(String, [Int])] = [("conv", [6, 16, 3, 3]), ("linear", [5, 48]), ("wide", [3, 128])]
        for (n, m) in [(2, 4), (1, 4), (3, 4), (1, 2), (4, 8), (3, 16), (5, 16)] {
            let pattern = try NMPattern(n: n, m: m)
            for levels: UInt64 in [3, 1 << 20] {   // many ties, then almost none
                let all = layers.enumerated().map { k, l in (l.0, l.1, scores(l.1.reduce(1, *), levels: levels, seed: UInt64(31 * k + m))) }
                // Small chunks: rows are read a few at a time.
                for chunk in [64, 1 << 16] {
                    let plan = try selectPruning(all.map { source($0.0, $0.2, shape: $0.1) }, granularity: .weight,
                                                 settings: settings(pattern), criterion: "test", chunkSize: chunk)
                    XCTAssertEqual(plan.pattern, pattern)
                    XCTAssertEqual(plan.notes, [])
                    for ((path, shape, s), layer) in zip(all, plan.layers) {
                        let expected = reference(s, shape: shape, n: n, m: m)
                        XCTAssertEqual(layer.keep.map { $0 == 1 }, expected, "\(pattern) \(path) levels \(levels) chunk \(chunk)")
                        XCTAssertEqual(layer.keptCount, s.count * n / m)
                    }
                }
            }
        }
    }

    func testTiesKeepTheLaterPositionsAsTheGlobalSelectionDoes() throws {
        // Equal scores: the earlier positions are pruned first, as selectLowest does.
        let plan = try selectPruning([source("fc", [Float](repeating: 1, count: 8), shape: [1, 8])], granularity: .weight,
                                     settings: settings(try NMPattern(n: 2, m: 4)), criterion: "test")
        XCTAssertEqual(plan.layers[0].keep, [0, 0, 1, 1, 0, 0, 1, 1])
        // A conv [1, 4, 1, 2]: groups run along the input channels at each kernel position.
        let conv = try selectPruning([source("conv", [4, 0, 3, 1, 2, 9, 1, 5], shape: [1, 4, 1, 2])], granularity: .weight,
                                     settings: settings(try NMPattern(n: 2, m: 4)), criterion: "test")
        // Kernel position 0: channels 0…3 hold 4, 3, 2, 1 → keep channels 0, 1; position 1: 0, 1, 9, 5 → keep 2, 3.
        XCTAssertEqual(conv.layers[0].keep, [1, 0, 1, 0, 0, 1, 0, 1])
    }

    func testLayersThePatternCannotCoverStayDenseWithANote() throws {
        let sources = [source("first", scores(1 * 3 * 9 * 4, levels: 7, seed: 1), shape: [4, 3, 3, 3]),
                       source("fc", scores(8 * 6, levels: 7, seed: 2), shape: [8, 6]),
                       source("ok", scores(4 * 8, levels: 7, seed: 3), shape: [4, 8])]
        var s = settings(try NMPattern(n: 2, m: 4))
        s.excluded = ["ok"]
        let plan = try selectPruning(sources, granularity: .weight, settings: s, criterion: "test")
        XCTAssertEqual(plan.layers.map(\.keptCount), [108, 48, 32])
        XCTAssertEqual(plan.notes, ["layer 'first' is left dense: its 3 input channels are not a multiple of 4 (pattern 2:4)",
                                    "layer 'fc' is left dense: its 6 input channels are not a multiple of 4 (pattern 2:4)"])
        XCTAssert(plan.summary.contains("pattern 2:4"), plan.summary)
        // The plan file keeps the pattern.
        try plan.save(to: dir("plan.json"))
        XCTAssertEqual(try PruningPlan.load(from: dir("plan.json")), plan)
        // A bare score source has no shape to group.
        XCTAssertThrowsError(try selectPruning([ScoreSource(path: "bare", scores: [1, 2, 3, 4])], granularity: .weight,
                                               settings: settings(try NMPattern(n: 2, m: 4)), criterion: "test")) { e in
            XCTAssert("\(e)".contains("no weight shape"), "\(e)")
        }
    }

    func testBadPatternsAndTargetsAreClearErrors() throws {
        for (text, fragment) in [("4:4", "N must be less than M"), ("5:4", "N must be less than M"), ("0:4", "at least 1"),
                                 ("-1:4", "at least 1"), ("2", "not an N:M pattern"), ("a:b", "not an N:M pattern"),
                                 ("2:4:8", "not an N:M pattern"), ("", "not an N:M pattern"), ("2:99999999999999999999", "not an N:M pattern")] {
            XCTAssertThrowsError(try NMPattern(parsing: text), text) { e in
                let e = e as? PruneKitError
                XCTAssertEqual(e?.kind, .invalidArgument, text)
                XCTAssert(e?.message.contains(fragment) == true, "\(text): \(String(describing: e))")
                XCTAssertNotNil(e?.hint, text)
            }
        }
        XCTAssertEqual(try NMPattern(parsing: " 2:4").description, "2:4")
        XCTAssertEqual(try NMPattern(parsing: "1:8").sparsity, 0.875)

        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        var settings = TargetedPruningSettings()
        settings.pattern = try NMPattern(n: 2, m: 4)
        for target in [PruningTarget.compression(2), .speedup(2), .sparsity(0.7)] {
            XCTAssertThrowsError(try model.prune(with: try magnitude(), toward: target, settings: settings, data: nil)) { e in
                XCTAssert("\(e)".contains("fixes the sparsity"), "\(target): \(e)")
            }
        }
        XCTAssertThrowsError(try model.prune(with: TestSupport.builtInRegistry().criterion("l1-filter"), toward: .sparsity(0.5),
                                             settings: settings, data: nil)) { e in
            XCTAssert("\(e)".contains("channel criterion"), "\(e)")
        }
        XCTAssertNil(model.nodes.compactMap { $0.layer.parameter(named: "weight")?.mask }.first, "a refused pattern masked the model")
    }

    // MARK: Pruning a model, finetuning, storage

    /// Whether every group of M input channels of `weight` keeps exactly N by its mask, and
    /// the masked weights are zero.
    private func isExactly(_ p: Parameter, _ n: Int, _ m: Int) -> Bool {
        guard let mask = p.mask?.scalars else { return false }
        let v = p.value.scalars, shape = p.value.shape
        let (out, c) = (shape[0], shape[1]), k = shape.dropFirst(2).reduce(1, *)
        for o in 0..<out { for g in 0..<(c / m) { for kk in 0..<k {
            let positions = (0..<m).map { (o * c + g * m + $0) * k + kk }
            if positions.filter({ mask[$0] == 1 }).count != n { return false }
            if positions.contains(where: { mask[$0] == 0 && v[$0] != 0 }) { return false }
        } } }
        return true
    }

    /// lenet-300-100 pruned 2:4 by magnitude, the classifier too (784, 300 and 100 inputs: every layer covered).
    private func twoFourLeNet() throws -> (Model, TargetedPruning) {
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        var settings = TargetedPruningSettings(keepClassifier: false)
        settings.pattern = try NMPattern(n: 2, m: 4)
        let outcome = try model.prune(with: try magnitude(), toward: .sparsity(0.5), settings: settings, data: nil)
        return (model, outcome)
    }

    func testModelPruneWithAPatternMatchesTheReferenceOnEveryLayer() throws {
        let dense = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        let (model, outcome) = try twoFourLeNet()
        XCTAssertEqual(outcome.sparsity, 0.5)
        XCTAssertEqual(outcome.achieved, 0.5, accuracy: 1e-12)
        XCTAssertEqual(outcome.plan.pattern, try NMPattern(n: 2, m: 4))
        for (d, p) in zip(dense.prunableLayers(), model.prunableLayers()) {
            let expected = reference(d.weights.scalars.map(abs), shape: d.weightShape, n: 2, m: 4)
            let w = model.nodes[model.nodeIndex(named: p.path)!].layer.parameter(named: "weight")!
            XCTAssertEqual(w.mask!.scalars.map { $0 == 1 }, expected, p.path)
        }
        // The one-shot schedule takes the pattern; a schedule of several steps can't reach it gradually.
        let registry = try TestSupport.builtInRegistry()
        var settings = TargetedPruningSettings()
        settings.pattern = try NMPattern(n: 2, m: 4)
        var context = FinetuneContext(train: try tinyData(), validation: nil, training: TrainingConfiguration())
        context.training.epochs = 0
        XCTAssertThrowsError(try dense.clone().prune(with: try magnitude(), schedule: registry.schedule("iterative", options: ["steps=3"]),
                                                     finetune: registry.finetune("none"), toward: .sparsity(0.5), context: context,
                                                     settings: settings, data: nil)) { e in
            XCTAssert("\(e)".contains("prunes in 3 steps"), "\(e)")
        }
        let steps = try dense.clone().prune(with: try magnitude(), schedule: registry.schedule("one-shot"), finetune: registry.finetune("none"),
                                            toward: .sparsity(0.5), context: context, settings: settings, data: nil)
        XCTAssertEqual(steps.count, 1)
    }

    private func tinyData() throws -> Dataset {
        var rng = RandomGenerator(seed: 11)
        let pixels = (0..<(64 * 784)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        return try Dataset(name: "noise", imageShape: [1, 28, 28], classCount: 10, pixels: pixels,
                           labels: (0..<64).map { Int32($0 % 10) }, normalization: Normalization(mean: [0.5], std: [0.25]))
    }

    func testTheFinetunedModelIsStillExactlyTwoFourAfterSaveAndLoad() throws {
        let (model, _) = try twoFourLeNet()
        let before = model.namedParameters.map { $0.parameter.value.scalars }
        var c = TrainingConfiguration()
        c.epochs = 1; c.batchSize = 16; c.learningRate = 0.05; c.weightDecay = 5e-3
        c.optimizer = .sgd(momentum: 0.9, nesterov: true)
        _ = try model.fit(try tinyData(), configuration: c)
        XCTAssertNotEqual(model.namedParameters.map { $0.parameter.value.scalars }, before, "nothing was trained")
        let weights = { (m: Model) in m.prunableNodeIndices.map { m.nodes[$0].layer.parameter(named: "weight")! } }
        for w in weights(model) { XCTAssert(isExactly(w, 2, 4)) }
        try model.save(to: dir("tuned"), storage: .automatic)
        let back = try Model.load(from: dir("tuned"))
        for (a, b) in zip(weights(model), weights(back)) {
            XCTAssert(isExactly(b, 2, 4))
            XCTAssertEqual(a.value.scalars, b.value.scalars)
            XCTAssertEqual(a.mask?.scalars, b.mask?.scalars)
        }
        let sparse = try XCTUnwrap(Model.savedMetadata(in: dir("tuned"))["prunekit.sparse"])
        XCTAssert(sparse.contains(#""fc1.weight":{"shape":[300,784],"pruning_mask":true,"pattern":[2,4]}"#), sparse)
    }

    func testStorageRoundTripsAndIsSmallerThanTheBitmask() throws {
        let (model, _) = try twoFourLeNet()
        try model.save(to: dir("nm"), storage: .automatic)
        try model.save(to: dir("bitmask"), storage: .bitmask)
        try model.save(to: dir("sparse"), storage: .sparse)   // the biases too
        let header = try XCTUnwrap(Model.savedMetadata(in: dir("nm"))["prunekit.sparse"])
        XCTAssertEqual(header.components(separatedBy: #""pattern":[2,4]"#).count - 1, 3, header)
        XCTAssertFalse(try XCTUnwrap(Model.savedMetadata(in: dir("bitmask"))["prunekit.sparse"]).contains("pattern"))
        for name in ["nm", "bitmask", "sparse"] {
            let back = try Model.load(from: dir(name))
            for ((path, p), (_, q)) in zip(model.namedParameters, back.namedParameters) {
                XCTAssertEqual(p.value.scalars, q.value.scalars, "\(name) \(path)")
                XCTAssertEqual(p.mask?.scalars, q.mask?.scalars, "\(name) \(path)")
            }
        }
        // Codes take 3 bits per group of 4 where the bitmask takes 4: 266,200 weights → 66,550
        // groups, 24,957 bytes of codes against 33,275 of bitmask (the values are the same).
        let nm = try ModelIO.savedSize(of: dir("nm")), bitmask = try ModelIO.savedSize(of: dir("bitmask"))
        let weights = 784 * 300 + 300 * 100 + 100 * 10
        let saved = weights / 8 - (weights / 4 * 3 + 7) / 8
        XCTAssertEqual(saved, 8_318)
        XCTAssertEqual(bitmask - nm, saved, accuracy: 200)   // the header entries differ by a few bytes

        // One more weight pruned in fc1: no M gives every group the same count, so the bitmask form.
        let fc1 = model.nodes[model.nodeIndex(named: "fc1")!].layer.parameter(named: "weight")!
        var m = fc1.mask!.scalars
        m[m.firstIndex(of: 1)!] = 0
        fc1.mask = Tensor(shape: fc1.value.shape, scalars: m)
        try model.save(to: dir("fewer"), storage: .automatic)
        XCTAssertNotNil(try tensors(dir("fewer") + "/model.safetensors")["fc1.weight.__mask"])
        XCTAssertNotNil(try tensors(dir("fewer") + "/model.safetensors")["fc2.weight.__nm_codes"])
        XCTAssertEqual(try Model.load(from: dir("fewer")).nodes[model.nodeIndex(named: "fc1")!].layer.parameter(named: "weight")!.mask!.scalars, m)
    }

    /// A linear layer 8 → 1, weight [1, -5, 3, 2, 0.5, 4, -6, 7] and bias 0.5, pruned 2:4 by |w|.
    private func tinyTwoFour() throws -> Model {
        var rng = RandomGenerator(seed: 0)
        let fc = Linear(inFeatures: 8, outFeatures: 1, rng: &rng)
        fc.weight.assign(Tensor(shape: [1, 8], scalars: [1, -5, 3, 2, 0.5, 4, -6, 7]))
        fc.bias!.assign(Tensor(shape: [1], scalars: [0.5]))
        let model = try Model(architecture: "tiny", inputShape: [8], nodes: [.init(name: "fc", layer: fc, inputs: [Model.inputIndex])])
        var settings = TargetedPruningSettings(keepClassifier: false)
        settings.pattern = try NMPattern(n: 2, m: 4)
        try model.prune(with: try magnitude(), toward: .sparsity(0.5), settings: settings, data: nil)
        return model
    }

    private func tensors(_ path: String) throws -> [String: Any] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        return try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
    }

    func testLayoutByteByByteAndUnmaskedZeros() throws {
        let model = try tinyTwoFour()
        try model.save(to: dir("tiny"), storage: .sparse)
        let file = dir("tiny") + "/model.safetensors"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let header = try tensors(file)
        let dataStart = 8 + bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        func data(_ name: String) -> [UInt8] {
            let entry = header[name] as! [String: Any], r = entry["data_offsets"] as! [Int]
            return Array(bytes[(dataStart + r[0])..<(dataStart + r[1])])
        }
        // Group 0 keeps positions (1, 2): rank 3 of (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); group 1 (2, 3): rank 5.
        XCTAssertEqual(data("fc.weight.__nm_codes"), [0b011_101_00])
        XCTAssertEqual(data("fc.weight.__values"), TestSupport.f32([-5, 3, -6, 7]))
        XCTAssertNil(header["fc.weight.__mask"])
        let back = try Model.load(from: dir("tiny"))
        XCTAssertEqual(back.nodes[0].layer.parameter(named: "weight")!.value.scalars, [0, -5, 3, 0, 0, 0, -6, 7])
        XCTAssertEqual(back.nodes[0].layer.parameter(named: "weight")!.mask!.scalars, [0, 1, 1, 0, 0, 0, 1, 1])

        // Zeros without a mask (weights from PyTorch): at most N non-zeros per group, padded.
        let plain = try tinyTwoFour()
        let w = plain.nodes[0].layer.parameter(named: "weight")!
        w.assign(Tensor(shape: [1, 8], scalars: [0, 0, 3, 0, 0, 0, 0, 7]))
        w.mask = nil
        try plain.save(to: dir("plain"), storage: .sparse)
        XCTAssert(try XCTUnwrap(Model.savedMetadata(in: dir("plain"))["prunekit.sparse"]).contains(#""pruning_mask":false,"pattern":[1,4]"#))
        let plainBack = try Model.load(from: dir("plain")).nodes[0].layer.parameter(named: "weight")!
        XCTAssertEqual(plainBack.value.scalars, [0, 0, 3, 0, 0, 0, 0, 7])
        XCTAssertNil(plainBack.mask)

        // Another pattern is found: 1 and 2 kept in the groups of 4, but 3 in the one group of 8.
        let other = try tinyTwoFour()
        other.nodes[0].layer.parameter(named: "weight")!.mask = Tensor(shape: [1, 8], scalars: [0, 1, 0, 0, 0, 0, 1, 1])
        try other.save(to: dir("other"), storage: .sparse)
        let otherHeader = try XCTUnwrap(Model.savedMetadata(in: dir("other"))["prunekit.sparse"])
        XCTAssert(otherHeader.contains(#""pattern":[3,8]"#), otherHeader)
        XCTAssertEqual(try Model.load(from: dir("other")).nodes[0].layer.parameter(named: "weight")!.mask!.scalars, [0, 1, 0, 0, 0, 0, 1, 1])
    }

    func testDamagedNMFilesAreClearErrors() throws {
        let model = try tinyTwoFour()
        try model.save(to: dir("good"), storage: .sparse)
        let meta = try Model.savedMetadata(in: dir("good"))
        typealias Entry = (String, String, [Int], [UInt8])
        let bias: [Entry] = [("fc.bias.__mask", "U8", [1], [0x80]), ("fc.bias.__values", "F32", [1], TestSupport.f32([0.5]))]
        let codes: Entry = ("fc.weight.__nm_codes", "U8", [1], [0b011_101_00])
        let values: Entry = ("fc.weight.__values", "F32", [4], TestSupport.f32([-5, 3, -6, 7]))
        func entry(_ pattern: String) -> [String: String] {
            var m = meta
            m["prunekit.sparse"] = #"{"fc.weight":{"shape":[1,8],"pruning_mask":true,"pattern":"# + pattern
                + #"},"fc.bias":{"shape":[1],"pruning_mask":false}}"#
            return m
        }
        func expectError(_ name: String, _ entries: [Entry], metadata: [String: String]? = nil, _ fragments: [String], line: UInt = #line) throws {
            let d = dir(name)
            try FileManager.default.copyItem(atPath: dir("good"), toPath: d)
            try TestSupport.safetensors(entries + bias, metadata: metadata ?? meta).write(to: URL(fileURLWithPath: d + "/model.safetensors"))
            do {
                _ = try Model.load(from: d)
                XCTFail("\(name): expected an error", line: line)
            } catch let e as PruneKitError {
                XCTAssertEqual(e.kind, .invalidFile, "\(e)", line: line)
                for f in fragments + ["model.safetensors"] { XCTAssert(e.message.contains(f), "'\(f)' not in: \(e.message)", line: line) }
                XCTAssertNotNil(e.hint, line: line)
            }
        }
        // The rebuilt good file loads, so each failure below has one cause.
        try FileManager.default.copyItem(atPath: dir("good"), toPath: dir("rebuilt"))
        try TestSupport.safetensors([codes, values] + bias, metadata: meta).write(to: URL(fileURLWithPath: dir("rebuilt") + "/model.safetensors"))
        XCTAssertEqual(try Model.load(from: dir("rebuilt")).nodes[0].layer.parameter(named: "weight")!.mask!.scalars, [0, 1, 1, 0, 0, 0, 1, 1])

        try expectError("code-range", [("fc.weight.__nm_codes", "U8", [1], [0b111_101_00]), values], ["group 0", "code 7", "only 6 codes"])
        try expectError("code-length", [("fc.weight.__nm_codes", "U8", [2], [0b011_101_00, 0]), values], ["2 bytes", "need 1"])
        try expectError("code-padding", [("fc.weight.__nm_codes", "U8", [1], [0b011_101_01]), values], ["past their 2 codes"])
        try expectError("code-dtype", [("fc.weight.__nm_codes", "I8", [1], [0b011_101_00]), values], ["fc.weight.__nm_codes", "not U8"])
        try expectError("value-count", [codes, ("fc.weight.__values", "F32", [3], TestSupport.f32([-5, 3, -6]))], ["2 groups of 2", "3 values"])
        try expectError("no-codes", [values], ["pattern 2:4", "no codes"])
        try expectError("pattern-n", [codes, values], metadata: entry("[4,4]"), ["not [N, M]"])
        try expectError("pattern-type", [codes, values], metadata: entry(#""2:4""#), ["not [N, M]"])
        try expectError("pattern-m", [codes, values], metadata: entry("[1,3]"), ["not a multiple of 3"])
        try expectError("both", [codes, values, ("fc.weight.__mask", "U8", [1], [0x63])], ["both a bitmask", "and a pattern"])
        var noPattern = meta
        noPattern["prunekit.sparse"] = #"{"fc.weight":{"shape":[1,8],"pruning_mask":true},"fc.bias":{"shape":[1],"pruning_mask":false}}"#
        try expectError("no-pattern", [codes, values, ("fc.weight.__mask", "U8", [1], [0x63])], metadata: noPattern, ["names no \"pattern\""])
        var unlisted = meta
        unlisted["prunekit.sparse"] = #"{"fc.bias":{"shape":[1],"pruning_mask":false}}"#
        try expectError("unlisted", [codes, values], metadata: unlisted, ["fc.weight.__nm_codes", "does not name 'fc.weight'"])
    }

    // MARK: Command line

    func testPruneCommandWithAPattern() throws {
        let out = dir("pruned")
        let quick = ["--epochs", "0", "--latency-runs", "1", "--batches", "1", "--validation", "100", "--finetune", "none"]
        let r = try TestSupport.runPrunekit(["prune", "--model", "lenet-300-100", "--criterion", "layer-magnitude", "--pattern", "2:4",
                                             "--out", out] + quick)
        XCTAssertEqual(r.status, 0, r.err + r.out)
        XCTAssert(r.out.contains("toward sparsity 0.5 in the N:M pattern 2:4"), r.out)
        XCTAssert(r.out.contains("sparsity 0.5000, achieved 0.5000"), r.out)
        let pruned = try Model.load(from: out)
        let weights = pruned.prunableNodeIndices.map { pruned.nodes[$0].layer.parameter(named: "weight")! }
        XCTAssert(isExactly(weights[0], 2, 4) && isExactly(weights[1], 2, 4))
        XCTAssertNil(weights[2].mask, "the classifier is kept whole by default")
        XCTAssertEqual(try Model.savedMetadata(in: out)["prunekit.pattern"], "2:4")
        let report = try String(contentsOfFile: out + "/pruning.json", encoding: .utf8)
        XCTAssert(report.contains(#""pattern" : "2:4""#), report)

        let never = dir("never")
        let base = ["prune", "--model", "lenet-300-100", "--criterion", "layer-magnitude", "--out", never] + quick
        for (extra, expected) in [(["--pattern", "4:4"], "N must be less than M"), (["--pattern", "5:4"], "N must be less than M"),
                                  (["--pattern", "0:4"], "at least 1"), (["--pattern", "two:four"], "not an N:M pattern"),
                                  (["--pattern", "2:4", "--compression", "2"], "can't prune toward compression 2×"),
                                  (["--pattern", "2:4", "--sparsity", "0.7"], "can't prune toward sparsity 0.7"),
                                  (["--pattern", "2:4", "--schedule", "iterative steps=3"], "prunes in 3 steps")] {
            let bad = try TestSupport.runPrunekit(base + extra)
            XCTAssertNotEqual(bad.status, 0, "\(extra)")
            XCTAssert(bad.err.hasPrefix("error: "), "\(extra): \(bad.err)")
            XCTAssert(bad.err.contains(expected), "\(extra): \(bad.err)")
            XCTAssert(bad.err.contains("hint:"), "\(extra): \(bad.err)")
        }
        let channel = try TestSupport.runPrunekit(["prune", "--model", "lenet-300-100", "--criterion", "l1-filter", "--pattern", "2:4", "--out", never] + quick)
        XCTAssertNotEqual(channel.status, 0)
        XCTAssert(channel.err.contains("channel criterion"), channel.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: never))
    }
}
