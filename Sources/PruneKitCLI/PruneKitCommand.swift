import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness

@main
struct PruneKitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prunekit",
        abstract: "Prune neural networks and compare pruning strategies fairly.",
        version: versionText(),
        subcommands: [Train.self, Evaluate.self, Score.self, Bench.self, ListModels.self, ListDatasets.self,
                      ListPlugins.self, New.self, Prune.self, Inspect.self, Import.self, Export.self, Compare.self, Merge.self, ReportCommand.self,
                      TrialCommand.self]
    )
}

/// What `prunekit --version` prints: the tool, the SDK it runs on (the libPruneKit.so that
/// plugins link) and the plugin ABI (tag format and the compiler a plugin must match).
func versionText() -> String {
    let abi = PluginABITag.host
    return "prunekit \(SDKVersion.string) · SDK \(abi.sdkVersion) · plugin ABI format \(abi.format), compiler clang \(abi.compiler)"
}

/// Options every command that computes shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "Threads for PruneKit's kernels and matrix products (default: all cores).")
    var threads: Int?

    func apply() throws {
        if let threads {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
            Parallel.setThreadCount(threads)
        }
    }
}

/// Runs `body`, printing a PruneKitError as a message with its hint and exiting non-zero.
/// A command's `validate()` runs its checks through this too, so a bad option is reported
/// the same way, at parse time, before anything runs.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as PruneKitError {
        FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
        if let hint = error.hint { FileHandle.standardError.write(Data("hint: \(hint)\n".utf8)) }
        throw ExitCode(error.kind == .invalidArgument ? 64 : 1)
    }
}

struct ListModels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "List the model zoo: parameters and MACs on the data each model is built for.")

    @Option(help: "Count every model on this data set's input shape and classes instead (e.g. cifar-10).") var dataset: String?

    /// The data set each zoo model is meant for: the LeNets and vgg-small for MNIST, the
    /// CIFAR VGGs and ResNets for CIFAR-10.
    static func usualDataset(of name: String) -> String {
        ["lenet-300-100", "lenet-5", "vgg-small"].contains(name) ? "mnist" : "cifar-10"
    }

    func run() throws {
        try reportingErrors {
            print("model".padding(toLength: 16, withPad: " ", startingAt: 0) + "data".padding(toLength: 11, withPad: " ", startingAt: 0)
                  + "input".padding(toLength: 9, withPad: " ", startingAt: 0) + "parameters".leftPadded(12) + "MACs".leftPadded(16))
            for name in ModelZoo.names {
                let data = dataset ?? Self.usualDataset(of: name)
                let (shape, classes) = try Inspect.inputShape(of: data)
                let m = try ModelZoo.make(name, inputShape: shape, classCount: classes, seed: 0)
                print(name.padding(toLength: 16, withPad: " ", startingAt: 0) + data.padding(toLength: 11, withPad: " ", startingAt: 0)
                      + shape.map(String.init).joined(separator: "×").padding(toLength: 9, withPad: " ", startingAt: 0)
                      + Units.count(m.parameterCount).leftPadded(12) + Units.macs(m.macs).leftPadded(16))
            }
            print("MACs: multiply–accumulates of conv and linear layers for one example; FLOPs = 2 × MACs.")
        }
    }
}

extension String {
    /// Right-aligned in `width` columns (as is, when longer).
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

struct ListDatasets: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "datasets", abstract: "List the data sets PruneKit reads.")

    func run() throws {
        print("mnist-5k        bundled: 4,000 training and 1,000 test images from MNIST (no download)")
        print("mnist           IDX files in --data-dir (train-images-idx3-ubyte[.gz], …)")
        print("fashion-mnist   IDX files in --data-dir")
        print("cifar-10        binary batches in --data-dir (cifar-10-batches-bin/)")
        print("cifar-100       binary files in --data-dir (cifar-100-binary/)")
    }
}
