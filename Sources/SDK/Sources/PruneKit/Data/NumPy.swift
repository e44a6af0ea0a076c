import CZlib
import Foundation

/// One n-dimensional array read from a NumPy `.npy` file or an `.npz` member.
///
/// The values stay where they are: in the memory-mapped file (a `.npy` file, or a member
/// that an `.npz` archive stores uncompressed), or in one buffer of the inflated bytes
/// (a compressed `.npz` member, as `np.savez_compressed` writes). Nothing is converted
/// until it is read.
public struct NumPyArray: @unchecked Sendable {
    /// The element types PruneKit reads (little-endian; `|` and `<` byte orders).
    public enum DType: String, Sendable, CaseIterable {
        case float32 = "f4", float16 = "f2", uint8 = "u1", int8 = "i1", int16 = "i2", uint16 = "u2"
        case int32 = "i4", uint32 = "u4", int64 = "i8", uint64 = "u8"

        /// Bytes per element.
        public var size: Int { Int(rawValue.dropFirst())! }
        /// Whether the type holds integers (what labels must be).
        public var isInteger: Bool { self != .float32 && self != .float16 }
        /// NumPy's name for the type (`float32`, `uint8`, …).
        public var numpyName: String { "\(self)" }
    }

    /// The element type.
    public let dtype: DType
    /// The extent of each dimension, outermost first.
    public let shape: [Int]
    /// Whether the values are read from a memory-mapped file (not copied into memory).
    public let isMemoryMapped: Bool
    /// Where the array came from, for messages (`data.npz:x_train`).
    public let source: String
    /// Keeps the mapping or the buffer alive.
    let owner: AnyObject
    /// The first value (possibly unaligned).
    let base: UnsafeRawPointer

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// Element `i` (row-major) as a `Float`.
    @inline(__always)
    func float(at i: Int) -> Float {
        switch dtype {
        case .float32: return base.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
        case .float16: return Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .uint8: return Float(base.load(fromByteOffset: i, as: UInt8.self))
        default: return Float(integer(at: i))
        }
    }

    /// Element `i` (row-major) of an integer array, widened to `Int64` (a `uint64` above
    /// `Int64.max` reads as -1, which every range check refuses).
    @inline(__always)
    func integer(at i: Int) -> Int64 {
        switch dtype {
        case .uint8: return Int64(base.load(fromByteOffset: i, as: UInt8.self))
        case .int8: return Int64(base.load(fromByteOffset: i, as: Int8.self))
        case .int16: return Int64(base.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
        case .uint16: return Int64(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        case .int32: return Int64(base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
        case .uint32: return Int64(base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
        case .int64: return base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)
        case .uint64: return Int64(exactly: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) ?? -1
        case .float32, .float16: return Int64(float(at: i))
        }
    }
}

/// The NumPy `.npy` format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html)
/// and `.npz` archives of `.npy` members.
///
/// A `.npy` file is the magic `\x93NUMPY`, a major and a minor version byte, the header
/// length (2 bytes little-endian in version 1.0, 4 bytes in 2.0 and 3.0), then the header:
/// a Python dict literal with `descr` (the dtype, such as `'<f4'`), `fortran_order` and
/// `shape`, padded with spaces and a newline; the values follow in C (row-major) order.
/// Version 3.0 only allows UTF-8 in the header. Fortran-ordered arrays, big-endian and
/// structured dtypes are refused with a message saying how to convert them.
///
/// An `.npz` file is a ZIP archive with one `NAME.npy` member per array. Its central
/// directory (ZIP64 included, as NumPy writes it) is read here; a stored member is mapped
/// at its offset in the archive, a deflated one is inflated by the system zlib (and its
/// CRC-32 checked). Mapping a stored member needs its byte offset, which is why the
/// archive's directory is read here rather than through a ZIP library; the SDK also
/// keeps no package dependencies of its own (every plugin package resolves it).
public enum NumPy {
    /// Reads a `.npy` file, memory-mapped.
    /// - Throws: ``PruneKitError`` `.invalidFile` naming the file and what is wrong.
    public static func readArray(_ path: String) throws -> NumPyArray {
        let file = try MappedFile(path)
        return try parse(base: file.base, count: file.size, owner: file, mapped: true, source: path)
    }

    /// The arrays of an `.npz` archive, by name (the member's name without `.npy`).
    /// Stored members are mapped, deflated ones inflated.
    /// - Throws: ``PruneKitError`` `.invalidFile` for a file that is not a ZIP archive, a
    ///   member that is not a `.npy` file, an encrypted or damaged member.
    public static func readArchive(_ path: String) throws -> [String: NumPyArray] {
        let file = try MappedFile(path)
        var arrays: [String: NumPyArray] = [:]
        for entry in try ZipDirectory.entries(of: file, source: path) {
            guard entry.name.hasSuffix(".npy") else { continue }
            let name = String(entry.name.dropLast(4))
            let source = "\(path):\(name)"
            let (owner, base, count, mapped) = try ZipDirectory.contents(of: entry, in: file, source: source)
            arrays[name] = try parse(base: base, count: count, owner: owner, mapped: mapped, source: source)
        }
        return arrays
    }

    /// The header of a `.npy` file: dtype, shape, and where the values start.
    struct Header: Equatable {
        var dtype: NumPyArray.DType
        var shape: [Int]
        var dataOffset: Int
    }

    /// Parses a `.npy` header from the first bytes of `bytes` (the whole file, or at least the header).
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, source: String) throws -> Header {
        let formatHint = "save the array with numpy.save (or numpy.savez for several arrays)"
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]   // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw PruneKitError(.invalidFile, "\(source): not a NumPy .npy file (no \\x93NUMPY magic at its start)", hint: formatHint)
        }
        let major = bytes[6], minor = bytes[7]
        let lengthBytes: Int
        switch major {
        case 1: lengthBytes = 2
        case 2, 3: lengthBytes = 4
        default:
            throw PruneKitError(.invalidFile, "\(source): .npy format version \(major).\(minor) is not supported (1.0, 2.0 and 3.0 are)",
                                hint: "save the array again with a NumPy release that writes version 1.0–3.0")
        }
        guard bytes.count >= 8 + lengthBytes else {
            throw PruneKitError(.invalidFile, "\(source): the .npy file ends inside its header", hint: formatHint)
        }
        var headerLength = 0
        for k in 0..<lengthBytes { headerLength |= Int(bytes[8 + k]) << (8 * k) }
        let start = 8 + lengthBytes
        guard bytes.count >= start + headerLength else {
            throw PruneKitError(.invalidFile, "\(source): the .npy header says it is \(headerLength) bytes long, "
                                + "but the file ends after \(bytes.count - start)", hint: "the file is truncated: save it again")
        }
        let raw = Array(bytes[start..<(start + headerLength)])
        guard let text = major == 3 ? String(validating: raw, as: UTF8.self) : String(bytes: raw, encoding: .isoLatin1) else {
            throw PruneKitError(.invalidFile, "\(source): the .npy header is not valid UTF-8", hint: formatHint)
        }
        let dict = try PythonLiteral.parseDict(text, source: source)
        guard case .string(let descr)? = dict["descr"] else {
            throw PruneKitError(.invalidFile, "\(source): the .npy header has no dtype ('descr'), or a structured one: \(text)",
                                hint: "save a plain numeric array (structured arrays are not images)")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else {
            throw PruneKitError(.invalidFile, "\(source): the .npy header has no 'fortran_order'", hint: formatHint)
        }
        guard case .tuple(let shape)? = dict["shape"], shape.allSatisfy({ $0 >= 0 }) else {
            throw PruneKitError(.invalidFile, "\(source): the .npy header has no valid 'shape'", hint: formatHint)
        }
        guard !fortran else {
            throw PruneKitError(.invalidFile, "\(source): the array is stored in Fortran (column-major) order, "
                                + "which PruneKit does not read",
                                hint: "save it in C order: numpy.save(path, numpy.ascontiguousarray(a))")
        }
        let order = descr.first, code = String(descr.dropFirst())
        guard order == "<" || order == "|" || order == "=", let dtype = NumPyArray.DType(rawValue: code) else {
            let supported = NumPyArray.DType.allCases.map(\.numpyName).joined(separator: ", ")
            let why = order == ">" ? "big-endian '\(descr)'" : "dtype '\(descr)'"
            throw PruneKitError(.invalidFile, "\(source): \(why) is not supported (little-endian \(supported) are)",
                                hint: "convert it, e.g. a.astype('<f4') for images, a.astype('<i8') for labels")
        }
        return Header(dtype: dtype, shape: shape, dataOffset: start + headerLength)
    }

    /// An array from the bytes of a whole `.npy` file.
    static func parse(base: UnsafeRawPointer, count: Int, owner: AnyObject, mapped: Bool, source: String) throws -> NumPyArray {
        let header = try parseHeader(UnsafeRawBufferPointer(start: base, count: count), source: source)
        var elements = 1
        for d in header.shape {
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw PruneKitError(.invalidFile, "\(source): shape \(header.shape) is too large", hint: "the header is damaged: save the array again") }
            elements = p
        }
        let (needed, overflow) = elements.multipliedReportingOverflow(by: header.dtype.size)
        let present = count - header.dataOffset
        guard !overflow, needed == present else {
            throw PruneKitError(.invalidFile, "\(source): shape \(header.shape) of \(header.dtype.numpyName) needs \(needed) bytes "
                                + "after the header, the file has \(present)",
                                hint: needed > present ? "the file is truncated: save it again" : "the file is damaged: save it again")
        }
        return NumPyArray(dtype: header.dtype, shape: header.shape, isMemoryMapped: mapped, source: source,
                          owner: owner, base: base + header.dataOffset)
    }
}

/// The few Python literals a `.npy` header holds: strings, `True`/`False`, tuples of ints.
enum PythonLiteral: Equatable {
    case string(String), bool(Bool), tuple([Int]), other

    /// Parses `{'key': value, …}`.
    static func parseDict(_ text: String, source: String) throws -> [String: PythonLiteral] {
        let chars = Array(text.unicodeScalars)
        var i = 0
        func fail() -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): the .npy header is not a Python dict literal: \(text.trimmingCharacters(in: .whitespacesAndNewlines))",
                          hint: "save the array with numpy.save")
        }
        func skip() { while i < chars.count, chars[i].properties.isWhitespace { i += 1 } }
        func expect(_ c: Unicode.Scalar) throws { skip(); guard i < chars.count, chars[i] == c else { throw fail() }; i += 1 }
        func string() throws -> String {
            skip()
            guard i < chars.count, chars[i] == "'" || chars[i] == "\"" else { throw fail() }
            let quote = chars[i]; i += 1
            var s = String.UnicodeScalarView()
            while i < chars.count, chars[i] != quote { s.append(chars[i]); i += 1 }
            guard i < chars.count else { throw fail() }
            i += 1
            return String(s)
        }
        func value() throws -> PythonLiteral {
            skip()
            guard i < chars.count else { throw fail() }
            if chars[i] == "'" || chars[i] == "\"" { return .string(try string()) }
            if chars[i] == "(" {
                i += 1
                var items: [Int] = []
                while true {
                    skip()
                    guard i < chars.count else { throw fail() }
                    if chars[i] == ")" { i += 1; return .tuple(items) }
                    var digits = ""
                    while i < chars.count, chars[i].properties.numericType != nil { digits.unicodeScalars.append(chars[i]); i += 1 }
                    if i < chars.count, chars[i] == "L" { i += 1 }   // Python 2 longs
                    guard let n = Int(digits) else { throw fail() }
                    items.append(n)
                    skip()
                    if i < chars.count, chars[i] == "," { i += 1 }
                }
            }
            for (word, v) in [("True", true), ("False", false)] where String(String.UnicodeScalarView(chars[i..<min(chars.count, i + word.count)])) == word {
                i += word.count
                return .bool(v)
            }
            // Anything else (a structured dtype's list): skip to the next top-level comma or brace.
            var depth = 0
            while i < chars.count {
                let c = chars[i]
                if c == "[" || c == "(" { depth += 1 } else if c == "]" || c == ")" { depth -= 1 }
                if depth == 0 && (c == "," || c == "}") { break }
                i += 1
            }
            return .other
        }
        try expect("{")
        var dict: [String: PythonLiteral] = [:]
        while true {
            skip()
            guard i < chars.count else { throw fail() }
            if chars[i] == "}" { break }
            let key = try string()
            try expect(":")
            dict[key] = try value()
            skip()
            if i < chars.count, chars[i] == "," { i += 1 }
        }
        return dict
    }
}

/// A read-only memory mapping of a whole file, unmapped when released.
final class MappedFile: @unchecked Sendable {
    let path: String
    let base: UnsafeRawPointer
    let size: Int

    init(_ path: String) throws {
        guard DataFile.exists(path) else {
            throw PruneKitError(.invalidFile, "\(path): no such file", hint: "check the path")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw PruneKitError(.io, "\(path): cannot be opened (\(String(cString: strerror(errno))))", hint: "check the file's permissions")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw PruneKitError(.io, "\(path): cannot be read (\(String(cString: strerror(errno))))", hint: "check the file's permissions")
        }
        self.path = path
        size = Int(st.st_size)
        guard size > 0 else {
            throw PruneKitError(.invalidFile, "\(path): the file is empty", hint: "save the data again")
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw PruneKitError(.io, "\(path): cannot be mapped (\(String(cString: strerror(errno))))", hint: "check free address space and the file")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}

/// Bytes inflated into memory (a compressed `.npz` member), freed when released.
final class OwnedBytes: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int
    init(size: Int) {
        self.size = size
        base = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: 64)
    }
    deinit { base.deallocate() }
}

/// The central directory of a ZIP archive (APPNOTE.TXT, with ZIP64), enough to find the
/// members of an `.npz` file and their data.
enum ZipDirectory {
    struct Entry {
        var name: String
        var method: Int
        var flags: Int
        var crc: UInt32
        var compressedSize: Int
        var uncompressedSize: Int
        var localHeaderOffset: Int
    }

    static func entries(of file: MappedFile, source: String) throws -> [Entry] {
        let b = UnsafeRawBufferPointer(start: file.base, count: file.size)
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        func u64(_ o: Int) -> Int { u32(o) | u32(o + 4) << 32 }
        let notZip = PruneKitError(.invalidFile, "\(source): not an .npz file (no ZIP end-of-central-directory record)",
                                   hint: "save the arrays with numpy.savez or numpy.savez_compressed")
        func damaged(_ what: String) -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): damaged .npz archive (\(what))", hint: "save the arrays again with numpy.savez")
        }
        // The end record (22 bytes + a comment of up to 65,535) is at the end.
        guard b.count >= 22 else { throw notZip }
        var eocd = -1
        var o = b.count - 22
        while o >= max(0, b.count - 22 - 65_535) {
            if u32(o) == 0x0605_4B50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw notZip }
        var total = u16(eocd + 10), dirSize = u32(eocd + 12), dirOffset = u32(eocd + 16)
        if (total == 0xFFFF || dirSize == 0xFFFF_FFFF || dirOffset == 0xFFFF_FFFF), eocd >= 20, u32(eocd - 20) == 0x0706_4B50 {
            let z = u64(eocd - 20 + 8)
            guard z >= 0, z + 56 <= b.count, u32(z) == 0x0606_4B50 else { throw damaged("bad ZIP64 end record") }
            total = u64(z + 32); dirSize = u64(z + 40); dirOffset = u64(z + 48)
        }
        guard dirOffset >= 0, dirSize >= 0, dirOffset + dirSize <= b.count else { throw damaged("central directory out of the file") }
        var entries: [Entry] = []
        var p = dirOffset
        for _ in 0..<total {
            guard p + 46 <= b.count, u32(p) == 0x0201_4B50 else { throw damaged("bad central directory entry") }
            let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
            guard p + 46 + nameLength + extraLength <= b.count else { throw damaged("entry runs past the end") }
            var e = Entry(name: String(decoding: b[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self),
                          method: u16(p + 10), flags: u16(p + 8), crc: UInt32(u32(p + 16)),
                          compressedSize: u32(p + 20), uncompressedSize: u32(p + 24), localHeaderOffset: u32(p + 42))
            // ZIP64 extra field: the 8-byte values of the fields set to 0xFFFFFFFF, in order.
            var x = p + 46 + nameLength
            let extraEnd = x + extraLength
            while x + 4 <= extraEnd {
                let id = u16(x), size = u16(x + 2)
                if id == 0x0001 {
                    var f = x + 4
                    if e.uncompressedSize == 0xFFFF_FFFF, f + 8 <= extraEnd { e.uncompressedSize = u64(f); f += 8 }
                    if e.compressedSize == 0xFFFF_FFFF, f + 8 <= extraEnd { e.compressedSize = u64(f); f += 8 }
                    if e.localHeaderOffset == 0xFFFF_FFFF, f + 8 <= extraEnd { e.localHeaderOffset = u64(f) }
                }
                x += 4 + size
            }
            entries.append(e)
            p += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    /// The uncompressed bytes of `entry`: mapped (stored) or inflated (deflated).
    static func contents(of entry: Entry, in file: MappedFile, source: String)
        throws -> (owner: AnyObject, base: UnsafeRawPointer, count: Int, mapped: Bool) {
        let b = UnsafeRawBufferPointer(start: file.base, count: file.size)
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        func damaged(_ what: String) -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): damaged .npz member (\(what))", hint: "save the arrays again with numpy.savez")
        }
        guard entry.flags & 1 == 0 else {
            throw PruneKitError(.invalidFile, "\(source): the member is encrypted", hint: "save the arrays with numpy.savez")
        }
        let h = entry.localHeaderOffset
        guard h >= 0, h + 30 <= b.count, b.load(fromByteOffset: h, as: UInt8.self) == 0x50,
              Int(b[h + 1]) == 0x4B, Int(b[h + 2]) == 3, Int(b[h + 3]) == 4 else { throw damaged("bad local header") }
        let start = h + 30 + u16(h + 26) + u16(h + 28)
        guard entry.compressedSize >= 0, start + entry.compressedSize <= b.count else { throw damaged("data runs past the end of the archive") }
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.uncompressedSize else { throw damaged("stored sizes differ") }
            return (file, file.base + start, entry.compressedSize, true)
        case 8:
            let out = OwnedBytes(size: entry.uncompressedSize)
            var stream = z_stream()
            guard inflateInit2_(&stream, -15, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw PruneKitError(.io, "\(source): zlib could not start inflating", hint: nil)
            }
            defer { inflateEnd(&stream) }
            var consumed = 0, produced = 0, status = Z_OK
            while status == Z_OK {
                let inChunk = min(entry.compressedSize - consumed, Int(UInt32.max))
                let outChunk = min(entry.uncompressedSize - produced, Int(UInt32.max))
                stream.next_in = UnsafeMutablePointer(mutating: (file.base + start + consumed).assumingMemoryBound(to: UInt8.self))
                stream.avail_in = UInt32(inChunk)
                stream.next_out = (out.base + produced).assumingMemoryBound(to: UInt8.self)
                stream.avail_out = UInt32(outChunk)
                status = CZlib.inflate(&stream, Z_NO_FLUSH)
                consumed += inChunk - Int(stream.avail_in)
                produced += outChunk - Int(stream.avail_out)
                if status == Z_BUF_ERROR, produced == entry.uncompressedSize { break }
                if status == Z_OK, inChunk - Int(stream.avail_in) == 0, outChunk - Int(stream.avail_out) == 0 { break }
            }
            guard status == Z_STREAM_END, produced == entry.uncompressedSize else {
                throw damaged("the compressed data is corrupt or truncated")
            }
            let crc = CZlib.crc32(0, out.base.assumingMemoryBound(to: UInt8.self), UInt32(min(produced, Int(UInt32.max))))
            guard produced > Int(UInt32.max) || UInt32(crc) == entry.crc else { throw damaged("CRC-32 mismatch") }
            return (out, UnsafeRawPointer(out.base), produced, false)
        default:
            throw PruneKitError(.invalidFile, "\(source): compression method \(entry.method) is not supported (stored and deflate are)",
                                hint: "save the arrays with numpy.savez or numpy.savez_compressed")
        }
    }
}
