import Foundation
import PruneKit
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Directories the harness creates for its outputs (the store's folder, the report folder),
// with the operating system's own reason when that fails (not Foundation's
// "NSCocoaErrorDomain Code=642"), and undone when the command that made them fails, so
// that a failed command leaves no empty folder behind.

/// Directory creation and the checks around it, for the store and the reports.
enum FileSystem {
    /// Creates `path` and any missing parents, like `mkdir -p`.
    ///
    /// - Parameter what: what the directory is for, for messages ("the result store").
    /// - Returns: the directories this call created, outermost first (empty when `path`
    ///   already was a directory): what ``removeCreated(_:)`` takes away after a failure.
    /// - Throws: `PruneKitError(.io)` with the system's reason (read-only file system,
    ///   permission denied, not a directory, no space left on device) and a hint.
    static func makeDirectories(_ path: String, for what: String, hint: String) throws -> [String] {
        if path.isEmpty { return [] }
        var missing: [String] = []
        var current = path
        var isDirectory: ObjCBool = false
        while !current.isEmpty && !FileManager.default.fileExists(atPath: current, isDirectory: &isDirectory) {
            missing.append(current)
            let parent = Self.parent(of: current)
            current = parent == current ? "" : parent
        }
        if missing.isEmpty && !isDirectory.boolValue {
            throw PruneKitError(.io, "could not use \(path) for \(what): it is a file, not a directory.", hint: hint)
        }
        var created: [String] = []
        for directory in missing.reversed() {
            if mkdir(directory, 0o777) == 0 {
                created.append(directory)
            } else if errno != EEXIST {          // EEXIST: another process made it meanwhile
                let reason = String(cString: strerror(errno))
                removeCreated(created)
                throw PruneKitError(.io, "could not create the directory \(directory) for \(what): \(reason).", hint: hint)
            }
        }
        return created
    }

    /// The directory part of `path`: `a/b` for `a/b/c` (trailing slashes ignored), `/` for
    /// `/a`, and `""` for a bare name. (Not `NSString.deletingLastPathComponent`: this
    /// toolchain's Foundation traps on a one-character relative path such as `w`.)
    static func parent(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "" }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// Removes directories that ``makeDirectories(_:for:hint:)`` created, innermost first,
    /// each only if it is empty (never anything that another process put there).
    static func removeCreated(_ directories: [String]) {
        for directory in directories.reversed() { rmdir(directory) }
    }

    /// Whether this process may create files in `directory`, as `access(2)` decides: false on
    /// a read-only file system (even for root), or without write permission.
    static func isWritableDirectory(_ directory: String) -> Bool {
        access(directory.isEmpty ? "." : directory, W_OK) == 0
    }

    /// Why `directory` is not writable (`strerror` of `access(2)`'s errno), or `nil` if it is.
    static func whyNotWritable(_ directory: String) -> String? {
        access(directory.isEmpty ? "." : directory, W_OK) == 0 ? nil : String(cString: strerror(errno))
    }

    /// The operating system's reason behind a Foundation file error ("No space left on
    /// device"), rather than its "Error Domain=NSCocoaErrorDomain Code=640" text.
    static func reason(_ error: Error) -> String {
        if let error = error as? PruneKitError { return error.message }
        var current: NSError? = error as NSError
        while let e = current {
            if e.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(e.code))) }
            current = e.userInfo[NSUnderlyingErrorKey] as? NSError
        }
        switch (error as NSError).code {
        case CocoaError.fileWriteOutOfSpace.rawValue: return String(cString: strerror(ENOSPC))
        case CocoaError.fileWriteVolumeReadOnly.rawValue: return String(cString: strerror(EROFS))
        case CocoaError.fileWriteNoPermission.rawValue, CocoaError.fileReadNoPermission.rawValue: return String(cString: strerror(EACCES))
        default: return error.localizedDescription
        }
    }
}
