import Foundation
import PruneKit
import XCTest

/// Helpers shared by the test files.
enum TestSupport {
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

    /// A new, empty directory under the system's temporary directory, for one test.
    static func scratchDirectory(_ prefix: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A prunable layer made by hand: `weights` rows are output channels.
    static func layer(_ rows: [[Float]], path: String = "test.0", kind: LayerKind = .linear) -> PrunableLayer {
        let w = Tensor(shape: [rows.count, rows.first?.count ?? 0], scalars: rows.flatMap { $0 })
        return PrunableLayer(path: path, kind: kind, weights: w, weightShape: w.shape, bias: nil,
                             macs: w.count, index: 0, isClassifier: false)
    }
}
