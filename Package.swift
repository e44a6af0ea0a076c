// swift-tools-version:6.0
// PruneKit: the command-line tool, the harness, the built-in plugins and the tests.
// The SDK is a package of its own, in Sources/SDK (see its Package.swift for why).
import PackageDescription

/// What every plugin target depends on: the shared SDK (never a copy of it) and the ABI
/// tag that the loader checks before dlopen (see Sources/SDK/Sources/PruneKit/Plugins/PLUGINS.md).
let pluginDependencies: [Target.Dependency] = [
    .product(name: "PruneKit", package: "SDK"),
    .product(name: "PruneKitPluginABI", package: "SDK"),
]

/// A plugin: a module in `directory`, built as its own shared library lib<name>.so.
func plugin(_ name: String, path: String) -> (Product, Target) {
    (.library(name: name, type: .dynamic, targets: [name]),
     .target(name: name, dependencies: pluginDependencies, path: path))
}

/// Built-in plugins: loaded at run time from the executable's directory; the CLI has no
/// compile-time dependency on any of them.
let plugins = [
    plugin("PruneKitMagnitude", path: "Plugins/Criteria/Magnitude"),
    plugin("PruneKitGradientMagnitude", path: "Plugins/Criteria/GradientMagnitude"),
    plugin("PruneKitL1Filter", path: "Plugins/Criteria/L1Filter"),
    plugin("PruneKitRandom", path: "Plugins/Criteria/Random"),
    plugin("PruneKitThiNet", path: "Plugins/Criteria/ThiNet"),
    plugin("PruneKitSlimming", path: "Plugins/Criteria/Slimming"),
    plugin("PruneKitAPoZ", path: "Plugins/Criteria/APoZ"),
    plugin("PruneKitTaylor", path: "Plugins/Criteria/Taylor"),
    plugin("PruneKitFPGM", path: "Plugins/Criteria/FPGM"),
    plugin("PruneKitLAMP", path: "Plugins/Criteria/LAMP"),
    plugin("PruneKitSNIP", path: "Plugins/Criteria/SNIP"),
    plugin("PruneKitHRank", path: "Plugins/Criteria/HRank"),
    plugin("PruneKitSynFlow", path: "Plugins/Criteria/SynFlow"),
    plugin("PruneKitOBD", path: "Plugins/Criteria/OBD"),
    plugin("PruneKitGraSP", path: "Plugins/Criteria/GraSP"),
    plugin("PruneKitSchedules", path: "Plugins/Schedules"),
    plugin("PruneKitFinetuning", path: "Plugins/Finetuning"),
]

/// Test fixture plugins (libPruneKitFixture*.so): directory scans skip them; the tests
/// load them by file (`--plugin FILE`).
let fixtures = [
    plugin("PruneKitFixtureThrowing", path: "Tests/Fixtures/Plugins/Throwing"),
    plugin("PruneKitFixtureDuplicate", path: "Tests/Fixtures/Plugins/Duplicate"),
    plugin("PruneKitFixtureSharedSDK", path: "Tests/Fixtures/Plugins/SharedSDK"),
    plugin("PruneKitFixtureCrashing", path: "Tests/Fixtures/Plugins/Crashing"),
]

let package = Package(
    name: "PruneKitTools",
    products: [
        .executable(name: "prunekit", targets: ["PruneKitCLI"]),
    ] + plugins.map(\.0) + fixtures.map(\.0),
    dependencies: [
        .package(path: "Sources/SDK"),
        // ONNX import and export (PruneKitONNX) read and write protobuf.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .executableTarget(
            name: "PruneKitCLI",
            dependencies: [
                "PruneKitHarness",
                .product(name: "PruneKit", package: "SDK"),
                "PruneKitONNX",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // ONNX import and export: ONNX graphs to PruneKit models and back. The protobuf
        // types (Generated/onnx.pb.swift, from the official onnx.proto) stay internal.
        .target(
            name: "PruneKitONNX",
            dependencies: [
                .product(name: "PruneKit", package: "SDK"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            // The script that regenerates Generated/onnx.pb.swift.
            exclude: ["Generated/regenerate.sh"]
        ),
        // The harness: experiments, trials in child processes, the result store, statistics
        // and reports. The CLI's `compare`, `merge` and `report` are thin layers over it.
        .target(
            name: "PruneKitHarness",
            dependencies: [
                .product(name: "PruneKit", package: "SDK"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Yams", package: "Yams"),
            ],
            // README's screenshots of a report (PNG), kept beside the code that draws it.
            exclude: ["Reports/Screenshots"]
        ),
        .testTarget(
            name: "PruneKitHarnessTests",
            dependencies: ["PruneKitHarness", .product(name: "PruneKit", package: "SDK"),
                           .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "PruneKitTests",
            dependencies: [
                .product(name: "PruneKit", package: "SDK"),
                "PruneKitONNX",
            ]
        ),
    ] + plugins.map(\.1) + fixtures.map(\.1),
    swiftLanguageModes: [.v5]
)
