import CZlib
import Foundation

/// Inflating gzip (and zlib) streams with the system zlib, for data files that ship
/// compressed (`train-images-idx3-ubyte.gz`).
enum Gzip {
    /// Whether `bytes` start with the gzip magic number `1f 8b`.
    static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Inflates a gzip or zlib stream (detected from its header, windowBits 15 + 32).
    ///
    /// Concatenated gzip members (what `cat a.gz b.gz` gives) are inflated one after
    /// another; zero bytes after the last member (tape padding) are ignored.
    /// - Parameters:
    ///   - input: the compressed bytes.
    ///   - source: the file the bytes came from, for error messages.
    /// - Throws: ``PruneKitError`` `.invalidFile` when the stream is corrupt or truncated.
    /// - Complexity: O(output size).
    static func inflate(_ input: [UInt8], source: String) throws -> [UInt8] {
        guard !input.isEmpty else {
            throw PruneKitError(.invalidFile, "\(source): the compressed file is empty",
                                hint: "download the file again")
        }
        guard input.count <= Int(UInt32.max) else {
            throw PruneKitError(.invalidFile, "\(source): compressed file larger than 4 GiB is not supported",
                                hint: "decompress it first (gunzip) and load the uncompressed file")
        }
        var stream = z_stream()
        let initStatus = inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else {
            throw PruneKitError(.io, "\(source): zlib could not start inflating (status \(initStatus))",
                                hint: "check that the installed zlib matches the one PruneKit was built with")
        }
        defer { inflateEnd(&stream) }

        // The gzip trailer holds the uncompressed size modulo 2^32: a good first guess.
        var capacity = max(4096, input.count * 4)
        if isGzip(input), input.count >= 18 {
            let n = input.count
            let isize = Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16 | Int(input[n - 1]) << 24
            if isize > 0 && isize <= input.count * 1100 { capacity = isize + 1 }
        }
        var output = [UInt8](repeating: 0, count: capacity)
        var produced = 0

        func corrupt(_ what: String) -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): corrupt compressed data (\(what))",
                          hint: "the download is probably damaged: delete the file and download it again")
        }

        try input.withUnsafeBufferPointer { inBuffer in
            stream.next_in = UnsafeMutablePointer(mutating: inBuffer.baseAddress!)
            stream.avail_in = UInt32(inBuffer.count)
            while true {
                if produced == output.count {
                    output.append(contentsOf: repeatElement(0, count: output.count))
                }
                let status: Int32 = output.withUnsafeMutableBufferPointer { out in
                    let room = min(out.count - produced, Int(UInt32.max))
                    stream.next_out = out.baseAddress! + produced
                    stream.avail_out = UInt32(room)
                    let s = CZlib.inflate(&stream, Z_NO_FLUSH)
                    produced += room - Int(stream.avail_out)
                    return s
                }
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    let rest = Int(stream.avail_in)
                    if rest == 0 { return }
                    let next = inBuffer.count - rest
                    if rest >= 2, inBuffer[next] == 0x1F, inBuffer[next + 1] == 0x8B {
                        inflateReset(&stream)   // another gzip member follows
                        continue
                    }
                    if inBuffer[next...].allSatisfy({ $0 == 0 }) { return }
                    throw corrupt("\(rest) unexpected bytes after the end of the compressed stream")
                case Z_BUF_ERROR where stream.avail_in == 0:
                    throw PruneKitError(.invalidFile, "\(source): the compressed file is truncated "
                                        + "(it ends before the end of the compressed stream)",
                                        hint: "the download was probably interrupted: download the file again")
                case Z_BUF_ERROR:
                    continue            // the output buffer was full; it grows above
                case Z_MEM_ERROR:
                    throw PruneKitError(.io, "\(source): out of memory while inflating",
                                hint: "free some memory, or decompress the file first (gunzip)")
                default:
                    let reason = stream.msg.map { String(cString: $0) } ?? "zlib status \(status)"
                    throw corrupt(reason)
                }
            }
        }
        output.removeSubrange(produced...)
        return output
    }
}

/// Reading data files: clear errors for a missing file, transparent gzip.
enum DataFile {
    /// Whether `path` names an existing regular file (not a directory).
    static func exists(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    /// Whether `path` names an existing directory.
    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// The bytes of the file at `path`, inflated if they are gzip (magic `1f 8b`).
    static func read(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw PruneKitError(.invalidFile, "\(path): no such file",
                                hint: "check the path and that the data set has been downloaded and extracted")
        }
        guard !isDirectory.boolValue else {
            throw PruneKitError(.invalidFile, "\(path): is a directory, expected a data file",
                                hint: "give the path of the file itself")
        }
        let raw: [UInt8]
        do {
            raw = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe))
        } catch {
            throw PruneKitError(.io, "\(path): cannot be read (\(error.localizedDescription))",
                                hint: "check the file's permissions")
        }
        return Gzip.isGzip(raw) ? try Gzip.inflate(raw, source: path) : raw
    }
}
