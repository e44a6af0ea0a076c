import Foundation
import PruneKit
import SwiftProtobuf

extension ONNX {
    /// Writes `model` to `path` as an ONNX file (opset ``exportOpset``); see ``exportData(_:initializerNames:)``.
    /// - Throws: as ``exportData(_:initializerNames:)``; `.io` when the file cannot be written
    ///   (nothing is left at `path` then).
    public static func export(_ model: Model, to path: String, initializerNames: [String: String] = [:]) throws {
        let data = try exportData(model, initializerNames: initializerNames)
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw PruneKitError(.io, "cannot write '\(path)': \(error.localizedDescription)",
                                hint: "check that the folder exists and is writable")
        }
    }

    /// The model as a serialised ONNX `ModelProto`: its layers as they are now (a pruned model
    /// physically narrower), its weights dense with any pruning mask applied, in inference form
    /// (BatchNorm with its running statistics, Dropout left out).
    ///
    /// The graph's input is `input`, `[batch, C, H, W]` (or `[batch, F]`) with a symbolic
    /// batch, and its output `output`, `[batch, classes]`.
    ///
    /// - Parameter initializerNames: the ONNX name to give each parameter, by dotted path (an
    ///   import's ``ONNXImportedModel/initializerNames``); the others are named by their path.
    /// - Throws: ``PruneKitError`` (`.invalidArgument`) for a layer kind ONNX export does not
    ///   write, naming the layer.
    /// Cost: one copy of every parameter.
    public static func exportData(_ model: Model, initializerNames: [String: String] = [:]) throws -> Data {
        var writer = GraphWriter(model: model, initializerNames: initializerNames)
        try writer.write()
        var proto = Onnx_ModelProto()
        proto.irVersion = 8                       // the IR version of opset 17 (ONNX 1.12)
        proto.producerName = "prunekit"
        proto.producerVersion = SDKVersion.string
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Int64(exportOpset)
        proto.opsetImport = [opset]
        proto.graph = writer.graph
        do {
            return try proto.serializedData()
        } catch {
            throw PruneKitError(.invalidArgument, "cannot serialise the ONNX model: \(error)")
        }
    }
}

/// Builds the ONNX graph of a model, layer by layer.
struct GraphWriter {
    let model: Model
    let initializerNames: [String: String]
    var graph = Onnx_GraphProto()
    /// The ONNX value each PruneKit node's output is.
    var outputs: [String] = []
    var usedNames = Set<String>()

    init(model: Model, initializerNames: [String: String]) {
        self.model = model
        self.initializerNames = initializerNames
    }

    mutating func write() throws {
        graph.name = model.architecture
        graph.input = [valueInfo("input", model.inputShape)]
        usedNames.insert("input")
        let last = model.nodes.count - 1
        for (i, node) in model.nodes.enumerated() {
            let inputs = node.inputs.map { $0 == Model.inputIndex ? "input" : outputs[$0] }
            let out = i == last ? "output" : unique("/" + node.name)
            let layer = node.layer
            switch layer {
            case let conv as Conv2d:
                let k = conv.kernelSize
                var names = inputs + [try initializer(node.name + ".weight", conv.weight)]
                if let b = conv.bias { names.append(try initializer(node.name + ".bias", b)) }
                let w = conv.window
                emit("Conv", node.name, names, out, [
                    ints("kernel_shape", [k.height, k.width]), ints("strides", [w.strideHeight, w.strideWidth]),
                    ints("pads", w.pads), ints("dilations", [w.dilationHeight, w.dilationWidth]),
                    int("group", conv.groups)])
            case let bn as BatchNorm:
                let names = try [("weight", bn.weight), ("bias", bn.bias), ("running_mean", bn.runningMean),
                                 ("running_var", bn.runningVar)].map { try initializer("\(node.name).\($0.0)", $0.1) }
                emit("BatchNormalization", node.name, inputs + names, out,
                     [float("epsilon", bn.epsilon), float("momentum", 1 - bn.momentum)])
            case let fc as Linear:
                var names = inputs + [try initializer(node.name + ".weight", fc.weight)]
                if let b = fc.bias { names.append(try initializer(node.name + ".bias", b)) }
                emit("Gemm", node.name, names, out, [float("alpha", 1), float("beta", 1), int("transB", 1)])
            case let pool as MaxPool2d:
                emit("MaxPool", node.name, inputs, out, [ints("kernel_shape", [pool.kernel.height, pool.kernel.width]),
                                                         ints("strides", [pool.window.strideHeight, pool.window.strideWidth]),
                                                         ints("pads", pool.window.pads), int("ceil_mode", pool.ceilMode ? 1 : 0)])
            case let pool as AvgPool2d:
                emit("AveragePool", node.name, inputs, out, [ints("kernel_shape", [pool.kernel.height, pool.kernel.width]),
                                                             ints("strides", [pool.window.strideHeight, pool.window.strideWidth]),
                                                             ints("pads", pool.window.pads), int("ceil_mode", pool.ceilMode ? 1 : 0),
                                                             int("count_include_pad", pool.countIncludePad ? 1 : 0)])
            case is GlobalAvgPool:
                // ONNX keeps [N, C, 1, 1]; PruneKit's is [N, C].
                let pooled = unique("/" + node.name + "/pooled")
                emit("GlobalAveragePool", node.name, inputs, pooled, [])
                emit("Flatten", node.name + "/flatten", [pooled], out, [int("axis", 1)])
            case is ReLU:
                emit("Relu", node.name, inputs, out, [])
            case let leaky as LeakyReLU:
                emit("LeakyRelu", node.name, inputs, out, [float("alpha", leaky.alpha)])
            case is Tanh:
                emit("Tanh", node.name, inputs, out, [])
            case let hs as HardSigmoid:
                emit("HardSigmoid", node.name, inputs, out, [float("alpha", hs.alpha), float("beta", hs.beta)])
            case is HardSwish:
                emit("HardSwish", node.name, inputs, out, [])
            case let gelu as GELU:
                writeGELU(gelu, node, inputs[0], out)
            case let pad as ZeroPad2d:
                let pads = constant(node.name + ".pads", [0, 0, pad.top, pad.left, 0, 0, pad.bottom, pad.right])
                emit("Pad", node.name, [inputs[0], pads], out, [])
            case let clip as Clip:
                let lower = clip.lower.map { scalar(node.name + ".min", $0) } ?? ""
                let upper = clip.upper.map { scalar(node.name + ".max", $0) } ?? ""
                emit("Clip", node.name, upper.isEmpty ? inputs + [lower] : inputs + [lower, upper], out, [])
            case is Flatten:
                emit("Flatten", node.name, inputs, out, [int("axis", 1)])
            case is Add:
                emit("Add", node.name, inputs, out, [])
            case is Dropout:
                // Inference: nothing. Its output is its input (an Identity when it is the model's output).
                if i == last { emit("Identity", node.name, inputs, out, []) } else { outputs.append(inputs[0]); continue }
            case is Concat:
                emit("Concat", node.name, inputs, out, [int("axis", 1)])
            case is Sigmoid:
                emit("Sigmoid", node.name, inputs, out, [])
            case is SiLU:
                // torch's opset-17 form: x · Sigmoid(x).
                let gate = unique("/" + node.name + "/sigmoid")
                emit("Sigmoid", node.name, inputs, gate, [])
                emit("Mul", node.name + "/mul", [inputs[0], gate], out, [])
            case is ChannelMul:
                // PruneKit's gate is [N, C]; ONNX broadcasts [N, C, 1, 1] over the map.
                let c = model.shapes[node.inputs[1]][0]
                let shape = constant(node.name + ".gate_shape", [-1, c, 1, 1])
                let gate = unique("/" + node.name + "/gate")
                emit("Reshape", node.name + "/reshape", [inputs[1], shape], gate, [])
                emit("Mul", node.name, [inputs[0], gate], out, [])
            case let shortcut as ChannelPadShortcut:
                try channelPad(shortcut, node, inputs[0], out)
            default:
                throw PruneKitError(.invalidArgument, "layer '\(node.name)' is a \(layer.kind.rawValue), which ONNX export does not write yet",
                                    hint: "export supports \(GraphWriter.exportedKinds.map(\.rawValue).joined(separator: ", "))")
            }
            outputs.append(out)
        }
        graph.output = [valueInfo("output", model.outputShape)]
    }

    /// The layer kinds ``write()`` handles.
    static let exportedKinds: [LayerKind] = [.conv2d, .batchNorm, .linear, .maxPool2d, .avgPool2d, .globalAvgPool, .relu, .clip,
                                             .leakyRelu, .tanh, .hardSigmoid, .hardSwish, .gelu, .zeroPad2d,
                                             .flatten, .add, .dropout, .channelPadShortcut,
                                             .concat, .sigmoid, .silu, .channelMul]

    /// GELU at opset 17, which has no Gelu operator: exact, as torch writes it,
    /// `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)` (the importer reads this pattern back);
    /// with the tanh approximation, `Mul(Mul(x, Add(Tanh(Mul(Add(x, Mul(Mul(Mul(x, x), x), κ)), √(2/π))), 1)), 0.5)`.
    mutating func writeGELU(_ g: GELU, _ node: Model.Node, _ x: String, _ out: String) {
        let n = node.name
        func value(_ part: String) -> String { unique("/" + n + "/" + part) }
        let inner: String
        if g.approximation == .none {
            let scaled = value("div")
            emit("Div", n + "/div", [x, scalar(n + ".sqrt2", Float(2).squareRoot())], scaled, [])
            inner = value("erf")
            emit("Erf", n + "/erf", [scaled], inner, [])
        } else {
            let square = value("square"), cube = value("cube"), scaledCube = value("kappa_cube")
            emit("Mul", n + "/square", [x, x], square, [])
            emit("Mul", n + "/cube", [square, x], cube, [])
            emit("Mul", n + "/kappa", [cube, scalar(n + ".kappa", 0.044715)], scaledCube, [])
            let sum = value("sum"), argument = value("argument")
            emit("Add", n + "/sum", [x, scaledCube], sum, [])
            emit("Mul", n + "/scale", [sum, scalar(n + ".sqrt_2_over_pi", (2 / Float.pi).squareRoot())], argument, [])
            inner = value("tanh")
            emit("Tanh", n + "/tanh", [argument], inner, [])
        }
        let plusOne = value("add"), product = value("mul")
        emit("Add", n + "/add", [inner, scalar(n + ".one", 1)], plusOne, [])
        emit("Mul", n + "/mul", [x, plusOne], product, [])
        emit("Mul", n + "/half", [product, scalar(n + ".half", 0.5)], out, [])
    }

    /// Option-A shortcut: every `stride`-th row and column (Slice), then zero channels on both sides (Pad).
    mutating func channelPad(_ s: ChannelPadShortcut, _ node: Model.Node, _ input: String, _ out: String) throws {
        let inputIndex = node.inputs[0]
        let c = (inputIndex == Model.inputIndex ? model.inputShape : model.shapes[inputIndex])[0]
        let low = (s.outChannels - c) / 2, high = s.outChannels - c - low
        let starts = constant(node.name + ".slice_starts", [0, 0])
        let ends = constant(node.name + ".slice_ends", [Int(Int64.max), Int(Int64.max)])
        let axes = constant(node.name + ".slice_axes", [2, 3])
        let steps = constant(node.name + ".slice_steps", [s.stride, s.stride])
        let sliced = unique("/" + node.name + "/subsampled")
        emit("Slice", node.name + "/slice", [input, starts, ends, axes, steps], sliced, [])
        let pads = constant(node.name + ".pads", [0, low, 0, 0, 0, high, 0, 0])
        emit("Pad", node.name, [sliced, pads], out, [])
    }

    // MARK: Pieces

    mutating func unique(_ base: String) -> String {
        var name = base, n = 2
        while usedNames.contains(name) { name = "\(base)_\(n)"; n += 1 }
        usedNames.insert(name)
        return name
    }

    mutating func emit(_ op: String, _ name: String, _ inputs: [String], _ output: String, _ attributes: [Onnx_AttributeProto]) {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = "/" + name + "/" + op
        n.input = inputs
        n.output = [output]
        n.attribute = attributes
        graph.node.append(n)
    }

    /// Adds a parameter as an initialiser (dense, its mask applied) and returns its name: the
    /// original ONNX name where one is known, else the dotted path.
    mutating func initializer(_ path: String, _ p: Parameter) throws -> String {
        let preferred = initializerNames[path].flatMap { usedNames.contains($0) ? nil : $0 }
        let name = unique(preferred ?? path)
        var values = p.value.scalars
        if let mask = p.mask { for (i, m) in mask.scalars.enumerated() where m == 0 { values[i] = 0 } }
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = p.value.shape.map(Int64.init)
        if UInt32(1).littleEndian != 1 { values = values.map { Float(bitPattern: $0.bitPattern.littleEndian) } }
        t.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }   // raw_data is little-endian
        graph.initializer.append(t)
        return name
    }

    /// Adds a FLOAT scalar initialiser.
    mutating func scalar(_ base: String, _ value: Float) -> String {
        let name = unique(base)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.floatData = [value]
        graph.initializer.append(t)
        return name
    }

    /// Adds an INT64 initialiser.
    mutating func constant(_ base: String, _ values: [Int]) -> String {
        let name = unique(base)
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.dims = [Int64(values.count)]
        t.int64Data = values.map(Int64.init)
        graph.initializer.append(t)
        return name
    }

    func valueInfo(_ name: String, _ perExample: [Int]) -> Onnx_ValueInfoProto {
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "batch"
        var shape = Onnx_TensorShapeProto()
        shape.dim = [batch] + perExample.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(d)
            return dim
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        return info
    }

    func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .ints; a.ints = values.map(Int64.init)
        return a
    }

    func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .int; a.i = Int64(value)
        return a
    }

    func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name; a.type = .float; a.f = value
        return a
    }
}
