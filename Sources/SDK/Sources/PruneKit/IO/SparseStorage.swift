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
///
/// A weight whose kept elements follow an N:M pattern (``NMPattern``, M = 2, 4, 8 or 16: every group
/// of M input channels keeps exactly N by its mask, or at most N non-zeros without one)
/// has a smaller sparse form: its values `<path>.__values` (`N` per group) and one code per
/// group `<path>.__nm_codes` (`U8`, ⌈log₂ C(M, N)⌉ bits: 3 for 2:4, against the bitmask's
/// 4 bits per group of 4). ``sparse`` and ``automatic`` take the N:M form wherever it is no
/// larger than the bitmask.
public enum ParameterStorage: String, Sendable, CaseIterable {
    /// Every tensor dense (`F32`), masks in `masks.safetensors`: a plain PyTorch `state_dict`.
    case dense
    /// Every parameter sparse, in the N:M form where it is no larger than the bitmask, except one
    /// whose mask holds values other than 0 and 1 (stored dense, its mask in `masks.safetensors`).
    case sparse
    /// Sparse where that is smaller (bytes of data plus an estimate of the header entries),
    /// in the N:M form where it is no larger than the bitmask; dense elsewhere.
    case automatic
    /// As ``automatic``, in the bitmask form only: what ``automatic`` wrote before the N:M
    /// form, for readers that know only the bitmask.
    case bitmask
}

/// The sparse layout's names and packing (see ``ParameterStorage``).
enum SparseLayout {
    /// The `__metadata__` key holding `{path: {"shape": [...], "pruning_mask": bool}}` as JSON.
    static let metadataKey = "prunekit.sparse"
    static let maskSuffix = ".__mask"
    static let valuesSuffix = ".__values"
    static let nmCodesSuffix = ".__nm_codes"

    /// How a parameter is stored sparse.
    enum Form: Equatable {
        case bitmask
        /// The N:M form (see ``NMCode``).
        case nm(NMPattern)
    }

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

    /// The sparse form to store this parameter in under `storage`, `nil` for dense: the N:M
    /// form (``NMCode/smallest(_:mask:)``) where it is no larger than the bitmask (never for
    /// ``ParameterStorage/bitmask``); for ``ParameterStorage/automatic`` and
    /// ``ParameterStorage/bitmask`` only where it is smaller than dense.
    static func form(_ parameter: Parameter, path: String, storage: ParameterStorage) -> Form? {
        if let m = parameter.mask, !isBinary(m) { return nil }
        if storage == .dense { return nil }
        let n = parameter.value.count
        let kept = parameter.mask.map(nonZeroCount) ?? nonZeroCount(parameter.value)
        var best = (form: Form.bitmask, bytes: (n + 7) / 8 + 4 * kept)
        if storage != .bitmask, let nm = NMCode.smallest(parameter.value, mask: parameter.mask), nm.bytes <= best.bytes {
            best = (.nm(nm.pattern), nm.bytes)
        }
        if storage == .automatic || storage == .bitmask {
            let dense = 4 * n * (parameter.mask == nil ? 1 : 2)
            return best.bytes + headerOverhead(path) < dense ? best.form : nil
        }
        return best.form
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
            for suffix in [maskSuffix, valuesSuffix, nmCodesSuffix] where name.hasSuffix(suffix) {
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
            let maskName = path + maskSuffix, valuesName = path + valuesSuffix, codesName = path + nmCodesSuffix
            var n = 1
            for d in shape {
                let (p, o) = n.multipliedReportingOverflow(by: d)
                guard !o else { throw invalid("the sparse tensor '\(path)' has the shape \(shape), too large") }
                n = p
            }
            guard let values = out.removeValue(forKey: valuesName) else {
                throw invalid("the sparse tensor '\(path)' has no values '\(valuesName)'")
            }
            guard dtypes[valuesName] == .F32 else {
                throw invalid("the values '\(valuesName)' are \(dtypes[valuesName]?.rawValue ?? "?"), not F32")
            }
            // The kept positions, ascending: from the N:M codes or from the bitmask.
            var kept: [Int] = []
            if let patternItem = info["pattern"] {
                guard out[maskName] == nil else {
                    throw invalid("the sparse tensor '\(path)' has both a bitmask '\(maskName)' and a pattern")
                }
                guard let items = patternItem.arrayValue, items.count == 2, let pn = items[0].intValue, let pm = items[1].intValue,
                      pn >= 1, pn < pm, pm <= NMCode.maxM else {
                    throw invalid("the sparse entry for '\(path)' has \"pattern\" \(patternItem.serialized()), not [N, M] with 1 ≤ N < M ≤ \(NMCode.maxM)")
                }
                guard let groups = NMGroups(shape: shape, m: pm) else {
                    throw invalid("the sparse tensor '\(path)' of shape \(shape) can't hold the pattern \(pn):\(pm): its input size (shape[1]) is not a multiple of \(pm)")
                }
                guard let codeFloats = out.removeValue(forKey: codesName) else {
                    throw invalid("the sparse tensor '\(path)' has the pattern \(pn):\(pm) but no codes '\(codesName)'")
                }
                guard dtypes[codesName] == .U8 else {
                    throw invalid("the codes '\(codesName)' are \(dtypes[codesName]?.rawValue ?? "?"), not U8")
                }
                let code = NMCode(n: pn, m: pm)
                let bitCount = groups.count * code.bits
                guard codeFloats.count == (bitCount + 7) / 8 else {
                    throw invalid("the codes '\(codesName)' have \(codeFloats.count) bytes, but \(groups.count) groups of \(pm) in a tensor of shape \(shape) need \((bitCount + 7) / 8) (\(code.bits) bits each)")
                }
                let bytes = codeFloats.scalars.map { UInt8($0) }   // U8 was read as exact floats 0…255
                if bitCount % 8 != 0, let last = bytes.last, last & (0xFF >> UInt8(bitCount % 8)) != 0 {
                    throw invalid("the codes '\(codesName)' have bits set past their \(groups.count) codes")
                }
                guard values.count == groups.count * pn else {
                    throw invalid("the sparse tensor '\(path)' has \(groups.count) groups of \(pn) kept values by its pattern \(pn):\(pm) but \(values.count) values")
                }
                kept.reserveCapacity(groups.count * pn)
                for t in 0..<groups.count {
                    var rank = 0
                    for b in (t * code.bits)..<((t + 1) * code.bits) { rank = rank << 1 | Int(bytes[b >> 3] >> UInt8(7 - b & 7) & 1) }
                    guard rank < code.subsets.count else {
                        throw invalid("group \(t) of '\(codesName)' has the code \(rank), but a \(pn):\(pm) group has only \(code.subsets.count) codes")
                    }
                    let start = groups.start(ofGroup: t)
                    var subset = code.subsets[rank]
                    while subset != 0 {
                        kept.append(start + subset.trailingZeroBitCount * groups.inner)
                        subset &= subset - 1
                    }
                }
            } else {
                guard out[codesName] == nil else {
                    throw invalid("the sparse tensor '\(path)' has N:M codes '\(codesName)' but its entry names no \"pattern\"")
                }
                guard let maskFloats = out.removeValue(forKey: maskName) else {
                    throw invalid("the sparse tensor '\(path)' has no bitmask '\(maskName)'")
                }
                guard dtypes[maskName] == .U8 else {
                    throw invalid("the bitmask '\(maskName)' is \(dtypes[maskName]?.rawValue ?? "?"), not U8")
                }
                guard maskFloats.count == (n + 7) / 8 else {
                    throw invalid("the bitmask '\(maskName)' has \(maskFloats.count) bytes, but a tensor of shape \(shape) (\(n) elements) needs \((n + 7) / 8)")
                }
                let bytes = maskFloats.scalars.map { UInt8($0) }   // U8 was read as exact floats 0…255
                if n % 8 != 0, let last = bytes.last, last & (0xFF >> UInt8(n % 8)) != 0 {
                    throw invalid("the bitmask '\(maskName)' has bits set past its \(n) elements")
                }
                let count = bytes.reduce(0) { $0 + $1.nonzeroBitCount }
                guard values.count == count else {
                    throw invalid("the sparse tensor '\(path)' keeps \(count) elements by its bitmask but has \(values.count) values")
                }
                kept.reserveCapacity(count)
                for i in 0..<n where bytes[i >> 3] & (0x80 >> UInt8(i & 7)) != 0 { kept.append(i) }
            }
            var dense = Tensor(shape: shape)
            dense.withUnsafeMutableBufferPointer { d in values.withUnsafeBufferPointer { v in
                for (j, i) in kept.enumerated() { d[i] = v[j] }
            } }
            if hasPruningMask {
                var mask = Tensor(shape: shape)
                mask.withUnsafeMutableBufferPointer { m in for i in kept { m[i] = 1 } }
                masks[path] = mask
            }
            out[path] = dense
        }
        return (out, masks)
    }
}

/// The group codes of the N:M sparse form: a group's kept positions (an N-subset of
/// 0..<M) coded as their rank among all N-subsets in lexicographic order — the order of
/// Python's `itertools.combinations(range(M), N)` — in ⌈log₂ C(M, N)⌉ bits. For 2:4 that
/// is 3 bits per group of 4 (six subsets), where 2-bit indices or the bitmask take 4;
/// never more than the bitmask's M bits. M ≤ ``maxM`` keeps the tables small.
struct NMCode {
    static let maxM = 16
    let n: Int, m: Int
    /// Bits per group code.
    let bits: Int
    /// Rank → subset, as M-bit masks (bit j set where position j is kept).
    let subsets: [UInt16]
    /// M-bit mask → rank, −1 for a mask that does not keep exactly N.
    let ranks: [Int32]

    /// Requires 1 ≤ n < m ≤ ``maxM`` (checked by the callers).
    init(n: Int, m: Int) {
        assert(n >= 1 && n < m && m <= NMCode.maxM)
        self.n = n; self.m = m
        var subsets: [UInt16] = []
        func extend(_ mask: UInt16, from first: Int, left: Int) {
            if left == 0 { subsets.append(mask); return }
            if m - first < left { return }
            for j in first..<m { extend(mask | 1 << UInt16(j), from: j + 1, left: left - 1) }
        }
        extend(0, from: 0, left: n)
        var ranks = [Int32](repeating: -1, count: 1 << m)
        for (r, s) in subsets.enumerated() { ranks[Int(s)] = Int32(r) }
        self.subsets = subsets; self.ranks = ranks
        bits = Int.bitWidth - (subsets.count - 1).leadingZeroBitCount
    }

    /// ⌈log₂ C(m, n)⌉ without the tables.
    static func bits(n: Int, m: Int) -> Int {
        var c = 1
        for i in 0..<n { c = c * (m - i) / (i + 1) }
        return Int.bitWidth - (c - 1).leadingZeroBitCount
    }

    /// The smallest N:M form of a tensor, if one fits: over M = 2, 4, 8, 16 (the patterns of
    /// sparse hardware and the literature; a reader takes any M ≤ ``maxM``) that divide its
    /// input size (`shape[1]`), with a binary mask every group must keep
    /// exactly N (the same for all, 1 ≤ N < M); without one every group has at most N
    /// non-zeros (N the most of any group, padded with kept zeros). Bytes: 4 per value and
    /// the codes. Cost: one pass over the tensor per M tried (most stop at the first group
    /// that does not fit).
    static func smallest(_ value: Tensor, mask: Tensor?) -> (pattern: NMPattern, bytes: Int)? {
        var best: (pattern: NMPattern, bytes: Int)?
        value.withUnsafeBufferPointer { v in
            withOptionalPointer(mask) { mp in
                for m in [2, 4, 8, 16] {
                    guard let groups = NMGroups(shape: value.shape, m: m) else { continue }
                    var n = -1, fits = true
                    for t in 0..<groups.count where fits {
                        let start = groups.start(ofGroup: t)
                        var count = 0
                        for j in 0..<m where mp.map({ $0[start + j * groups.inner] != 0 }) ?? (v[start + j * groups.inner] != 0) { count += 1 }
                        if mp != nil {
                            if n < 0 { n = count } else if count != n { fits = false }
                        } else {
                            n = max(n, count)
                        }
                        if n >= m { fits = false }
                    }
                    if mp == nil { n = max(n, 1) }
                    guard fits, n >= 1, n < m, let pattern = try? NMPattern(n: n, m: m) else { continue }
                    let bytes = 4 * groups.count * n + (groups.count * bits(n: n, m: m) + 7) / 8
                    if bytes < best?.bytes ?? .max { best = (pattern, bytes) }
                }
            }
        }
        return best
    }
}

extension SparseLayout {
    /// Packs `value` in the N:M form of `pattern` (one that ``NMCode/smallest(_:mask:)``
    /// found): per group `(o, g, k)` in order, the values of its kept positions ascending
    /// (a group without a mask that has fewer than N non-zeros is padded with the lowest
    /// free positions, whose values are 0), and the group's code, MSB first.
    /// - Returns: the codes (`⌈groups · bits / 8⌉` bytes, padding bits 0) and the values `[groups · N]`.
    static func packNM(_ value: Tensor, mask: Tensor?, pattern: NMPattern) -> (codes: [UInt8], values: Tensor) {
        guard let groups = NMGroups(shape: value.shape, m: pattern.m) else { return ([], Tensor(shape: [0])) }
        let code = NMCode(n: pattern.n, m: pattern.m)
        var codes = [UInt8](repeating: 0, count: (groups.count * code.bits + 7) / 8)
        var values = Tensor(shape: [groups.count * pattern.n])
        value.withUnsafeBufferPointer { v in withOptionalPointer(mask) { mp in
            values.withUnsafeMutableBufferPointer { out in
                var next = 0
                for t in 0..<groups.count {
                    let start = groups.start(ofGroup: t)
                    var subset: UInt32 = 0
                    for j in 0..<pattern.m where mp.map({ $0[start + j * groups.inner] != 0 }) ?? (v[start + j * groups.inner] != 0) {
                        subset |= 1 << UInt32(j)
                    }
                    var free = ~subset & ((1 << UInt32(pattern.m)) - 1)
                    while subset.nonzeroBitCount < pattern.n {
                        subset |= free & (~free &+ 1)
                        free &= free - 1
                    }
                    let rank = Int(code.ranks[Int(subset)])
                    assert(rank >= 0, "group \(t) keeps \(subset.nonzeroBitCount), not \(pattern.n)")
                    for b in 0..<code.bits where rank >> (code.bits - 1 - b) & 1 != 0 {
                        let bit = t * code.bits + b
                        codes[bit >> 3] |= 0x80 >> UInt8(bit & 7)
                    }
                    while subset != 0 {
                        out[next] = v[start + subset.trailingZeroBitCount * groups.inner]
                        next += 1
                        subset &= subset - 1
                    }
                }
            }
        } }
        return (codes, values)
    }
}
