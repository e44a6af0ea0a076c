import Foundation
import PruneKit
import XCTest

/// The plugin loader: every refusal (with its message), the shared SDK, the search path.
///
/// Needs the plugin products built (`swift build --build-tests` builds them next to the
/// test bundle) and a clang (the Swift toolchain's, for a matching ABI tag) to compile
/// small C libraries at test time.
final class PluginLoaderTests: XCTestCase {
    // MARK: Helpers

    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try TestSupport.scratchDirectory("prunekit-plugin-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// The repository root (this file is Tests/PruneKitTests/PluginLoaderTests.swift).
    private static let repoRoot = TestSupport.repoRoot
    private static let buildDirectory = TestSupport.buildDirectory

    private func product(_ name: String) throws -> String {
        guard let dir = Self.buildDirectory else {
            throw XCTSkip("the plugin products are not built next to the tests (run swift build --build-tests)")
        }
        let path = dir.appendingPathComponent("lib\(name).so").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is not built") }
        return path
    }

    /// The Swift toolchain's clang (its `__clang_version__` matches the host's tag).
    private static let clang: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        var found: [String] = []
        for dir in path.split(separator: ":").map(String.init) {
            let swift = (dir as NSString).appendingPathComponent("swift")
            if FileManager.default.isExecutableFile(atPath: swift) {
                let real = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent()
                found.append(real.appendingPathComponent("clang").path)
                found.append((dir as NSString).appendingPathComponent("clang"))
            }
        }
        found += ["/opt/swift/usr/bin/clang", "/usr/bin/clang"]
        return found.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    private static let abiDirectory = repoRoot.appendingPathComponent("Sources/SDK/Sources/PruneKitPluginABI")

    private func run(_ tool: String, _ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("\(tool) \(args.joined(separator: " ")) failed: \(text)") }
    }

    /// Compiles `source` with clang: a shared library unless `flags` says otherwise,
    /// with the ABI tag object if `tag`, linked to libPruneKit.so if `linkSDK`.
    private func compileC(_ name: String, _ source: String, tag: Bool, linkSDK: Bool, flags: [String] = ["-shared"]) throws -> String {
        guard let clang = Self.clang else { throw XCTSkip("no clang found to compile test libraries") }
        let src = scratch.appendingPathComponent("\(name).c"), out = scratch.appendingPathComponent(name).path
        try source.write(to: src, atomically: true, encoding: .utf8)
        var args = flags + ["-fPIC", "-o", out, src.path]
        if tag {
            args += ["-I", Self.abiDirectory.appendingPathComponent("include").path,
                     Self.abiDirectory.appendingPathComponent("prunekit_abi.c").path]
        }
        if linkSDK {
            guard let dir = Self.buildDirectory else { throw XCTSkip("libPruneKit.so not found") }
            args += ["-L", dir.path, "-Wl,--no-as-needed", "-lPruneKit"]
        }
        try run(clang, args)
        return out
    }

    private static let infoSource = #"const char *prunekit_plugin_info(void) { return "{\"name\":\"c-test\",\"version\":\"0.1\"}"; }"#

    /// A copy of the Random plugin with `patch` applied to its ABI tag bytes.
    private func patchedRandom(_ name: String, _ patch: (inout [UInt8]) -> Void) throws -> String {
        let copy = scratch.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: try product("PruneKitRandom"), toPath: copy)
        let section = try XCTUnwrap(ELFSharedObject(path: copy).section(named: PluginABITag.sectionName))
        var data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: copy)))
        var tag = Array(data[section.offset..<(section.offset + section.size)])
        patch(&tag)
        data.replaceSubrange(section.offset..<(section.offset + section.size), with: tag)
        try Data(data).write(to: URL(fileURLWithPath: copy))
        return copy
    }

    /// The refusal of `file` by a fresh loader: a `.plugin` error whose message contains each of `parts`.
    @discardableResult
    private func assertRefused(_ file: String, _ parts: [String], hint: String? = nil,
                               loader: PluginLoader? = nil, line: UInt = #line) -> PruneKitError? {
        let loader = loader ?? PluginLoader(registry: Registry())
        do {
            try loader.load(file: file)
            XCTFail("\(file) was loaded", line: line)
        } catch let e as PruneKitError {
            XCTAssertEqual(e.kind, .plugin, line: line)
            XCTAssertTrue(e.message.contains(file) || parts.contains(where: { e.message.contains($0) && $0.contains("/") }),
                          "message does not name the file: \(e.message)", line: line)
            for part in parts { XCTAssertTrue(e.message.contains(part), "'\(part)' not in: \(e.message)", line: line) }
            if let hint { XCTAssertTrue(e.hint?.contains(hint) ?? false, "hint '\(e.hint ?? "")' lacks '\(hint)'", line: line) }
            return e
        } catch {
            XCTFail("not a PruneKitError: \(error)", line: line)
        }
        return nil
    }

    private func copyTruncated(_ file: String, to name: String, length: Int) throws -> String {
        let out = scratch.appendingPathComponent(name).path
        try Data(try Data(contentsOf: URL(fileURLWithPath: file)).prefix(length)).write(to: URL(fileURLWithPath: out))
        return out
    }

    // MARK: The tag

    func testHeaderVersionAgreesWithSDKVersion() {
        XCTAssertEqual(PluginABITag.headerSDKVersion.major, SDKVersion.major)
        XCTAssertEqual(PluginABITag.headerSDKVersion.minor, SDKVersion.minor)
        XCTAssertEqual(PluginABITag.host.sdkMajor, SDKVersion.major)
        XCTAssertEqual(PluginABITag.host.sdkMinor, SDKVersion.minor)
        XCTAssertTrue(PluginABITag.host.compiler.contains("."), PluginABITag.host.compiler)
    }

    func testRandomPluginCarriesTheHostTag() throws {
        let elf = try ELFSharedObject(path: try product("PruneKitRandom"))
        let section = try XCTUnwrap(elf.section(named: PluginABITag.sectionName))
        XCTAssertEqual(section.size, PluginABITag.size)
        XCTAssertEqual(try PluginABITag(bytes: elf.contents(of: section), file: elf.path), PluginABITag.host)
        XCTAssertTrue(try elf.neededLibraries().contains("libPruneKit.so"))
        XCTAssertEqual(try elf.definedSymbols(withPrefix: "$s8PruneKit"), [])
    }

    // MARK: Refusals, in the loader's order

    func testNotARegularFile() throws {
        assertRefused(scratch.path, ["is a directory"], hint: "--plugin-dir")
        let missing = scratch.appendingPathComponent("libMissing.so").path
        assertRefused(missing, ["does not exist"])
    }

    func testNotELF() throws {
        let text = scratch.appendingPathComponent("libText.so").path
        try "not a library\n".write(toFile: text, atomically: true, encoding: .utf8)
        assertRefused(text, ["is not an ELF file"])
        let empty = scratch.appendingPathComponent("libEmpty.so").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        assertRefused(empty, ["is not an ELF file"])
    }

    func testELFButNotASharedObjectOrWrongClass() throws {
        let object = try compileC("plain.o", "int f(void) { return 1; }", tag: false, linkSDK: false, flags: ["-c"])
        assertRefused(object, ["relocatable object file (.o), not a shared library"])
        let exe = try compileC("exe", "int main(void) { return 0; }", tag: true, linkSDK: false, flags: ["-pie"])
        assertRefused(exe, ["is an executable"])
        let elf32 = try patchedRandom("lib32.so") { _ in }
        let h = FileHandle(forUpdatingAtPath: elf32)!
        h.seek(toFileOffset: 4); h.write(Data([1])); h.closeFile()
        assertRefused(elf32, ["is a 32-bit ELF file"])
    }

    func testNoABITag() throws {
        let lib = try compileC("libNoTag.so", Self.infoSource, tag: false, linkSDK: true)
        assertRefused(lib, ["carries no PruneKit ABI tag"], hint: #".product(name: "PruneKitPluginABI", package: "PruneKit")"#)
    }

    func testOtherSDKMajorAndNewerMinor() throws {
        let major = try patchedRandom("libMajor.so") { $0[12] = UInt8(SDKVersion.major + 1) }
        assertRefused(major, ["built against PruneKit SDK \(SDKVersion.major + 1).\(SDKVersion.minor)", "another major version"])
        let minor = try patchedRandom("libMinor.so") { $0[16] = UInt8(SDKVersion.minor + 1) }
        assertRefused(minor, ["built against PruneKit SDK \(SDKVersion.major).\(SDKVersion.minor + 1)", "newer than this host's SDK \(SDKVersion.string)"])
    }

    func testOtherCompiler() throws {
        let lib = try patchedRandom("libCompiler.so") { tag in
            let fake = Array("99.0.0 (another toolchain)".utf8)
            for i in 24..<256 { tag[i] = 0 }
            tag.replaceSubrange(24..<(24 + fake.count), with: fake)
        }
        assertRefused(lib, ["built by another compiler", "99.0.0 (another toolchain)", PluginABITag.host.compiler], hint: "same Swift toolchain")
    }

    func testStaticSDKCopy() throws {
        let copy = try compileC("libCopy.so", Self.infoSource + "\nint dummy __asm__(\"$s8PruneKit5DummyVMn\") = 1;\n", tag: true, linkSDK: true)
        assertRefused(copy, ["carries its own copy of the PruneKit SDK", "$s8PruneKit5DummyVMn"], hint: #".product(name: "PruneKit", package: "PruneKit")"#)
        let unlinked = try compileC("libUnlinked.so", Self.infoSource, tag: true, linkSDK: false)
        assertRefused(unlinked, ["does not link libPruneKit.so"])
    }

    func testSDKTypeDescriptorsTellACopyFromAnExtension() throws {
        for copy in ["$s8PruneKitMXM", "$s8PruneKit8RegistryCMn", "$s8PruneKit9CriterionMp", "$s8PruneKit6TensorVMn",
                     "$s8PruneKit6TensorV4ViewVMn"] {
            XCTAssertTrue(PluginLoader.isSDKTypeDescriptor(copy), copy)
        }
        // What a plugin defines legitimately: helpers for SDK types it uses, members of its
        // own extensions of SDK types (observed in a build of the Random plugin with extensions).
        for legit in ["$s8PruneKit11GranularityOSgMD", "$s8PruneKit11GranularityOSgWOh", "$s8PruneKit0aB5ErrorVACs0C0AAWl",
                      "$s8PruneKit6TensorV0aB6RandomE9zzExtFuncSiyF", "$s8PruneKit8RegistryC0aB6RandomE8ZZNestedVMn",
                      "$s8PruneKit11GranularityO0aB6RandomE8zzStaticSivpZ", "$s8PruneKit5Dummy", "$s8PruneKit", "$s8PruneKit99X",
                      "$s6Random0A9CriterionVMn"] {
            XCTAssertFalse(PluginLoader.isSDKTypeDescriptor(legit), legit)
        }
        // A plugin that exports an extension member of an SDK type is not refused for it.
        let ext = try compileC("libExtension.so", Self.infoSource + "\nint ext __asm__(\"$s8PruneKit6TensorV0aB6RandomE9zzExtFuncSiyF\") = 1;\n",
                               tag: true, linkSDK: true)
        assertRefused(ext, ["does not export prunekit_plugin_entry"])
    }

    func testDlopenFailureCarriesDlerror() throws {
        let dep = try compileC("libGoneDependency.so", "int gone(void) { return 1; }", tag: false, linkSDK: false)
        let lib = try compileC("libNeedsGone.so", Self.infoSource + "\nint gone(void);\nint use(void) { return gone(); }\n",
                               tag: true, linkSDK: true, flags: ["-shared", "-L", scratch.path, "-Wl,--no-as-needed", "-lGoneDependency"])
        try FileManager.default.removeItem(atPath: dep)
        assertRefused(lib, ["dlopen failed", "libGoneDependency.so"], hint: "ldd")
    }

    func testMissingInfoAndEntrySymbols() throws {
        let noEntry = try compileC("libNoEntry.so", Self.infoSource, tag: true, linkSDK: true)
        assertRefused(noEntry, ["does not export prunekit_plugin_entry"], hint: "exportPluginEntry")
        let noInfo = try compileC("libNoInfo.so", "int unrelated(void) { return 0; }", tag: true, linkSDK: true)
        assertRefused(noInfo, ["does not export prunekit_plugin_info"])
        let badInfo = try compileC("libBadInfo.so", #"const char *prunekit_plugin_info(void) { return "not json"; }"#, tag: true, linkSDK: true)
        assertRefused(badInfo, ["prunekit_plugin_info did not return JSON"])
    }

    func testEntryThatThrowsIsRefusedAndRolledBack() throws {
        let registry = Registry()
        let loader = PluginLoader(registry: registry)
        let file = try product("PruneKitFixtureThrowing")
        let e = assertRefused(file, ["the plugin failed to register: the throwing fixture refuses to register"], loader: loader)
        XCTAssertEqual(e?.hint, "this fixture always fails")  // the plugin's own PruneKitError, caught by type
        XCTAssertFalse(registry.ids(of: .criterion).contains("fixture-throwing"))
        XCTAssertTrue(loader.loaded.isEmpty)
    }

    func testDuplicateIdNamesBothFiles() throws {
        let registry = Registry()
        let loader = PluginLoader(registry: registry)
        let random = try product("PruneKitRandom"), duplicate = try product("PruneKitFixtureDuplicate")
        try loader.load(file: random)
        let realRandom = URL(fileURLWithPath: random).resolvingSymlinksInPath().path
        let realDuplicate = URL(fileURLWithPath: duplicate).resolvingSymlinksInPath().path
        assertRefused(duplicate, ["'random' is registered twice", realRandom, realDuplicate], loader: loader)
        XCTAssertEqual(registry.entries.map(\.file), [realRandom])
    }

    func testCorruptAndTruncatedELF() throws {
        let random = try product("PruneKitRandom")
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: random)[.size] as? Int)
        assertRefused(try copyTruncated(random, to: "libHead.so", length: 40), ["corrupt ELF file", "cut short"])
        assertRefused(try copyTruncated(random, to: "libCut.so", length: size / 2), ["corrupt ELF file", "truncated"])
        // Damage bytes of the header and the section table in many ways: always an error or a
        // valid parse, never a crash (the loader is not run on these: they might pass).
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: random)))
        let elf = try ELFSharedObject(path: random)
        let tableStart = Int(ELFSharedObject.le64ForTests(original, 40))
        var rng = RandomGenerator(seed: 7)
        let damaged = scratch.appendingPathComponent("libDamaged.so")
        for round in 0..<150 {
            var bytes = original
            for _ in 0..<4 {
                let region = rng.nextInt(below: 3)
                let at = region == 0 ? rng.nextInt(below: 64)
                    : region == 1 ? tableStart + rng.nextInt(below: max(1, elf.sections.count * 64))
                    : rng.nextInt(below: bytes.count)
                if at < bytes.count { bytes[at] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            if round % 3 == 0 { bytes = Array(bytes.prefix(rng.nextInt(below: bytes.count))) }
            try Data(bytes).write(to: damaged)
            if let parsed = try? ELFSharedObject(path: damaged.path) {
                _ = try? parsed.neededLibraries()
                _ = try? parsed.definedSymbols(withPrefix: "$s8PruneKit")
                if let s = parsed.section(named: PluginABITag.sectionName), let b = try? parsed.contents(of: s) {
                    _ = try? PluginABITag(bytes: b, file: damaged.path)
                }
            }
        }
    }

    // MARK: Loading

    func testRandomLoadsAndScores() throws {
        let registry = Registry()
        let loader = PluginLoader(registry: registry)
        let plugin = try loader.load(file: try product("PruneKitRandom"))
        XCTAssertEqual(plugin.name, "random")
        XCTAssertEqual(plugin.entries.map(\.id), ["random"])
        XCTAssertEqual(plugin.tag, PluginABITag.host)
        XCTAssertEqual(registry.entries.first?.sdkVersion, SDKVersion.string)
        // Loading it again (through a symlink) is a no-op.
        let link = scratch.appendingPathComponent("libLink.so").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: try product("PruneKitRandom"))
        XCTAssertEqual(try loader.load(file: link).file, plugin.file)
        XCTAssertEqual(registry.entries.count, 1)

        let layer = PrunableLayer(path: "fc", kind: .linear, weights: Tensor(shape: [4, 3], repeating: 1), weightShape: [4, 3],
                                  bias: nil, macs: 12, index: 0, isClassifier: false)
        let context = ScoringContext(rng: RandomGenerator(seed: 1, stream: "fc"))
        let weight = try registry.criterion("random")
        XCTAssertEqual(weight.granularity, .weight)
        let scores = try weight.scores(for: layer, context: context)
        XCTAssertEqual(scores.count, 12)
        XCTAssertEqual(Set(scores).count, 12)
        XCTAssertTrue(scores.allSatisfy { $0 > 0 && $0 < 1 })
        XCTAssertEqual(try weight.scores(for: layer, context: context), scores)  // seeded
        let channel = try registry.criterion("random", options: ["granularity=channel"])
        XCTAssertEqual(try channel.scores(for: layer, context: context).count, 4)
        XCTAssertThrowsError(try registry.criterion("random", options: ["granularity=block"]))
    }

    func testHostAndPluginShareOneSDK() throws {
        let registry = Registry()
        let loader = PluginLoader(registry: registry)
        let file = try product("PruneKitFixtureSharedSDK")
        try loader.load(file: file)
        // An error thrown inside the plugin is caught by type in the host.
        let criterion = try registry.criterion("fixture-shared-sdk")
        let layer = PrunableLayer(path: "fc", kind: .linear, weights: Tensor(shape: [2, 2], repeating: 1), weightShape: [2, 2],
                                  bias: nil, macs: 4, index: 0, isClassifier: false)
        do {
            _ = try criterion.scores(for: layer, context: ScoringContext(rng: RandomGenerator(seed: 0)))
            XCTFail("the fixture's scores should throw")
        } catch let e as PruneKitError {
            XCTAssertEqual(e.kind, .numerical)
            XCTAssertEqual(e.message, "thrown by the shared-SDK fixture")
        } catch {
            XCTFail("caught \(type(of: error)), not PruneKitError: the plugin has its own SDK copy")
        }
        // An object made in the plugin casts to the host's protocol.
        let handle = try XCTUnwrap(dlopen(file, RTLD_NOW | RTLD_NOLOAD), "the fixture should already be loaded")
        let make = try XCTUnwrap(dlsym(handle, "prunekit_fixture_make_criterion"))
        let raw = unsafeBitCast(make, to: (@convention(c) () -> UnsafeMutableRawPointer).self)()
        let object = Unmanaged<AnyObject>.fromOpaque(raw).takeRetainedValue()
        let asCriterion = object as? any Criterion
        XCTAssertNotNil(asCriterion)
        XCTAssertEqual(asCriterion?.id, "fixture-shared-sdk")
        // Exactly one libPruneKit.so is mapped.
        // (/proc files report size 0: read them to the end rather than by size.)
        let maps = String(decoding: try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/maps")).readDataToEndOfFile(), as: UTF8.self)
        let sdkPaths = Set(maps.split(separator: "\n").compactMap { line -> String? in
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(5).first else { return nil }
            return path.hasSuffix("/libPruneKit.so") ? String(path) : nil
        })
        XCTAssertEqual(sdkPaths.count, 1, "\(sdkPaths)")
    }

    func testLoadAllGoesOnAfterFailuresAndLoadsEachFileOnce() throws {
        let dir = scratch.appendingPathComponent("plugins")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let random = try product("PruneKitRandom")
        // A good plugin, the same one again under another name, a bad one not named as a
        // fixture (so the scan finds it), a library without a tag and a text file.
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("libA.so").path, withDestinationPath: random)
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("libB.so").path, withDestinationPath: random)
        try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("libBad.so").path,
                                                   withDestinationPath: try product("PruneKitFixtureThrowing"))
        _ = try compileC("plugins/libOther.so", "int other(void) { return 0; }", tag: false, linkSDK: false)
        try "text".write(to: dir.appendingPathComponent("libText.so"), atomically: true, encoding: .utf8)
        try "x".write(to: dir.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)

        let loader = PluginLoader(registry: Registry())
        XCTAssertEqual(try loader.candidates(in: dir.path).map { ($0 as NSString).lastPathComponent }, ["libA.so", "libB.so", "libBad.so"])
        let missingDir = scratch.appendingPathComponent("nowhere").path
        let report = loader.loadAll(PluginSearchPath(directories: [dir.path, missingDir, dir.path], files: [random]))
        XCTAssertEqual(report.loaded.map(\.name), ["random"])
        XCTAssertEqual(report.failures.count, 2, "\(report.failures)")
        XCTAssertTrue(report.failures.contains { $0.error.message.contains("the throwing fixture refuses to register") })
        XCTAssertTrue(report.failures.contains { $0.error.message.contains("\(missingDir) does not exist") })

        // The build directory: plugins yes; the SDK itself and the fixtures no.
        let built = try loader.candidates(in: try XCTUnwrap(Self.buildDirectory).path).map { ($0 as NSString).lastPathComponent }
        XCTAssertTrue(built.contains("libPruneKitRandom.so"), "\(built)")
        XCTAssertFalse(built.contains { $0 == "libPruneKit.so" || $0.hasPrefix("libPruneKitFixture") }, "\(built)")
    }

    func testStandardSearchPath() {
        let path = PluginSearchPath.standard(pluginDirectories: ["/d"], pluginFiles: ["/f.so"],
                                             environment: ["PRUNEKIT_PLUGIN_PATH": "/a::/b"])
        XCTAssertEqual(Array(path.directories.dropFirst()), ["/a", "/b", "/d"])
        XCTAssertEqual(path.files, ["/f.so"])
    }
}

extension ELFSharedObject {
    static func le64ForTests(_ b: [UInt8], _ o: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) }
    }
}
