import Foundation
import PruneKit
import XCTest

/// Sparse storage in `model.safetensors`: the layout (checked byte by byte), exact round
/// trips of values and masks, the size at 90 % sparsity, masks that survive finetuning
/// after a reload, and clear errors for damaged sparse files.
final class SparseStorageTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try TestSupport.scratchDirectory("prunekit-sparse-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func dir(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    /// A one-layer model: `fc` = Linear(9 → 1) with the given weights and bias 0.5.
    private func tiny(_ weights: [Float]) throws -> Model {
        var rng = RandomGenerator(seed: 0)
        let fc = Linear(inFeatures: 9, outFeatures: 1, rng: &rng)
        fc.weight.assign(Tensor(shape: [1, 9], scalars: weights))
        fc.bias!.assign(Tensor(shape: [1], scalars: [0.5]))
        return try Model(architecture: "tiny", inputShape: [9], nodes: [.init(name: "fc", layer: fc, inputs: [Model.inputIndex])])
    }

    /// Masks exactly `round(0.9 n)` seeded positions of every weight of `model` (biases untouched).
    private func prune90(_ model: Model, seed: UInt64 = 1) {
        var rng = RandomGenerator(seed: seed)
        for (path, p) in model.namedParameters where path.hasSuffix(".weight") && p.value.rank > 1 {
            let n = p.value.count
            let pruned = Int((0.9 * Double(n)).rounded())
            var order = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            var mask = [Float](repeating: 1, count: n)
            for i in order.prefix(pruned) { mask[i] = 0 }
            p.mask = Tensor(shape: p.value.shape, scalars: mask)
        }
    }

    /// The 8-byte header length and the JSON header of a safetensors file.
    private func header(_ path: String) throws -> (length: Int, json: [String: Any]) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let json = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        return (n, json)
    }

    private func assertSameParameters(_ a: Model, _ b: Model, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.namedParameters.map(\.path), b.namedParameters.map(\.path), file: file, line: line)
        for ((path, p), (_, q)) in zip(a.namedParameters, b.namedParameters) {
            XCTAssertEqual(p.value.shape, q.value.shape, path, file: file, line: line)
            XCTAssertEqual(p.value.scalars.map { $0 == 0 ? 0 : $0.bitPattern }, q.value.scalars.map { $0 == 0 ? 0 : $0.bitPattern },
                           "\(path): values differ", file: file, line: line)
            XCTAssertEqual(p.mask?.scalars, q.mask?.scalars, "\(path): masks differ", file: file, line: line)
        }
    }

    // MARK: Layout

    func testLayoutByteByByte() throws {
        // Keep pattern 1 0 0 1 1 0 0 0 | 1 → bits 10011000 10000000 (MSB first, as numpy.packbits).
        let model = try tiny([1, 2, 3, 4, 5, 6, 7, 8, 9])
        let w = model.nodes[0].layer.parameter(named: "weight")!
        w.mask = Tensor(shape: [1, 9], scalars: [1, 0, 0, 1, 1, 0, 0, 0, 1])
        try model.save(to: dir("tiny"), storage: .sparse)

        let weightsPath = dir("tiny") + "/model.safetensors"
        let raw = try SafeTensors.read(weightsPath)
        XCTAssertEqual(Set(raw.tensors.keys), ["fc.weight.__mask", "fc.weight.__values", "fc.bias.__mask", "fc.bias.__values"])
        XCTAssertEqual(raw.tensors["fc.weight.__mask"]?.scalars, [0x98, 0x80])
        XCTAssertEqual(raw.tensors["fc.weight.__mask"]?.shape, [2])
        XCTAssertEqual(raw.tensors["fc.weight.__values"]?.scalars, [1, 4, 5, 9])
        XCTAssertEqual(raw.tensors["fc.bias.__mask"]?.scalars, [0x80], "an unmasked tensor keeps its non-zero values")
        XCTAssertEqual(raw.tensors["fc.bias.__values"]?.scalars, [0.5])
        let (_, json) = try header(weightsPath)
        XCTAssertEqual((json["fc.weight.__mask"] as? [String: Any])?["dtype"] as? String, "U8")
        XCTAssertEqual((json["fc.weight.__values"] as? [String: Any])?["dtype"] as? String, "F32")
        let sparse = try XCTUnwrap(raw.metadata["prunekit.sparse"])
        XCTAssertEqual(sparse, #"{"fc.weight":{"shape":[1,9],"pruning_mask":true},"fc.bias":{"shape":[1],"pruning_mask":false}}"#)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir("tiny") + "/masks.safetensors"),
                       "the bitmask is the mask: no masks file")
        XCTAssertEqual(try ModelIO.sparseTensors(in: dir("tiny")), ["fc.weight", "fc.bias"])

        let back = try Model.load(from: dir("tiny"))
        assertSameParameters(model, back)
        XCTAssertEqual(back.nodes[0].layer.parameter(named: "weight")?.mask?.scalars, [1, 0, 0, 1, 1, 0, 0, 0, 1])
        XCTAssertNil(back.nodes[0].layer.parameter(named: "bias")?.mask, "no mask is invented for an unmasked tensor")
        // loadWeights reads the sparse file as dense values.
        let other = try tiny([0, 0, 0, 0, 0, 0, 0, 0, 0])
        try other.loadWeights(from: weightsPath)
        XCTAssertEqual(other.nodes[0].layer.parameter(named: "weight")?.value.scalars, [1, 0, 0, 4, 5, 0, 0, 0, 9])
    }

    func testAutomaticChoosesTheSmallerLayoutPerTensor() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        try model.save(to: dir("dense"))
        try model.save(to: dir("auto-unpruned"), storage: .automatic)
        XCTAssertEqual(try ModelIO.sparseTensors(in: dir("auto-unpruned")), [], "no zeros: nothing is smaller sparse")
        XCTAssertEqual(try ModelIO.savedSize(of: dir("auto-unpruned")), try ModelIO.savedSize(of: dir("dense")))

        prune90(model)
        try model.save(to: dir("auto"), storage: .automatic)
        XCTAssertEqual(try ModelIO.sparseTensors(in: dir("auto")),
                       ["features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight", "classifier.4.weight"],
                       "masked weights sparse, biases (no zeros) dense")
        assertSameParameters(model, try Model.load(from: dir("auto")))
    }

    // MARK: Size and round trip at 90 % sparsity

    func testNinetyPercentSparseIsSmallAndRoundTripsExactly() throws {
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        try model.save(to: dir("unpruned"))
        prune90(model)
        try model.save(to: dir("dense"))
        try model.save(to: dir("sparse"), storage: .sparse)
        let unpruned = try ModelIO.savedSize(of: dir("unpruned"))
        let dense = try ModelIO.savedSize(of: dir("dense"))
        let sparse = try ModelIO.savedSize(of: dir("sparse"))
        XCTAssertGreaterThan(dense, 4 * (266_610 + 266_200), "dense: the 266,610 parameters and the F32 masks of the 266,200 weights")
        XCTAssertLessThan(Double(sparse), 0.2 * Double(unpruned), "sparse \(sparse) B vs dense \(unpruned) B without masks")

        // The data section, counted by hand: ⌈n/8⌉ + 4k bytes per sparse tensor.
        var expected = 0
        for (_, p) in model.namedParameters {
            let n = p.value.count, k = p.mask.map { $0.scalars.filter { $0 != 0 }.count } ?? p.value.scalars.filter { $0 != 0 }.count
            expected += (n + 7) / 8 + 4 * k
        }
        let weights = dir("sparse") + "/model.safetensors"
        let fileBytes = try FileManager.default.attributesOfItem(atPath: weights)[.size] as! Int
        XCTAssertEqual(fileBytes - 8 - (try header(weights).length), expected)

        let back = try Model.load(from: dir("sparse"))
        assertSameParameters(model, back)
        XCTAssertEqual(back.compression, model.compression)
        let x = Tensor.randomNormal([4, 1, 28, 28], using: &rngForTest)
        model.mode = .inference; back.mode = .inference
        XCTAssertEqual(model.forward(x).scalars, back.forward(x).scalars)
    }

    private var rngForTest = RandomGenerator(seed: 42)

    // MARK: Finetuning after a reload keeps pruned weights at exactly zero

    func testMasksFromASparseFileKeepWeightsZeroThroughFinetuning() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        prune90(model)
        try model.save(to: dir("sparse"), storage: .sparse)
        for optimizer in [SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 5e-4, nesterov: true) as Optimizer,
                          Adam(learningRate: 0.01, weightDecay: 1e-3)] {
            let net = try Model.load(from: dir("sparse"))
            let before = net.namedParameters.map { $0.parameter.value.scalars }
            let trainer = Trainer(model: net, optimizer: optimizer)
            var rng = RandomGenerator(seed: 5)
            for _ in 0..<3 {
                _ = try trainer.step(images: .randomNormal([8, 1, 28, 28], using: &rng), labels: (0..<8).map { $0 % 10 })
            }
            var prunedSeen = 0
            for ((path, p), old) in zip(net.namedParameters, before) {
                guard let mask = p.mask else { continue }
                let v = p.value.scalars, m = mask.scalars
                for i in 0..<v.count where m[i] == 0 {
                    XCTAssertEqual(v[i], 0, "\(type(of: optimizer)): \(path)[\(i)] revived")
                    prunedSeen += 1
                }
                XCTAssertNotEqual(v, old, "\(path): kept weights were trained")
            }
            XCTAssertEqual(prunedSeen, model.compression.prunedWeights)
        }
    }

    func testFitKeepsReloadedMasksExactlyZero() throws {
        // The whole training loop (the path finetuning strategies take): SGD with Nesterov
        // momentum and weight decay, a warm-up and cosine decay, two epochs of 64 images.
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        prune90(model, seed: 9)
        try model.save(to: dir("sparse"), storage: .sparse)
        let net = try Model.load(from: dir("sparse"))
        var rng = RandomGenerator(seed: 11)
        let pixels = (0..<(64 * 784)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let data = try Dataset(name: "noise", imageShape: [1, 28, 28], classCount: 10, pixels: pixels,
                               labels: (0..<64).map { Int32($0 % 10) }, normalization: Normalization(mean: [0.5], std: [0.25]))
        var c = TrainingConfiguration()
        c.epochs = 2; c.batchSize = 16; c.learningRate = 0.05; c.weightDecay = 5e-3
        c.optimizer = .sgd(momentum: 0.9, nesterov: true); c.warmupEpochs = 0.5
        _ = try net.fit(data, configuration: c)
        var pruned = 0
        for (path, p) in net.namedParameters {
            guard let m = p.mask?.scalars else { continue }
            let v = p.value.scalars
            let revived = (0..<v.count).filter { m[$0] == 0 && v[$0] != 0 }
            XCTAssertEqual(revived, [], "\(path): pruned weights came back to life")
            pruned += m.filter { $0 == 0 }.count
        }
        XCTAssertEqual(pruned, model.compression.prunedWeights)
        XCTAssertEqual(net.compression, model.compression)
        XCTAssertNotEqual(net.namedParameters[0].parameter.value.scalars, model.namedParameters[0].parameter.value.scalars)
    }

    // MARK: Damaged sparse files

    func testDamagedSparseFilesAreClearErrors() throws {
        let model = try tiny([1, 2, 3, 4, 5, 6, 7, 8, 9])
        model.nodes[0].layer.parameter(named: "weight")!.mask = Tensor(shape: [1, 9], scalars: [1, 0, 0, 1, 1, 0, 0, 0, 1])
        try model.save(to: dir("good"), storage: .sparse)
        let meta = try Model.savedMetadata(in: dir("good"))
        let bias: [(String, String, [Int], [UInt8])] = [("fc.bias.__mask", "U8", [1], [0x80]), ("fc.bias.__values", "F32", [1], TestSupport.f32([0.5]))]

        func expectError(_ name: String, _ entries: [(String, String, [Int], [UInt8])], metadata: [String: String]? = nil,
                         _ fragments: [String], line: UInt = #line) throws {
            let d = dir(name)
            try FileManager.default.copyItem(atPath: dir("good"), toPath: d)
            try TestSupport.safetensors(entries + bias, metadata: metadata ?? meta).write(to: URL(fileURLWithPath: d + "/model.safetensors"))
            do {
                _ = try Model.load(from: d)
                XCTFail("\(name): expected an error", line: line)
            } catch let e as PruneKitError {
                XCTAssertEqual(e.kind, .invalidFile, "\(e)", line: line)
                for f in fragments + ["model.safetensors"] {
                    XCTAssert(e.message.contains(f), "'\(f)' not in: \(e.message)", line: line)
                }
                XCTAssertNotNil(e.hint, line: line)
            }
        }

        // The good file, rebuilt by the helper, loads (so each failure below has one cause).
        let good: [(String, String, [Int], [UInt8])] = [("fc.weight.__mask", "U8", [2], [0x98, 0x80]),
                                                         ("fc.weight.__values", "F32", [4], TestSupport.f32([1, 4, 5, 9]))]
        try FileManager.default.copyItem(atPath: dir("good"), toPath: dir("rebuilt"))
        try TestSupport.safetensors(good + bias, metadata: meta).write(to: URL(fileURLWithPath: dir("rebuilt") + "/model.safetensors"))
        assertSameParameters(model, try Model.load(from: dir("rebuilt")))

        try expectError("count", [good[0], ("fc.weight.__values", "F32", [3], TestSupport.f32([1, 4, 5]))],
                        ["fc.weight", "keeps 4 elements", "3 values"])
        try expectError("mask-dtype", [("fc.weight.__mask", "I16", [2], [0x98, 0, 0x80, 0]), good[1]],
                        ["fc.weight.__mask", "I16", "not U8"])
        try expectError("values-dtype", [good[0], ("fc.weight.__values", "F16", [4], [0, 0x3C, 0, 0x44, 0, 0x45, 0, 0x48])],
                        ["fc.weight.__values", "F16", "not F32"])
        try expectError("mask-length", [("fc.weight.__mask", "U8", [3], [0x98, 0x80, 0]), good[1]],
                        ["fc.weight.__mask", "3 bytes", "needs 2"])
        try expectError("padding", [("fc.weight.__mask", "U8", [2], [0x98, 0x81]), good[1]],
                        ["fc.weight.__mask", "past its 9 elements"])
        try expectError("no-values", [good[0]], ["fc.weight", "no values"])
        var noWeightEntry = meta
        noWeightEntry["prunekit.sparse"] = #"{"fc.bias":{"shape":[1],"pruning_mask":false}}"#
        try expectError("unlisted", good, metadata: noWeightEntry, ["fc.weight.__mask", "does not name 'fc.weight'"])
        var badJSON = meta
        badJSON["prunekit.sparse"] = "[1, 2"
        try expectError("json", good, metadata: badJSON, ["prunekit.sparse", "not valid JSON"])
        var badShape = meta
        badShape["prunekit.sparse"] = #"{"fc.weight":{"shape":[1,-9],"pruning_mask":true},"fc.bias":{"shape":[1],"pruning_mask":false}}"#
        try expectError("shape", good, metadata: badShape, ["fc.weight", "non-negative"])
    }

    func testReservedMetadataKeyAndSavedSizeErrors() throws {
        let model = try tiny([1, 2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertThrowsError(try model.save(to: dir("m"), metadata: ["prunekit.sparse": "{}"], storage: .sparse)) { error in
            XCTAssertEqual((error as? PruneKitError)?.kind, .invalidArgument)
        }
        XCTAssertThrowsError(try ModelIO.savedSize(of: dir("nothing"))) { error in
            XCTAssertEqual((error as? PruneKitError)?.kind, .invalidFile)
        }
        try model.save(to: dir("m"))
        let files = try ModelIO.savedFiles(of: dir("m"))
        XCTAssertEqual(files.map(\.name), ["model.json", "model.safetensors"])
        let sizes = try files.map { try FileManager.default.attributesOfItem(atPath: dir("m") + "/" + $0.name)[.size] as! Int }
        XCTAssertEqual(files.map(\.bytes), sizes)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir("m") + "/training.json"))
        XCTAssertEqual(try ModelIO.savedSize(of: dir("m")), sizes.reduce(0, +), "only the model's own files count")
    }
}
