import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only view of an ELF shared library, read with `pread` and never mapped or
/// executed: what the plugin loader checks before it lets `dlopen` near a file.
///
/// Accepts only 64-bit little-endian shared objects (`ET_DYN`, not a PIE executable)
/// for this machine. Every offset and size read from the file is bounds-checked: a
/// truncated or corrupt file is a ``PruneKitError`` (`.invalidFile`), never a crash.
/// Cost: one read of the header and section table at `init`; sections are read on demand.
public final class ELFSharedObject {
    /// One entry of the section header table.
    public struct Section: Sendable, Equatable {
        public let name: String
        /// `SHT_*` (1 progbits, 2 symtab, 3 strtab, 6 dynamic, 8 nobits, 11 dynsym).
        public let type: UInt32
        /// The section's bytes in the file (`size` is 0 in the file for `SHT_NOBITS`).
        public let offset: Int
        public let size: Int
        /// The index of the associated section (the string table of a symbol table).
        public let link: Int
        public let entrySize: Int
    }

    /// The file, as given.
    public let path: String
    /// The file's size in bytes.
    public let fileSize: Int
    /// The section header table, in file order.
    public let sections: [Section]

    private let fd: Int32

    static let machine: UInt16 = {
        #if arch(x86_64)
        return 62   // EM_X86_64
        #elseif arch(arm64)
        return 183  // EM_AARCH64
        #else
        return 0
        #endif
    }()

    /// Opens `path` and checks that it is a 64-bit little-endian ELF shared object for
    /// this machine with a readable section table.
    /// - Throws: ``PruneKitError`` `.io` if the file can't be opened, `.invalidFile` if it
    ///   is not such an ELF file or is truncated or corrupt; the message says which.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw PruneKitError(.io, "\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = String(cString: strerror(errno)); close(fd)
            throw PruneKitError(.io, "\(path): cannot stat: \(reason)")
        }
        self.fd = fd
        fileSize = Int(st.st_size)
        do {
            sections = try ELFSharedObject.readHeaderAndSections(fd: fd, fileSize: fileSize, path: path)
        } catch {
            close(fd)
            throw error
        }
        // Tell a PIE executable (also ET_DYN) from a library.
        if let flags1 = try dynamicEntries().first(where: { $0.tag == 0x6fff_fffb })?.value,  // DT_FLAGS_1
           flags1 & 0x0800_0000 != 0 {                                                      // DF_1_PIE
            throw PruneKitError(.invalidFile, "\(path) is an executable (a position-independent one), not a shared library",
                                hint: "a plugin is a `.library(type: .dynamic)` product: lib<Name>.so")
        }
    }

    deinit { close(fd) }

    // MARK: Reading

    /// Reads `count` bytes at `offset`, or throws if that range is not inside the file.
    func read(_ offset: Int, _ count: Int, what: String) throws -> [UInt8] {
        guard offset >= 0, count >= 0, count <= fileSize, offset <= fileSize - count else {
            throw ELFSharedObject.corrupt(path, "\(what) (bytes \(offset)..<\(offset &+ count)) lies outside the file (\(fileSize) bytes): truncated or corrupt")
        }
        return try ELFSharedObject.pread(fd: fd, offset: offset, count: count, path: path)
    }

    private static func pread(fd: Int32, offset: Int, count: Int, path: String) throws -> [UInt8] {
        if count == 0 { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { buf in
                Glibc.pread(fd, buf.baseAddress! + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw PruneKitError(.io, "\(path): read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw corrupt(path, "the file ended early (it changed while being read?)") }
            done += n
        }
        return bytes
    }

    static func corrupt(_ path: String, _ what: String) -> PruneKitError {
        PruneKitError(.invalidFile, "\(path) is a corrupt ELF file: \(what)",
                      hint: "rebuild the plugin; a partly copied or damaged file can't be loaded")
    }

    private static func readHeaderAndSections(fd: Int32, fileSize: Int, path: String) throws -> [Section] {
        let notELF = PruneKitError(.invalidFile, "\(path) is not an ELF file (no ELF magic number)",
                                   hint: "a plugin is a shared library (lib<Name>.so) built by `swift build`")
        guard fileSize >= 4 else { throw notELF }
        let magic = try pread(fd: fd, offset: 0, count: 4, path: path)
        guard magic == [0x7f, 0x45, 0x4c, 0x46] else { throw notELF }
        guard fileSize >= 64 else { throw corrupt(path, "the ELF header is cut short (\(fileSize) bytes)") }
        let h = try pread(fd: fd, offset: 0, count: 64, path: path)
        switch h[4] {
        case 2: break
        case 1: throw PruneKitError(.invalidFile, "\(path) is a 32-bit ELF file; PruneKit loads only 64-bit shared libraries",
                                    hint: "build the plugin for this machine with the same Swift toolchain as the host")
        default: throw corrupt(path, "unknown ELF class \(h[4])")
        }
        guard h[5] == 1 else {
            throw PruneKitError(.invalidFile, "\(path) is a big-endian or unknown-endian ELF file; this machine is little-endian",
                                hint: "build the plugin for this machine")
        }
        let type = le16(h, 16), machine = le16(h, 18)
        guard type == 3 else {
            let what: String
            switch type {
            case 1: what = "a relocatable object file (.o)"
            case 2: what = "an executable"
            case 4: what = "a core dump"
            default: what = "an ELF file of type \(type)"
            }
            throw PruneKitError(.invalidFile, "\(path) is \(what), not a shared library",
                                hint: "a plugin is a `.library(type: .dynamic)` product: lib<Name>.so")
        }
        guard machine == ELFSharedObject.machine else {
            throw PruneKitError(.invalidFile, "\(path) is built for another machine (ELF machine \(machine), this one is \(ELFSharedObject.machine))",
                                hint: "build the plugin on (or for) this machine")
        }
        let shoff = le64(h, 40), shentsize = Int(le16(h, 58)), shstrndx = Int(le16(h, 62))
        var shnum = Int(le16(h, 60))
        guard shoff != 0 else { throw corrupt(path, "it has no section header table") }
        guard shentsize == 64 else { throw corrupt(path, "section header entries are \(shentsize) bytes, not 64") }
        guard shoff <= UInt64(fileSize), fileSize - Int(shoff) >= 64 else {
            throw corrupt(path, "the section header table (offset \(shoff)) lies outside the file (\(fileSize) bytes): truncated?")
        }
        let table0 = try pread(fd: fd, offset: Int(shoff), count: 64, path: path)
        if shnum == 0 { shnum = Int(clamping: le64(table0, 32)) }  // SHN_XINDEX-style count in section 0
        guard shnum > 0, shnum <= (fileSize - Int(shoff)) / 64 else {
            throw corrupt(path, "the section header table (\(shnum) entries at offset \(shoff)) runs past the end of the file (\(fileSize) bytes): truncated?")
        }
        let table = try pread(fd: fd, offset: Int(shoff), count: shnum * 64, path: path)
        struct Raw { var name: UInt32, type: UInt32, offset: UInt64, size: UInt64, link: UInt32, entsize: UInt64 }
        let raws = (0..<shnum).map { i -> Raw in
            let b = i * 64
            return Raw(name: le32(table, b), type: le32(table, b + 4), offset: le64(table, b + 24),
                       size: le64(table, b + 32), link: le32(table, b + 40), entsize: le64(table, b + 56))
        }
        for (i, r) in raws.enumerated() where r.type != 8 && r.type != 0 {  // NOBITS and NULL take no file space
            guard r.offset <= UInt64(fileSize), r.size <= UInt64(fileSize) - r.offset else {
                throw corrupt(path, "section \(i) (bytes \(r.offset)+\(r.size)) extends past the end of the file (\(fileSize) bytes): truncated?")
            }
        }
        var names = [String](repeating: "", count: shnum)
        if shstrndx != 0 {
            guard shstrndx < shnum, raws[shstrndx].type == 3 else {
                throw corrupt(path, "the section name table index \(shstrndx) is not a string table")
            }
            let s = raws[shstrndx]
            let strtab = try pread(fd: fd, offset: Int(s.offset), count: Int(s.size), path: path)
            for i in 0..<shnum { names[i] = cString(strtab, Int(raws[i].name)) ?? "" }
        }
        return (0..<shnum).map { i in
            let r = raws[i]
            return Section(name: names[i], type: r.type, offset: Int(r.offset),
                           size: r.type == 8 ? 0 : Int(r.size), link: Int(r.link), entrySize: Int(clamping: r.entsize))
        }
    }

    // MARK: Queries

    /// The first section named `name` (`.prunekit_abi`), if there is one.
    public func section(named name: String) -> Section? { sections.first { $0.name == name } }

    /// The bytes of `section` in the file.
    public func contents(of section: Section) throws -> [UInt8] {
        try read(section.offset, section.size, what: "section \(section.name)")
    }

    /// The `(tag, value)` pairs of the dynamic section, up to `DT_NULL`.
    func dynamicEntries() throws -> [(tag: Int64, value: UInt64)] {
        guard let dyn = sections.first(where: { $0.type == 6 }) else { return [] }
        let bytes = try contents(of: dyn)
        var out: [(Int64, UInt64)] = []
        var o = 0
        while o + 16 <= bytes.count {
            let tag = Int64(bitPattern: ELFSharedObject.le64(bytes, o))
            if tag == 0 { break }
            out.append((tag, ELFSharedObject.le64(bytes, o + 8)))
            o += 16
        }
        return out
    }

    private func dynamicStrings(tag: Int64) throws -> [String] {
        let entries = try dynamicEntries().filter { $0.tag == tag }
        guard !entries.isEmpty else { return [] }
        guard let dyn = sections.first(where: { $0.type == 6 }), dyn.link > 0, dyn.link < sections.count else {
            throw ELFSharedObject.corrupt(path, "the dynamic section has no string table")
        }
        let strtab = try contents(of: sections[dyn.link])
        return try entries.map {
            guard $0.value <= UInt64(Int.max), let s = ELFSharedObject.cString(strtab, Int($0.value)) else {
                throw ELFSharedObject.corrupt(path, "a dynamic entry names a string outside the string table")
            }
            return s
        }
    }

    /// The libraries this one needs (`DT_NEEDED`), in order: `["libPruneKit.so", "libswiftCore.so", …]`.
    public func neededLibraries() throws -> [String] { try dynamicStrings(tag: 1) }

    /// The library's own name (`DT_SONAME`), if it has one.
    public func soname() throws -> String? { try dynamicStrings(tag: 14).first }

    /// The names of symbols *defined and exported* by this file that start with `prefix`,
    /// at most `limit` of them: from `.dynsym` and `.symtab`, those with a section
    /// (not `SHN_UNDEF`), global, weak or unique binding and default or protected
    /// visibility. Local and hidden symbols are left out: the Swift compiler emits local
    /// helpers named after the types a module *uses* (`$s8PruneKit11GranularityOSgMD`,
    /// a metadata cache; `…WOh`, an outlined destroy; `…Wl`, a witness-table accessor)
    /// into every client of the SDK, while a copy of the SDK exports its public symbols.
    /// Cost: reads both symbol tables and their string tables once.
    /// - Parameter filter: a further test on each name (default: all).
    public func definedSymbols(withPrefix prefix: String, limit: Int = 10,
                               where filter: (String) -> Bool = { _ in true }) throws -> [String] {
        let p = Array(prefix.utf8)
        var found: [String] = []
        for table in sections where table.type == 2 || table.type == 11 {  // SHT_SYMTAB, SHT_DYNSYM
            guard table.link > 0, table.link < sections.count, sections[table.link].type == 3 else {
                throw ELFSharedObject.corrupt(path, "symbol table \(table.name) has no string table")
            }
            let syms = try contents(of: table), strs = try contents(of: sections[table.link])
            var o = 0
            while o + 24 <= syms.count, found.count < limit {
                let nameOffset = Int(ELFSharedObject.le32(syms, o)), shndx = ELFSharedObject.le16(syms, o + 6)
                let binding = syms[o + 4] >> 4, visibility = syms[o + 5] & 3
                o += 24
                guard shndx != 0, binding == 1 || binding == 2 || binding == 10, visibility == 0 || visibility == 3,
                      nameOffset < strs.count, strs.count - nameOffset >= p.count else { continue }
                if strs[nameOffset..<(nameOffset + p.count)].elementsEqual(p),
                   let name = ELFSharedObject.cString(strs, nameOffset), !found.contains(name), filter(name) {
                    found.append(name)
                }
            }
        }
        return found
    }

    // MARK: Little-endian helpers (callers check bounds)

    static func le16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    static func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) }
    }
    static func le64(_ b: [UInt8], _ o: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) }
    }
    /// The NUL-terminated string at `offset`, or nil if `offset` is outside `b` or no NUL follows.
    static func cString(_ b: [UInt8], _ offset: Int) -> String? {
        guard offset >= 0, offset < b.count, let end = b[offset...].firstIndex(of: 0) else { return nil }
        return String(decoding: b[offset..<end], as: UTF8.self)
    }
}
