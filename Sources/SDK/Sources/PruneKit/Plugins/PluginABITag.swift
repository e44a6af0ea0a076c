import Foundation
internal import PruneKitPluginABI

/// The ABI tag a plugin carries in its ELF section `.prunekit_abi` (put there by the
/// static product `PruneKitPluginABI`): the SDK version and the compiler it was built
/// with. The layout (256 bytes, little-endian) is in `prunekit_abi.h` and PLUGINS.md.
public struct PluginABITag: Sendable, Equatable, CustomStringConvertible {
    /// The section that holds the tag.
    public static let sectionName = ".prunekit_abi"
    /// The tag's first 8 bytes.
    public static let magic = Array("PKABITAG".utf8)
    /// The tag's size in bytes.
    public static let size = 256
    /// The layout version this SDK writes and reads.
    public static let currentFormat: UInt32 = 1

    public var format: UInt32
    public var sdkMajor: Int
    public var sdkMinor: Int
    /// `__clang_version__` of the clang in the toolchain that built the binary, which
    /// identifies the Swift toolchain: `21.0.0 (https://github.com/swiftlang/llvm-project.git 1167…)`.
    public var compiler: String

    public init(format: UInt32 = PluginABITag.currentFormat, sdkMajor: Int, sdkMinor: Int, compiler: String) {
        self.format = format; self.sdkMajor = sdkMajor; self.sdkMinor = sdkMinor; self.compiler = compiler
    }

    /// Decodes a tag from the bytes of a `.prunekit_abi` section.
    /// - Throws: ``PruneKitError`` `.plugin` if the bytes are not a tag of a known format.
    public init(bytes: [UInt8], file: String) throws {
        guard bytes.count >= 24, Array(bytes[0..<8]) == PluginABITag.magic else {
            throw PruneKitError(.plugin, "\(file): its \(PluginABITag.sectionName) section does not hold a PruneKit ABI tag (bad magic or size)",
                                hint: "rebuild the plugin against this SDK, depending on .product(name: \"PruneKitPluginABI\", package: \"PruneKit\")")
        }
        format = ELFSharedObject.le32(bytes, 8)
        guard format == PluginABITag.currentFormat, bytes.count >= PluginABITag.size else {
            throw PruneKitError(.plugin, "\(file): its ABI tag has format \(format) (\(bytes.count) bytes); this host reads format \(PluginABITag.currentFormat)",
                                hint: "rebuild the plugin against this host's SDK (\(SDKVersion.string))")
        }
        sdkMajor = Int(ELFSharedObject.le32(bytes, 12))
        sdkMinor = Int(ELFSharedObject.le32(bytes, 16))
        compiler = ELFSharedObject.cString(Array(bytes[24..<PluginABITag.size]), 0)
            ?? String(decoding: bytes[24..<PluginABITag.size], as: UTF8.self)
    }

    /// This process's own tag: the one compiled into libPruneKit.so.
    public static let host: PluginABITag = {
        let p = prunekit_abi_own_tag()!
        let bytes = [UInt8](UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: MemoryLayout<prunekit_abi_tag>.size))
        return (try? PluginABITag(bytes: bytes, file: "libPruneKit.so"))
            ?? PluginABITag(sdkMajor: SDKVersion.major, sdkMinor: SDKVersion.minor, compiler: "unknown")
    }()

    /// The SDK version the C header defines (`PRUNEKIT_SDK_MAJOR`, `PRUNEKIT_SDK_MINOR`),
    /// which must equal ``SDKVersion``.
    public static var headerSDKVersion: (major: Int, minor: Int) { (Int(PRUNEKIT_SDK_MAJOR), Int(PRUNEKIT_SDK_MINOR)) }

    /// `major.minor`.
    public var sdkVersion: String { "\(sdkMajor).\(sdkMinor)" }

    public var description: String { "SDK \(sdkVersion), compiler \(compiler)" }
}
