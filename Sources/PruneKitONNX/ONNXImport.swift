import Foundation
import PruneKit
import SwiftProtobuf

extension ONNX {
    /// Reads an ONNX file into a PruneKit model.
    ///
    /// - Parameters:
    ///   - path: a `.onnx` file; tensors stored outside it (external data, as written for
    ///     models over 2 GB) are read from the data files it names beside it.
    ///   - options: see ``ONNXImportOptions``.
    /// - Returns: the model (its input the graph's one input, its output the graph's one
    ///   output) and the initialiser names its parameters came from.
    /// - Throws: ``PruneKitError``: `.invalidFile` for a missing, truncated or non-ONNX file,
    ///   an opset outside ``supportedOpsets``, several inputs or outputs, symbolic input
    ///   dimensions (unless `options.inputShape` gives them), a missing or short external data
    ///   file, NaN or infinite initialisers; `.invalidArgument` for an operator or attribute PruneKit
    ///   does not read, naming the node, the operator and the opset.
    /// Cost: one read of the file and one pass over its tensors.
    public static func importModel(contentsOf path: String, options: ONNXImportOptions = .init()) throws -> ONNXImportedModel {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw PruneKitError(.invalidFile, "the ONNX file '\(path)' does not exist",
                                hint: "give the path of a .onnx file (torch.onnx.export writes one)")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw PruneKitError(.io, "cannot read '\(path)': \(error.localizedDescription)")
        }
        return try importModel(serialized: data, source: path, directory: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                               options: options)
    }

    /// Reads a serialised ONNX `ModelProto` (the bytes of a `.onnx` file) whose tensors are
    /// all inside it.
    /// - Parameter source: the name used in error messages (a path).
    /// - Throws: as ``importModel(contentsOf:options:)``.
    public static func importModel(serialized data: Data, source: String, options: ONNXImportOptions = .init()) throws -> ONNXImportedModel {
        try importModel(serialized: data, source: source, directory: nil, options: options)
    }

    /// - Parameter directory: where external data files are, when the model came from a file.
    static func importModel(serialized data: Data, source: String, directory: String?, options: ONNXImportOptions) throws -> ONNXImportedModel {
        let notONNX = "the file may be truncated, or not an ONNX model; export it again (torch.onnx.export(..., opset_version=17))"
        guard !data.isEmpty else {
            throw PruneKitError(.invalidFile, "'\(source)' is empty, not an ONNX model", hint: notONNX)
        }
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw PruneKitError(.invalidFile, "'\(source)' is not a readable ONNX model (protobuf: \(error))",
                                hint: notONNX)
        }
        guard proto.hasGraph, proto.irVersion > 0, !proto.graph.node.isEmpty else {
            throw PruneKitError(.invalidFile, "'\(source)' is not an ONNX model (no IR version or no graph)",
                                hint: notONNX)
        }
        let defaultDomain = proto.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        guard let opsetVersion = defaultDomain.map({ Int($0.version) }) else {
            throw PruneKitError(.invalidFile, "'\(source)' declares no opset for the default ONNX domain",
                                hint: "export it again with an explicit opset (torch.onnx.export(..., opset_version=17))")
        }
        guard supportedOpsets.contains(opsetVersion) else {
            throw PruneKitError(.invalidFile, "'\(source)' uses opset \(opsetVersion); PruneKit reads opsets \(supportedOpsets.lowerBound)–\(supportedOpsets.upperBound)",
                                hint: "convert it (onnx.version_converter.convert_version(model, 17)) or export it again with opset_version=17")
        }
        var reader = try GraphReader(graph: proto.graph, source: source, directory: directory, opset: opsetVersion, options: options)
        let model = try reader.read()
        let producer = [proto.producerName, proto.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        return ONNXImportedModel(model: model, initializerNames: reader.initializerNames, opset: opsetVersion,
                                 producer: producer)
    }
}

/// A tensor of the graph that a PruneKit node computes.
struct ONNXValue {
    /// The PruneKit node (or ``Model/inputIndex``) whose output this is.
    let node: Int
    /// The ONNX per-example shape (without the batch). It differs from the PruneKit node's
    /// shape only after GlobalAveragePool: ONNX keeps `[C, 1, 1]` where PruneKit has `[C]`.
    let shape: [Int]
}

/// The state of one import: the graph's constants, the values computed so far and the
/// model being built. The operator functions in `ONNXOperators` read and extend it.
struct GraphReader {
    let source: String
    /// The folder of the model's file, where external data files are; `nil` for bytes.
    let directory: String?
    let opset: Int
    let nodes: [Onnx_NodeProto]
    /// Initialisers and the outputs of Constant nodes, by name.
    var constants: [String: Onnx_TensorProto] = [:]
    var values: [String: ONNXValue] = [:]
    /// ONNX node indices reading each value.
    var readers: [String: [Int]] = [:]
    /// ONNX nodes already read as part of an earlier one (the Add after a MatMul).
    var fused = Set<Int>()
    /// The outputs of zero Pads folded into the layers that read them: the value padded and
    /// its padding (top, left, bottom, right), read through ``paddedValue(_:_:)``.
    var foldedPads: [String: (value: ONNXValue, pads: [Int])] = [:]
    var built: [Model.Node] = []
    var shapes: [[Int]] = []
    var names = Set<String>()
    var initializerNames: [String: String] = [:]
    let inputShape: [Int]
    let outputName: String
    let graphName: String
    /// The declared batch size of the graph's input, when it is a number.
    let declaredBatch: Int?
    /// The node being read.
    var current = 0
    var rng = RandomGenerator(seed: 0, stream: "onnx-import")

    init(graph: Onnx_GraphProto, source: String, directory: String?, opset: Int, options: ONNXImportOptions) throws {
        self.source = source
        self.directory = directory
        self.opset = opset
        self.nodes = graph.node
        self.graphName = graph.name
        var constants: [String: Onnx_TensorProto] = [:]
        for t in graph.initializer { constants[t.name] = t }
        self.constants = constants
        let inputs = graph.input.filter { constants[$0.name] == nil }
        guard inputs.count == 1 else {
            throw PruneKitError(.invalidFile, "'\(source)' has \(inputs.count) inputs (\(inputs.map { "'\($0.name)'" }.joined(separator: ", "))); PruneKit reads models with exactly one image or vector input",
                                hint: "export the model with a single input tensor")
        }
        guard graph.output.count == 1 else {
            throw PruneKitError(.invalidFile, "'\(source)' has \(graph.output.count) outputs (\(graph.output.map { "'\($0.name)'" }.joined(separator: ", "))); PruneKit reads models with exactly one output",
                                hint: "export the model with a single output (the logits)")
        }
        let input = inputs[0]
        guard case .tensorType(let tensorType)? = input.type.value, tensorType.elemType == 1 else {
            throw PruneKitError(.invalidFile, "'\(source)': the input '\(input.name)' is not a float32 tensor",
                                hint: "export the model with a float32 input")
        }
        let dims = tensorType.shape.dim.map { d -> Int? in
            if case .dimValue(let v)? = d.value, v > 0 { return Int(v) }
            return nil
        }
        guard tensorType.hasShape, dims.count == 4 || dims.count == 2 else {
            throw PruneKitError(.invalidFile, "'\(source)': the input '\(input.name)' has \(tensorType.hasShape ? "rank \(dims.count)" : "no declared shape"); PruneKit reads [N, C, H, W] images or [N, F] vectors",
                                hint: "export with an example input of shape [1, C, H, W]")
        }
        let perExample = Array(dims.dropFirst())
        if let given = options.inputShape {
            guard given.count == perExample.count, given.allSatisfy({ $0 > 0 }),
                  zip(given, perExample).allSatisfy({ $1 == nil || $0 == $1 }) else {
                throw PruneKitError(.invalidArgument, "the input shape \(given) does not fit '\(input.name)' of '\(source)', which is \(Self.describe(tensorType.shape)) (batch first)",
                                    hint: "give the per-example shape, without the batch: C×H×W or F")
            }
            inputShape = given
        } else {
            guard perExample.allSatisfy({ $0 != nil }) else {
                throw PruneKitError(.invalidFile, "'\(source)': the input '\(input.name)' has dynamic dimensions \(Self.describe(tensorType.shape)) that PruneKit cannot resolve",
                                    hint: "give the per-example input shape (prunekit import --input-shape 3x224x224), or export with fixed height and width")
            }
            inputShape = perExample.map { $0! }
        }
        declaredBatch = dims[0]
        outputName = graph.output[0].name
        values[input.name] = ONNXValue(node: Model.inputIndex, shape: inputShape)
        for (i, node) in nodes.enumerated() {
            for name in node.input where !name.isEmpty { readers[name, default: []].append(i) }
        }
    }

    static func describe(_ shape: Onnx_TensorShapeProto) -> String {
        "[" + shape.dim.map { d -> String in
            switch d.value {
            case .dimValue(let v)?: return String(v)
            case .dimParam(let p)?: return p
            case nil: return "?"
            }
        }.joined(separator: ", ") + "]"
    }

    /// Reads every node, then builds and checks the model.
    mutating func read() throws -> Model {
        for i in nodes.indices where !fused.contains(i) {
            current = i
            let node = nodes[i]
            guard node.domain.isEmpty || node.domain == "ai.onnx" else {
                throw unsupported(node, "operators of the domain '\(node.domain)' are not read")
            }
            guard let read = ONNXOperators.table[node.opType] else {
                throw PruneKitError(.invalidArgument,
                    "\(source): node '\(node.name)' uses the operator \(node.opType) (opset \(opset)), which PruneKit does not read",
                    hint: "supported operators: \(ONNX.supportedOperators.joined(separator: ", "))")
            }
            try read(&self, node)
        }
        guard let output = values[outputName] else {
            throw PruneKitError(.invalidFile, "\(source): the graph's output '\(outputName)' is not computed by any node (or is a constant)",
                                hint: "export the model again; its output must come from its layers")
        }
        guard !built.isEmpty, output.node == built.count - 1 else {
            throw PruneKitError(.invalidArgument, "\(source): the graph's output '\(outputName)' is not its last operation" + (built.isEmpty ? " (the graph has no layers)" : ""),
                                hint: "PruneKit reads graphs whose output is computed last; export only the path to the logits")
        }
        // The file's name (torch names every graph main_graph), else the graph's.
        let architecture = ONNX.isONNXPath(source) ? URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
            : graphName.isEmpty ? "onnx-model" : graphName
        do {
            return try Model(architecture: architecture, inputShape: inputShape, nodes: built)
        } catch let e as PruneKitError {
            throw PruneKitError(e.kind, "\(source): \(e.message)", hint: e.hint)
        }
    }

    // MARK: Errors

    /// An error naming the node, its operator and the opset.
    func unsupported(_ node: Onnx_NodeProto, _ what: String, hint: String? = nil) -> PruneKitError {
        PruneKitError(.invalidArgument, "\(source): node '\(node.name)' (\(node.opType), opset \(opset)): \(what)",
                      hint: hint ?? "PruneKit reads this operator only in the forms listed in README's \"Your own model (ONNX)\"")
    }

    // MARK: Inputs

    /// The non-constant input `index` of `node`.
    func value(_ node: Onnx_NodeProto, _ index: Int) throws -> ONNXValue {
        guard index < node.input.count, !node.input[index].isEmpty else {
            throw unsupported(node, "input \(index) is missing")
        }
        let name = node.input[index]
        if let v = values[name] { return v }
        if constants[name] != nil {
            throw unsupported(node, "input \(index) ('\(name)') is a constant where PruneKit expects a computed tensor")
        }
        throw PruneKitError(.invalidFile, "\(source): node '\(node.name)' (\(node.opType)) reads '\(name)', which no earlier node computes",
                            hint: "the graph is not in topological order or is incomplete; export it again")
    }

    /// The input `index` of a node that can take over a Pad's zeros into its own padding
    /// (Conv, AveragePool): the value before the Pad and the padding to add (top, left,
    /// bottom, right; zeros when no Pad was folded).
    func paddedValue(_ node: Onnx_NodeProto, _ index: Int) throws -> (ONNXValue, [Int]) {
        if index < node.input.count, let folded = foldedPads[node.input[index]] { return folded }
        return (try value(node, index), [0, 0, 0, 0])
    }

    /// Whether input `index` of `node` is present (optional inputs may be left out or empty).
    func hasInput(_ node: Onnx_NodeProto, _ index: Int) -> Bool {
        index < node.input.count && !node.input[index].isEmpty
    }

    /// The constant input `index` of `node` as float32 values.
    func constant(_ node: Onnx_NodeProto, _ index: Int) throws -> (dims: [Int], values: [Float], name: String) {
        guard hasInput(node, index) else { throw unsupported(node, "input \(index) is missing") }
        let name = node.input[index]
        guard let t = constants[name] else {
            throw unsupported(node, "input \(index) ('\(name)') is computed; PruneKit reads it only as a constant (an initialiser)")
        }
        return (try dims(t), try floats(t), name)
    }

    /// The constant input `index` of `node` as integers (INT64 or INT32 tensors).
    func integers(_ node: Onnx_NodeProto, _ index: Int) throws -> [Int] {
        guard hasInput(node, index) else { throw unsupported(node, "input \(index) is missing") }
        let name = node.input[index]
        guard let t = constants[name] else {
            throw unsupported(node, "input \(index) ('\(name)') is computed; PruneKit reads it only as a constant")
        }
        return try integers(t)
    }

    // MARK: Tensors

    func dims(_ t: Onnx_TensorProto) throws -> [Int] {
        var count = 1
        for d in t.dims {
            guard d >= 0 else { throw badTensor(t, "has a negative dimension \(d)") }
            let (p, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, p <= LayerFactory.maximumWeightElements else {
                throw badTensor(t, "has shape \(t.dims), more than the \(LayerFactory.maximumWeightElements) elements PruneKit allows")
            }
            count = p
        }
        return t.dims.map(Int.init)
    }

    func badTensor(_ t: Onnx_TensorProto, _ what: String, hint: String? = nil) -> PruneKitError {
        PruneKitError(.invalidFile, "\(source): the tensor '\(t.name)' \(what)",
                      hint: hint ?? "export the model again; the file may be damaged")
    }

    /// The tensor with its bytes in `rawData`: as it is, or read from its external data file
    /// (`location` beside the model, `offset`, `length`; ONNX's external data layout).
    func inline(_ t: Onnx_TensorProto) throws -> Onnx_TensorProto {
        guard t.dataLocation == .external else { return t }
        var entries: [String: String] = [:]
        for e in t.externalData where entries[e.key] == nil { entries[e.key] = e.value }
        let location = entries["location"] ?? ""
        guard let directory else {
            throw badTensor(t, "is stored outside the model (external data in '\(location)'), which is read only from a file",
                            hint: "import the .onnx file by its path, with its data file beside it")
        }
        guard !location.isEmpty, !location.hasPrefix("/"), !location.split(separator: "/").contains("..") else {
            throw badTensor(t, "names the external data file '\(location)', which is not a file beside the model")
        }
        let elementSize: Int
        switch t.dataType {
        case Int32(Onnx_TensorProto.DataType.float.rawValue), Int32(Onnx_TensorProto.DataType.int32.rawValue): elementSize = 4
        case Int32(Onnx_TensorProto.DataType.double.rawValue), Int32(Onnx_TensorProto.DataType.int64.rawValue): elementSize = 8
        default: throw badTensor(t, "has element type \(Self.typeName(t.dataType)); PruneKit reads float32 and float64 weights")
        }
        let needed = try dims(t).reduce(1, *) * elementSize
        guard let offset = Int(entries["offset"] ?? "0"), offset >= 0,
              let length = Int(entries["length"] ?? String(needed)), length == needed else {
            throw badTensor(t, "gives its external data as offset \(entries["offset"] ?? "0"), length \(entries["length"] ?? "?"), but it holds \(needed) bytes")
        }
        let path = URL(fileURLWithPath: directory).appendingPathComponent(location).path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw PruneKitError(.invalidFile, "\(source): the tensor '\(t.name)' is stored in '\(location)', which is missing beside the model",
                                hint: "copy the data file that onnx.save_model(..., save_as_external_data=True) wrote next to the .onnx file")
        }
        defer { try? handle.close() }
        let bytes: Data
        do {
            try handle.seek(toOffset: UInt64(offset))
            bytes = try handle.read(upToCount: needed) ?? Data()
        } catch {
            throw PruneKitError(.io, "\(source): cannot read '\(location)': \(error.localizedDescription)")
        }
        guard bytes.count == needed else {
            throw PruneKitError(.invalidFile, "\(source): the data file '\(location)' ends before the tensor '\(t.name)' (\(bytes.count) of \(needed) bytes at offset \(offset))",
                                hint: "the data file is truncated or belongs to another export; export the model again")
        }
        var copy = t
        copy.rawData = bytes
        copy.dataLocation = .default
        copy.externalData = []
        return copy
    }

    /// The elements of a FLOAT or DOUBLE tensor, checked finite.
    func floats(_ t: Onnx_TensorProto) throws -> [Float] {
        let t = try inline(t)
        let count = try dims(t).reduce(1, *)
        let values: [Float]
        switch t.dataType {
        case Int32(Onnx_TensorProto.DataType.float.rawValue):
            if !t.rawData.isEmpty {
                guard t.rawData.count == count * 4 else { throw badTensor(t, "holds \(t.rawData.count) bytes for \(count) float32 elements") }
                values = Self.littleEndianFloats(t.rawData, count: count)
            } else {
                guard t.floatData.count == count else { throw badTensor(t, "holds \(t.floatData.count) values for shape \(t.dims)") }
                values = t.floatData
            }
        case Int32(Onnx_TensorProto.DataType.double.rawValue):
            if !t.rawData.isEmpty {
                guard t.rawData.count == count * 8 else { throw badTensor(t, "holds \(t.rawData.count) bytes for \(count) float64 elements") }
                values = t.rawData.withUnsafeBytes { raw in
                    (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
                }
            } else {
                guard t.doubleData.count == count else { throw badTensor(t, "holds \(t.doubleData.count) values for shape \(t.dims)") }
                values = t.doubleData.map(Float.init)
            }
        default:
            throw badTensor(t, "has element type \(Self.typeName(t.dataType)); PruneKit reads float32 and float64 weights",
                            hint: "export the model in float32 (model.float() before torch.onnx.export)")
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw badTensor(t, "holds \(values[bad]) at element \(bad); a model's weights must be finite",
                            hint: "the exported model was already broken (a diverged training?); export a finite one")
        }
        return values
    }

    /// The elements of an INT64 or INT32 tensor.
    func integers(_ t: Onnx_TensorProto) throws -> [Int] {
        let t = try inline(t)
        let count = try dims(t).reduce(1, *)
        switch t.dataType {
        case Int32(Onnx_TensorProto.DataType.int64.rawValue):
            if !t.rawData.isEmpty {
                guard t.rawData.count == count * 8 else { throw badTensor(t, "holds \(t.rawData.count) bytes for \(count) int64 elements") }
                return t.rawData.withUnsafeBytes { raw in
                    (0..<count).map { Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
                }
            }
            guard t.int64Data.count == count else { throw badTensor(t, "holds \(t.int64Data.count) values for shape \(t.dims)") }
            return t.int64Data.map(Int.init)
        case Int32(Onnx_TensorProto.DataType.int32.rawValue):
            if !t.rawData.isEmpty {
                guard t.rawData.count == count * 4 else { throw badTensor(t, "holds \(t.rawData.count) bytes for \(count) int32 elements") }
                return t.rawData.withUnsafeBytes { raw in
                    (0..<count).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
                }
            }
            guard t.int32Data.count == count else { throw badTensor(t, "holds \(t.int32Data.count) values for shape \(t.dims)") }
            return t.int32Data.map(Int.init)
        default:
            throw badTensor(t, "has element type \(Self.typeName(t.dataType)) where integers are expected")
        }
    }

    /// `count` float32 values stored little-endian (ONNX's raw_data): one copy on a
    /// little-endian machine, a byte swap of each value elsewhere.
    static func littleEndianFloats(_ raw: Data, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            _ = raw.withUnsafeBytes { memcpy(buffer.baseAddress!, $0.baseAddress!, count * 4) }
            if UInt32(1).littleEndian != 1 {
                for i in 0..<count { buffer[i] = Float(bitPattern: UInt32(littleEndian: buffer[i].bitPattern)) }
            }
            initialized = count
        }
    }

    static func typeName(_ code: Int32) -> String {
        Onnx_TensorProto.DataType(rawValue: Int(code)).map { "\($0)" } ?? "code \(code)"
    }

    /// The single float value of a constant tensor: an initialiser, a Constant node already
    /// read, or a Constant node later in the graph (torch writes some just before their
    /// reader); `nil` when `name` is computed or not a one-element number.
    func constantScalar(_ name: String) throws -> Float? {
        var tensor = constants[name]
        if tensor == nil, let producer = nodes.first(where: { $0.output.first == name }), producer.opType == "Constant" {
            tensor = try ONNXOperators.constantTensor(self, producer)
        }
        let floating = [Onnx_TensorProto.DataType.float, .double].map { Int32($0.rawValue) }
        guard let t = tensor, t.dims.reduce(1, *) == 1, floating.contains(t.dataType) else { return nil }
        let values = try floats(t)
        return values.count == 1 ? values[0] : nil
    }

    // MARK: Attributes

    func attribute(_ node: Onnx_NodeProto, _ name: String) -> Onnx_AttributeProto? {
        node.attribute.first { $0.name == name }
    }

    func int(_ node: Onnx_NodeProto, _ name: String, default fallback: Int) throws -> Int {
        guard let a = attribute(node, name) else { return fallback }
        guard a.type == .int || (a.type == .undefined && a.hasI) else { throw unsupported(node, "the attribute '\(name)' is not an integer") }
        return Int(a.i)
    }

    func float(_ node: Onnx_NodeProto, _ name: String, default fallback: Float) throws -> Float {
        guard let a = attribute(node, name) else { return fallback }
        guard a.type == .float || (a.type == .undefined && a.hasF) else { throw unsupported(node, "the attribute '\(name)' is not a float") }
        guard a.f.isFinite else { throw unsupported(node, "the attribute '\(name)' is \(a.f)") }
        return a.f
    }

    func ints(_ node: Onnx_NodeProto, _ name: String) throws -> [Int]? {
        guard let a = attribute(node, name) else { return nil }
        guard a.type == .ints || a.type == .undefined else { throw unsupported(node, "the attribute '\(name)' is not a list of integers") }
        return a.ints.map(Int.init)
    }

    func string(_ node: Onnx_NodeProto, _ name: String, default fallback: String) throws -> String {
        guard let a = attribute(node, name) else { return fallback }
        guard a.type == .string || a.type == .undefined, let s = String(data: a.s, encoding: .utf8) else {
            throw unsupported(node, "the attribute '\(name)' is not a string")
        }
        return s
    }

    // MARK: Building

    /// A unique dotted layer name: the weight initialiser's name without `.weight`
    /// (`layer1.0.conv1.weight` → `layer1.0.conv1`), else the node's name with its scope
    /// slashes turned into dots (`/layer1/layer1.0/relu/Relu` → `layer1.0.relu`), else the
    /// operator and a number.
    mutating func layerName(_ node: Onnx_NodeProto, weight: String? = nil) -> String {
        var base = ""
        if let weight, weight.hasSuffix(".weight") {
            base = Self.sanitized(String(weight.dropLast(".weight".count)))
        }
        if base.isEmpty {
            var parts = node.name.split(separator: "/").map(String.init)
            if parts.last == node.opType { parts.removeLast() }
            var kept: [String] = []
            for p in parts {
                if let last = kept.last, p.hasPrefix(last + ".") { kept.removeLast() }
                kept.append(p)
            }
            base = Self.sanitized(kept.joined(separator: "."))
        }
        if base.isEmpty { base = node.opType.lowercased() }
        if base == "input" { base = "input_" }
        var name = base, n = 2
        while names.contains(name) || name == "input" { name = "\(base)_\(n)"; n += 1 }
        names.insert(name)
        return name
    }

    /// Letters, digits, `_`, `-` and dots; anything else becomes `_`.
    static func sanitized(_ s: String) -> String {
        let mapped = String(s.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
        return mapped.split(separator: ".", omittingEmptySubsequences: true).joined(separator: ".")
    }

    /// The PruneKit shape of a value.
    func prunekitShape(_ v: ONNXValue) -> [Int] {
        v.node == Model.inputIndex ? inputShape : shapes[v.node]
    }

    /// Appends `layer` reading `inputs`, and records its output as the ONNX value `output`.
    /// - Parameter onnxShape: the ONNX per-example shape when it differs from PruneKit's.
    mutating func add(_ layer: Layer, name: String, node: Onnx_NodeProto, inputs: [ONNXValue], output: String,
                      onnxShape: [Int]? = nil) throws {
        let shape: [Int]
        do {
            shape = try layer.outputShape(for: inputs.map(prunekitShape))
        } catch let e as PruneKitError {
            throw unsupported(node, e.message)
        }
        built.append(Model.Node(name: name, layer: layer, inputs: inputs.map(\.node)))
        shapes.append(shape)
        values[output] = ONNXValue(node: built.count - 1, shape: onnxShape ?? shape)
    }

    /// Records that `path` holds the initialiser `name` unchanged.
    mutating func remember(_ path: String, _ name: String) {
        initializerNames[path] = name
    }

    /// The only output of `node`, checking that any further outputs are unused.
    func singleOutput(_ node: Onnx_NodeProto) throws -> String {
        guard let first = node.output.first, !first.isEmpty else { throw unsupported(node, "it has no output") }
        for extra in node.output.dropFirst() where !extra.isEmpty && (readers[extra] != nil || extra == outputName) {
            throw unsupported(node, "its extra output '\(extra)' is used; PruneKit reads only the first output")
        }
        return first
    }
}
