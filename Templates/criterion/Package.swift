// swift-tools-version:6.0
// __NAME__: a PruneKit criterion plugin (`__ID__`), built as a shared library that
// `prunekit … --plugin .build/release/lib__NAME__.so` loads.
//
// It links the SDK's shared library libPruneKit.so (the `.dynamic` product `PruneKit`),
// never a copy of it, so the host and the plugin share one set of SDK types.
import PackageDescription

let package = Package(
    name: "__NAME__",
    products: [
        .library(name: "__NAME__", type: .dynamic, targets: ["__NAME__Plugin"]),
    ],
    dependencies: [
        // The PruneKit SDK (with its conformance checker), by URL and version: a plugin
        // built against 1.x loads into any prunekit with SDK 1.y, y ≥ x.
        __SDK_DEPENDENCY__,
    ],
    targets: [
        .target(
            name: "__NAME__Plugin",
            dependencies: [
                .product(name: "PruneKit", package: "__SDK_PACKAGE__"),
                // The ABI tag the loader checks before it maps the library (SDK version, compiler).
                .product(name: "PruneKitPluginABI", package: "__SDK_PACKAGE__"),
            ]
        ),
        .testTarget(
            name: "__NAME__Tests",
            dependencies: [
                "__NAME__Plugin",
                .product(name: "PruneKit", package: "__SDK_PACKAGE__"),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
