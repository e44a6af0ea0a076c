import Foundation
import PruneKit
import XCTest

/// `prunekit new criterion|schedule|finetune`, run as a user runs it: the built executable
/// in a subprocess; and the plugin author's documentation that goes with it.
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
            XCTAssertFalse(text.contains("__NAME__") || text.contains("__ID__") || text.contains("__SDK_"), "placeholder left in \(file)")
        }
        let manifest = try String(contentsOf: pkg.appendingPathComponent("Package.swift"), encoding: .utf8)
        XCTAssertTrue(manifest.contains(#".library(name: "MyL1Filter", type: .dynamic"#))
        // By default: the released SDK, by URL and the version this prunekit was built with.
        XCTAssertTrue(manifest.contains(#".package(url: "https://github.com/prunekit/prunekit-sdk.git", from: "\#(SDKVersion.major).\#(SDKVersion.minor).0"),"#), manifest)
        XCTAssertTrue(manifest.contains(#".product(name: "PruneKit", package: "prunekit-sdk")"#), manifest)
        XCTAssertFalse(manifest.contains(".package(path:"), manifest)
        let source = try String(contentsOf: pkg.appendingPathComponent("Sources/MyL1FilterPlugin/MyL1Filter.swift"), encoding: .utf8)
        XCTAssertTrue(source.contains(#"public static let id = "my-l1-filter""#))
        XCTAssertTrue(source.contains(#"@_cdecl("prunekit_plugin_entry")"#) && source.contains(#"@_cdecl("prunekit_plugin_info")"#))
        XCTAssertTrue(result.output.contains("swift build -c release"), result.output)
    }

    /// `--sdk-path DIR` depends on a local SDK package by absolute path; `--sdk-url` on
    /// another repository by version; each is checked before anything is written.
    func testTakesTheSDKByPathOrFromAnotherURL() throws {
        let sdk = TestSupport.repoRoot.appendingPathComponent("Sources/SDK").standardizedFileURL.resolvingSymlinksInPath()
        let byPath = try run(["new", "criterion", "ByPath", "--sdk-path", sdk.path])
        XCTAssertEqual(byPath.status, 0, byPath.output)
        let manifest = try String(contentsOf: work.appendingPathComponent("ByPath/Package.swift"), encoding: .utf8)
        XCTAssertTrue(manifest.contains(#".package(path: "\#(sdk.path)"),"#), manifest)
        XCTAssertTrue(manifest.contains(#".product(name: "PruneKitPluginABI", package: "SDK")"#), manifest)

        let byURL = try run(["new", "criterion", "ByURL", "--sdk-url", "file:///srv/git/my-sdk-mirror.git"])
        XCTAssertEqual(byURL.status, 0, byURL.output)
        let mirrored = try String(contentsOf: work.appendingPathComponent("ByURL/Package.swift"), encoding: .utf8)
        XCTAssertTrue(mirrored.contains(#".package(url: "file:///srv/git/my-sdk-mirror.git", from: "#), mirrored)
        XCTAssertTrue(mirrored.contains(#".product(name: "PruneKit", package: "my-sdk-mirror")"#), mirrored)

        for (arguments, message) in [(["--sdk-path", work.path], "has no Package.swift"),
                                     (["--sdk-path", TestSupport.repoRoot.path], "does not vend the PruneKit library"),
                                     (["--sdk-url", "file:///a b.git"], "cannot be written into Package.swift"),
                                     (["--sdk-url", "file:///x.git", "--sdk-path", sdk.path], "not both")] {
            let refused = try run(["new", "criterion", "Refused"] + arguments)
            XCTAssertNotEqual(refused.status, 0, refused.output)
            XCTAssertTrue(refused.output.contains(message), "\(arguments): \(refused.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent("Refused").path), "\(arguments) wrote a package")
        }
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

    /// Every kind of plugin is scaffolded from its own template through the one command:
    /// the files exist, every placeholder is substituted, the type conforms to the kind's
    /// protocol and registers as that kind, and nothing in it says a feature is missing.
    func testScaffoldsEveryKind() throws {
        let kinds: [(kind: String, name: String, id: String, conformance: String, registers: String, template: String, tryIt: String)] = [
            ("criterion", "MyFilter", "my-filter", "public struct MyFilter: Criterion", "register(criterion: MyFilter.self)",
             "Templates/criterion", "prunekit score --criterion my-filter"),
            ("schedule", "MyRamp", "my-ramp", "public struct MyRamp: Schedule", "register(schedule: MyRamp.self)",
             "Templates/schedule", "--schedule my-ramp --plugin"),
            ("finetune", "MyFinetune", "my-finetune", "public struct MyFinetune: FinetuneStrategy", "register(finetune: MyFinetune.self)",
             "Templates/finetuning", "--finetune my-finetune --plugin"),
        ]
        for k in kinds {
            let dir = work.appendingPathComponent("pkg-\(k.kind)")
            let result = try run(["new", k.kind, k.name, "--dir", dir.path])
            XCTAssertEqual(result.status, 0, result.output)
            XCTAssertTrue(result.output.contains("(id '\(k.id)')") && result.output.contains(k.template), result.output)
            XCTAssertTrue(result.output.contains(k.tryIt) && result.output.contains("/.build/release/lib\(k.name).so"), result.output)
            let files = ["Package.swift", "README.md", "Sources/\(k.name)Plugin/\(k.name).swift", "Tests/\(k.name)Tests/\(k.name)Tests.swift"]
            let written = try XCTUnwrap(FileManager.default.subpaths(atPath: dir.path)).filter { !$0.hasSuffix("/") }
            for file in files { XCTAssertTrue(written.contains(file), "\(k.kind): \(file) missing from \(written)") }
            for file in written where !file.contains("__") {
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path, isDirectory: &isDir), !isDir.boolValue else { continue }
                let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
                XCTAssertFalse(text.contains("__NAME__") || text.contains("__ID__") || text.contains("__SDK_"), "\(k.kind): placeholder left in \(file)")
                XCTAssertNil(text.range(of: "not implemented", options: .caseInsensitive), "\(k.kind): \(file) says something is not implemented")
            }
            XCTAssertFalse(written.contains { $0.contains("__") }, "\(k.kind): placeholder left in a file name: \(written)")
            let source = try String(contentsOf: dir.appendingPathComponent("Sources/\(k.name)Plugin/\(k.name).swift"), encoding: .utf8)
            XCTAssertTrue(source.contains(k.conformance) && source.contains(k.registers), "\(k.kind): \(source)")
            XCTAssertTrue(source.contains(#"public static let id = "\#(k.id)""#), "\(k.kind)")
            let manifest = try String(contentsOf: dir.appendingPathComponent("Package.swift"), encoding: .utf8)
            XCTAssertTrue(manifest.contains(#".library(name: "\#(k.name)", type: .dynamic"#), "\(k.kind): \(manifest)")
            XCTAssertTrue(manifest.contains(#".product(name: "PruneKitPluginABI", package: "prunekit-sdk")"#), "\(k.kind): no ABI tag")
        }
    }

    /// A checkout without the kind's template is refused with the template it lacks.
    func testRefusesACheckoutWithoutTheKindsTemplate() throws {
        let fake = work.appendingPathComponent("fake-checkout")
        for file in ["Templates/criterion/Package.swift", "Sources/SDK/Package.swift"] {
            let url = fake.appendingPathComponent(file)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("// swift-tools-version:6.0\n".utf8).write(to: url)
        }
        let result = try run(["new", "schedule", "MyRamp", "--prunekit-root", fake.path])
        XCTAssertEqual(result.status, 64, result.output)
        XCTAssertTrue(result.output.contains("Templates/schedule") && result.output.contains("hint:"), result.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent("MyRamp").path))
    }

    /// The shipped documentation and templates promise nothing that is missing, and link
    /// every article of the SDK's documentation from its landing page.
    func testShippedDocsDescribeWhatExists() throws {
        let root = TestSupport.repoRoot
        let fm = FileManager.default
        var documents = ["README.md", "Sources/SDK/Sources/PruneKit/Plugins/PLUGINS.md",
                         "Sources/SDK/Sources/PruneKit/Plugins/Foreign/MANIFEST.md"]
        let catalog = "Sources/SDK/Sources/PruneKit/PruneKit.docc"
        let articles = try fm.contentsOfDirectory(atPath: root.appendingPathComponent(catalog).path).filter { $0.hasSuffix(".md") }
        documents += articles.map { "\(catalog)/\($0)" }
        for template in try fm.contentsOfDirectory(atPath: root.appendingPathComponent("Templates").path) {
            let files = fm.subpaths(atPath: root.appendingPathComponent("Templates/\(template)").path) ?? []
            documents += files.filter { file in [".md", ".swift", ".json", ".c"].contains { file.hasSuffix($0) } && !file.hasPrefix(".build") }
                .map { "Templates/\(template)/\($0)" }
        }
        XCTAssertTrue(documents.contains("Templates/schedule/README.md") && documents.contains("Templates/finetuning/README.md"), "\(documents)")
        for document in documents {
            let text = try String(contentsOf: root.appendingPathComponent(document), encoding: .utf8)
            for stale in ["not implemented", "once the plugin loader", "is being added"] {
                XCTAssertNil(text.range(of: stale, options: .caseInsensitive), "\(document) says '\(stale)'")
            }
        }
        let landing = try String(contentsOf: root.appendingPathComponent("\(catalog)/PruneKit.md"), encoding: .utf8)
        for article in articles where article != "PruneKit.md" {
            XCTAssertTrue(landing.contains("<doc:\(article.dropLast(3))>"), "PruneKit.md does not link \(article)")
        }
    }

    /// The C template's README shows the command line that loads and uses it; that command
    /// runs (the library built as the README says, in the manifest's directory).
    func testCTemplateCommandLineRuns() throws {
        let template = TestSupport.repoRoot.appendingPathComponent("Templates/c-criterion")
        let readme = try String(contentsOf: template.appendingPathComponent("README.md"), encoding: .utf8)
        let command = "prunekit score --criterion c-l1 --option p=2 --model lenet-5 --plugin criterion.json"
        XCTAssertTrue(readme.contains(command), "the C template's README no longer shows: \(command)")
        XCTAssertTrue(readme.contains("cc -O2 -shared -fPIC -o libl1_filter.so l1_filter.c -lm"))
        let cc = "/usr/bin/cc"
        guard FileManager.default.isExecutableFile(atPath: cc) else { throw XCTSkip("no C compiler at \(cc)") }
        for file in ["l1_filter.c", "criterion.json"] {
            try FileManager.default.copyItem(at: template.appendingPathComponent(file), to: work.appendingPathComponent(file))
        }
        let compiler = Process()
        compiler.executableURL = URL(fileURLWithPath: cc)
        compiler.arguments = ["-O2", "-shared", "-fPIC", "-o", "libl1_filter.so", "l1_filter.c", "-lm"]
        compiler.currentDirectoryURL = work
        try compiler.run()
        compiler.waitUntilExit()
        XCTAssertEqual(compiler.terminationStatus, 0)
        let result = try run(Array(command.split(separator: " ").dropFirst().map(String.init)))
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("c-l1 (channel scores"), result.output)
        XCTAssertTrue(result.output.contains("features.0 "), result.output)
    }

    func testRejectsBadNamesAndIds() throws {
        for kind in ["criterion", "schedule", "finetune"] {
            for arguments in [["my_filter"], ["myFilter"], ["My-Filter"], ["Tensor"], ["Schedule"], ["Good", "--id", "Bad Id"], ["Good", "--id=-x"]] {
                let result = try run(["new", kind] + arguments)
                XCTAssertEqual(result.status, 64, "\(kind) \(arguments): \(result.output)")
                XCTAssertTrue(result.output.contains("error:") && result.output.contains("hint:"), result.output)
            }
        }
        let unknown = try run(["new", "widget", "MyWidget"])
        XCTAssertEqual(unknown.status, 64, unknown.output)
        XCTAssertTrue(unknown.output.contains("criterion") && unknown.output.contains("schedule") && unknown.output.contains("finetune"),
                      "an unknown kind lists the kinds: \(unknown.output)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path), [])
    }
}
