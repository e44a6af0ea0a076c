import Foundation
import PruneKit
import XCTest

/// Saving and loading: the safetensors format (checked against bytes made by hand),
/// its errors, model directories for every zoo model, clone, and loading PyTorch names.
final class ModelIOTests: XCTestCase {
    // MARK: Helpers

    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try TestSupport.scratchDirectory("prunekit-io-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    @discardableResult
    private func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// A safetensors file made by hand: the header length as 8 little-endian bytes, the
    /// header text exactly as given (no padding added), then `data`.
    private func file(header: String, data: [UInt8] = []) -> [UInt8] {
        let h = Array(header.utf8)
        var n = UInt64(h.count)
        var out: [UInt8] = []
        for _ in 0..<8 { out.append(UInt8(n & 0xFF)); n >>= 8 }
        return out + h + data
    }

    /// Little-endian bytes of floats, written out from their IEEE bit patterns.
    private func le(_ values: [Float]) -> [UInt8] {
        values.flatMap { v -> [UInt8] in
            let b = v.bitPattern
            return [UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)]
        }
    }

    /// Asserts that `body` throws a PruneKitError of `kind` whose message contains every fragment.
    private func assertError(_ kind: PruneKitError.Kind, _ fragments: [String],
                             file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected a \(kind) error", file: file, line: line)
        } catch let e as PruneKitError {
            XCTAssertEqual(e.kind, kind, "\(e)", file: file, line: line)
            for f in fragments {
                XCTAssertTrue(e.message.contains(f), "'\(f)' not in: \(e.message)", file: file, line: line)
            }
            XCTAssertNotNil(e.hint, "no hint in: \(e)", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    private func decodeError(_ bytes: [UInt8], _ fragments: [String], line: UInt = #line) {
        assertError(.invalidFile, fragments, line: line) { _ = try SafeTensors.decode(bytes, source: "test.safetensors") }
    }

    private func randomBatch(_ shape: [Int], seed: UInt64 = 7) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return .randomNormal(shape, using: &rng)
    }

    private func assertSameParameters(_ a: Model, _ b: Model, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.namedParameters.map(\.path), b.namedParameters.map(\.path), file: file, line: line)
        for (x, y) in zip(a.namedParameters, b.namedParameters) {
            XCTAssertEqual(x.parameter.value.shape, y.parameter.value.shape, x.path, file: file, line: line)
            XCTAssertTrue(bitIdentical(x.parameter.value, y.parameter.value), x.path, file: file, line: line)
            XCTAssertEqual(x.parameter.isTrainable, y.parameter.isTrainable, x.path, file: file, line: line)
        }
    }

    /// Same shape and the same bits in every element (memcmp: a debug-build loop over
    /// VGG-16's 15 M weights would take seconds).
    private func bitIdentical(_ a: Tensor, _ b: Tensor) -> Bool {
        a.shape == b.shape && a.withUnsafeBufferPointer { p in b.withUnsafeBufferPointer { q in
            p.isEmpty || memcmp(p.baseAddress!, q.baseAddress!, p.count * 4) == 0
        } }
    }

    /// Gives every BatchNorm non-trivial running statistics, so that saving them matters.
    private func perturbState(_ model: Model, seed: UInt64 = 3) {
        var rng = RandomGenerator(seed: seed)
        for (path, p) in model.namedParameters where path.hasSuffix("running_mean") || path.hasSuffix("running_var") {
            let noise = Tensor.randomUniform(p.value.shape, low: 0.5, high: 1.5, using: &rng)
            p.assign(noise)
        }
    }

    // MARK: safetensors format

    func testEncodeMatchesHandMadeBytes() throws {
        let t = Tensor(shape: [2], scalars: [1.0, -2.5])
        let bytes = try SafeTensors.encode([("w", t)])
        // 54 bytes of JSON, padded with 2 spaces to 56 = 0x38.
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"# + "  "
        let expected: [UInt8] = [0x38, 0, 0, 0, 0, 0, 0, 0] + Array(header.utf8)
            + [0x00, 0x00, 0x80, 0x3F,    // 1.0  = 0x3F800000
               0x00, 0x00, 0x20, 0xC0]    // -2.5 = 0xC0200000
        XCTAssertEqual(bytes, expected)

        let decoded = try SafeTensors.decode(expected)
        XCTAssertEqual(decoded.tensors["w"]?.shape, [2])
        XCTAssertEqual(decoded.tensors["w"]?.scalars, [1.0, -2.5])
        XCTAssertEqual(decoded.metadata, [:])
    }

    func testEncodeWithMetadataAndTwoTensors() throws {
        let a = Tensor(shape: [1, 2], scalars: [0.5, 2])
        let b = Tensor(shape: [], scalars: [3])
        let bytes = try SafeTensors.encode([("a", a), ("b", b)], metadata: ["k": "v"])
        let json = #"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"#
            + #""b":{"dtype":"F32","shape":[],"data_offsets":[8,12]}}"#
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        XCTAssertEqual(bytes, file(header: String(decoding: header, as: UTF8.self), data: le([0.5, 2, 3])))
        XCTAssertEqual(bytes.count % 4, 0)
        XCTAssertEqual((bytes.count - 12 - 8) % 8, 0, "the data section starts 8-byte aligned")
    }

    func testReadsOtherDTypes() throws {
        // F64 1.5, I64 -7 (PyTorch's num_batches_tracked), F16 -2 and 0.5, BF16 1.0.
        let header = #"{"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"#
            + #""n":{"dtype":"I64","shape":[],"data_offsets":[8,16]},"#
            + #""h":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},"#
            + #""b":{"dtype":"BF16","shape":[1],"data_offsets":[20,22]}}"#
        let data: [UInt8] = [0, 0, 0, 0, 0, 0, 0xF8, 0x3F,              // 1.5 = 0x3FF8000000000000
                             0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  // -7
                             0x00, 0xC0, 0x00, 0x38,                      // F16 -2 = 0xC000, 0.5 = 0x3800
                             0x80, 0x3F]                                  // BF16 1.0 = 0x3F80
        let r = try SafeTensors.decode(file(header: header, data: data))
        XCTAssertEqual(r.tensors["d"]?.scalars, [1.5])
        XCTAssertEqual(r.tensors["n"]?.scalars, [-7])
        XCTAssertEqual(r.tensors["n"]?.shape, [])
        XCTAssertEqual(r.tensors["h"]?.scalars, [-2, 0.5])
        XCTAssertEqual(r.tensors["b"]?.scalars, [1])
    }

    func testFileRoundTripKeepsMetadataAndLeavesNoTemporaries() throws {
        var rng = RandomGenerator(seed: 1)
        let t = Tensor.randomNormal([3, 4, 5], using: &rng)
        let p = path("t.safetensors")
        try SafeTensors.write([("x.weight", t), ("empty", Tensor(shape: [0, 3]))], metadata: ["note": "héllo \"q\""], to: p)
        let r = try SafeTensors.read(p)
        XCTAssertEqual(r.tensors["x.weight"], t)
        XCTAssertEqual(r.tensors["empty"]?.shape, [0, 3])
        XCTAssertEqual(r.metadata, ["note": "héllo \"q\""])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["t.safetensors"])
    }

    func testEncodeRejectsDuplicateNames() {
        assertError(.invalidArgument, ["'a'", "twice"]) {
            _ = try SafeTensors.encode([("a", Tensor(shape: [1])), ("a", Tensor(shape: [1]))])
        }
    }

    // MARK: safetensors errors

    func testTruncatedFile() {
        decodeError([0x10, 0, 0], ["test.safetensors", "3 bytes", "too short"])
        decodeError([], ["0 bytes"])
    }

    func testHeaderLengthBeyondFile() {
        let bytes: [UInt8] = [0xFF, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)
        decodeError(bytes, ["header length is 255", "only 2 bytes"])
        decodeError([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], ["header length is 18446744073709551615"])
    }

    func testHeaderNotJSON() {
        decodeError(file(header: #"{"w": {"dtype": "F32", "#), ["not valid JSON"])
        decodeError(file(header: "hello!!!"), ["not valid JSON"])
        decodeError(file(header: "[1, 2]  "), ["not a JSON object"])
    }

    func testUnknownDType() {
        decodeError(file(header: #"{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, data: [0]),
                    ["'w'", "F8_E4M3"])
    }

    func testByteLengthMismatch() {
        decodeError(file(header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, data: Array(repeating: 0, count: 12)),
                    ["'w'", "[2, 2]", "16 bytes", "12 bytes"])
    }

    func testOffsetsBeyondDataOverlapsAndHoles() {
        decodeError(file(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]),
                    ["'w'", "beyond the end of the data section (4 bytes)"])
        decodeError(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                         data: Array(repeating: 0, count: 8)),
                    ["overlaps", "'a'", "'b'"])
        decodeError(file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: Array(repeating: 0, count: 8)),
                    ["bytes 0..<4", "no tensor"])
        decodeError(file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: Array(repeating: 0, count: 8)),
                    ["4 bytes at the end"])
        decodeError(file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, data: Array(repeating: 0, count: 4)),
                    ["'a'", "data_offsets"])
        decodeError(file(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: Array(repeating: 0, count: 4)),
                    ["'a'", "non-negative"])
    }

    func testDuplicateTensorNames() {
        decodeError(file(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                         data: Array(repeating: 0, count: 8)),
                    ["'w'", "twice"])
    }

    func testMissingSafetensorsFile() {
        assertError(.invalidFile, ["nope.safetensors", "does not exist"]) { _ = try SafeTensors.read(self.path("nope.safetensors")) }
    }

    // MARK: Model files

    func testRoundTripEveryZooModel() throws {
        for name in ModelZoo.names {
            let shape = name == "resnet-20" ? [3, 32, 32] : [1, 28, 28]
            let model = try ModelZoo.make(name, inputShape: shape, classCount: 10, seed: 11)
            perturbState(model)
            let dir = path(name)
            try model.save(to: dir, metadata: ["note": "test"])
            let loaded = try Model.load(from: dir)
            XCTAssertEqual(loaded.architecture, name)
            XCTAssertEqual(loaded.inputShape, model.inputShape)
            XCTAssertEqual(loaded.nodes.map(\.name), model.nodes.map(\.name))
            XCTAssertEqual(loaded.nodes.map(\.inputs), model.nodes.map(\.inputs))
            XCTAssertEqual(loaded.nodes.map(\.layer.kind), model.nodes.map(\.layer.kind))
            XCTAssertEqual(loaded.shapes, model.shapes)
            assertSameParameters(model, loaded)

            model.mode = .inference
            loaded.mode = .inference
            let x = randomBatch([2] + shape)
            XCTAssertTrue(bitIdentical(model.forward(x), loaded.forward(x)), name)

            let metadata = try Model.savedMetadata(in: dir)
            XCTAssertEqual(metadata["note"], "test")
            XCTAssertEqual(metadata["prunekit.architecture"], name)
            XCTAssertEqual(metadata["prunekit.version"], "1")
            XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["model.json", "model.safetensors"])
            try FileManager.default.removeItem(atPath: dir)
        }
    }

    func testModelJSONLayoutAndPyTorchNames() throws {
        let model = try ModelZoo.make("vgg-small", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let dir = path("vgg")
        try model.save(to: dir)
        let text = try String(contentsOfFile: dir + "/model.json", encoding: .utf8)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(json["format"] as? String, "prunekit-model")
        XCTAssertEqual(json["version"] as? Int, 1)
        XCTAssertEqual(json["architecture"] as? String, "vgg-small")
        XCTAssertEqual(json["input_shape"] as? [Int], [1, 28, 28])
        XCTAssertEqual(json["class_count"] as? Int, 10)
        let nodes = try XCTUnwrap(json["nodes"] as? [[String: Any]])
        XCTAssertEqual(nodes[0]["name"] as? String, "features.0")
        XCTAssertEqual(nodes[0]["kind"] as? String, "conv2d")
        XCTAssertEqual(nodes[0]["inputs"] as? [String], ["input"])
        XCTAssertEqual((nodes[0]["config"] as? [String: Any])?["kernel_size"] as? Int, 3)
        XCTAssertEqual(nodes[1]["inputs"] as? [String], ["features.0"])
        XCTAssertTrue(text.contains(#""eps": 1e-05"#), "eps is written in Float's shortest form")

        let weights = try SafeTensors.read(dir + "/model.safetensors").tensors
        XCTAssertEqual(weights["features.0.weight"]?.shape, [32, 1, 3, 3])
        XCTAssertEqual(weights["features.1.running_mean"]?.shape, [32])
        XCTAssertEqual(weights["features.1.running_var"]?.shape, [32])
        XCTAssertEqual(weights["classifier.weight"]?.shape, [10, 128])
        XCTAssertEqual(weights.count, model.namedParameters.count)
    }

    func testSaveOverwritesAndKeepsMasks() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 2)
        let dir = path("lenet")
        try model.save(to: dir)
        let w = try XCTUnwrap(model.nodes[0].layer.parameter(named: "weight"))
        var mask = Tensor(shape: w.value.shape, repeating: 1)
        mask.withUnsafeMutableBufferPointer { m in for i in stride(from: 0, to: m.count, by: 3) { m[i] = 0 } }
        w.mask = mask
        try model.save(to: dir)   // over the first save
        let loaded = try Model.load(from: dir)
        assertSameParameters(model, loaded)
        XCTAssertEqual(loaded.nodes[0].layer.parameter(named: "weight")?.mask, mask)
        XCTAssertNil(loaded.nodes[3].layer.parameter(named: "weight")?.mask)

        w.mask = nil
        try model.save(to: dir)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/masks.safetensors"))
        XCTAssertNil(try Model.load(from: dir).nodes[0].layer.parameter(named: "weight")?.mask)
    }

    func testCloneIsDeepAndIdentical() throws {
        let model = try ModelZoo.make("resnet-20", inputShape: [3, 16, 16], classCount: 5, seed: 4)
        perturbState(model)
        model.mode = .inference
        let copy = try model.clone()
        XCTAssertEqual(copy.mode, .inference)
        assertSameParameters(model, copy)
        let x = randomBatch([2, 3, 16, 16])
        let before = model.forward(x)
        XCTAssertEqual(copy.forward(x).scalars.map(\.bitPattern), before.scalars.map(\.bitPattern))

        for (a, b) in zip(model.namedParameters, copy.namedParameters) { XCTAssertFalse(a.parameter === b.parameter, a.path) }
        for (_, p) in copy.namedParameters { p.assign(Tensor(shape: p.value.shape, repeating: 0.25)) }
        let w = copy.namedParameters[0].parameter
        w.value.withUnsafeMutableBufferPointer { $0[0] = 99 }
        XCTAssertNotEqual(model.namedParameters[0].parameter.value.scalars[0], 99)
        XCTAssertEqual(model.forward(x).scalars.map(\.bitPattern), before.scalars.map(\.bitPattern))
    }

    // MARK: Model file errors

    func testWrongShapeWeightsNameThePathAndLoadNothing() throws {
        let small = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let other = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 7, seed: 2)
        let dir = path("seven")
        try other.save(to: dir)
        let before = small.namedParameters.map(\.parameter.value)
        assertError(.shapeMismatch, ["classifier.4.weight", "[10, 84]", "[7, 84]", "classifier.4.bias", "nothing was loaded"]) {
            try small.loadWeights(from: dir + "/model.safetensors")
        }
        XCTAssertEqual(small.namedParameters.map(\.parameter.value), before, "a failed load changes nothing")

        // A model.json that disagrees with its weights.
        let mine = path("mine")
        try small.save(to: mine)
        try FileManager.default.removeItem(atPath: mine + "/model.safetensors")
        try FileManager.default.copyItem(atPath: dir + "/model.safetensors", toPath: mine + "/model.safetensors")
        assertError(.shapeMismatch, ["classifier.4.weight", "expects [10, 84], found [7, 84]"]) { _ = try Model.load(from: mine) }
    }

    func testMissingTensor() throws {
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let dir = path("mlp")
        try model.save(to: dir)
        let partial = model.namedParameters.filter { $0.path != "fc2.bias" }.map { (name: $0.path, tensor: $0.parameter.value) }
        try SafeTensors.write(partial, metadata: [:], to: dir + "/model.safetensors")
        assertError(.shapeMismatch, ["missing", "'fc2.bias'", "nothing was loaded"]) { _ = try Model.load(from: dir) }
    }

    func testUnknownLayerKindAndBadConfig() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let dir = path("lenet")
        try model.save(to: dir)
        let jsonPath = dir + "/model.json"
        let original = try String(contentsOfFile: jsonPath, encoding: .utf8)

        try original.replacingOccurrences(of: #""kind": "relu""#, with: #""kind": "mish""#)
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["model.json", "features.1", "unknown layer kind 'mish'"]) { _ = try Model.load(from: dir) }

        // A value finite as a Double but past Float's range, for a layer that keeps it as a
        // Float: an error, not the layer's precondition.
        for (kind, config) in [("leakyRelu", #"{"alpha": 1e300}"#), ("hardSigmoid", #"{"beta": -1e300}"#), ("clip", #"{"max": 1e39}"#)] {
            try original.replacingOccurrences(of: #""kind": "relu", "inputs": ["features.0"], "config": {}"#,
                                              with: #""kind": "\#(kind)", "inputs": ["features.0"], "config": \#(config)"#)
                .write(toFile: jsonPath, atomically: true, encoding: .utf8)
            assertError(.invalidFile, ["features.1", "finite number within ±3.4e38"]) { _ = try Model.load(from: dir) }
        }

        try original.replacingOccurrences(of: #""kernel_size": 5, "#, with: "")
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["features.0", "'kernel_size' is missing"]) { _ = try Model.load(from: dir) }

        try original.replacingOccurrences(of: #""stride": 1"#, with: #""strid": 1"#)
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["features.0", "unknown configuration key 'strid'"]) { _ = try Model.load(from: dir) }

        try original.replacingOccurrences(of: #""inputs": ["features.2"]"#, with: #""inputs": ["features.9"]"#)
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["features.3", "'features.9'", "not an earlier node"]) { _ = try Model.load(from: dir) }

        try original.replacingOccurrences(of: #""version": 1"#, with: #""version": 2"#)
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["version 2"]) { _ = try Model.load(from: dir) }

        try "{ not json".write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["model.json", "not valid JSON"]) { _ = try Model.load(from: dir) }
    }

    func testMissingModelDirectoryAndFiles() throws {
        assertError(.invalidFile, ["does-not-exist", "does not exist"]) { _ = try Model.load(from: self.path("does-not-exist")) }
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let dir = path("lenet")
        try model.save(to: dir)
        assertError(.invalidFile, ["is a file"]) { _ = try Model.load(from: dir + "/model.json") }
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        assertError(.invalidFile, ["model.safetensors", "does not exist"]) { _ = try Model.load(from: dir) }
        try FileManager.default.removeItem(atPath: dir + "/model.json")
        assertError(.invalidFile, ["model.json", "does not exist"]) { _ = try Model.load(from: dir) }
    }

    func testInconsistentArchitectureAndBadSaveTargets() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let dir = path("lenet")
        try model.save(to: dir)
        let jsonPath = dir + "/model.json"
        let original = try String(contentsOfFile: jsonPath, encoding: .utf8)
        try original.replacingOccurrences(of: #""in_features": 400"#, with: #""in_features": 300"#)
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["model.json", "do not fit together", "classifier.0"]) { _ = try Model.load(from: dir) }
        try original.replacingOccurrences(of: #""class_count": 10"#, with: #""class_count": 3"#)
            .write(toFile: jsonPath, atomically: true, encoding: .utf8)
        assertError(.invalidFile, ["class_count is 3", "[10]"]) { _ = try Model.load(from: dir) }

        assertError(.invalidArgument, ["is a file"]) { try model.save(to: jsonPath) }
        assertError(.invalidArgument, ["prunekit.architecture", "reserved"]) {
            try model.save(to: self.path("other"), metadata: ["prunekit.architecture": "x"])
        }
    }

    func testCloneKeepsMasks() throws {
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let w = model.nodes[0].layer.parameter(named: "weight")!
        w.mask = Tensor(shape: w.value.shape, repeating: 0)
        let copy = try model.clone()
        let cw = copy.nodes[0].layer.parameter(named: "weight")!
        XCTAssertEqual(cw.mask, w.mask)
        XCTAssertEqual(cw.value.scalars.max(), 0)
        cw.mask = nil
        XCTAssertNotNil(w.mask)
    }

    func testLayerFactoryErrors() {
        assertError(.invalidArgument, ["node 'x'", "unknown layer kind 'conv3d'"]) {
            _ = try LayerFactory.make(kind: "conv3d", configuration: [:], nodeName: "x")
        }
        assertError(.invalidArgument, ["node 'fc'", "'out_features' is missing"]) {
            _ = try LayerFactory.make(kind: .linear, configuration: ["in_features": 3], nodeName: "fc")
        }
        assertError(.invalidArgument, ["node 'c'", "divisible by groups"]) {
            _ = try LayerFactory.make(kind: .conv2d, configuration: ["in_channels": 3, "out_channels": 4, "kernel_size": 3, "groups": 2], nodeName: "c")
        }
        assertError(.invalidArgument, ["'in_features' must be a whole number"]) {
            _ = try LayerFactory.make(kind: .linear, configuration: ["in_features": 2.5, "out_features": 1], nodeName: "fc")
        }
        assertError(.invalidArgument, ["node 'd'", "p must be in [0, 1)"]) {
            _ = try LayerFactory.make(kind: .dropout, configuration: ["p": 1], nodeName: "d")
        }
    }

    // MARK: PyTorch weights

    func testLoadWeightsWithNameMapping() throws {
        let source = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 5)
        let target = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 6)
        // A "PyTorch" file whose last layer is called fc3, with BatchNorm-style extras.
        var named = source.namedParameters.map { p -> (name: String, tensor: Tensor) in
            (p.path.replacingOccurrences(of: "classifier.4.", with: "fc3."), p.parameter.value)
        }
        named.append(("bn.num_batches_tracked", Tensor(shape: [], scalars: [100])))
        let file = path("torch.safetensors")
        try SafeTensors.write(named, to: file)

        assertError(.shapeMismatch, ["missing", "'classifier.4.weight'", "not in the model", "'fc3.weight'", "nothing was loaded"]) {
            try target.loadWeights(from: file)
        }
        try target.loadWeights(from: file, nameMapping: ["fc3.weight": "classifier.4.weight", "fc3.bias": "classifier.4.bias"])
        assertSameParameters(source, target)

        let third = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 7)
        try third.loadWeights(from: file, nameMapping: ["fc3.": "classifier.4."])
        assertSameParameters(source, third)

        // strict: false leaves missing parameters alone and ignores extras.
        let fourth = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 8)
        let kept = fourth.nodes.last!.layer.parameter(named: "weight")!.value
        try fourth.loadWeights(from: file, strict: false)
        XCTAssertEqual(fourth.nodes.last!.layer.parameter(named: "weight")!.value, kept)
        XCTAssertEqual(fourth.nodes[0].layer.parameter(named: "weight")!.value, source.nodes[0].layer.parameter(named: "weight")!.value)

        // Shape mismatches are errors even when not strict.
        let wide = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 12, seed: 9)
        assertError(.shapeMismatch, ["'classifier.4.weight' expects [12, 84], found [10, 84]", "from 'fc3.weight'"]) {
            try wide.loadWeights(from: file, nameMapping: ["fc3.": "classifier.4."], strict: false)
        }
    }
}
