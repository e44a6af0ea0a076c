// swift-tools-version:6.0
// PruneKitONNX: reads ONNX models into PruneKit `Model`s and writes them back as ONNX.
//
// A package of its own, beside the SDK, for two reasons:
// - the SDK package keeps no dependencies (every plugin package resolves it), and this
//   layer needs SwiftProtobuf's runtime;
// - a target reaches a target of its *own* package only as a static dependency, so were
//   this a target of the SDK package, everything linking it would carry a second copy of
//   the SDK beside libPruneKit.so (see PruneKitTesting's Package.swift). Depending on the
//   SDK's `.dynamic` product from another package links libPruneKit.so instead.
import PackageDescription

let package = Package(
    name: "PruneKitONNX",
    products: [
        .library(name: "PruneKitONNX", targets: ["PruneKitONNX"]),
    ],
    dependencies: [
        .package(path: "../PruneKit"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .target(
            name: "PruneKitONNX",
            dependencies: [
                .product(name: "PruneKit", package: "PruneKit"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            // The script that regenerates Generated/onnx.pb.swift from the official onnx.proto.
            exclude: ["Generated/regenerate.sh"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
