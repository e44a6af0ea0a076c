import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and atomic writes with errors a person can act on.
enum FileIO {
    /// The contents of a file.
    /// - Throws: `.invalidFile` when it does not exist or is a directory, `.io` when it cannot be read.
    static func read(_ path: String, what: String) throws -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw PruneKitError(.invalidFile, "\(what) '\(path)' does not exist",
                                hint: "check the path; a saved model is a directory holding model.json and model.safetensors")
        }
        guard !isDirectory.boolValue else {
            throw PruneKitError(.invalidFile, "\(what) '\(path)' is a directory, not a file",
                                hint: "give the path of the file itself")
        }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PruneKitError(.io, "cannot read \(what) '\(path)': \(error.localizedDescription)",
                                hint: "check the file's permissions")
        }
    }

    /// Creates `path` (and its parents) as a directory unless it already is one.
    static func makeDirectory(_ path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw PruneKitError(.invalidArgument, "'\(path)' is a file, not a directory",
                                    hint: "a model is saved as a directory; choose a path that is not an existing file")
            }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw PruneKitError(.io, "cannot create the directory '\(path)': \(error.localizedDescription)",
                                hint: "check that the parent directory exists and is writable")
        }
    }

    /// Writes `bytes` to `path` atomically: into a new temporary file in the same
    /// directory, flushed to disk, then renamed over `path`. A crash at any point leaves
    /// either the old file or the complete new one, never a truncated file.
    static func writeAtomically(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let directory = url.deletingLastPathComponent().path
        let temporary = directory + "/." + url.lastPathComponent + ".tmp-" + UUID().uuidString
        func failure(_ action: String) -> PruneKitError {
            let reason = String(cString: strerror(errno))
            return PruneKitError(.io, "cannot \(action) '\(path)': \(reason)",
                                 hint: "check that the directory is writable and the disk is not full")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw failure("create a temporary file for") }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        var written = 0
        while written < bytes.count {
            let n = write(fd, bytes.baseAddress! + written, bytes.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                let e = failure("write")
                close(fd)
                throw e
            }
            written += n
        }
        guard fsync(fd) == 0 else { let e = failure("flush"); close(fd); throw e }
        guard close(fd) == 0 else { throw failure("close") }
        guard rename(temporary, path) == 0 else { throw failure("replace") }
        ok = true
        // Make the rename itself durable.
        let dirFD = open(directory, O_RDONLY)
        if dirFD >= 0 { _ = fsync(dirFD); close(dirFD) }
    }

    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        try bytes.withUnsafeBytes { try writeAtomically($0, to: path) }
    }
}
