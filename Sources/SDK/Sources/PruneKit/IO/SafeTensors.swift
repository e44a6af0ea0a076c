import Foundation

/// Reads and writes the safetensors format (Hugging Face): the weight files PyTorch,
/// JAX and most model hubs exchange.
///
/// A file is an 8-byte little-endian header length `N`, then `N` bytes of JSON header,
/// then the tensors' raw little-endian bytes:
///
/// ```
/// {"__metadata__": {"format": "pt"},
///  "fc.weight": {"dtype": "F32", "shape": [10, 84], "data_offsets": [0, 3360]}, …}
/// ```
///
/// `data_offsets` are byte offsets relative to the start of the data section. PruneKit
/// writes `F32` only, with the header padded by spaces to a multiple of 8 bytes (so the
/// data is aligned), tensors in the order given and stored contiguously. It reads
/// `F32`, `F16`, `BF16`, `F64`, `I64`, `I32`, `I16`, `I8`, `U8` and `BOOL`, converting
/// every tensor to `Float` (so PyTorch's integer `num_batches_tracked` can be read).
///
/// Reading validates the whole file before returning anything: its length, the header
/// (JSON, one entry per name, known dtypes, non-negative shapes), and that each
/// tensor's byte range holds exactly `product(shape) × item size` bytes inside the data
/// section, with no two ranges overlapping and no bytes left over, as the format's
/// specification requires. Every problem is a ``PruneKitError`` of kind
/// `.invalidFile` that names the file and the tensor.
public enum SafeTensors {
    /// The element types the format defines that PruneKit can read.
    public enum DType: String, CaseIterable, Sendable {
        case F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL

        /// Bytes per element.
        public var itemSize: Int {
            switch self {
            case .F64, .I64: return 8
            case .F32, .I32: return 4
            case .F16, .BF16, .I16: return 2
            case .I8, .U8, .BOOL: return 1
            }
        }
    }

    /// The largest header PruneKit accepts (the reference implementation's limit).
    public static let maximumHeaderLength = 100_000_000

    // MARK: Public API

    /// Reads a safetensors file.
    /// - Returns: every tensor by name, converted to `Float`, and the `__metadata__` strings.
    /// - Throws: ``PruneKitError`` (`.invalidFile`) for a missing, truncated or malformed
    ///   file, naming the file and the tensor; `.io` when the file cannot be read.
    public static func read(_ path: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let r = try readTyped(path)
        return (r.tensors, r.metadata)
    }

    /// Reads a safetensors file, also returning each tensor's stored dtype (for layouts
    /// that give dtypes a meaning, such as PruneKit's sparse tensors).
    static func readTyped(_ path: String) throws
        -> (tensors: [String: Tensor], dtypes: [String: DType], metadata: [String: String]) {
        let data = try FileIO.read(path, what: "safetensors file")
        return try data.withUnsafeBytes { try decodeTyped($0, source: "safetensors file '\(path)'") }
    }

    /// Writes tensors as `F32` to a safetensors file, atomically (a temporary file in the
    /// same directory, renamed into place).
    /// - Parameters:
    ///   - tensors: names and tensors, stored in this order.
    ///   - metadata: strings stored under `__metadata__`.
    /// - Throws: ``PruneKitError``: `.invalidArgument` for a repeated or reserved name,
    ///   `.io` when the file cannot be written.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                             to path: String) throws {
        let bytes = try encode(tensors, metadata: metadata)
        try FileIO.writeAtomically(bytes, to: path)
    }

    /// The bytes of a safetensors file holding `tensors` as `F32`.
    ///
    /// The header is compact JSON: `__metadata__` first (keys sorted; omitted when
    /// empty), then one entry per tensor in the order given, each
    /// `{"dtype":"F32","shape":[…],"data_offsets":[begin,end]}`; it is padded with spaces
    /// to a multiple of 8 bytes. The data follows, each tensor's floats little-endian,
    /// one tensor after another.
    /// - Throws: ``PruneKitError`` (`.invalidArgument`) for a name given twice or named `__metadata__`.
    public static func encode(_ tensors: [(name: String, tensor: Tensor)],
                              metadata: [String: String] = [:]) throws -> [UInt8] {
        try encode(payloads: tensors.map { ($0.name, .f32($0.tensor)) }, metadata: metadata)
    }

    /// What a tensor of a written file holds: floats (`F32`), or raw bytes (`U8`, as
    /// PruneKit's sparse layout stores its bitmasks).
    enum Payload {
        case f32(Tensor)
        case u8(shape: [Int], bytes: [UInt8])

        var dtype: DType { if case .f32 = self { return .F32 } else { return .U8 } }
        var shape: [Int] { switch self { case .f32(let t): return t.shape; case .u8(let s, _): return s } }
        var byteCount: Int { switch self { case .f32(let t): return t.count * 4; case .u8(_, let b): return b.count } }
    }

    /// The bytes of a safetensors file holding `payloads` (see ``encode(_:metadata:)``).
    static func encode(payloads tensors: [(name: String, payload: Payload)],
                       metadata: [String: String] = [:]) throws -> [UInt8] {
        var header: [(String, JSONValue)] = []
        if !metadata.isEmpty {
            header.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var names = Set<String>(), offset = 0
        for (name, tensor) in tensors {
            guard name != "__metadata__" else {
                throw PruneKitError(.invalidArgument, "a tensor cannot be named '__metadata__' in a safetensors file",
                                    hint: "that key holds the file's metadata; rename the tensor")
            }
            guard names.insert(name).inserted else {
                throw PruneKitError(.invalidArgument, "the tensor name '\(name)' is given twice",
                                    hint: "every tensor in a safetensors file needs a unique name")
            }
            let end = offset + tensor.byteCount
            header.append((name, .object([
                ("dtype", .string(tensor.dtype.rawValue)),
                ("shape", .array(tensor.shape.map(JSONValue.int))),
                ("data_offsets", .array([.int(offset), .int(end)])),
            ])))
            offset = end
        }
        var headerBytes = Array(JSONValue.object(header).serialized().utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        var out = [UInt8](repeating: 0, count: 8 + headerBytes.count + offset)
        out.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt64(headerBytes.count).littleEndian, as: UInt64.self)
            headerBytes.withUnsafeBytes { h in
                (raw.baseAddress! + 8).copyMemory(from: h.baseAddress!, byteCount: h.count)
            }
            var position = 8 + headerBytes.count
            for (_, payload) in tensors {
                guard case .f32(let tensor) = payload else {
                    if case .u8(_, let bytes) = payload, !bytes.isEmpty {
                        bytes.withUnsafeBytes { (raw.baseAddress! + position).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                        position += bytes.count
                    }
                    continue
                }
                tensor.withUnsafeBufferPointer { floats in
                    guard !floats.isEmpty else { return }
                    let destination = raw.baseAddress! + position
                    if UInt32(1).littleEndian == 1 {
                        destination.copyMemory(from: floats.baseAddress!, byteCount: floats.count * 4)
                    } else {
                        for (i, f) in floats.enumerated() {
                            (destination + 4 * i).storeBytes(of: f.bitPattern.littleEndian, as: UInt32.self)
                        }
                    }
                    position += floats.count * 4
                }
            }
        }
        return out
    }

    /// Decodes the bytes of a safetensors file; see ``read(_:)``.
    /// - Parameter source: how error messages name the bytes (a file name).
    public static func decode(_ bytes: [UInt8], source: String = "safetensors data")
        throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        try bytes.withUnsafeBytes { try decode($0, source: source) }
    }

    // MARK: Decoding

    private struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let begin: Int, end: Int
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, source: String)
        throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let r = try decodeTyped(bytes, source: source)
        return (r.tensors, r.metadata)
    }

    /// Decodes the bytes of a safetensors file, also returning each tensor's stored dtype.
    static func decodeTyped(_ bytes: UnsafeRawBufferPointer, source: String)
        throws -> (tensors: [String: Tensor], dtypes: [String: DType], metadata: [String: String]) {
        func invalid(_ message: String, _ hint: String? = nil) -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): \(message)",
                          hint: hint ?? "the file is not a valid safetensors file; it may be truncated or corrupt — write or download it again")
        }
        guard bytes.count >= 8 else {
            throw invalid("the file is \(bytes.count) bytes long, too short for the 8-byte header length every safetensors file starts with")
        }
        let declared = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let available = bytes.count - 8
        guard declared <= UInt64(available) else {
            throw invalid("the header length is \(declared) bytes, but only \(available) bytes follow it in the file (\(bytes.count) bytes in all)")
        }
        let headerLength = Int(declared)
        guard headerLength <= maximumHeaderLength else {
            throw invalid("the header length \(headerLength) is larger than the \(maximumHeaderLength)-byte limit")
        }
        guard headerLength >= 2 else {
            throw invalid("the header is \(headerLength) bytes long, too short to hold a JSON object")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])
        let header: JSONValue
        do {
            header = try JSONValue.parse(headerBytes)
        } catch let e as JSONValue.SyntaxError {
            if let key = e.duplicateKey {
                throw invalid("the header names the tensor '\(key)' twice",
                              "every tensor in a safetensors file must have a unique name; write the file again")
            }
            throw invalid("the header is not valid JSON: \(e.message) at byte \(e.offset) of the header")
        }
        guard let members = header.objectMembers else {
            throw invalid("the header is \(header.typeName), not a JSON object of tensor entries")
        }

        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (name, value) in members {
            if name == "__metadata__" {
                guard let items = value.objectMembers else {
                    throw invalid("'__metadata__' is \(value.typeName), not an object of strings")
                }
                for (key, v) in items {
                    guard let s = v.stringValue else {
                        throw invalid("metadata entry '\(key)' is \(v.typeName), not a string")
                    }
                    metadata[key] = s
                }
                continue
            }
            guard value.objectMembers != nil else {
                throw invalid("the entry for tensor '\(name)' is \(value.typeName), not an object with dtype, shape and data_offsets")
            }
            guard let dtypeName = value["dtype"]?.stringValue else {
                throw invalid("tensor '\(name)' has no \"dtype\" string")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw invalid("tensor '\(name)' has the unknown or unsupported dtype '\(dtypeName)'",
                              "PruneKit reads \(DType.allCases.map(\.rawValue).joined(separator: ", ")); convert the tensor (for example to float32) before saving")
            }
            guard let shapeItems = value["shape"]?.arrayValue else {
                throw invalid("tensor '\(name)' has no \"shape\" array")
            }
            let shape = shapeItems.map { $0.intValue ?? -1 }
            guard shape.allSatisfy({ $0 >= 0 }) else {
                throw invalid("tensor '\(name)' has the shape \(shapeItems.map { $0.serialized() }), which is not a list of non-negative integers")
            }
            guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                  let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= begin else {
                throw invalid("tensor '\(name)' needs \"data_offsets\" [begin, end] with 0 ≤ begin ≤ end, got \(value["data_offsets"]?.serialized() ?? "none")")
            }
            var elements = 1, overflow = false
            for d in shape {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                elements = p; overflow = overflow || o
            }
            let (expectedBytes, o2) = elements.multipliedReportingOverflow(by: dtype.itemSize)
            guard !overflow, !o2, expectedBytes == end - begin else {
                throw invalid("tensor '\(name)' of shape \(shape) and dtype \(dtype.rawValue) needs \(overflow || o2 ? "more than Int.max" : String(expectedBytes)) bytes, but its data_offsets [\(begin), \(end)] span \(end - begin) bytes")
            }
            guard end <= dataLength else {
                throw invalid("tensor '\(name)' has data_offsets [\(begin), \(end)], beyond the end of the data section (\(dataLength) bytes)")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }

        // The ranges must tile the data section: no overlaps, no holes, nothing after.
        let sorted = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var covered = 0
        var previous: Entry?
        for e in sorted {
            if e.begin < covered, let p = previous {
                throw invalid("tensor '\(e.name)' (bytes \(e.begin)..<\(e.end)) overlaps tensor '\(p.name)' (bytes \(p.begin)..<\(p.end))")
            }
            if e.begin > covered {
                throw invalid("bytes \(covered)..<\(e.begin) of the data section belong to no tensor (the next is '\(e.name)')")
            }
            covered = max(covered, e.end)
            if e.end > e.begin || previous == nil { previous = e }
        }
        guard covered == dataLength else {
            throw invalid("the data section is \(dataLength) bytes long but its tensors cover only \(covered); \(dataLength - covered) bytes at the end belong to no tensor")
        }

        var tensors: [String: Tensor] = [:], dtypes: [String: DType] = [:]
        tensors.reserveCapacity(entries.count)
        for e in entries {
            let raw = UnsafeRawBufferPointer(rebasing: bytes[(dataStart + e.begin)..<(dataStart + e.end)])
            tensors[e.name] = convert(raw, dtype: e.dtype, shape: e.shape)
            dtypes[e.name] = e.dtype
        }
        return (tensors, dtypes, metadata)
    }

    /// Converts little-endian elements of `dtype` to a `Float` tensor.
    private static func convert(_ raw: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) -> Tensor {
        var t = Tensor(shape: shape)
        let n = t.count
        guard n > 0 else { return t }
        t.withUnsafeMutableBufferPointer { out in
            switch dtype {
            case .F32:
                if UInt32(1).littleEndian == 1 {
                    UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: n * 4)
                } else {
                    for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                }
            case .F64:
                for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .F16:
                for i in 0..<n { out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .BF16:
                for i in 0..<n { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case .I64:
                for i in 0..<n { out[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            case .I32:
                for i in 0..<n { out[i] = Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            case .I16:
                for i in 0..<n { out[i] = Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) }
            case .I8:
                for i in 0..<n { out[i] = Float(Int8(bitPattern: raw[i])) }
            case .U8:
                for i in 0..<n { out[i] = Float(raw[i]) }
            case .BOOL:
                for i in 0..<n { out[i] = raw[i] != 0 ? 1 : 0 }
            }
        }
        return t
    }

    /// IEEE 754 binary16 to binary32, exactly (subnormals, infinities and NaN included).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10 & 0x1F)
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }
        if exponent == 0 {
            // Zero or subnormal: mantissa × 2⁻²⁴.
            let magnitude = Float(mantissa) * Float(bitPattern: 0x3380_0000)
            return sign == 0 ? magnitude : -magnitude
        }
        return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
    }
}
