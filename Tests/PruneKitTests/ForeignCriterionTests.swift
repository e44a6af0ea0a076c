import Foundation
import PruneKit
import XCTest

/// C criteria called through libffi: the template (compiled here with the system C
/// compiler), weight granularity with gradients, what the function receives (counts,
/// bias, options of each C type), status codes, non-finite scores, and every manifest error.
final class ForeignCriterionTests: XCTestCase {
    // MARK: Helpers

    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try TestSupport.scratchDirectory("prunekit-ffi-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    private static let template = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Templates/c-criterion")

    /// Compiles C `source` (a path) into the shared library `name` in the scratch directory.
    @discardableResult
    private func compile(_ source: String, to name: String) throws -> String {
        let cc = "/usr/bin/cc"
        guard FileManager.default.isExecutableFile(atPath: cc) else { throw XCTSkip("no C compiler at \(cc)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: cc)
        process.arguments = ["-O2", "-shared", "-fPIC", "-o", path(name), source, "-lm"]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "cc failed on \(source)")
        return path(name)
    }

    /// C functions for the tests, compiled into `libtest.so`.
    private static let testSource = """
    #include <math.h>
    #include <stdint.h>

    /* weight granularity: |w · g|, the first-order Taylor saliency */
    void taylor(const float *w, const float *g, int64_t n, float *s) {
        for (int64_t i = 0; i < n; i++) s[i] = fabsf(w[i] * g[i]);
    }

    /* reports what it received */
    int32_t probe(int32_t outputs, int64_t fan_in, int64_t count, const float *bias,
                  double precise, int64_t big, float single, int32_t flag, int32_t small, float *s) {
        for (int64_t i = 0; i < count; i++) s[i] = 0;
        s[0] = (float)outputs; s[1] = (float)fan_in; s[2] = (float)count;
        s[3] = bias ? bias[0] + bias[outputs - 1] : -1;
        s[4] = (float)((precise - 1) * 1099511627776.0);   /* 2^40: 1 + 2^-40 arrives as a double */
        s[5] = (float)(big - 5000000000LL);                /* an int64 beyond int32 */
        s[6] = single;
        s[7] = (float)flag;
        s[8] = (float)small;
        return 0;
    }

    int32_t fails(float *s) { (void)s; return 7; }
    void nan_at_1(int64_t n, float *s) { for (int64_t i = 0; i < n; i++) s[i] = 1; s[1] = NAN; }
    void leaves_last(int64_t n, float *s) { for (int64_t i = 0; i + 1 < n; i++) s[i] = 1; }
    """

    private func compileTestLibrary() throws {
        let source = path("test.c")
        try Self.testSource.write(toFile: source, atomically: true, encoding: .utf8)
        try compile(source, to: "libtest.so")
    }

    /// Writes `manifest` as JSON to `name` in the scratch directory.
    @discardableResult
    private func write(_ manifest: [String: Any], to name: String = "criterion.json") throws -> String {
        let data = try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: path(name)))
        return path(name)
    }

    /// A valid manifest for `fails` in libtest.so, for the error tests to spoil.
    private var failing: [String: Any] {
        ["id": "c-fails", "library": "libtest.so", "symbol": "fails", "granularity": "channel",
         "arguments": [["type": "float*", "value": "scores"]], "return": "int32"]
    }

    private func arg(_ type: String, _ value: String) -> [String: Any] { ["type": type, "value": value] }

    /// Asserts that loading `manifest` fails with a `.plugin` error naming the file and containing `text`.
    private func assertRefused(_ manifest: [String: Any], _ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let manifestPath = try write(manifest, to: "bad-\(UUID().uuidString).json")
        assertRefused(path: manifestPath, text, file: file, line: line)
    }

    private func assertRefused(path manifestPath: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let registry = Registry()
        XCTAssertThrowsError(try ForeignCriterion.loadManifest(at: manifestPath, into: registry), file: file, line: line) { error in
            guard let e = error as? PruneKitError else { return XCTFail("not a PruneKitError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.kind, .plugin, "\(e)", file: file, line: line)
            XCTAssertTrue(e.message.contains(manifestPath), "does not name the manifest: \(e)", file: file, line: line)
            XCTAssertTrue(e.description.contains(text), "expected '\(text)' in: \(e)", file: file, line: line)
        }
        XCTAssertTrue(registry.entries.isEmpty, file: file, line: line)
    }

    /// weights [[1,-2,3],[0,0,0],[-1,1,-1]]
    private func layer(bias: [Float]? = nil) -> PrunableLayer {
        PrunableLayer(path: "features.0", kind: .conv2d,
                      weights: Tensor(shape: [3, 3], scalars: [1, -2, 3, 0, 0, 0, -1, 1, -1]),
                      weightShape: [3, 3, 1, 1], bias: bias.map { Tensor(shape: [3], scalars: $0) },
                      macs: 9, index: 0, isClassifier: false)
    }

    private func context(gradient: Tensor? = nil) -> ScoringContext {
        ScoringContext(weightGradient: gradient, rng: RandomGenerator(seed: 0))
    }

    private func assertClose(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(a) vs \(b)", file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(y)), "\(a) vs \(b)", file: file, line: line) }
    }

    /// Loads the template (l1_filter.c compiled here, criterion.json copied beside it).
    private func loadTemplate(into registry: Registry) throws -> String {
        try compile(Self.template.appendingPathComponent("l1_filter.c").path, to: "libl1_filter.so")
        let manifest = path("criterion.json")
        try FileManager.default.copyItem(atPath: Self.template.appendingPathComponent("criterion.json").path, toPath: manifest)
        try ForeignCriterion.loadManifest(at: manifest, into: registry)
        return manifest
    }

    // MARK: The template

    func testTemplateL1AndL2ThroughTheRegistry() throws {
        let registry = Registry()
        let manifest = try loadTemplate(into: registry)

        let entry = try XCTUnwrap(registry.entries.first { $0.id == "c-l1" })
        XCTAssertEqual(entry.kind, .criterion)
        XCTAssertEqual(entry.file, manifest)
        XCTAssertEqual(entry.version, "1.0")
        XCTAssertEqual(entry.options, [.double("p", default: 1, help: "the norm's exponent (1: L1, 2: L2); must be > 0")])

        let l1 = try registry.criterion("c-l1")
        XCTAssertEqual(l1.granularity, .channel)
        XCTAssertEqual(l1.evidence, [])
        XCTAssertEqual(try l1.scores(for: layer(), context: context()), [6, 0, 3])
        XCTAssertEqual((l1 as? ForeignCriterion)?.criterionID, "c-l1")

        let l2 = try registry.criterion("c-l1", options: ["p=2"])
        assertClose(try l2.scores(for: layer(), context: context()), [Float(14).squareRoot(), 0, Float(3).squareRoot()])

        let l3 = try registry.criterion("c-l1", options: ["p=3"])
        assertClose(try l3.scores(for: layer(), context: context()), [Float(pow(36.0, 1.0 / 3)), 0, Float(pow(3.0, 1.0 / 3))])
    }

    /// The C template scores a whole model, through the same path as any criterion, and
    /// agrees with the Swift l1-filter plugin on every layer.
    func testTemplateScoresAModelLikeTheSwiftL1Filter() throws {
        let registry = Registry()
        _ = try loadTemplate(into: registry)
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 1)
        let c = try model.score(with: registry.criterion("c-l1"), data: nil)
        let swift = try model.score(with: TestSupport.builtInRegistry().criterion("l1-filter"), data: nil)
        XCTAssertEqual(c.map(\.layer.path), swift.map(\.layer.path))
        for (a, b) in zip(c, swift) { assertClose(a.scores, b.scores) }
        let plan = try model.prune(with: registry.criterion("c-l1"), toward: .sparsity(0.5), data: nil).plan
        XCTAssertEqual(plan.criterion, "c-l1")
        XCTAssertEqual(plan.layers[1].keptCount, 8)
    }

    func testTemplateOptionsAreCheckedLikeAnyCriterion() throws {
        let registry = Registry()
        _ = try loadTemplate(into: registry)
        XCTAssertThrowsError(try registry.criterion("c-l1", options: ["p=two"])) { error in
            XCTAssertEqual((error as? PruneKitError)?.kind, .invalidArgument)
            XCTAssertTrue("\(error)".contains("p=double"), "\(error)")
        }
        XCTAssertThrowsError(try registry.criterion("c-l1", options: ["q=1"])) { error in
            XCTAssertEqual((error as? PruneKitError)?.kind, .invalidArgument)
        }
    }

    func testTemplateReturnCodeFailsTheCriterion() throws {
        let registry = Registry()
        _ = try loadTemplate(into: registry)
        let bad = try registry.criterion("c-l1", options: ["p=-1"])
        XCTAssertThrowsError(try bad.scores(for: layer(), context: context())) { error in
            let e = error as? PruneKitError
            XCTAssertEqual(e?.kind, .plugin)
            XCTAssertTrue(e?.message.contains("code 1") ?? false, "\(error)")
            XCTAssertTrue(e?.message.contains("features.0") ?? false, "\(error)")
            XCTAssertTrue(e?.message.contains("c-l1") ?? false, "\(error)")
        }
    }

    func testLoadingTwiceIsRefusedByTheRegistry() throws {
        let registry = Registry()
        let manifest = try loadTemplate(into: registry)
        XCTAssertThrowsError(try ForeignCriterion.loadManifest(at: manifest, into: registry)) { error in
            XCTAssertTrue("\(error)".contains("registered twice"), "\(error)")
        }
        XCTAssertEqual(registry.entries.count, 1)
    }

    func testConcurrentCallsShareOnePreparedCall() throws {
        let registry = Registry()
        _ = try loadTemplate(into: registry)
        let l1 = try registry.criterion("c-l1")
        let lock = NSLock()
        var results: [[Float]] = []
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            let s = (try? l1.scores(for: self.layer(), context: self.context())) ?? []
            lock.lock(); results.append(s); lock.unlock()
        }
        XCTAssertEqual(results, Array(repeating: [6, 0, 3], count: 16))
    }

    /// The registry's factory path is also the one Swift criterion types go through.
    func testSwiftCriterionTypesStillRegisterBesideCCriteria() throws {
        struct Constant: Criterion, OptionConstructible {
            static let id = "constant"
            static let options: [OptionSpec] = [.double("value", default: 1, help: "the score")]
            let value: Float
            init(options: OptionValues) { value = Float(options.double("value")) }
            var granularity: Granularity { .channel }
            func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
                Array(repeating: value, count: layer.outputs)
            }
        }
        let registry = Registry()
        try registry.register(criterion: Constant.self)
        _ = try loadTemplate(into: registry)
        XCTAssertEqual(registry.ids(of: .criterion), ["c-l1", "constant"])
        XCTAssertEqual(try registry.criterion("constant", options: ["value=2"]).scores(for: layer(), context: context()), [2, 2, 2])
        XCTAssertEqual(registry.entries.first { $0.id == "constant" }?.file, "built-in")
    }

    /// A C criterion is made from its manifest only: the type is not made from options, so
    /// a registry cannot be handed it as a constructible type.
    func testTheTypeIsMadeFromItsManifestNotFromOptions() {
        XCTAssertFalse((ForeignCriterion.self as Any.Type) is any OptionConstructible.Type)
    }

    // MARK: Weight granularity, gradients, what the function receives

    func testWeightGranularityWithGradients() throws {
        try compileTestLibrary()
        let manifest = try write(["id": "c-taylor", "library": "libtest.so", "symbol": "taylor", "granularity": "weight",
                                  "evidence": ["weight-gradients"],
                                  "arguments": [arg("const float*", "weights"), arg("const float*", "weight-gradient"),
                                                arg("int64", "score-count"), arg("float*", "scores")]])
        let registry = Registry()
        try ForeignCriterion.loadManifest(at: manifest, into: registry)
        let c = try registry.criterion("c-taylor")
        XCTAssertEqual(c.granularity, .weight)
        XCTAssertEqual(c.evidence, .weightGradients)
        let g = Tensor(shape: [3, 3], scalars: [2, 1, -1, 5, 5, 5, 0.5, -3, 4])
        XCTAssertEqual(try c.scores(for: layer(), context: context(gradient: g)), [2, 2, 3, 0, 0, 0, 0.5, 3, 4])
        // Without the gathered gradient, a clear error rather than a NULL pointer.
        XCTAssertThrowsError(try c.scores(for: layer(), context: context())) { error in
            XCTAssertEqual((error as? PruneKitError)?.kind, .plugin)
            XCTAssertTrue("\(error)".contains("weight gradient"), "\(error)")
        }
    }

    private var probe: [String: Any] {
        ["id": "c-probe", "library": "libtest.so", "symbol": "probe", "granularity": "weight", "return": "int32",
         "options": [["name": "precise", "type": "double", "default": 0.5, "help": "passed as double"],
                     ["name": "big", "type": "int", "default": 1, "help": "passed as int64"],
                     ["name": "single", "type": "double", "default": 0.25, "help": "passed as float"],
                     ["name": "flag", "type": "bool", "default": false, "help": "passed as int32"],
                     ["name": "small", "type": "int", "default": 3, "help": "passed as int32"]],
         "arguments": [arg("int32", "outputs"), arg("int64", "fan-in"), arg("int64", "score-count"),
                       arg("const float*", "bias"), arg("double", "option:precise"), arg("int64", "option:big"),
                       arg("float", "option:single"), arg("int32", "option:flag"), arg("int32", "option:small"),
                       arg("float*", "scores")]]
    }

    func testTheFunctionReceivesCountsBiasAndOptions() throws {
        try compileTestLibrary()
        let registry = Registry()
        try ForeignCriterion.loadManifest(at: try write(probe), into: registry)
        let c = try registry.criterion("c-probe", options: ["precise=\(1 + pow(2.0, -40))", "big=5000000007",
                                                            "single=1.5", "flag=true", "small=-4"])
        let s = try c.scores(for: layer(bias: [10, 20, 30]), context: context())
        XCTAssertEqual(s.count, 9)
        XCTAssertEqual(Array(s[0..<9]), [3, 3, 9, 40, 1, 7, 1.5, 1, -4])

        // No bias: NULL. Defaults.
        let d = try registry.criterion("c-probe")
        XCTAssertEqual(Array(try d.scores(for: layer(), context: context())[0..<9]),
                       [3, 3, 9, -1, Float(-0.5 * 1099511627776.0), Float(Int64(1) - 5000000000), 0.25, 0, 3])

        // A layer of another shape: the counts follow it.
        let wide = PrunableLayer(path: "fc", kind: .linear, weights: Tensor(shape: [2, 5], repeating: 1),
                                 weightShape: [2, 5], bias: nil, macs: 10, index: 1, isClassifier: true)
        XCTAssertEqual(Array(try d.scores(for: wide, context: context())[0..<3]), [2, 5, 10])
    }

    func testAnIntOptionThatDoesNotFitInt32IsRefused() throws {
        try compileTestLibrary()
        let registry = Registry()
        try ForeignCriterion.loadManifest(at: try write(probe), into: registry)
        XCTAssertThrowsError(try registry.criterion("c-probe", options: ["small=3000000000"])) { error in
            XCTAssertEqual((error as? PruneKitError)?.kind, .invalidArgument)
            XCTAssertTrue("\(error)".contains("int32"), "\(error)")
        }
    }

    func testNonZeroStatusIsAnError() throws {
        try compileTestLibrary()
        let registry = Registry()
        try ForeignCriterion.loadManifest(at: try write(failing), into: registry)
        XCTAssertThrowsError(try registry.criterion("c-fails").scores(for: layer(), context: context())) { error in
            let e = error as? PruneKitError
            XCTAssertEqual(e?.kind, .plugin)
            XCTAssertTrue(e?.message.contains("with code 7") ?? false, "\(error)")
            XCTAssertTrue(e?.message.contains("'features.0'") ?? false, "\(error)")
        }
    }

    func testNonFiniteOrUnwrittenScoresAreErrorsNamingTheLayer() throws {
        try compileTestLibrary()
        let registry = Registry()
        for symbol in ["nan_at_1", "leaves_last"] {
            try ForeignCriterion.loadManifest(at: try write(["id": symbol, "library": "libtest.so", "symbol": symbol,
                                                             "granularity": "channel",
                                                             "arguments": [arg("int64", "score-count"), arg("float*", "scores")]],
                                                            to: "\(symbol).json"), into: registry)
            XCTAssertThrowsError(try registry.criterion(symbol).scores(for: layer(), context: context())) { error in
                let e = error as? PruneKitError
                XCTAssertEqual(e?.kind, .plugin)
                XCTAssertTrue(e?.message.contains("non-finite") ?? false, "\(error)")
                XCTAssertTrue(e?.message.contains("'features.0'") ?? false, "\(error)")
                XCTAssertTrue(e?.message.contains(symbol == "nan_at_1" ? "index 1" : "index 2") ?? false, "\(error)")
            }
        }
    }

    // MARK: Manifest errors

    func testInvalidJSON() throws {
        let p = path("broken.json")
        try "{\"id\": \"x\",".write(toFile: p, atomically: true, encoding: .utf8)
        assertRefused(path: p, "invalid JSON")
    }

    func testMissingManifestFile() {
        assertRefused(path: path("nowhere.json"), "cannot read")
    }

    func testUnknownTopLevelKey() throws {
        var m = failing; m["colour"] = "blue"
        try assertRefused(m, "unknown key 'colour'")
    }

    func testMissingRequiredKey() throws {
        var m = failing; m["symbol"] = nil
        try assertRefused(m, "missing 'symbol'")
    }

    func testUnknownArgumentType() throws {
        var m = failing; m["arguments"] = [arg("float*", "scores"), arg("uint8", "outputs")]
        try assertRefused(m, "argument 2: unknown type 'uint8'")
    }

    func testUnknownArgumentValue() throws {
        var m = failing; m["arguments"] = [arg("const float*", "activations"), arg("float*", "scores")]
        try assertRefused(m, "argument 1: unknown value 'activations'")
    }

    func testValueOfTheWrongCType() throws {
        var m = failing; m["arguments"] = [arg("int64", "weights"), arg("float*", "scores")]
        try assertRefused(m, "'weights' is passed as const float*, not int64")
        m["arguments"] = [arg("const float*", "scores")]
        try assertRefused(m, "'scores' is passed as float*, not const float*")
        m["arguments"] = [arg("double", "outputs"), arg("float*", "scores")]
        try assertRefused(m, "'outputs' is passed as int64 or int32, not double")
        m["options"] = [["name": "p", "type": "double", "default": 1]]
        m["arguments"] = [arg("int64", "option:p"), arg("float*", "scores")]
        try assertRefused(m, "'option:p' is passed as double or float, not int64")
    }

    func testNoScoresArgument() throws {
        var m = failing; m["arguments"] = [arg("const float*", "weights")]
        try assertRefused(m, "no argument receives the scores")
        m["arguments"] = [arg("float*", "scores"), arg("float*", "scores")]
        try assertRefused(m, "more than one argument receives 'scores'")
    }

    func testOptionReferencedButNotDeclared() throws {
        var m = failing; m["arguments"] = [arg("double", "option:q"), arg("float*", "scores")]
        try assertRefused(m, "option 'q' is not declared in 'options'")
    }

    func testBadOptionDeclarations() throws {
        var m = failing
        m["options"] = [["name": "n", "type": "int", "default": 1.5]]
        try assertRefused(m, "option 'n': the default 1.5 is not a value of type int")
        m["options"] = [["name": "s", "type": "string", "default": "x"]]
        try assertRefused(m, "string options cannot be passed to C")
        m["options"] = [["name": "n", "type": "int", "default": 1], ["name": "n", "type": "int", "default": 2]]
        try assertRefused(m, "option 'n' is declared twice")
    }

    func testEvidence() throws {
        var m = failing; m["evidence"] = ["activations"]
        try assertRefused(m, "evidence 'activations' is not supported for C criteria yet")
        m["evidence"] = ["colours"]
        try assertRefused(m, "unknown evidence 'colours'")
        m["evidence"] = []
        m["arguments"] = [arg("const float*", "weight-gradient"), arg("float*", "scores")]
        try assertRefused(m, "'weight-gradient' needs \"weight-gradients\" in 'evidence'")
    }

    func testUnknownGranularityAndReturnType() throws {
        var m = failing; m["granularity"] = "layer"
        try assertRefused(m, "unknown granularity 'layer'")
        m = failing; m["return"] = "int64"
        try assertRefused(m, "unknown return type 'int64'")
    }

    func testMissingLibraryFile() throws {
        try assertRefused(failing, "library file not found: \(path("libtest.so"))")
    }

    func testLibraryThatFailsToLoad() throws {
        try "not a shared object".write(toFile: path("libtest.so"), atomically: true, encoding: .utf8)
        // dlerror's reason is included: "file too short" (glibc) or "invalid ELF header", depending on the loader.
        try assertRefused(failing, "cannot load the library \(path("libtest.so")): ")
        let manifest = try write(failing)
        XCTAssertThrowsError(try ForeignCriterion.loadManifest(at: manifest, into: Registry())) { error in
            let reason = "\(error)".components(separatedBy: "libtest.so: ").last ?? ""
            XCTAssertTrue(reason.contains("too short") || reason.contains("ELF"), "\(error)")
        }
    }

    func testMissingSymbol() throws {
        try compileTestLibrary()
        var m = failing; m["symbol"] = "no_such_function"
        try assertRefused(m, "symbol 'no_such_function' not found in \(path("libtest.so"))")
    }
}
