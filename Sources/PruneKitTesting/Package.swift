// swift-tools-version:6.0
// PruneKitTesting: test support for plugin authors (the criterion conformance checker).
//
// It is a package of its own, beside the SDK, for the same reason the SDK is: a target
// can reach another target of its *own* package only as a target dependency, and
// SwiftPM links target dependencies statically. Were PruneKitTesting a target of the
// SDK package, every test binary using it would carry a second, static copy of the
// SDK next to libPruneKit.so (two `Registry.shared`, failing `as?` casts across the
// plugin boundary). Depending on the SDK's `.dynamic` *product* from another package
// links libPruneKit.so instead. `SDKLinkageTests` in the root package checks this.
import PackageDescription

let package = Package(
    name: "PruneKitTesting",
    products: [
        .library(name: "PruneKitTesting", targets: ["PruneKitTesting"]),
    ],
    dependencies: [
        .package(path: "../SDK"),
    ],
    targets: [
        .target(
            name: "PruneKitTesting",
            dependencies: [.product(name: "PruneKit", package: "SDK")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
