/// Builds layers from their kind and configuration: the inverse of ``Layer/kind`` and
/// ``Layer/configuration``, used to load `model.json` and by ``Model/clone()``.
///
/// Configuration keys per kind (optional keys have PyTorch's defaults):
///
/// | kind | required | optional (default) |
/// |---|---|---|
/// | `linear` | `in_features`, `out_features` | `bias` (1) |
/// | `conv2d` | `in_channels`, `out_channels`, `kernel_size` (or `kernel_height` + `kernel_width`) | `stride` (1; or `stride_height` + `stride_width`), `dilation` (1; or `dilation_height` + `dilation_width`), `padding` (0; or `padding_top`, `padding_left`, `padding_bottom`, `padding_right`), `groups` (1), `bias` (1) |
/// | `batchNorm` | `num_features` | `eps` (1e-5), `momentum` (0.1) |
/// | `maxPool2d` | `kernel_size` (or `kernel_height` + `kernel_width`) | `stride` (= the kernel; or `stride_height` + `stride_width`), `padding` (0; or `padding_top`, `padding_left`, `padding_bottom`, `padding_right`; each smaller than the kernel), `ceil_mode` (0) |
/// | `avgPool2d` | as `maxPool2d` | as `maxPool2d`, and `count_include_pad` (0) |
/// | `dropout` | | `p` (0.5) |
/// | `channelPadShortcut` | `out_channels`, `stride` | |
/// | `clip` | | `min`, `max` (absent: unbounded; `min` ≤ `max`) |
/// | `leakyRelu` | | `alpha` (0.01) |
/// | `hardSigmoid` | | `alpha` (0.2), `beta` (0.5) |
/// | `gelu` | | `approximate` (0: erf, exact; 1: tanh) |
/// | `zeroPad2d` | | `top`, `left`, `bottom`, `right` (0) |
/// | `relu`, `tanh`, `hardSwish`, `globalAvgPool`, `flatten`, `add` | | |
/// | `concat`, `sigmoid`, `silu`, `channelMul` | | |
///
/// Counts must be whole numbers, `bias` 0 or 1. Keys a kind does not know are an error
/// (they are usually typos).
public enum LayerFactory {
    /// The largest number of elements a layer's weight may have (2³¹), so that a damaged
    /// configuration cannot make PruneKit try to allocate terabytes.
    public static let maximumWeightElements = 1 << 31

    /// A new layer of `kind` with `configuration`, its weights initialised from `seed`
    /// (PyTorch's default initialisation; loading weights overwrites them).
    ///
    /// - Parameters:
    ///   - nodeName: the node's dotted name, for error messages.
    /// - Throws: ``PruneKitError`` (`.invalidArgument`) naming the node for a missing,
    ///   unknown or invalid configuration key.
    public static func make(kind: LayerKind, configuration: [String: Double], nodeName: String,
                            seed: UInt64 = 0) throws -> Layer {
        var c = Config(values: configuration, kind: kind, node: nodeName)
        var rng = RandomGenerator(seed: seed, stream: "init." + nodeName)
        let layer: Layer
        switch kind {
        case .linear:
            let i = try c.count("in_features"), o = try c.count("out_features")
            let bias = try c.flag("bias", default: true)
            try c.checkWeight([i, o])
            try c.finish()
            layer = Linear(inFeatures: i, outFeatures: o, bias: bias, rng: &rng)
        case .conv2d:
            let i = try c.count("in_channels"), o = try c.count("out_channels")
            let (kernel, window) = try c.kernelAndWindow(dilation: true, strideDefaultsToKernel: false)
            let groups = try c.count("groups", default: 1), bias = try c.flag("bias", default: true)
            guard i % groups == 0, o % groups == 0 else {
                throw c.error("in_channels \(i) and out_channels \(o) must both be divisible by groups \(groups)")
            }
            try c.checkWeight([o, i / groups, kernel.height, kernel.width])
            try c.finish()
            layer = Conv2d(inChannels: i, outChannels: o, kernel: kernel, window: window, groups: groups, bias: bias, rng: &rng)
        case .batchNorm:
            let n = try c.count("num_features")
            let eps = try c.real("eps", default: 1e-5), momentum = try c.real("momentum", default: 0.1)
            guard eps > 0 else { throw c.error("eps must be positive, got \(eps)") }
            guard (0...1).contains(momentum) else { throw c.error("momentum must be in [0, 1], got \(momentum)") }
            try c.checkWeight([n])
            try c.finish()
            layer = BatchNorm(featureCount: n, epsilon: Float(eps), momentum: Float(momentum))
        case .maxPool2d, .avgPool2d:
            let (kernel, window) = try c.kernelAndWindow(dilation: false, strideDefaultsToKernel: true)
            guard poolWindowIsValid(kernel, window) else {
                throw c.error("padding \(window.pads) must be smaller than the \(kernel.height)×\(kernel.width) window along each axis")
            }
            let ceil = try c.flag("ceil_mode", default: false)
            let includePad = kind == .avgPool2d ? try c.flag("count_include_pad", default: false) : false
            try c.finish()
            layer = kind == .maxPool2d ? MaxPool2d(kernel: kernel, window: window, ceilMode: ceil)
                : AvgPool2d(kernel: kernel, window: window, ceilMode: ceil, countIncludePad: includePad)
        case .dropout:
            let p = try c.real("p", default: 0.5)
            guard p >= 0, p < 1 else { throw c.error("p must be in [0, 1), got \(p)") }
            try c.finish()
            layer = Dropout(probability: Float(p), seed: seed)
        case .channelPadShortcut:
            let o = try c.count("out_channels"), stride = try c.count("stride")
            try c.finish()
            layer = ChannelPadShortcut(outChannels: o, stride: stride)
        case .clip:
            let lower = c.value("min"), upper = c.value("max")
            for (key, v) in [("min", lower), ("max", upper)] where v.map({ !Float($0).isFinite }) == true {
                throw c.error("'\(key)' must be a finite number within ±3.4e38, got \(v!)")
            }
            guard (lower ?? -.infinity) <= (upper ?? .infinity) else { throw c.error("min \(lower!) is above max \(upper!)") }
            try c.finish()
            layer = Clip(lower: lower.map(Float.init), upper: upper.map(Float.init))
        case .leakyRelu:
            let alpha = try c.real("alpha", default: 0.01)
            try c.finish()
            layer = LeakyReLU(alpha: Float(alpha))
        case .hardSigmoid:
            let alpha = try c.real("alpha", default: 0.2), beta = try c.real("beta", default: 0.5)
            try c.finish()
            layer = HardSigmoid(alpha: Float(alpha), beta: Float(beta))
        case .gelu:
            let tanh = try c.flag("approximate", default: false)
            try c.finish()
            layer = GELU(approximation: tanh ? .tanh : .none)
        case .zeroPad2d:
            let pads = try ["top", "left", "bottom", "right"].map { try c.count($0, minimum: 0, default: 0) }
            try c.finish()
            layer = ZeroPad2d(top: pads[0], left: pads[1], bottom: pads[2], right: pads[3])
        case .tanh: try c.finish(); layer = Tanh()
        case .hardSwish: try c.finish(); layer = HardSwish()
        case .relu: try c.finish(); layer = ReLU()
        case .globalAvgPool: try c.finish(); layer = GlobalAvgPool()
        case .flatten: try c.finish(); layer = Flatten()
        case .add: try c.finish(); layer = Add()
        case .concat: try c.finish(); layer = Concat()
        case .sigmoid: try c.finish(); layer = Sigmoid()
        case .silu: try c.finish(); layer = SiLU()
        case .channelMul: try c.finish(); layer = ChannelMul()
        }
        return layer
    }

    /// As ``make(kind:configuration:nodeName:seed:)``, with the kind by name (as in `model.json`).
    /// - Throws: ``PruneKitError`` (`.invalidArgument`) for an unknown kind, listing the known ones.
    public static func make(kind name: String, configuration: [String: Double], nodeName: String,
                            seed: UInt64 = 0) throws -> Layer {
        guard let kind = LayerKind(rawValue: name) else {
            throw PruneKitError(.invalidArgument, "node '\(nodeName)' has the unknown layer kind '\(name)'",
                                hint: "known kinds: \(LayerKind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return try make(kind: kind, configuration: configuration, nodeName: nodeName, seed: seed)
    }

    /// Reads and checks configuration values, remembering which keys were used.
    private struct Config {
        let values: [String: Double]
        let kind: LayerKind
        let node: String
        var used = Set<String>()

        init(values: [String: Double], kind: LayerKind, node: String) {
            self.values = values; self.kind = kind; self.node = node
        }

        func error(_ message: String) -> PruneKitError {
            PruneKitError(.invalidArgument, "node '\(node)' (\(kind.rawValue)): \(message)",
                          hint: "fix the node's \"config\" in model.json; see FORMAT.md for each kind's keys")
        }

        mutating func value(_ key: String) -> Double? {
            used.insert(key)
            return values[key]
        }

        /// A whole number ≥ `minimum` (1 unless told), below 2³¹.
        mutating func count(_ key: String, minimum: Int = 1, default fallback: Int? = nil) throws -> Int {
            guard let v = value(key) else {
                if let fallback { return fallback }
                throw error("the configuration key '\(key)' is missing")
            }
            guard v.isFinite, v == v.rounded(), v >= Double(minimum), v < Double(1 << 31) else {
                throw error("'\(key)' must be a whole number ≥ \(minimum), got \(v)")
            }
            return Int(v)
        }

        mutating func flag(_ key: String, default fallback: Bool) throws -> Bool {
            guard let v = value(key) else { return fallback }
            guard v == 0 || v == 1 else { throw error("'\(key)' must be 0 or 1, got \(v)") }
            return v == 1
        }

        /// A number that the layer keeps as a finite `Float` (every real key is one): a value
        /// past `Float`'s range (±3.4e38) would become infinite there.
        mutating func real(_ key: String, default fallback: Double) throws -> Double {
            guard let v = value(key) else { return fallback }
            guard Float(v).isFinite else { throw error("'\(key)' must be a finite number within ±3.4e38, got \(v)") }
            return v
        }

        /// A kernel and its window: `kernel_size` or `kernel_height` + `kernel_width`; `stride` or
        /// `stride_height` + `stride_width` (default 1, or the kernel for a pool); with
        /// `dilation`, `dilation` or `dilation_height` + `dilation_width` (1); `padding` or
        /// `padding_top`, `padding_left`, `padding_bottom`, `padding_right` (0).
        mutating func kernelAndWindow(dilation: Bool, strideDefaultsToKernel: Bool) throws
            -> (kernel: (height: Int, width: Int), window: ConvWindow) {
            let kernel = try pair("kernel_size", "kernel_height", "kernel_width", minimum: 1, default: nil)
            let stride = try pair("stride", "stride_height", "stride_width", minimum: 1, default: strideDefaultsToKernel ? kernel : (1, 1))
            let dilations: (height: Int, width: Int) = dilation
                ? try pair("dilation", "dilation_height", "dilation_width", minimum: 1, default: (1, 1)) : (1, 1)
            let sides = ["padding_top", "padding_left", "padding_bottom", "padding_right"]
            var pads = [Int](repeating: 0, count: 4)
            if values["padding"] != nil {
                if let split = sides.first(where: { values[$0] != nil }) { throw error("give 'padding' or '\(split)' and the other sides, not both") }
                pads = [Int](repeating: try count("padding", minimum: 0), count: 4)
            } else if sides.contains(where: { values[$0] != nil }) {
                pads = try sides.map { try count($0, minimum: 0, default: 0) }
            } else {
                used.insert("padding")
            }
            return (kernel, ConvWindow(strideHeight: stride.height, strideWidth: stride.width, dilationHeight: dilations.height,
                                       dilationWidth: dilations.width, padTop: pads[0], padLeft: pads[1], padBottom: pads[2], padRight: pads[3]))
        }

        /// `key` for both axes, or `heightKey` and `widthKey` (both required then).
        mutating func pair(_ key: String, _ heightKey: String, _ widthKey: String, minimum: Int,
                           default fallback: (height: Int, width: Int)?) throws -> (height: Int, width: Int) {
            if values[key] != nil {
                guard values[heightKey] == nil, values[widthKey] == nil else {
                    throw error("give '\(key)' or '\(heightKey)' and '\(widthKey)', not both")
                }
                let v = try count(key, minimum: minimum)
                return (v, v)
            }
            if values[heightKey] != nil || values[widthKey] != nil {
                return (try count(heightKey, minimum: minimum), try count(widthKey, minimum: minimum))
            }
            used.insert(key)
            guard let fallback else { throw error("the configuration key '\(key)' is missing (or give '\(heightKey)' and '\(widthKey)')") }
            return fallback
        }

        func checkWeight(_ shape: [Int]) throws {
            var elements = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, p <= LayerFactory.maximumWeightElements else {
                    throw error("its weight of shape \(shape) would have more than the \(LayerFactory.maximumWeightElements) elements PruneKit allows")
                }
                elements = p
            }
        }

        /// Rejects keys the kind does not use.
        func finish() throws {
            let unknown = values.keys.filter { !used.contains($0) }.sorted()
            guard unknown.isEmpty else {
                let known = used.sorted()
                throw error("unknown configuration key\(unknown.count > 1 ? "s" : "") \(unknown.map { "'\($0)'" }.joined(separator: ", "))"
                            + (known.isEmpty ? " (this kind takes none)" : " (this kind takes \(known.joined(separator: ", ")))"))
            }
        }
    }
}
