/// How ``Model/save(to:metadata:storage:)`` stores each parameter tensor in `model.safetensors`.
///
/// The sparse layout (documented in `IO/FORMAT.md`) replaces a tensor `<path>` by a
/// packed keep-bitmask `<path>.__mask` (`U8`, one bit per element, NumPy's `packbits`
/// order) and the kept values `<path>.__values` (`F32`), with the dense shape in the
/// file's `__metadata__` under `prunekit.sparse`. A parameter with a pruning mask keeps
/// exactly its mask's 1s (and gets the mask back on load); one without keeps its non-zero
/// values. A sparse tensor takes `⌈n/8⌉ + 4k` bytes for `n` elements of which `k` are
/// kept, against `4n` dense (and `8n` for a masked parameter, whose dense mask goes to
/// `masks.safetensors`).
public enum ParameterStorage: String, Sendable, CaseIterable {
    /// Every tensor dense (`F32`), masks in `masks.safetensors`: a plain PyTorch `state_dict`.
    case dense
    /// Every parameter sparse, except one whose mask holds values other than 0 and 1
    /// (stored dense, its mask in `masks.safetensors`).
    case sparse
    /// Sparse where that is smaller (bytes of data plus an estimate of the header entries), dense elsewhere.
    case automatic
}

/// The sparse layout's names and packing (see ``ParameterStorage``).
enum SparseLayout {
    /// The `__metadata__` key holding `{path: {"shape": [...], "pruning_mask": bool}}` as JSON.
    static let metadataKey = "prunekit.sparse"
    static let maskSuffix = ".__mask"
    static let valuesSuffix = ".__values"

    /// One tensor in sparse form.
    struct Packed {
        /// Bit `7 − i % 8` of byte `i / 8` is 1 where element `i` (row-major) is kept; padding bits are 0.
        var bits: [UInt8]
        /// The kept elements' values in row-major order, `[k]`.
        var values: Tensor
    }

    /// Whether `mask` holds only 0s and 1s (the bitmask cannot hold anything else).
    static func isBinary(_ mask: Tensor) -> Bool {
        mask.withUnsafeBufferPointer { m in m.allSatisfy { $0 == 0 || $0 == 1 } }
    }

    /// Packs `value`, keeping the positions where `mask` is non-zero, or, without a mask,
    /// where the value is non-zero. Cost: two passes over the tensor.
    static func pack(_ value: Tensor, mask: Tensor?) -> Packed {
        let n = value.count
        var bits = [UInt8](repeating: 0, count: (n + 7) / 8)
        var kept = 0
        value.withUnsafeBufferPointer { v in
            withOptionalPointer(mask) { m in
                bits.withUnsafeMutableBufferPointer { b in
                    for i in 0..<n where m.map({ $0[i] != 0 }) ?? (v[i] != 0) {
                        b[i >> 3] |= 0x80 >> UInt8(i & 7)
                        kept += 1
                    }
                }
            }
        }
        var values = Tensor(shape: [kept])
        if kept > 0 {
            value.withUnsafeBufferPointer { v in bits.withUnsafeBufferPointer { b in
                values.withUnsafeMutableBufferPointer { out in
                    var j = 0
                    for i in 0..<n where b[i >> 3] & (0x80 >> UInt8(i & 7)) != 0 {
                        out[j] = v[i]; j += 1
                    }
                }
            } }
        }
        return Packed(bits: bits, values: values)
    }

    /// The bytes a sparse tensor adds to the header beyond a dense one's entry (two
    /// entries instead of one, and its metadata): an estimate for ``ParameterStorage/automatic``.
    static func headerOverhead(_ path: String) -> Int { 2 * path.utf8.count + 128 }

    /// Whether to store this parameter sparse under `storage`.
    static func storesSparse(_ parameter: Parameter, path: String, storage: ParameterStorage) -> Bool {
        if let m = parameter.mask, !isBinary(m) { return false }
        switch storage {
        case .dense: return false
        case .sparse: return true
        case .automatic:
            let n = parameter.value.count
            let kept = parameter.mask.map(nonZeroCount) ?? nonZeroCount(parameter.value)
            let dense = 4 * n * (parameter.mask == nil ? 1 : 2)
            return (n + 7) / 8 + 4 * kept + headerOverhead(path) < dense
        }
    }

    /// Replaces the sparse parts of a file by dense tensors, and returns the pruning masks
    /// they carry.
    ///
    /// - Parameters:
    ///   - tensors, dtypes, metadata: what ``SafeTensors/readTyped(_:)`` read.
    ///   - source: how errors name the file.
    /// - Returns: every tensor dense by name, and the masks of the tensors stored with a pruning mask.
    /// - Throws: ``PruneKitError`` `.invalidFile` for a malformed `prunekit.sparse` entry, a
    ///   missing part, a part of the wrong dtype or length, a values count that is not the
    ///   mask's count of 1s, or set padding bits.
    static func densify(_ tensors: [String: Tensor], dtypes: [String: SafeTensors.DType],
                        metadata: [String: String], source: String) throws
        -> (tensors: [String: Tensor], masks: [String: Tensor]) {
        func invalid(_ message: String, _ hint: String = "the sparse tensors of this file are damaged; save the model again") -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): \(message)", hint: hint)
        }
        var entries: [(String, JSONValue)] = []
        if let text = metadata[metadataKey] {
            let parsed: JSONValue
            do {
                parsed = try Array(text.utf8).withUnsafeBytes { try JSONValue.parse($0) }
            } catch {
                throw invalid("the metadata entry '\(metadataKey)' is not valid JSON")
            }
            guard let members = parsed.objectMembers else {
                throw invalid("the metadata entry '\(metadataKey)' is \(parsed.typeName), not an object {path: {\"shape\": […], \"pruning_mask\": true|false}}")
            }
            entries = members
        }
        let listed = Set(entries.map(\.0))
        for name in tensors.keys.sorted() {
            for suffix in [maskSuffix, valuesSuffix] where name.hasSuffix(suffix) {
                let base = String(name.dropLast(suffix.count))
                if !listed.contains(base) {
                    throw invalid("the tensor '\(name)' is part of a sparse tensor, but '\(metadataKey)' in __metadata__ does not name '\(base)'",
                                  "the file's sparse tensors need their dense shapes in __metadata__ (see IO/FORMAT.md); save the model again")
                }
            }
        }
        guard !entries.isEmpty else { return (tensors, [:]) }

        var out = tensors
        var masks: [String: Tensor] = [:]
        for (path, info) in entries {
            guard info.objectMembers != nil, let shapeItems = info["shape"]?.arrayValue else {
                throw invalid("the sparse entry for '\(path)' in '\(metadataKey)' needs a \"shape\" array")
            }
            let shape = shapeItems.map { $0.intValue ?? -1 }
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw invalid("the sparse tensor '\(path)' has the shape \(shapeItems.map { $0.serialized() }), which is not a list of non-negative integers")
            }
            var hasPruningMask = false
            if let flag = info["pruning_mask"] {
                guard case .bool(let b) = flag else {
                    throw invalid("the sparse entry for '\(path)' has \"pruning_mask\" \(flag.typeName), not true or false")
                }
                hasPruningMask = b
            }
            guard out[path] == nil else {
                throw invalid("'\(path)' is stored both dense and sparse")
            }
            let maskName = path + maskSuffix, valuesName = path + valuesSuffix
            guard let maskFloats = out.removeValue(forKey: maskName) else {
                throw invalid("the sparse tensor '\(path)' has no bitmask '\(maskName)'")
            }
            guard let values = out.removeValue(forKey: valuesName) else {
                throw invalid("the sparse tensor '\(path)' has no values '\(valuesName)'")
            }
            guard dtypes[maskName] == .U8 else {
                throw invalid("the bitmask '\(maskName)' is \(dtypes[maskName]?.rawValue ?? "?"), not U8")
            }
            guard dtypes[valuesName] == .F32 else {
                throw invalid("the values '\(valuesName)' are \(dtypes[valuesName]?.rawValue ?? "?"), not F32")
            }
            var n = 1
            for d in shape {
                let (p, o) = n.multipliedReportingOverflow(by: d)
                guard !o else { throw invalid("the sparse tensor '\(path)' has the shape \(shape), too large") }
                n = p
            }
            guard maskFloats.count == (n + 7) / 8 else {
                throw invalid("the bitmask '\(maskName)' has \(maskFloats.count) bytes, but a tensor of shape \(shape) (\(n) elements) needs \((n + 7) / 8)")
            }
            let bytes = maskFloats.scalars.map { UInt8($0) }   // U8 was read as exact floats 0…255
            if n % 8 != 0, let last = bytes.last, last & (0xFF >> UInt8(n % 8)) != 0 {
                throw invalid("the bitmask '\(maskName)' has bits set past its \(n) elements")
            }
            let kept = bytes.reduce(0) { $0 + $1.nonzeroBitCount }
            guard values.count == kept else {
                throw invalid("the sparse tensor '\(path)' keeps \(kept) elements by its bitmask but has \(values.count) values")
            }
            var dense = Tensor(shape: shape)
            var mask = hasPruningMask ? Tensor(shape: shape) : nil
            dense.withUnsafeMutableBufferPointer { d in values.withUnsafeBufferPointer { v in
                var j = 0
                for i in 0..<n where bytes[i >> 3] & (0x80 >> UInt8(i & 7)) != 0 { d[i] = v[j]; j += 1 }
            } }
            if mask != nil {
                mask!.withUnsafeMutableBufferPointer { m in
                    for i in 0..<n where bytes[i >> 3] & (0x80 >> UInt8(i & 7)) != 0 { m[i] = 1 }
                }
                masks[path] = mask
            }
            out[path] = dense
        }
        return (out, masks)
    }
}
