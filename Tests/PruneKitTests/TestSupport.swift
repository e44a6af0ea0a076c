import Foundation
import PruneKit
import XCTest

/// Helpers shared by the test files.
enum TestSupport {
    /// A safetensors file from (name, dtype, shape, bytes) entries and metadata.
    static func safetensors(_ entries: [(String, String, [Int], [UInt8])], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0, data: [UInt8] = []
        for (name, dtype, shape, bytes) in entries {
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.count]]
            offset += bytes.count; data += bytes
        }
        var h = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while h.count % 8 != 0 { h.append(0x20) }
        var n = UInt64(h.count), out: [UInt8] = []
        for _ in 0..<8 { out.append(UInt8(n & 0xFF)); n >>= 8 }
        return Data(out + h + data)
    }

    /// Little-endian F32 bytes.
    static func f32(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * $0)) } }
    }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The directory holding the built plugin libraries (next to the test runner, or .build/debug).
    static let buildDirectory: URL? = {
        var candidates: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        candidates.append(Bundle.main.bundleURL)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        candidates.append(repoRoot.appendingPathComponent(".build/debug"))
        return candidates.first {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("libPruneKitRandom.so").path)
        }
    }()

    /// A fresh registry holding every built-in plugin, loaded from its shared library
    /// exactly as the command-line tool loads it. Fails the test if one does not load.
    static func builtInRegistry(file: StaticString = #filePath, line: UInt = #line) throws -> Registry {
        guard let dir = buildDirectory else {
            throw XCTSkip("the plugin products are not built next to the tests (run swift build --build-tests)")
        }
        let loader = PluginLoader(registry: Registry())
        let report = loader.loadAll(PluginSearchPath(directories: [dir.path], files: []))
        XCTAssert(report.failures.isEmpty, "\(report.failures)", file: file, line: line)
        return loader.registry
    }

    /// The built `prunekit` executable: the build products directory holds it next to the
    /// test bundle.
    static let setpriv = "/usr/bin/setpriv"
    /// Whether ``runPrunekit(_:in:asUser:)`` can run as `nobody`: as root, with `setpriv`.
    static var canRunAsNobody: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: setpriv) }

    static var prunekitExecutable: URL {
        var dir = Bundle(for: CLITests.self).bundleURL
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("prunekit").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("prunekit")
    }

    /// Runs the built `prunekit` with `arguments` (in `directory`, if given) and returns its
    /// exit status and outputs. Standard error is drained on another thread while standard
    /// output is read, so neither pipe can fill up and block the child.
    /// - Parameter user: run it as this user (and group `nogroup`) through `setpriv`, where
    ///   the tests run as root (whom permission bits don't stop): see ``canRunAsNobody``.
    static func runPrunekit(_ arguments: [String], in directory: URL? = nil, asUser user: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = user == nil ? prunekitExecutable : URL(fileURLWithPath: setpriv)
        process.arguments = user.map { ["--reuid=\($0)", "--regid=nogroup", "--clear-groups", prunekitExecutable.path] + arguments } ?? arguments
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        var e = Data()
        let drained = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { e = err.fileHandleForReading.readDataToEndOfFile(); drained.signal() }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// A new, empty directory under the system's temporary directory, for one test.
    static func scratchDirectory(_ prefix: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A prunable layer made by hand: `weights` rows are output channels.
    /// The tiny model and batch of Tests/Fixtures/Reference/new_criteria.json, which the
    /// NumPy references (new_criteria.py, second_order.py) score: conv 1→4 3×3 padding 1,
    /// ReLU, global average pool, linear 4→3, on 6 images of 1×7×5.
    static func referenceModel() throws -> (Model, Dataset) {
        struct Fixture: Decodable {
            let imageShape: [Int], classCount: Int, mean: Float, std: Float
            let pixels: [UInt8], labels: [Int32]
            let conv_weight: [Float], conv_bias: [Float], fc_weight: [Float], fc_bias: [Float]
        }
        let url = repoRoot.appendingPathComponent("Tests/Fixtures/Reference/new_criteria.json")
        let ref = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        let data = try Dataset(name: "reference", imageShape: ref.imageShape, classCount: ref.classCount,
                               pixels: ref.pixels, labels: ref.labels,
                               normalization: Normalization(mean: [ref.mean], std: [ref.std]))
        var rng = RandomGenerator(seed: 0)
        var b = ModelBuilder(architecture: "reference", inputShape: ref.imageShape)
        b.add("features.0", Conv2d(inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1, rng: &rng))
        b.add("features.1", ReLU())
        b.add("pool", GlobalAvgPool())
        b.add("classifier", Linear(inFeatures: 4, outFeatures: 3, rng: &rng))
        let model = try b.build()
        model.nodes[0].layer.parameter(named: "weight")!.value = Tensor(shape: [4, 1, 3, 3], scalars: ref.conv_weight)
        model.nodes[0].layer.parameter(named: "bias")!.value = Tensor(shape: [4], scalars: ref.conv_bias)
        model.nodes[3].layer.parameter(named: "weight")!.value = Tensor(shape: [3, 4], scalars: ref.fc_weight)
        model.nodes[3].layer.parameter(named: "bias")!.value = Tensor(shape: [3], scalars: ref.fc_bias)
        return (model, data)
    }

    static func layer(_ rows: [[Float]], path: String = "test.0", kind: LayerKind = .linear) -> PrunableLayer {
        let w = Tensor(shape: [rows.count, rows.first?.count ?? 0], scalars: rows.flatMap { $0 })
        return PrunableLayer(path: path, kind: kind, weights: w, weightShape: w.shape, bias: nil,
                             macs: w.count, index: 0, isClassifier: false)
    }
}

extension XCTestCase {
    /// A new, empty directory for this test, removed when the test ends.
    func temporaryScratchDirectory(_ prefix: String) throws -> URL {
        let dir = try TestSupport.scratchDirectory(prefix)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }
}
