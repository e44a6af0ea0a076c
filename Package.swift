// swift-tools-version:6.0
// PruneKit: the command-line tool, the harness, the built-in plugins and the tests.
// The SDK itself is the nested package in Sources/PruneKit (see its Package.swift for why).
import PackageDescription

let package = Package(
    name: "PruneKitTools",
    products: [
        .executable(name: "prunekit", targets: ["PruneKitCLI"]),
    ],
    dependencies: [
        .package(path: "Sources/PruneKit"),
        .package(path: "Sources/PruneKitTesting"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .executableTarget(
            name: "PruneKitCLI",
            dependencies: [
                .product(name: "PruneKit", package: "PruneKit"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "PruneKitTests",
            dependencies: [
                .product(name: "PruneKit", package: "PruneKit"),
                .product(name: "PruneKitTesting", package: "PruneKitTesting"),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
