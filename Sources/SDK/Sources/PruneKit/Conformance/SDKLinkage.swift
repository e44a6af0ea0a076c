import Foundation

/// Which copy of the SDK this process uses, for checking that a test binary or plugin
/// links the one shared libPruneKit.so rather than a static copy of its own (a static
/// copy brings a second ``Registry``, and `as?` casts across the plugin boundary fail).
public enum SDKLinkage {
    /// The path of the mapped file (shared library or executable) that holds the SDK's
    /// ``Registry`` class metadata; it ends in `libPruneKit.so` when the SDK is linked as
    /// it should be. Nil where it cannot be told (no `/proc/self/maps`, or metadata not in a file mapping).
    public static var sdkImagePath: String? { imagePath(of: Registry.self) }

    /// The path of the mapped file that holds `type`'s metadata (from `/proc/self/maps`).
    public static func imagePath(of type: AnyClass) -> String? {
        imagePath(containing: UInt(bitPattern: unsafeBitCast(type, to: UnsafeRawPointer.self)))
    }

    /// The path of the mapped file whose mapping contains `address`.
    public static func imagePath(containing address: UInt) -> String? {
        // Read with stdio: /proc files report size 0, and whole-file readers may stop early.
        guard let file = fopen("/proc/self/maps", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            let line = String(cString: buffer)
            // start-end perms offset dev inode path
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, let dash = fields[0].firstIndex(of: "-"),
                  let start = UInt(fields[0][..<dash], radix: 16),
                  let end = UInt(fields[0][fields[0].index(after: dash)...], radix: 16) else { continue }
            if address >= start && address < end {
                return String(fields[5]).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return nil
    }
}
