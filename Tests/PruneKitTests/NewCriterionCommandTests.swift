import Foundation
import XCTest

/// `prunekit new criterion`, run as a user runs it: the built executable in a subprocess.
final class NewCriterionCommandTests: XCTestCase {
    private var prunekit: URL!
    private var work: URL!

    override func setUpWithError() throws {
        // The test bundle and the executable share the build products directory.
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let products = URL(fileURLWithPath: exe).deletingLastPathComponent()
        prunekit = products.appendingPathComponent("prunekit")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: prunekit.path), "build prunekit first (swift build)")
        work = try TestSupport.scratchDirectory("prunekit-new")
    }

    override func tearDownWithError() throws {
        if let work { try? FileManager.default.removeItem(at: work) }
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = prunekit
        process.arguments = arguments
        process.currentDirectoryURL = work
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testScaffoldsASubstitutedPackage() throws {
        let result = try run(["new", "criterion", "MyL1Filter"])
        XCTAssertEqual(result.status, 0, result.output)
        let pkg = work.appendingPathComponent("MyL1Filter")
        let files = ["Package.swift", "README.md", "Sources/MyL1FilterPlugin/MyL1Filter.swift", "Tests/MyL1FilterTests/MyL1FilterTests.swift"]
        for file in files {
            let text = try String(contentsOf: pkg.appendingPathComponent(file), encoding: .utf8)
            XCTAssertFalse(text.contains("__NAME__") || text.contains("__ID__") || text.contains("_PATH__"), "placeholder left in \(file)")
        }
        let manifest = try String(contentsOf: pkg.appendingPathComponent("Package.swift"), encoding: .utf8)
        XCTAssertTrue(manifest.contains(#".library(name: "MyL1Filter", type: .dynamic"#))
        let sdk = try XCTUnwrap(manifest.split(separator: "\n").first { $0.contains(".package(path:") && $0.hasSuffix("/Sources/PruneKit\"),") })
        let sdkPath = String(sdk.split(separator: "\"")[1])
        XCTAssertTrue(sdkPath.hasPrefix("/"), "the SDK path must be absolute: \(sdkPath)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: sdkPath + "/Package.swift"))
        let source = try String(contentsOf: pkg.appendingPathComponent("Sources/MyL1FilterPlugin/MyL1Filter.swift"), encoding: .utf8)
        XCTAssertTrue(source.contains(#"public static let id = "my-l1-filter""#))
        XCTAssertTrue(source.contains(#"@_cdecl("prunekit_plugin_entry")"#) && source.contains(#"@_cdecl("prunekit_plugin_info")"#))
        XCTAssertTrue(result.output.contains("swift build -c release"), result.output)
    }

    func testDerivesKebabCaseIdsOrTakesOne() throws {
        for (name, id) in [("HTTPScore", "http-score"), ("TaylorFO2", "taylor-fo2"), ("APoZ", "a-po-z")] {
            let result = try run(["new", "criterion", name])
            XCTAssertEqual(result.status, 0, result.output)
            XCTAssertTrue(result.output.contains("(id '\(id)')"), result.output)
        }
        let custom = try run(["new", "criterion", "Mine", "--id", "my.custom_id", "--dir", "nested/dir"])
        XCTAssertEqual(custom.status, 0, custom.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: work.appendingPathComponent("nested/dir/Package.swift").path))
        XCTAssertTrue(custom.output.contains("(id 'my.custom_id')"), custom.output)
    }

    func testRefusesToOverwrite() throws {
        let existing = work.appendingPathComponent("Taken")
        try FileManager.default.createDirectory(at: existing, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: existing.appendingPathComponent("notes.txt"))
        let result = try run(["new", "criterion", "Taken"])
        XCTAssertEqual(result.status, 64, result.output)
        XCTAssertTrue(result.output.contains("already exists and is not empty"), result.output)
        XCTAssertTrue(result.output.contains("hint:"), result.output)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: existing.path), ["notes.txt"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path), ["Taken"], "nothing half-written beside it")
    }

    func testRejectsBadNamesAndIds() throws {
        for arguments in [["my_filter"], ["myFilter"], ["My-Filter"], ["Tensor"], ["Good", "--id", "Bad Id"], ["Good", "--id=-x"]] {
            let result = try run(["new", "criterion"] + arguments)
            XCTAssertEqual(result.status, 64, "\(arguments): \(result.output)")
            XCTAssertTrue(result.output.contains("error:") && result.output.contains("hint:"), result.output)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path), [])
    }
}
