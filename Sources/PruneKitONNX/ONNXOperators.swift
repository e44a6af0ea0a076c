import PruneKit

/// The ONNX operators PruneKit reads, and how each becomes layers.
///
/// **Adding an operator** is one entry in ``table`` and one function here: it reads the
/// node's inputs and attributes from the `GraphReader`, refuses (with `reader.unsupported`)
/// any form it does not implement, and appends layers with `reader.add`, or records its output
/// as another name for its input (`reader.values[output] = …`) when it computes nothing.
/// Export is the other direction, in ONNXExport.swift.
enum ONNXOperators {
    typealias Read = (inout GraphReader, Onnx_NodeProto) throws -> Void

    /// Operator type → reader. The one place that says which operators import.
    static let table: [String: Read] = [
        "Conv": conv,
        "BatchNormalization": batchNormalization,
        "Relu": relu,
        "Clip": clip,
        "LeakyRelu": leakyRelu,
        "Tanh": tanh,
        "HardSigmoid": hardSigmoid,
        "HardSwish": hardSwish,
        "Gelu": gelu,
        "Div": geluPattern,
        "Erf": erf,
        "MaxPool": pool,
        "AveragePool": pool,
        "GlobalAveragePool": globalAveragePool,
        "ReduceMean": reduceMean,
        "Pad": pad,
        "Squeeze": squeeze,
        "Unsqueeze": unsqueeze,
        "Gemm": gemm,
        "MatMul": matMul,
        "Add": add,
        "Flatten": flatten,
        "Reshape": reshape,
        "Dropout": passThrough,
        "Identity": passThrough,
        "Constant": constant,
        "Concat": concat,
        "Sigmoid": sigmoid,
        "Mul": mul,
    ]

    // MARK: Convolution and normalisation

    /// Conv → ``Conv2d``: any kernel, per-axis strides and dilations, a padding per side
    /// (explicit, `VALID`, or `SAME_UPPER` / `SAME_LOWER`, asymmetric where the total is odd),
    /// any groups; a zero Pad before it is folded into its padding.
    static func conv(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let (x, extra) = try r.paddedValue(node, 0)
        let xs = r.prunekitShape(x)
        if xs.count == 1, x.shape.count == 3, x.shape[1] == 1, x.shape[2] == 1 { return try pooledConv(&r, node, x) }
        guard xs.count == 3, x.shape.count == 3 else {
            throw r.unsupported(node, "its input has shape \(x.shape); Conv reads [C, H, W] feature maps",
                                hint: "a 1×1 convolution after GlobalAveragePool (squeeze-and-excitation) is not read yet")
        }
        let w = try r.constant(node, 1)
        guard w.dims.count == 4 else { throw r.unsupported(node, "its weight has shape \(w.dims); only 2-d convolutions are read") }
        let (o, cg, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3])
        let group = try r.int(node, "group", default: 1)
        guard group >= 1, group <= xs[0], cg * group == xs[0], o % group == 0 else {
            throw r.unsupported(node, "its weight \(w.dims) with group \(group) does not fit an input of \(xs[0]) channels")
        }
        guard kh >= 1, kw >= 1 else { throw r.unsupported(node, "its kernel is \(kh)×\(kw)") }
        if let k = try r.ints(node, "kernel_shape"), k != [kh, kw] {
            throw r.unsupported(node, "kernel_shape \(k) disagrees with the weight's \(w.dims)")
        }
        let window = try Self.window(r, node, kernel: (kh, kw), input: xs, extra: extra, dilations: true)
        let b = r.hasInput(node, 2) ? try r.constant(node, 2) : nil
        if let b, b.values.count != o { throw r.unsupported(node, "its bias has \(b.values.count) values for \(o) output channels") }
        let name = r.layerName(node, weight: w.name)
        let layer = Conv2d(inChannels: xs[0], outChannels: o, kernel: (kh, kw), window: window,
                           groups: group, bias: b != nil, rng: &r.rng)
        layer.weight.assign(Tensor(shape: w.dims, scalars: w.values))
        r.remember(name + ".weight", w.name)
        if let b, let bias = layer.bias {
            bias.assign(Tensor(shape: [o], scalars: b.values))
            r.remember(name + ".bias", b.name)
        }
        try r.add(layer, name: name, node: node, inputs: [x], output: try r.singleOutput(node))
    }

    /// Conv 1×1 on a pooled `[C, 1, 1]` value (squeeze-and-excitation's squeeze and expand
    /// convolutions after GlobalAveragePool) → ``Linear`` on PruneKit's `[C]` vector: the
    /// same weights, `[out, C, 1, 1]` read as `[out, C]`. Its output stays `[out, 1, 1]` to ONNX.
    static func pooledConv(_ r: inout GraphReader, _ node: Onnx_NodeProto, _ x: ONNXValue) throws {
        let c = x.shape[0]
        let w = try r.constant(node, 1)
        guard w.dims.count == 4, w.dims[1] == c, w.dims[2] == 1, w.dims[3] == 1 else {
            throw r.unsupported(node, "its weight \(w.dims) on a pooled [\(c), 1, 1] input is not a 1×1 convolution of \(c) channels",
                                hint: "PruneKit reads a convolution of a pooled map only as a 1×1 one (squeeze-and-excitation)")
        }
        if try r.int(node, "group", default: 1) != 1 { throw r.unsupported(node, "a grouped 1×1 convolution of a pooled map is not read") }
        if let pads = try r.ints(node, "pads"), pads.contains(where: { $0 != 0 }) {
            throw r.unsupported(node, "pads \(pads) on a pooled [\(c), 1, 1] input are not read")
        }
        if let d = try r.ints(node, "dilations"), d.contains(where: { $0 != 1 }) { throw r.unsupported(node, "dilations \(d) are not read") }
        let o = w.dims[0]
        let b = r.hasInput(node, 2) ? try r.constant(node, 2) : nil
        if let b, b.values.count != o { throw r.unsupported(node, "its bias has \(b.values.count) values for \(o) output channels") }
        let name = r.layerName(node, weight: w.name)
        let layer = try linear(name, c, o, w.values, b.map { ($0.values, $0.name) }, &r)
        r.remember(name + ".weight", w.name)
        if let b { r.remember(name + ".bias", b.name) }
        try r.add(layer, name: name, node: node, inputs: [x], output: try r.singleOutput(node), onnxShape: [o, 1, 1])
    }

    /// BatchNormalization (inference form) → ``BatchNorm``; ONNX's momentum m is PyTorch's 1 − m.
    static func batchNormalization(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let xs = r.prunekitShape(x)
        guard xs.count == 3 || xs.count == 1 else { throw r.unsupported(node, "its input has shape \(x.shape)") }
        if try r.int(node, "training_mode", default: 0) != 0 {
            throw r.unsupported(node, "it is in training mode", hint: "export the model in evaluation mode (model.eval() before torch.onnx.export)")
        }
        let epsilon = try r.float(node, "epsilon", default: 1e-5)
        let momentum = try r.float(node, "momentum", default: 0.9)
        guard epsilon > 0, (0...1).contains(momentum) else {
            throw r.unsupported(node, "epsilon \(epsilon) or momentum \(momentum) is out of range")
        }
        let c = xs[0]
        let tensors = try (1...4).map { try r.constant(node, $0) }
        for t in tensors where t.values.count != c {
            throw r.unsupported(node, "'\(t.name)' has \(t.values.count) values for \(c) channels")
        }
        if let bad = tensors[3].values.firstIndex(where: { $0 < 0 }) {
            throw r.unsupported(node, "its running variance '\(tensors[3].name)' is negative (\(tensors[3].values[bad])) at channel \(bad)",
                                hint: "the exported model is damaged; export it again")
        }
        let name = r.layerName(node, weight: tensors[0].name)
        let layer = BatchNorm(featureCount: c, epsilon: epsilon, momentum: 1 - momentum)
        for (t, (local, p)) in zip(tensors, [("weight", layer.weight), ("bias", layer.bias),
                                             ("running_mean", layer.runningMean), ("running_var", layer.runningVar)]) {
            p.assign(Tensor(shape: [c], scalars: t.values))
            r.remember("\(name).\(local)", t.name)
        }
        try r.add(layer, name: name, node: node, inputs: [x], output: try r.singleOutput(node), onnxShape: x.shape)
    }

    // MARK: Activations and pooling

    static func relu(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        try r.add(ReLU(), name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node),
                  onnxShape: x.shape)
    }

    /// Clip → ``Clip`` (ReLU6 is Clip(0, 6)): its bounds are constant scalars, either may be absent.
    static func clip(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        var bounds: [Float?] = [nil, nil]
        for i in [1, 2] where r.hasInput(node, i) {
            let b = try r.constant(node, i)
            guard b.values.count == 1 else { throw r.unsupported(node, "its bound '\(b.name)' has shape \(b.dims), not a scalar") }
            bounds[i - 1] = b.values[0]
        }
        if let lo = bounds[0], let hi = bounds[1], lo > hi {
            throw r.unsupported(node, "its minimum \(lo) is above its maximum \(hi)")
        }
        try r.add(Clip(lower: bounds[0], upper: bounds[1]), name: r.layerName(node), node: node, inputs: [x],
                  output: try r.singleOutput(node), onnxShape: x.shape)
    }

    /// LeakyRelu → ``LeakyReLU`` (`alpha`, 0.01 by default).
    static func leakyRelu(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let alpha = try r.float(node, "alpha", default: 0.01)
        try r.add(LeakyReLU(alpha: alpha), name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node),
                  onnxShape: x.shape)
    }

    /// Tanh → ``Tanh``.
    static func tanh(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        try r.add(Tanh(), name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node), onnxShape: x.shape)
    }

    /// HardSigmoid → ``HardSigmoid`` (`alpha` 0.2 and `beta` 0.5 by default; PyTorch writes 1/6 and 1/2).
    static func hardSigmoid(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let alpha = try r.float(node, "alpha", default: 0.2), beta = try r.float(node, "beta", default: 0.5)
        try r.add(HardSigmoid(alpha: alpha, beta: beta), name: r.layerName(node), node: node, inputs: [x],
                  output: try r.singleOutput(node), onnxShape: x.shape)
    }

    /// HardSwish → ``HardSwish``.
    static func hardSwish(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        try r.add(HardSwish(), name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node),
                  onnxShape: x.shape)
    }

    /// Gelu (opset 20) → ``GELU``: `approximate` "none" (erf) or "tanh".
    static func gelu(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let approximate = try r.string(node, "approximate", default: "none")
        guard let approximation = GELU.Approximation(rawValue: approximate) else {
            throw r.unsupported(node, "approximate '\(approximate)' is not an ONNX value; PruneKit reads \"none\" and \"tanh\"")
        }
        try r.add(GELU(approximation: approximation), name: r.layerName(node), node: node, inputs: [x],
                  output: try r.singleOutput(node), onnxShape: x.shape)
    }

    /// Div → ``GELU``, only as the start of the exact GELU that torch writes below opset 20:
    /// `Div(x, √2) → Erf → Add(·, 1) → Mul(·, x) → Mul(·, 0.5)` (the two Muls in either
    /// order, each operand on either side). The later nodes are read as part of it; a graph
    /// that begins the pattern and leaves it is refused at the node where it leaves.
    static func geluPattern(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let pattern = "Div(x, √2) → Erf → Add(·, 1) → Mul(·, x) → Mul(·, 0.5)"
        let hint = "PruneKit reads Div only inside GELU's erf form, \(pattern); export with opset 20 for a Gelu node"
        guard node.input.count == 2, let c = try r.constantScalar(node.input[1]), abs(c - Float(2).squareRoot()) < 1e-4 else {
            throw r.unsupported(node, "it is not the division by √2 that begins GELU's erf form", hint: hint)
        }
        let x = try r.value(node, 0)
        let xName = node.input[0]
        var chain: [Int] = []
        var output = try r.singleOutput(node)
        /// The sole reader of `output`, which must be `op`; its other operand must satisfy `other`.
        func step(_ op: String, _ what: String, other: (String) throws -> Bool) throws -> Int {
            let at = r.nodes[chain.last ?? r.current]
            guard output != r.outputName, let readers = r.readers[output], readers.count == 1,
                  case let next = r.nodes[readers[0]], next.opType == op, next.domain.isEmpty || next.domain == "ai.onnx" else {
                throw r.unsupported(at, "it begins GELU's erf form, but its output '\(output)' is not read by \(what) alone",
                                    hint: hint)
            }
            if op != "Erf" {
                guard next.input.count == 2, next.input.contains(output) else { throw r.unsupported(next, "it has \(next.input.count) inputs", hint: hint) }
                let operand = next.input[0] == output ? next.input[1] : next.input[0]
                guard try other(operand) else {
                    throw r.unsupported(next, "it continues GELU's erf form but its other operand '\(operand)' is not \(what.split(separator: " ").dropFirst().joined(separator: " "))",
                                        hint: hint)
                }
            }
            chain.append(readers[0])
            output = try r.singleOutput(next)
            return readers[0]
        }
        func isScalar(_ name: String, _ v: Float) throws -> Bool {
            try r.constantScalar(name).map { abs($0 - v) < 1e-6 } ?? false
        }
        _ = try step("Erf", "an Erf", other: { _ in true })
        _ = try step("Add", "an Add of 1", other: { try isScalar($0, 1) })
        // Then ·x and ·0.5, in either order.
        let byX = r.nodes[r.readers[output]?.first ?? r.current].input.contains(xName)
        if byX {
            _ = try step("Mul", "a Mul by x", other: { $0 == xName })
            _ = try step("Mul", "a Mul by 0.5", other: { try isScalar($0, 0.5) })
        } else {
            _ = try step("Mul", "a Mul by 0.5", other: { try isScalar($0, 0.5) })
            _ = try step("Mul", "a Mul by x", other: { $0 == xName })
        }
        for i in chain { r.fused.insert(i) }
        try r.add(GELU(), name: r.layerName(node), node: node, inputs: [x], output: output, onnxShape: x.shape)
    }

    /// Erf outside GELU's pattern (which ``geluPattern(_:_:)`` reads from its Div) is refused.
    static func erf(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        throw r.unsupported(node, "Erf is read only inside GELU's erf form, 0.5·x·(1 + erf(x/√2)), starting at its Div by √2",
                            hint: "export GELU as torch does (nn.GELU()), or with opset 20 as a Gelu node")
    }

    /// MaxPool and AveragePool → ``MaxPool2d``, ``AvgPool2d``: any 2-d window (per-axis
    /// strides, a padding per side smaller than the kernel, `auto_pad`), `ceil_mode`,
    /// AveragePool's `count_include_pad`; no dilation. A zero Pad before an AveragePool with
    /// `count_include_pad` 1 is folded into its padding.
    static func pool(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let (x, extra) = try r.paddedValue(node, 0)
        let xs = r.prunekitShape(x)
        guard xs.count == 3, x.shape.count == 3 else { throw r.unsupported(node, "its input has shape \(x.shape); it pools [C, H, W] maps") }
        guard let kernel = try r.ints(node, "kernel_shape"), kernel.count == 2, kernel.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else {
            throw r.unsupported(node, "its kernel_shape is \((try? r.ints(node, "kernel_shape")).flatMap { $0 }.map { "\($0)" } ?? "missing"); PruneKit reads 2-d windows")
        }
        let window = try Self.window(r, node, kernel: (kernel[0], kernel[1]), input: xs, extra: extra, dilations: false)
        let ceil = try r.int(node, "ceil_mode", default: 0)
        guard ceil == 0 || ceil == 1 else { throw r.unsupported(node, "ceil_mode \(ceil) is not 0 or 1") }
        let isMax = node.opType == "MaxPool"
        if isMax, try r.int(node, "storage_order", default: 0) != 0 {
            throw r.unsupported(node, "storage_order 1 is not read")
        }
        let layer: Layer
        if isMax {
            layer = MaxPool2d(kernel: (kernel[0], kernel[1]), window: window, ceilMode: ceil == 1)
        } else {
            let include = try r.int(node, "count_include_pad", default: 0)
            guard include == 0 || include == 1 else { throw r.unsupported(node, "count_include_pad \(include) is not 0 or 1") }
            layer = AvgPool2d(kernel: (kernel[0], kernel[1]), window: window, ceilMode: ceil == 1, countIncludePad: include == 1)
        }
        try r.add(layer, name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node))
    }

    /// ReduceMean over H and W (`axes` [2, 3] or [−2, −1], as an attribute up to opset 17 and
    /// an input from 18) → ``GlobalAvgPool``; `keepdims` 1 keeps ONNX's `[C, 1, 1]`.
    static func reduceMean(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        guard r.prunekitShape(x).count == 3, x.shape.count == 3 else {
            throw r.unsupported(node, "its input has shape \(x.shape); ReduceMean is read only over the H and W of [C, H, W] maps")
        }
        let given = r.hasInput(node, 1) ? try r.integers(node, 1) : try r.ints(node, "axes")
        let axes = Set((given ?? []).map { $0 < 0 ? $0 + 4 : $0 })
        guard axes == [2, 3], given?.count == 2 else {
            throw r.unsupported(node, "it reduces axes \(given.map { "\($0)" } ?? "all (none given)"); only the mean over H and W (axes [2, 3]) is read")
        }
        let keep = try r.int(node, "keepdims", default: 1)
        try r.add(GlobalAvgPool(), name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node),
                  onnxShape: keep != 0 ? [x.shape[0], 1, 1] : [x.shape[0]])
    }

    /// Pad with zeros on H and W (`mode` constant, `constant_value` 0 or absent, pads ≥ 0 and at
    /// most 1024 per side) → folded into the layers that read it when every one is a Conv, or an
    /// AveragePool with `count_include_pad` 1 and no `ceil_mode`, whose padding per side stays
    /// below its kernel; otherwise a ``ZeroPad2d`` layer (before a MaxPool, whose own padding is −∞).
    static func pad(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        guard r.prunekitShape(x).count == 3, x.shape.count == 3 else {
            throw r.unsupported(node, "its input has shape \(x.shape); Pad is read only on [C, H, W] feature maps")
        }
        let mode = try r.string(node, "mode", default: "constant")
        guard mode == "constant" else {
            throw r.unsupported(node, "mode '\(mode)' is not read; only constant zero padding is",
                                hint: "pad with zeros (nn.ZeroPad2d, or the convolution's own padding)")
        }
        var pads: [Int]
        if r.opset >= 11 {
            guard r.hasInput(node, 1) else { throw r.unsupported(node, "it has no pads input") }
            pads = try r.integers(node, 1)
        } else {
            pads = try r.ints(node, "pads") ?? []
        }
        if r.hasInput(node, 3) {
            // opset 18+: pads for the listed axes only.
            let axes = try r.integers(node, 3).map { $0 < 0 ? $0 + 4 : $0 }
            guard pads.count == 2 * axes.count, axes.allSatisfy({ (0..<4).contains($0) }) else {
                throw r.unsupported(node, "its pads \(pads) do not fit its axes \(axes)")
            }
            var full = [Int](repeating: 0, count: 8)
            for (i, a) in axes.enumerated() { full[a] = pads[i]; full[a + 4] = pads[i + axes.count] }
            pads = full
        }
        guard pads.count == 8 else { throw r.unsupported(node, "its pads \(pads) are not 8 values for a 4-d input") }
        var value: Float = 0
        if r.hasInput(node, 2) {
            guard let v = try r.constantScalar(node.input[2]) else {
                throw r.unsupported(node, "its constant_value '\(node.input[2])' is not a constant number")
            }
            value = v
        } else if r.opset < 11 {
            value = try r.float(node, "value", default: 0)
        }
        guard value == 0 else {
            throw r.unsupported(node, "it pads with \(value); only zero padding is read", hint: "pad with zeros, or fold the constant into the next layer's bias by hand")
        }
        guard pads.allSatisfy({ $0 >= 0 }) else {
            throw r.unsupported(node, "its pads \(pads) are negative (a crop), which is not read")
        }
        guard pads[0] == 0, pads[1] == 0, pads[4] == 0, pads[5] == 0 else {
            throw r.unsupported(node, "its pads \(pads) pad the batch or channel axis; only H and W padding is read")
        }
        let p = [pads[2], pads[3], pads[6], pads[7]]
        guard p.allSatisfy({ $0 <= 1024 }) else { throw r.unsupported(node, "its pads \(pads) exceed 1024 on a side") }
        let output = try r.singleOutput(node)
        if output != r.outputName, let readers = r.readers[output], !readers.isEmpty,
           try readers.allSatisfy({ try canFold(r, r.nodes[$0], pads: p, value: output) }) {
            r.foldedPads[output] = (x, p)
            return
        }
        try r.add(ZeroPad2d(top: p[0], left: p[1], bottom: p[2], right: p[3]), name: r.layerName(node), node: node,
                  inputs: [x], output: output)
    }

    /// Whether `reader` can take the zero padding `pads` (top, left, bottom, right) of its
    /// input `value` into its own: a Conv, or an AveragePool counting its padding without
    /// ceil_mode, with explicit pads, whose sum stays below the kernel's extent on each side.
    static func canFold(_ r: GraphReader, _ reader: Onnx_NodeProto, pads: [Int], value: String) throws -> Bool {
        guard reader.input.first == value, reader.input.dropFirst().allSatisfy({ $0 != value }),
              reader.domain.isEmpty || reader.domain == "ai.onnx",
              ["NOTSET", "VALID"].contains(try r.string(reader, "auto_pad", default: "NOTSET")) else { return false }
        var kernel = try r.ints(reader, "kernel_shape")
        switch reader.opType {
        case "Conv":
            if kernel == nil, reader.input.count > 1, let w = r.constants[reader.input[1]], w.dims.count == 4 {
                kernel = [Int(w.dims[2]), Int(w.dims[3])]
            }
        case "AveragePool":
            guard try r.int(reader, "count_include_pad", default: 0) == 1, try r.int(reader, "ceil_mode", default: 0) == 0 else { return false }
        default:
            return false
        }
        guard let k = kernel, k.count == 2 else { return false }
        let d = try r.ints(reader, "dilations") ?? [1, 1]
        guard d.count == 2 else { return false }
        let valid = try r.string(reader, "auto_pad", default: "NOTSET") == "VALID"
        let own: [Int] = valid ? [0, 0, 0, 0] : (try r.ints(reader, "pads") ?? [0, 0, 0, 0])
        guard own.count == 4 else { return false }
        for side in 0..<4 {
            let extent: Int = (k[side % 2] - 1) * d[side % 2] + 1
            if own[side] + pads[side] >= extent { return false }
        }
        return true
    }

    /// Squeeze of unit axes (from opset 13 an input, before an attribute), in its flatten roles:
    /// on a value PruneKit holds as a vector (after GlobalAveragePool, ReduceMean, Flatten) it
    /// only renames it; on a `[C, 1, 1]` feature map it is a ``Flatten``. Refused without axes
    /// (it could drop the batch), on the batch axis, or where the result is not `[N, features]`
    /// of a feature map.
    static func squeeze(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let rank = x.shape.count + 1
        let given = r.hasInput(node, 1) ? try r.integers(node, 1) : try r.ints(node, "axes")
        guard let given, !given.isEmpty else {
            throw r.unsupported(node, "it has no axes; PruneKit reads Squeeze only with explicit axes (it could remove the batch)",
                                hint: "squeeze named axes (x.squeeze(-1).squeeze(-1)) or use flatten(1)")
        }
        let axes = Set(given.map { $0 < 0 ? $0 + rank : $0 })
        guard axes.allSatisfy({ $0 >= 1 && $0 < rank && x.shape[$0 - 1] == 1 }) else {
            throw r.unsupported(node, "it squeezes axes \(given) of [N, \(x.shape.map(String.init).joined(separator: ", "))]; only unit axes after the batch are read")
        }
        let shape = x.shape.enumerated().filter { !axes.contains($0.offset + 1) }.map(\.element)
        let output = try r.singleOutput(node)
        if r.prunekitShape(x).count == 1 {
            r.values[output] = ONNXValue(node: x.node, shape: shape)
        } else if shape.count == 1 {
            try r.add(Flatten(), name: r.layerName(node), node: node, inputs: [x], output: output)
        } else {
            throw r.unsupported(node, "it squeezes a feature map to [N, \(shape.map(String.init).joined(separator: ", "))]; only squeezes to [N, features] are read")
        }
    }

    /// Unsqueeze of a value PruneKit holds as a vector (axes after the batch, from opset 13 an
    /// input, before an attribute): only a new name and ONNX shape, as before a Flatten.
    static func unsqueeze(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let given = r.hasInput(node, 1) ? try r.integers(node, 1) : try r.ints(node, "axes")
        let rank = x.shape.count + 1 + (given?.count ?? 0)
        guard let given, !given.isEmpty else { throw r.unsupported(node, "it has no axes") }
        let axes = Set(given.map { $0 < 0 ? $0 + rank : $0 })
        guard axes.count == given.count, axes.allSatisfy({ $0 >= 1 && $0 < rank }) else {
            throw r.unsupported(node, "its axes \(given) are not distinct axes after the batch")
        }
        guard r.prunekitShape(x).count == 1 else {
            throw r.unsupported(node, "it unsqueezes a feature map of shape \(x.shape); Unsqueeze is read only on vectors, in its flatten roles")
        }
        var shape: [Int] = [], rest = x.shape.makeIterator()
        for a in 1..<rank { shape.append(axes.contains(a) ? 1 : rest.next()!) }
        r.values[try r.singleOutput(node)] = ONNXValue(node: x.node, shape: shape)
    }

    /// GlobalAveragePool → ``GlobalAvgPool``: ONNX's `[C, 1, 1]` is PruneKit's `[C]`.
    static func globalAveragePool(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        guard r.prunekitShape(x).count == 3 else { throw r.unsupported(node, "its input has shape \(x.shape)") }
        try r.add(GlobalAvgPool(), name: r.layerName(node), node: node, inputs: [x], output: try r.singleOutput(node),
                  onnxShape: [x.shape[0], 1, 1])
    }

    // MARK: Linear layers

    /// Gemm → ``Linear``: y = α·x·B(ᵀ) + β·C with x a vector per example; α and β are folded
    /// into the weight and bias (whose initialiser names are then not kept).
    static func gemm(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let features = x.shape.reduce(1, *)
        guard r.prunekitShape(x).count == 1 else {
            throw r.unsupported(node, "its input has shape \(x.shape); Gemm reads vectors (flatten the maps first)")
        }
        guard try r.int(node, "transA", default: 0) == 0 else { throw r.unsupported(node, "transA 1 is not read") }
        let transB = try r.int(node, "transB", default: 0) != 0
        let alpha = try r.float(node, "alpha", default: 1), beta = try r.float(node, "beta", default: 1)
        let b = try r.constant(node, 1)
        guard b.dims.count == 2 else { throw r.unsupported(node, "its B has shape \(b.dims)") }
        let (inF, outF) = transB ? (b.dims[1], b.dims[0]) : (b.dims[0], b.dims[1])
        guard inF == features else { throw r.unsupported(node, "its B \(b.dims) does not fit \(features) input features") }
        var weight = transB ? b.values : transposed(b.values, rows: inF, columns: outF)
        if alpha != 1 { weight = weight.map { $0 * alpha } }
        var bias: (values: [Float], name: String)?
        if r.hasInput(node, 2) {
            let c = try r.constant(node, 2)
            guard c.values.count == outF, c.dims.last == outF else {
                throw r.unsupported(node, "its C of shape \(c.dims) is not one bias per output (\(outF)); broadcasting forms are not read")
            }
            bias = (beta == 1 ? c.values : c.values.map { $0 * beta }, c.name)
        }
        let name = r.layerName(node, weight: b.name)
        let layer = try linear(name, inF, outF, weight, bias, &r)
        if transB, alpha == 1 { r.remember(name + ".weight", b.name) }
        if let bias, beta == 1 { r.remember(name + ".bias", bias.name) }
        try r.add(layer, name: name, node: node, inputs: [x], output: try r.singleOutput(node))
    }

    /// MatMul by a constant `[in, out]` → ``Linear``, with the Add of a constant `[out]` that
    /// follows it (its only reader) as the bias.
    static func matMul(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        guard r.prunekitShape(x).count == 1 else {
            throw r.unsupported(node, "its input has shape \(x.shape); MatMul is read only as a linear layer on vectors")
        }
        let b = try r.constant(node, 1)
        guard b.dims.count == 2, b.dims[0] == x.shape.reduce(1, *) else {
            throw r.unsupported(node, "its B of shape \(b.dims) does not fit \(x.shape.reduce(1, *)) input features")
        }
        let (inF, outF) = (b.dims[0], b.dims[1])
        var output = try r.singleOutput(node)
        var bias: (values: [Float], name: String)?
        if let readers = r.readers[output], readers.count == 1, output != r.outputName {
            let next = r.nodes[readers[0]]
            if next.opType == "Add", next.domain.isEmpty || next.domain == "ai.onnx", next.input.count == 2 {
                let other = next.input[0] == output ? next.input[1] : next.input[0]
                if let t = r.constants[other], case let values = try r.floats(t), values.count == outF {
                    bias = (values, other)
                    r.fused.insert(readers[0])
                    output = try r.singleOutput(next)
                }
            }
        }
        let name = r.layerName(node, weight: b.name)
        let layer = try linear(name, inF, outF, transposed(b.values, rows: inF, columns: outF), bias, &r)
        if let bias { r.remember(name + ".bias", bias.name) }
        try r.add(layer, name: name, node: node, inputs: [x], output: output)
    }

    static func linear(_ name: String, _ inF: Int, _ outF: Int, _ weight: [Float], _ bias: (values: [Float], name: String)?,
                       _ r: inout GraphReader) throws -> Linear {
        let layer = Linear(inFeatures: inF, outFeatures: outF, bias: bias != nil, rng: &r.rng)
        layer.weight.assign(Tensor(shape: [outF, inF], scalars: weight))
        if let bias, let p = layer.bias { p.assign(Tensor(shape: [outF], scalars: bias.values)) }
        return layer
    }

    // MARK: Joins and shapes

    /// Add of two computed tensors of one shape → ``Add`` (a residual join).
    static func add(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        guard node.input.count == 2 else { throw r.unsupported(node, "it has \(node.input.count) inputs") }
        if node.input.contains(where: { r.constants[$0] != nil }) {
            throw r.unsupported(node, "it adds a constant; PruneKit reads a constant Add only as the bias right after a MatMul")
        }
        let a = try r.value(node, 0), b = try r.value(node, 1)
        guard a.shape == b.shape, r.prunekitShape(a) == r.prunekitShape(b) else {
            throw r.unsupported(node, "it adds shapes \(a.shape) and \(b.shape); broadcasting is not read yet")
        }
        try r.add(Add(), name: r.layerName(node), node: node, inputs: [a, b], output: try r.singleOutput(node), onnxShape: a.shape)
    }

    /// Flatten with axis 1 → ``Flatten`` (nothing when the value is already a vector in PruneKit).
    static func flatten(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let axis = try r.int(node, "axis", default: 1)
        guard axis == 1 || axis == -(x.shape.count) else {
            throw r.unsupported(node, "axis \(axis) mixes the batch with features; only axis 1 is read")
        }
        try flattenValue(&r, node, x)
    }

    /// Reshape to `[N, features]` (`[-1, F]`, `[0, -1]`, `[N, F]` with the graph's batch size…)
    /// → ``Flatten``, and of a vector `[N, C]` to `[N, C, 1, 1]` (a squeeze-and-excitation
    /// gate) → nothing; any other reshape is refused.
    static func reshape(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        let target = try r.integers(node, 1)
        let features = x.shape.reduce(1, *)
        if r.prunekitShape(x).count == 1, target.count == 4, target[0] == 0 || target[0] == -1 || target[0] == r.declaredBatch,
           target[1] == features, target[2] == 1, target[3] == 1 {
            // [N, C] → [N, C, 1, 1]: the same values; PruneKit keeps the vector.
            r.values[try r.singleOutput(node)] = ONNXValue(node: x.node, shape: [features, 1, 1])
            return
        }
        let batchOK = target.first.map { $0 == 0 || $0 == -1 || $0 == r.declaredBatch } ?? false
        guard target.count == 2, batchOK, target[1] == -1 || target[1] == features, !(target[0] == -1 && target[1] == -1) else {
            throw r.unsupported(node, "it reshapes [N, \(x.shape.map(String.init).joined(separator: ", "))] to \(target); only a flatten to [N, \(features)] is read")
        }
        try flattenValue(&r, node, x)
    }

    static func flattenValue(_ r: inout GraphReader, _ node: Onnx_NodeProto, _ x: ONNXValue) throws {
        let output = try r.singleOutput(node)
        if r.prunekitShape(x).count == 1 {
            r.values[output] = ONNXValue(node: x.node, shape: [x.shape.reduce(1, *)])
        } else {
            try r.add(Flatten(), name: r.layerName(node), node: node, inputs: [x], output: output)
        }
    }

    /// Dropout (inference) and Identity compute nothing: the output is another name for the input.
    static func passThrough(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let output = try r.singleOutput(node)
        if let c = r.hasInput(node, 0) ? r.constants[node.input[0]] : nil {
            r.constants[output] = c
        } else {
            r.values[output] = try r.value(node, 0)
        }
    }

    /// Constant: its `value` tensor (or `value_int(s)` / `value_float(s)`) joins the initialisers.
    static func constant(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let output = try r.singleOutput(node)
        var t = try constantTensor(r, node)
        t.name = output
        r.constants[output] = t
    }

    /// The tensor a Constant node holds.
    static func constantTensor(_ r: GraphReader, _ node: Onnx_NodeProto) throws -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        if let a = r.attribute(node, "value") {
            t = a.t
        } else if let a = r.attribute(node, "value_ints") {
            t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue); t.dims = [Int64(a.ints.count)]; t.int64Data = a.ints
        } else if let a = r.attribute(node, "value_int") {
            t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue); t.int64Data = [a.i]
        } else if let a = r.attribute(node, "value_floats") {
            t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue); t.dims = [Int64(a.floats.count)]; t.floatData = a.floats
        } else if let a = r.attribute(node, "value_float") {
            t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue); t.floatData = [a.f]
        } else {
            throw r.unsupported(node, "only value, value_int(s) and value_float(s) constants are read")
        }
        t.name = node.output.first ?? ""
        return t
    }

    /// Concat along the channels (axis 1 of `[N, C, H, W]`) → ``Concat``, any number of inputs.
    static func concat(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        guard !node.input.isEmpty else { throw r.unsupported(node, "it has no inputs") }
        if node.input.contains(where: { r.constants[$0] != nil }) {
            throw r.unsupported(node, "it concatenates a constant; PruneKit reads Concat of computed feature maps only")
        }
        let xs = try node.input.indices.map { try r.value(node, $0) }
        let rank = xs[0].shape.count + 1
        let axis = try r.int(node, "axis", default: 1)
        guard axis == 1 || axis == 1 - rank else {
            throw r.unsupported(node, "axis \(axis) of a rank-\(rank) tensor; PruneKit reads Concat along the channels (axis 1) only")
        }
        guard xs.allSatisfy({ r.prunekitShape($0).count == 3 && $0.shape.count == 3 }) else {
            throw r.unsupported(node, "it joins shapes \(xs.map(\.shape)); PruneKit reads Concat of [C, H, W] feature maps only")
        }
        try r.add(Concat(), name: r.layerName(node), node: node, inputs: xs, output: try r.singleOutput(node))
    }

    /// Sigmoid → ``Sigmoid``; `Mul(x, Sigmoid(x))`, as torch writes SiLU at opset 17, → one ``SiLU``.
    static func sigmoid(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let x = try r.value(node, 0)
        var output = try r.singleOutput(node)
        var layer: Layer = Sigmoid()
        if output != r.outputName, let readers = r.readers[output], readers.count == 1 {
            let next = r.nodes[readers[0]]
            if next.opType == "Mul", next.domain.isEmpty || next.domain == "ai.onnx", next.input.count == 2,
               Set(next.input) == [node.input[0], output] {
                r.fused.insert(readers[0])
                output = try r.singleOutput(next)
                layer = SiLU()
            }
        }
        try r.add(layer, name: r.layerName(node), node: node, inputs: [x], output: output, onnxShape: x.shape)
    }

    /// Mul of a `[C, H, W]` map by a `[C, 1, 1]` gate (either order) → ``ChannelMul``
    /// (squeeze-and-excitation). SiLU's Mul is read with its Sigmoid; other forms are refused.
    static func mul(_ r: inout GraphReader, _ node: Onnx_NodeProto) throws {
        let supported = "PruneKit reads Mul only as squeeze-and-excitation's rescaling ([N, C, H, W] × [N, C, 1, 1]) and as SiLU (x · Sigmoid(x))"
        guard node.input.count == 2 else { throw r.unsupported(node, "it has \(node.input.count) inputs", hint: supported) }
        if node.input.contains(where: { r.constants[$0] != nil }) {
            throw r.unsupported(node, "it multiplies by a constant", hint: supported)
        }
        let a = try r.value(node, 0), b = try r.value(node, 1)
        func isGate(_ v: ONNXValue, of map: ONNXValue) -> Bool {
            r.prunekitShape(v) == [map.shape[0]] && v.shape == [map.shape[0], 1, 1]
        }
        let pair: (ONNXValue, ONNXValue)?
        if r.prunekitShape(a).count == 3, a.shape.count == 3, isGate(b, of: a) { pair = (a, b) }
        else if r.prunekitShape(b).count == 3, b.shape.count == 3, isGate(a, of: b) { pair = (b, a) }
        else { pair = nil }
        guard let (map, gate) = pair else {
            throw r.unsupported(node, "it multiplies shapes \(a.shape) and \(b.shape)", hint: supported)
        }
        try r.add(ChannelMul(), name: r.layerName(node), node: node, inputs: [map, gate], output: try r.singleOutput(node))
    }

    // MARK: Attribute helpers

    /// The window of a Conv or pooling node on a `[C, H, W]` input: `strides` and `dilations`
    /// (two positive values each; dilations only where `dilations` is set), and the padding of
    /// each side from `pads` (top, left, bottom, right) or `auto_pad` (`SAME_UPPER` puts an odd
    /// total's extra row and column at the end, `SAME_LOWER` at the start), plus `extra` from a
    /// folded Pad. A side padded by the kernel's whole extent or more is refused (it only adds
    /// zero borders, and guards the shape arithmetic against absurd values).
    static func window(_ r: GraphReader, _ node: Onnx_NodeProto, kernel: (height: Int, width: Int), input: [Int],
                       extra: [Int], dilations allowDilation: Bool) throws -> ConvWindow {
        func pair(_ name: String) throws -> [Int] {
            guard let v = try r.ints(node, name) else { return [1, 1] }
            guard v.count == 2, v.allSatisfy({ $0 >= 1 && $0 <= 1 << 16 }) else {
                throw r.unsupported(node, "\(name) \(v) are not read (two values from 1 to 65536, for H and W)")
            }
            return v
        }
        let strides = try pair("strides"), dilations = try pair("dilations")
        if !allowDilation, dilations != [1, 1] { throw r.unsupported(node, "dilations \(dilations) are not read (only 1)") }
        var w = ConvWindow(strideHeight: strides[0], strideWidth: strides[1], dilationHeight: dilations[0], dilationWidth: dilations[1])
        let extents = [w.extent(kernelHeight: kernel.height), w.extent(kernelWidth: kernel.width)]
        var pads = [0, 0, 0, 0]
        let autoPad = try r.string(node, "auto_pad", default: "NOTSET")
        switch autoPad {
        case "NOTSET":
            if let p = try r.ints(node, "pads") {
                guard p.count == 4, p.allSatisfy({ $0 >= 0 }) else {
                    throw r.unsupported(node, "pads \(p) are not read (four values ≥ 0: top, left, bottom, right)")
                }
                for (i, v) in p.enumerated() where v >= extents[i % 2] {
                    throw r.unsupported(node, "padding \(v) is not smaller than its \(kernel.height)×\(kernel.width) kernel (extent \(extents[i % 2])); such padding only adds zero borders")
                }
                pads = p
            }
        case "VALID":
            break
        case "SAME_UPPER", "SAME_LOWER":
            for axis in 0..<2 {
                let size = input[axis + 1] + extra[axis] + extra[axis + 2], s = strides[axis]
                let total = max(((size + s - 1) / s - 1) * s + extents[axis] - size, 0)
                let small = total / 2
                (pads[axis], pads[axis + 2]) = autoPad == "SAME_UPPER" ? (small, total - small) : (total - small, small)
            }
        default:
            throw r.unsupported(node, "auto_pad '\(autoPad)' is not an ONNX value")
        }
        (w.padTop, w.padLeft, w.padBottom, w.padRight) = (pads[0] + extra[0], pads[1] + extra[1], pads[2] + extra[2], pads[3] + extra[3])
        return w
    }

    /// A row-major `[rows, columns]` matrix transposed to `[columns, rows]`.
    static func transposed(_ m: [Float], rows: Int, columns: Int) -> [Float] {
        var t = [Float](repeating: 0, count: m.count)
        for i in 0..<rows { for j in 0..<columns { t[j * rows + i] = m[i * columns + j] } }
        return t
    }
}
