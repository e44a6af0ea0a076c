// swift-tools-version:6.2
// The PruneKit SDK: one shared library (libPruneKit.so) that the command-line tool,
// the harness and every plugin link against, so that a process holds exactly one
// copy of every SDK type. It lives in a package of its own because SwiftPM links a
// `.dynamic` product statically into targets of the same package.
import PackageDescription
import Foundation

let package = Package(
    name: "PruneKit",
    products: [
        .library(name: "PruneKit", type: .dynamic, targets: ["PruneKit"]),
        // Every plugin links this: it puts the ABI tag (SDK version, compiler) into
        // the plugin's ELF section `.prunekit_abi`, which the loader reads before dlopen.
        .library(name: "PruneKitPluginABI", type: .static, targets: ["PruneKitPluginABI"]),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "pkg-config"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev", "pkg-config"])]
        ),
        // libffi: calls C criteria whose signature a JSON manifest describes (Plugins/Foreign).
        .systemLibrary(
            name: "CFFI",
            pkgConfig: "libffi",
            providers: [.apt(["libffi-dev", "pkg-config"])]
        ),
        // libjpeg-turbo and libpng: decoding (and, for tests and benchmarks, writing) the
        // images of an image folder. The shim's functions catch libjpeg's errors in C.
        .systemLibrary(
            name: "CImageCodecs",
            pkgConfig: "libpng",
            providers: [.apt(["libjpeg62-turbo-dev", "libpng-dev", "pkg-config"])]
        ),
        // glibc's malloc tuning (mallopt), which the Glibc module does not export.
        .systemLibrary(name: "CSupport"),
        // The plugin ABI tag (see Plugins/PLUGINS.md). The SDK links it too, to know its own tag.
        .target(name: "PruneKitPluginABI"),
        .target(
            name: "PruneKit",
            dependencies: ["COpenBLAS", "CZlib", "CSupport", "CFFI", "CImageCodecs", "PruneKitPluginABI"],
            // Documentation kept beside the code it describes (the model file format, the
            // plugin ABI, the C criterion manifest).
            exclude: ["IO/FORMAT.md", "Plugins/PLUGINS.md", "Plugins/Foreign/MANIFEST.md"],
            // The bundled data set `mnist-5k` (two gzip'd IDX files; see its README.md).
            resources: [.copy("Resources/mnist-5k")],
            swiftSettings: [
                // Library evolution lets a plugin built against SDK 1.x keep working
                // when 1.(x+1) adds a protocol requirement with a default. SwiftPM accepts
                // these unsafe flags in a package that others depend on by version only
                // from tools version 6.2 on (hence this manifest's first line).
                .unsafeFlags(["-enable-library-evolution",
                              "-no-verify-emitted-module-interface"]),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)

// DocC (`.ci/docs`, or `PRUNEKIT_DOCC=1 swift package generate-documentation --target PruneKit`):
// swift-docc-plugin is added only when asked for, so the SDK that every plugin package
// depends on keeps no dependencies of its own to resolve.
if ProcessInfo.processInfo.environment["PRUNEKIT_DOCC"] != nil {
    package.dependencies.append(.package(url: "https://github.com/swiftlang/swift-docc-plugin", exact: "1.5.0"))
}
