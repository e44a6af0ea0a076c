import Foundation
import PruneKit
import PruneKitONNX
import XCTest

/// ONNX import and export: the fixtures of Tests/Fixtures/ONNX (small torch models exported
/// with torch.onnx.export, and ONNX Runtime's outputs on a fixed batch; make_fixtures.py).
final class ONNXTests: XCTestCase {
    static let fixtures = TestSupport.repoRoot.appendingPathComponent("Tests/Fixtures/ONNX")
    /// The models exported from torch, with ONNX Runtime's reference outputs.
    static let models = ["tiny_resnet", "tiny_resnet_folded", "tiny_vgg_bn", "tiny_mobilenet",
                         "tiny_densenet", "tiny_efficientnet", "tiny_resnext", "tiny_ops"]
    /// The residual policy each fixture is pruned 2× under (within-blocks otherwise): the
    /// ResNets prune the stream; ResNeXt too here (stream and bottlenecks, grouped
    /// convolutions included), and within blocks in ONNXGraphTests.
    static let pruningPolicy: [String: ResidualPolicy] = ["tiny_resnet": .wholeStream, "tiny_resnet_folded": .wholeStream,
                                                          "tiny_resnext": .wholeStream]

    struct Reference: Decodable {
        let input_shape: [Int]
        let input: [Float]
        let output_shape: [Int]
        let output: [Float]
        var inputTensor: Tensor { Tensor(shape: input_shape, scalars: input) }
    }

    static func path(_ name: String) -> String { fixtures.appendingPathComponent(name + ".onnx").path }

    static func reference(_ name: String) throws -> Reference {
        try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixtures.appendingPathComponent(name + ".json")))
    }

    static func outputs(_ model: Model, _ input: Tensor) -> [Float] {
        let mode = model.mode
        model.mode = .inference
        defer { model.mode = mode }
        return model.forward(input).scalars
    }

    /// max |a − b| ≤ tolerance · max |b|: relative to the reference's scale.
    static func assertClose(_ a: [Float], _ b: [Float], tolerance: Float = 1e-4, _ message: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, file: file, line: line)
        let scale = b.map(abs).max() ?? 0
        let error = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssert(scale > 0 && error <= tolerance * scale, "\(message): max error \(error) at scale \(scale)", file: file, line: line)
    }

    // MARK: Import

    func testImportedModelsMatchONNXRuntime() throws {
        for name in Self.models {
            let imported = try ONNX.importModel(contentsOf: Self.path(name))
            let ref = try Self.reference(name)
            XCTAssertEqual(imported.opset, 17)
            XCTAssertEqual([ref.input_shape[0]] + imported.model.outputShape, ref.output_shape, name)
            Self.assertClose(Self.outputs(imported.model, ref.inputTensor), ref.output, name)
        }
    }

    func testLayersAreNamedAfterThePyTorchModules() throws {
        let imported = try ONNX.importModel(contentsOf: Self.path("tiny_resnet"))
        let paths = imported.model.namedParameters.map(\.path)
        for path in ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                     "layer2.0.downsample.1.weight", "fc.weight", "fc.bias"] {
            XCTAssert(paths.contains(path), "\(path) not in \(paths)")
            XCTAssertEqual(imported.initializerNames[path], path)
        }
        // BatchNorm stays a layer in the PRESERVE export, and is folded into the convolutions otherwise.
        let kinds = imported.model.nodes.map(\.layer.kind)
        XCTAssertEqual(kinds.filter { $0 == .batchNorm }.count, 10)
        XCTAssertEqual(kinds.filter { $0 == .add }.count, 4)
        let folded = try ONNX.importModel(contentsOf: Self.path("tiny_resnet_folded")).model
        XCTAssertFalse(folded.nodes.contains { $0.layer.kind == .batchNorm })
        XCTAssertNotNil(folded.nodeIndex(named: "layer1.0.conv1"), "\(folded.nodes.map(\.name))")
    }

    func testMatMulAddBecomesOneLinearLayerDepthwiseStaysDepthwiseAndReLU6IsAClip() throws {
        let model = try ONNX.importModel(contentsOf: Self.path("tiny_mobilenet")).model
        let linears = model.nodes.compactMap { $0.layer as? Linear }
        XCTAssertEqual(linears.count, 1)
        XCTAssertNotNil(linears.first?.bias)
        XCTAssertFalse(model.nodes.contains { $0.layer.kind == .add }, "the MatMul's Add is its bias")
        let depthwise = model.nodes.compactMap { $0.layer as? Conv2d }.filter { $0.groups > 1 }
        XCTAssertEqual(depthwise.map(\.groups), [16, 32])
        // ReLU6 arrives as Clip(0, 6).
        let clips = model.nodes.compactMap { $0.layer as? Clip }
        XCTAssertEqual(clips.count, 2)
        XCTAssert(clips.allSatisfy { $0.lower == 0 && $0.upper == 6 })
    }

    // MARK: Export

    func testExportedModelsReimportWithEqualOutputsAndOriginalNames() throws {
        for name in Self.models {
            let imported = try ONNX.importModel(contentsOf: Self.path(name))
            let data = try ONNX.exportData(imported.model, initializerNames: imported.initializerNames)
            let back = try ONNX.importModel(serialized: data, source: name + " (exported)")
            let input = try Self.reference(name).inputTensor
            Self.assertClose(Self.outputs(back.model, input), Self.outputs(imported.model, input), tolerance: 1e-6, name)
            XCTAssertEqual(back.opset, ONNX.exportOpset)
            // Every initialiser kept as is has its original name again.
            for (path, original) in imported.initializerNames {
                XCTAssertEqual(back.initializerNames[path], original, "\(name): \(path)")
            }
        }
    }

    /// The foundation of the round trip: import, prune to a 2× MACs speed-up with the
    /// built-in l1-filter plugin, remove the channels, export, and read the file back.
    func testPrunedModelsExportPhysicallyNarrowerAndReimportEqual() throws {
        let criterion = try TestSupport.builtInRegistry().criterion("l1-filter")
        for (name, policy) in [("tiny_resnet", ResidualPolicy.wholeStream), ("tiny_vgg_bn", .withinBlocks),
                               ("tiny_mobilenet", .withinBlocks), ("tiny_ops", .withinBlocks)] {
            let imported = try ONNX.importModel(contentsOf: Self.path(name))
            let model = imported.model
            let dense = model.macs
            let settings = TargetedPruningSettings(policy: policy)
            let result = try model.prune(with: criterion, toward: .speedup(2), settings: settings, data: nil)
            let cut = try model.removingPrunedChannels(policy: policy)
            XCTAssertGreaterThanOrEqual(Double(dense) / Double(cut.model.macs), 2, name)
            XCTAssertEqual(result.achieved, Double(dense) / Double(cut.model.macs), accuracy: 1e-9, name)

            let denseData = try ONNX.exportData(model, initializerNames: imported.initializerNames)
            let data = try ONNX.exportData(cut.model, initializerNames: imported.initializerNames)
            XCTAssertLessThan(data.count, denseData.count, "\(name): the pruned file is not smaller")
            let back = try ONNX.importModel(serialized: data, source: name + " (pruned)")
            XCTAssertEqual(back.model.macs, cut.model.macs, name)
            let input = try Self.reference(name).inputTensor
            Self.assertClose(Self.outputs(back.model, input), Self.outputs(cut.model, input), tolerance: 1e-6, name)
            // A narrower tensor keeps its original name.
            XCTAssertEqual(back.initializerNames.values.filter { imported.initializerNames.values.contains($0) }.count,
                           imported.initializerNames.count, name)
        }
    }

    /// Taylor needs data (activations and their gradients): the MNIST-shaped fixture on the
    /// bundled mnist-5k, evaluated with finetuning's backward pass through the imported layers.
    func testTaylorPrunesAnImportedModelOnData() throws {
        let criterion = try TestSupport.builtInRegistry().criterion("taylor")
        let imported = try ONNX.importModel(contentsOf: Self.path("mnist_cnn"))
        let model = imported.model
        let dense = model.macs
        let data = try DatasetCatalog.load().train.subset(Array(0..<256))
        try model.prune(with: criterion, toward: .speedup(2), data: data,
                        calibration: CalibrationSettings(batches: 2, batchSize: 64, seed: 0))
        let cut = try model.removingPrunedChannels().model
        XCTAssertGreaterThanOrEqual(Double(dense) / Double(cut.macs), 2)
        let back = try ONNX.importModel(serialized: try ONNX.exportData(cut, initializerNames: imported.initializerNames), source: "taylor")
        let input = try Self.reference("mnist_cnn").inputTensor
        Self.assertClose(Self.outputs(back.model, input), Self.outputs(cut, input), tolerance: 1e-6, "taylor")
    }

    /// Finetuning works on an imported model (its layers' backward passes, BatchNorm in training
    /// mode): two epochs on 1,000 MNIST images take its random weights well above chance.
    func testAnImportedModelTrains() throws {
        let model = try ONNX.importModel(contentsOf: Self.path("mnist_cnn")).model
        let splits = try DatasetCatalog.load()
        let train = splits.train.subset(Array(0..<1000))
        let before = model.evaluate(splits.test).top1
        var c = TrainingConfiguration()
        c.epochs = 2
        try model.fit(train, configuration: c)
        let after = model.evaluate(splits.test).top1
        XCTAssertLessThan(before, 0.3)
        XCTAssertGreaterThan(after, 0.7, "top-1 \(before) → \(after)")
    }

    func testUnstructuredPrunedModelsExportDenseWithTheirZeros() throws {
        let imported = try ONNX.importModel(contentsOf: Self.path("tiny_vgg_bn"))
        let criterion = try TestSupport.builtInRegistry().criterion("global-magnitude")
        try imported.model.prune(with: criterion, toward: .sparsity(0.8), data: nil)
        let back = try ONNX.importModel(serialized: try ONNX.exportData(imported.model), source: "masked").model
        func zeros(_ m: Model) -> Int { m.namedParameters.reduce(0) { $0 + $1.parameter.value.scalars.filter { $0 == 0 }.count } }
        XCTAssertGreaterThan(zeros(imported.model), imported.model.parameterCount / 2)
        XCTAssertEqual(zeros(back), zeros(imported.model))
        let input = try Self.reference("tiny_vgg_bn").inputTensor
        Self.assertClose(Self.outputs(back, input), Self.outputs(imported.model, input), tolerance: 1e-6, "masked")
    }

    /// A model built in Swift with every element-wise activation (GELU with both forms of Φ).
    static func activationModel(tanhGELU: Bool = true) throws -> Model {
        var rng = RandomGenerator(seed: 5)
        var layers: [(String, Layer)] = [
            ("conv1", Conv2d(inChannels: 3, outChannels: 8, kernelSize: 3, padding: 1, rng: &rng)), ("leaky", LeakyReLU(alpha: 0.1)),
            ("conv2", Conv2d(inChannels: 8, outChannels: 8, kernelSize: 3, padding: 1, rng: &rng)), ("gelu", GELU()),
            ("tanh", Tanh()), ("hardswish", HardSwish()), ("hardsigmoid", HardSigmoid(alpha: 1 / 6, beta: 0.5)),
            ("pool", GlobalAvgPool()), ("fc", Linear(inFeatures: 8, outFeatures: 4, rng: &rng)),
        ]
        if tanhGELU { layers.insert(("gelu_tanh", GELU(approximation: .tanh)), at: 4) }
        let nodes = layers.enumerated().map { i, l in Model.Node(name: l.0, layer: l.1, inputs: [i == 0 ? Model.inputIndex : i - 1]) }
        return try Model(architecture: "activations", inputShape: [3, 6, 6], nodes: nodes)
    }

    /// Export writes GELU as torch does at opset 17 (Div, Erf, Add, Mul, Mul) and the importer
    /// reads that pattern back as one GELU layer; the other activations are one node each.
    func testActivationsExportAndReimport() throws {
        let model = try Self.activationModel(tanhGELU: false)
        let back = try ONNX.importModel(serialized: try ONNX.exportData(model), source: "activations").model
        XCTAssertEqual(back.nodes.map(\.layer.kind), model.nodes.map(\.layer.kind))
        let hs = try XCTUnwrap(back.nodes.compactMap { $0.layer as? HardSigmoid }.first)
        XCTAssertEqual(hs.alpha, 1 / 6); XCTAssertEqual(hs.beta, 0.5)
        XCTAssertEqual(back.nodes.compactMap { $0.layer as? LeakyReLU }.first?.alpha, 0.1)
        let input = Tensor.randomNormal([3, 3, 6, 6], std: 2, using: &rng)
        Self.assertClose(Self.outputs(back, input), Self.outputs(model, input), tolerance: 1e-6, "activations")
        // Saved and loaded through model.json.
        let copy = try model.clone()
        XCTAssertEqual(copy.nodes.map(\.layer.configuration), model.nodes.map(\.layer.configuration))
        Self.assertClose(Self.outputs(copy, input), Self.outputs(model, input), tolerance: 0, "clone")
    }

    /// tiny_ops (torch, opset 17): every element-wise and spatial operator, read into the
    /// layers that compute them: the zero Pad before conv1 folded into its padding, the one
    /// before a max pool kept as a ZeroPad2d, GELU from its Erf pattern, the pools' windows,
    /// ReduceMean as global pooling and the Squeeze/Unsqueeze/Flatten chain as renames.
    func testTinyOpsReadsEveryOperatorIntoItsLayer() throws {
        let model = try ONNX.importModel(contentsOf: Self.path("tiny_ops")).model
        let kinds = model.nodes.map(\.layer.kind)
        XCTAssertEqual(kinds, [.conv2d, .batchNorm, .leakyRelu, .conv2d, .gelu, .maxPool2d, .conv2d, .batchNorm, .hardSwish,
                               .zeroPad2d, .maxPool2d, .conv2d, .tanh, .avgPool2d, .conv2d, .hardSigmoid, .globalAvgPool, .linear])
        let convs = model.nodes.compactMap { $0.layer as? Conv2d }
        XCTAssertEqual(convs[0].window, ConvWindow(strideHeight: 2, strideWidth: 1, padTop: 0, padLeft: 0, padBottom: 1, padRight: 1))
        XCTAssert(convs[0].kernelSize == (3, 2))
        XCTAssertEqual(convs[1].window, ConvWindow(dilationHeight: 2, dilationWidth: 2, padTop: 2, padLeft: 2, padBottom: 2, padRight: 2))
        XCTAssert(convs[2].kernelSize == (1, 3))
        let pools = model.nodes.compactMap { $0.layer as? MaxPool2d }
        XCTAssert(pools[0].ceilMode && pools[0].window == ConvWindow(stride: 2, padding: 1))
        let avg = try XCTUnwrap(model.nodes.compactMap { $0.layer as? AvgPool2d }.first)
        XCTAssert(avg.ceilMode && !avg.countIncludePad && avg.kernel == (2, 3))
        XCTAssertEqual((model.nodes[9].layer as? ZeroPad2d)?.configuration, ["top": 1, "left": 1, "bottom": 0, "right": 0])
        XCTAssertEqual(model.shapes[5], [16, 5, 9])
    }

    /// Forms torch does not write at opset 17, from the onnx helper API with ONNX Runtime's
    /// outputs: Gelu nodes (both approximations), auto_pad SAME_UPPER and SAME_LOWER (odd totals:
    /// asymmetric), AveragePool counting its padding with ceil_mode, ReduceMean with keepdims 0.
    func testOpset20GeluAutoPadAndPoolingMatchONNXRuntime() throws {
        let imported = try ONNX.importModel(contentsOf: Self.path("ops_opset20"))
        let ref = try Self.reference("ops_opset20")
        XCTAssertEqual(imported.opset, 20)
        Self.assertClose(Self.outputs(imported.model, ref.inputTensor), ref.output, "ops_opset20")
        let convs = imported.model.nodes.compactMap { $0.layer as? Conv2d }
        XCTAssertEqual(convs[0].window.pads, [0, 0, 1, 1], "SAME_UPPER, kernel 2: the extra row and column at the end")
        XCTAssertEqual(convs[1].window.pads, [1, 0, 1, 0], "SAME_LOWER, 3×2 stride 2 on 9×8: totals 2 and 0")
        XCTAssertEqual(imported.model.nodes.compactMap { ($0.layer as? GELU)?.approximation }, [.none, .tanh])
        let avg = try XCTUnwrap(imported.model.nodes.compactMap { $0.layer as? AvgPool2d }.first)
        XCTAssert(avg.countIncludePad && avg.ceilMode)
    }

    func testUnsupportedPadsAreRefused() {
        assertRefused("bad_pad_reflect", ["node '/pad/Pad'", "mode 'reflect'"], kind: .invalidArgument)
        assertRefused("bad_pad_value", ["node '/pad/Pad'", "pads with 1.5"], kind: .invalidArgument)
        assertRefused("bad_pad_channels", ["node '/pad/Pad'", "batch or channel axis"], kind: .invalidArgument)
    }

    /// A graph that starts GELU's erf pattern and leaves it is refused at the node that leaves.
    func testAPartialGELUPatternIsRefused() {
        assertRefused("bad_gelu_partial", ["node '/act/Mul_1'", "GELU's erf form", "'other'"], kind: .invalidArgument)
    }

    func testZooModelsExportAndReimport() throws {
        for name in ["lenet-5", "vgg-small", "lenet-300-100"] {
            let model = try ModelZoo.make(name, inputShape: [1, 28, 28], classCount: 10, seed: 3)
            let back = try ONNX.importModel(serialized: try ONNX.exportData(model), source: name).model
            let input = Tensor.randomNormal([2, 1, 28, 28], using: &rng)
            Self.assertClose(Self.outputs(back, input), Self.outputs(model, input), tolerance: 1e-6, name)
        }
    }

    private var rng = RandomGenerator(seed: 7)

    func testExternalDataIsReadFromTheFileBesideTheModel() throws {
        let external = try ONNX.importModel(contentsOf: Self.path("external_vgg"))
        let ref = try Self.reference("tiny_vgg_bn")
        Self.assertClose(Self.outputs(external.model, ref.inputTensor), ref.output, "external data")
        // Without its side file: one clear error naming it, and no model.
        let dir = try temporaryScratchDirectory("prunekit-onnx-external")
        let lone = dir.appendingPathComponent("external_vgg.onnx")
        try FileManager.default.copyItem(atPath: Self.path("external_vgg"), toPath: lone.path)
        XCTAssertThrowsError(try ONNX.importModel(contentsOf: lone.path)) { error in
            let e = error as? PruneKitError
            XCTAssert(e?.message.contains("'external_vgg.onnx.data', which is missing beside the model") == true, "\(error)")
            XCTAssertNotNil(e?.hint)
        }
        // A short side file.
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.path("external_vgg") + ".data"))
        try data.prefix(data.count / 2).write(to: dir.appendingPathComponent("external_vgg.onnx.data"))
        XCTAssertThrowsError(try ONNX.importModel(contentsOf: lone.path)) { error in
            XCTAssert((error as? PruneKitError)?.message.contains("ends before the tensor") == true, "\(error)")
        }
        // Bytes alone can't reach a side file.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.path("external_vgg")))
        XCTAssertThrowsError(try ONNX.importModel(serialized: bytes, source: "bytes")) { error in
            XCTAssert((error as? PruneKitError)?.message.contains("read only from a file") == true, "\(error)")
        }
    }

    // MARK: Bad input

    func assertRefused(_ name: String, _ expected: [String], kind: PruneKitError.Kind? = nil,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ONNX.importModel(contentsOf: Self.path(name)), file: file, line: line) { error in
            guard let e = error as? PruneKitError else { return XCTFail("\(error)", file: file, line: line) }
            for text in expected { XCTAssert(e.message.contains(text), "'\(text)' not in: \(e.message)", file: file, line: line) }
            XCTAssertNotNil(e.hint, e.message, file: file, line: line)
            XCTAssertFalse(e.message.contains("\n"), e.message, file: file, line: line)
            if let kind { XCTAssertEqual(e.kind, kind, file: file, line: line) }
        }
    }

    func testBadModelsAreRefusedWithOneClearError() {
        assertRefused("bad_unsupported_op", ["node '/act/Softsign'", "Softsign", "opset 17"], kind: .invalidArgument)
        assertRefused("bad_two_inputs", ["2 inputs", "'x'", "'x2'"], kind: .invalidFile)
        assertRefused("bad_nan_weight", ["'fc.weight'", "nan", "element 2"], kind: .invalidFile)
        assertRefused("bad_dynamic_shape", ["dynamic dimensions", "[batch, 3, height, width]"], kind: .invalidFile)
        assertRefused("bad_opset", ["opset 99"], kind: .invalidFile)
        assertRefused("bad_huge_group", ["node '/conv/Conv'", "group 4611686018427387904"], kind: .invalidArgument)
        assertRefused("bad_huge_padding", ["node '/conv/Conv'", "padding 4611686018427387904"], kind: .invalidArgument)
        assertRefused("no_such_model", ["does not exist"], kind: .invalidFile)
    }

    func testTheUnsupportedOperatorErrorListsWhatIsSupported() throws {
        do {
            _ = try ONNX.importModel(contentsOf: Self.path("bad_unsupported_op"))
            XCTFail("imported")
        } catch let e as PruneKitError {
            XCTAssert(e.hint?.contains("supported operators: " + ONNX.supportedOperators.joined(separator: ", ")) == true, e.hint ?? "")
            XCTAssert(ONNX.supportedOperators.contains("Conv") && ONNX.supportedOperators.contains("Clip"))
        }
    }

    func testAGivenInputShapeResolvesSymbolicDimensions() throws {
        let imported = try ONNX.importModel(contentsOf: Self.path("bad_dynamic_shape"), options: ONNXImportOptions(inputShape: [3, 5, 4]))
        XCTAssertEqual(imported.model.outputShape, [2, 5, 4])
        XCTAssertThrowsError(try ONNX.importModel(contentsOf: Self.path("bad_dynamic_shape"), options: ONNXImportOptions(inputShape: [4, 5, 4])))
    }

    func testTruncatedAndForeignFilesAreRefused() throws {
        let whole = try Data(contentsOf: URL(fileURLWithPath: Self.path("tiny_vgg_bn")))
        for (label, bytes) in [("truncated", whole.prefix(whole.count / 2)), ("text", Data("hello, not a model\n".utf8)),
                               ("empty", Data()), ("safetensors", Data([8, 0, 0, 0, 0, 0, 0, 0]) + Data("{}      ".utf8))] {
            XCTAssertThrowsError(try ONNX.importModel(serialized: bytes, source: label), label) { error in
                let e = error as? PruneKitError
                XCTAssertEqual(e?.kind, .invalidFile, "\(label): \(error)")
                XCTAssert(e?.message.contains("'\(label)'") == true, "\(label): \(error)")
            }
        }
    }
}

/// Writes exported models with PruneKit's own outputs for `.ci/onnx-check`, which runs them in
/// ONNX Runtime (a real runtime, from pip) and compares. Skipped unless PRUNEKIT_ONNX_CHECK_DIR is set.
/// PRUNEKIT_ONNX_EXTRA (colon-separated .onnx files, such as full-size torchvision exports) adds
/// more models, each as imported and pruned 2× with l1-filter (by hand; CI does not set it).
final class ONNXRuntimeExportTests: XCTestCase {
    func testWriteExportsForONNXRuntime() throws {
        guard let dir = ProcessInfo.processInfo.environment["PRUNEKIT_ONNX_CHECK_DIR"] else {
            throw XCTSkip("PRUNEKIT_ONNX_CHECK_DIR is not set: .ci/onnx-check sets it and checks the files in ONNX Runtime")
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var rng = RandomGenerator(seed: 11)
        let l1 = try TestSupport.builtInRegistry().criterion("l1-filter")
        var cases: [(String, Model, [String: String])] = []
        for name in ONNXTests.models {
            let imported = try ONNX.importModel(contentsOf: ONNXTests.path(name))
            cases.append((name, imported.model, imported.initializerNames))
            let copy = try ONNX.importModel(contentsOf: ONNXTests.path(name))
            let policy = ONNXTests.pruningPolicy[name] ?? .withinBlocks
            try copy.model.prune(with: l1, toward: .speedup(2), settings: TargetedPruningSettings(policy: policy), data: nil)
            cases.append((name + "-x2", try copy.model.removingPrunedChannels(policy: policy).model, copy.initializerNames))
        }
        for path in (ProcessInfo.processInfo.environment["PRUNEKIT_ONNX_EXTRA"] ?? "").split(separator: ":").map(String.init) {
            let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
            let imported = try ONNX.importModel(contentsOf: path)
            cases.append((name, imported.model, imported.initializerNames))
            let copy = try ONNX.importModel(contentsOf: path)
            let hasAdd = copy.model.nodes.contains { $0.layer.kind == .add }
            let policy: ResidualPolicy = hasAdd ? .wholeStream : .withinBlocks
            do {
                try copy.model.prune(with: l1, toward: .speedup(2), settings: TargetedPruningSettings(policy: policy), data: nil)
                cases.append((name + "-x2", try copy.model.removingPrunedChannels(policy: policy).model, copy.initializerNames))
            } catch let e as PruneKitError {
                print("note: \(name) was not pruned: \(e.message)")
            }
        }
        cases.append(("activations", try ONNXTests.activationModel(), [:]))
        let opset20 = try ONNX.importModel(contentsOf: ONNXTests.path("ops_opset20"))
        cases.append(("ops_opset20", opset20.model, opset20.initializerNames))
        for name in ["lenet-5", "lenet-300-100", "vgg-small", "resnet-20"] {
            let model = try ModelZoo.make(name, inputShape: name == "resnet-20" ? [3, 32, 32] : [1, 28, 28], classCount: 10, seed: 1)
            cases.append((name, model, [:]))
        }
        let resnet = try ModelZoo.make("resnet-20", inputShape: [3, 32, 32], classCount: 10, seed: 1)
        try resnet.prune(with: l1, toward: .speedup(2), data: nil)
        cases.append(("resnet-20-x2", try resnet.removingPrunedChannels().model, [:]))

        for (name, model, names) in cases {
            try ONNX.export(model, to: "\(dir)/\(name).onnx", initializerNames: names)
            let batch = model.inputShape.reduce(1, *) > 100_000 ? 1 : 3   // full-size images: one
            let input = Tensor.randomNormal([batch] + model.inputShape, using: &rng)
            let reference: [String: Any] = [
                "input_shape": input.shape, "input": input.scalars.map(Double.init),
                "output_shape": [batch] + model.outputShape, "output": ONNXTests.outputs(model, input).map(Double.init),
            ]
            try JSONSerialization.data(withJSONObject: reference).write(to: URL(fileURLWithPath: "\(dir)/\(name).json"))
        }
    }
}
