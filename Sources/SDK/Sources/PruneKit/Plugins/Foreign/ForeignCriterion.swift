import Foundation

/// A criterion written in C (or any language with a C ABI), described by a JSON manifest
/// and called through libffi.
///
/// A manifest names a shared library, a scoring function in it, and the function's
/// parameters in order (what PruneKit passes for each); see `Plugins/Foreign/MANIFEST.md`
/// and `Templates/c-criterion/`. Register one with ``loadManifest(at:into:)``; then
/// `registry.criterion(manifest.id, options: ["p=2"])` makes a criterion like any other.
///
/// Every instance of this one type behaves as its manifest says, and is made from it (not
/// ``OptionConstructible``): the criterion's id is ``manifest``'s (``id`` and ``criterionID``).
public struct ForeignCriterion: Criterion {

    /// The manifest this criterion runs.
    public let manifest: ForeignCriterionManifest
    /// The options it was made with (the manifest's ``ForeignCriterionManifest/options``).
    public let optionValues: OptionValues
    /// The option arguments as the C function receives them (argument index → slot value).
    private let optionSlots: [Int: Slot]

    /// The id it was registered under: the manifest's.
    public var criterionID: String { manifest.id }
    /// The manifest's id, as users name this criterion.
    public var id: String { manifest.id }
    public var granularity: Granularity { manifest.granularity }
    public var evidence: Evidence { manifest.evidence }

    /// A criterion running `manifest` with `options` (checked against the manifest's options).
    /// - Throws: ``PruneKitError`` `.invalidArgument` for an `int` option that the function
    ///   takes as `int32` and whose value does not fit, or a `double` one taken as `float`.
    public init(manifest: ForeignCriterionManifest, options: OptionValues) throws {
        self.manifest = manifest
        optionValues = options
        var slots: [Int: Slot] = [:]
        for (i, argument) in manifest.arguments.enumerated() {
            guard case let .option(name) = argument.value else { continue }
            let value = options.values[name] ?? manifest.options.first { $0.name == name }!.defaultValue
            let integer: Int
            switch value {
            case let .int(v): integer = v
            case let .bool(v): integer = v ? 1 : 0
            case let .double(v):
                if argument.type == .float {
                    guard Float(v).isFinite else {
                        throw PruneKitError(.invalidArgument, "option '\(name)' of '\(manifest.id)' is passed to C as float; \(v) is out of its range")
                    }
                    slots[i] = .float(Float(v))
                } else {
                    slots[i] = .double(v)
                }
                continue
            case .string: continue // refused when the manifest is read
            }
            if argument.type == .int32 {
                guard let v = Int32(exactly: integer) else {
                    throw PruneKitError(.invalidArgument, "option '\(name)' of '\(manifest.id)' is passed to C as int32; \(integer) is out of its range")
                }
                slots[i] = .int32(v)
            } else {
                slots[i] = .int64(Int64(integer))
            }
        }
        optionSlots = slots
    }

    /// Reads the manifest at `path` (``ForeignCriterionManifest/init(contentsOf:)``: every
    /// check, the library loaded, the call prepared) and registers its criterion in
    /// `registry` under the manifest's id, attributed to `path`.
    ///
    /// The plugin loader calls this for each `*.json` given with `--plugin`.
    /// - Returns: the manifest.
    /// - Throws: ``PruneKitError`` `.plugin` naming `path`, or the registry's error for an id
    ///   already registered.
    @discardableResult
    public static func loadManifest(at path: String, into registry: Registry) throws -> ForeignCriterionManifest {
        let manifest = try ForeignCriterionManifest(contentsOf: path)
        try registry.registering(from: path, version: manifest.version, sdkVersion: SDKVersion.string) {
            try registry.register(criterion: manifest.id, summary: manifest.summary, options: manifest.options) {
                try ForeignCriterion(manifest: manifest, options: $0)
            }
        }
        return manifest
    }

    /// Calls the C function on `layer`.
    /// - Throws: ``PruneKitError`` `.plugin` when the function returns a non-zero status or
    ///   a non-finite score (naming the layer); `.shapeMismatch` for evidence of the wrong size.
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        let outputs = layer.outputs, fanIn = layer.fanIn
        let weightCount = outputs * fanIn
        let count = granularity == .channel ? outputs : weightCount
        let name = "C criterion '\(manifest.id)' (\(manifest.symbol) in \(manifest.libraryPath))"
        guard layer.weights.count == weightCount else {
            throw PruneKitError(.shapeMismatch, "layer '\(layer.path)': weights of shape \(layer.weights.shape) are not [outputs, fanIn]")
        }
        var gradient: Tensor?
        if manifest.arguments.contains(where: { $0.value == .weightGradient }) {
            guard let g = context.weightGradient else {
                throw PruneKitError(.plugin, "\(name) needs the weight gradient of layer '\(layer.path)', and none was gathered")
            }
            guard g.count == weightCount else {
                throw PruneKitError(.shapeMismatch, "layer '\(layer.path)': the weight gradient has shape \(g.shape), not [\(outputs), \(fanIn)]")
            }
            gradient = g
        }
        if let bias = layer.bias, bias.count != outputs {
            throw PruneKitError(.shapeMismatch, "layer '\(layer.path)': the bias has \(bias.count) elements, not \(outputs)")
        }

        // Scores start as NaN, so a score the function leaves unwritten is caught below.
        var scores = [Float](repeating: .nan, count: count)
        let size = ForeignFunction.slotSize
        let slots = UnsafeMutableRawPointer.allocate(byteCount: max(1, manifest.arguments.count) * size, alignment: 8)
        defer { slots.deallocate() }
        let status: Int32 = try layer.weights.withUnsafeBufferPointer { w in
            try Self.withOptionalBuffer(gradient) { g in
                try Self.withOptionalBuffer(layer.bias) { b in
                    try scores.withUnsafeMutableBufferPointer { s in
                        for (i, argument) in manifest.arguments.enumerated() {
                            let slot = slots + i * size
                            func integer(_ n: Int) throws -> Slot {
                                if argument.type == .int64 { return .int64(Int64(n)) }
                                guard let v = Int32(exactly: n) else {
                                    throw PruneKitError(.plugin, "\(name): argument \(i + 1) (\(argument.value)) is int32, and layer '\(layer.path)' needs \(n)")
                                }
                                return .int32(v)
                            }
                            let value: Slot
                            switch argument.value {
                            case .weights: value = .pointer(UnsafeRawPointer(w.baseAddress))
                            case .weightGradient: value = .pointer(g.map(UnsafeRawPointer.init))
                            case .bias: value = .pointer(b.map(UnsafeRawPointer.init))
                            case .scores: value = .pointer(UnsafeRawPointer(s.baseAddress))
                            case .outputs: value = try integer(outputs)
                            case .fanIn: value = try integer(fanIn)
                            case .scoreCount: value = try integer(count)
                            case .option: value = optionSlots[i]!
                            }
                            value.store(at: slot)
                        }
                        return manifest.function.call(slots: slots)
                    }
                }
            }
        }
        if status != 0 {
            throw PruneKitError(.plugin, "\(name) failed on layer '\(layer.path)' with code \(status)")
        }
        if let bad = scores.firstIndex(where: { !$0.isFinite }) {
            throw PruneKitError(.plugin, "\(name) gave a non-finite score (\(scores[bad])) for layer '\(layer.path)' at index \(bad) of \(count)",
                                hint: "the function must write every score, \(count) of them for this layer, each finite")
        }
        return scores
    }

    private static func withOptionalBuffer<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let tensor else { return try body(nil) }
        return try tensor.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    /// One argument's value in its C type.
    private enum Slot {
        case pointer(UnsafeRawPointer?), int64(Int64), int32(Int32), double(Double), float(Float)

        func store(at slot: UnsafeMutableRawPointer) {
            switch self {
            case let .pointer(p): slot.storeBytes(of: p, as: UnsafeRawPointer?.self)
            case let .int64(v): slot.storeBytes(of: v, as: Int64.self)
            case let .int32(v): slot.storeBytes(of: v, as: Int32.self)
            case let .double(v): slot.storeBytes(of: v, as: Double.self)
            case let .float(v): slot.storeBytes(of: v, as: Float.self)
            }
        }
    }
}
