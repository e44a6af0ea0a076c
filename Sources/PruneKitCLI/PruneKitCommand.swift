import ArgumentParser
import Foundation
import PruneKit

@main
struct PruneKitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prunekit",
        abstract: "Prune neural networks and compare pruning strategies fairly.",
        subcommands: [Train.self, Evaluate.self, Score.self, Bench.self, ListModels.self, ListDatasets.self,
                      ListPlugins.self, New.self, Prune.self, Inspect.self, Compare.self, Merge.self, ReportCommand.self,
                      TrialCommand.self]
    )
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
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List the model zoo.")

    func run() throws {
        for name in ModelZoo.names {
            let m = try ModelZoo.make(name, inputShape: [1, 28, 28], classCount: 10, seed: 0)
            print(name.padding(toLength: 16, withPad: " ", startingAt: 0),
                  String(format: "%10d parameters  %8.2f MMACs on 1×28×28", m.parameterCount, Double(m.macs) / 1e6))
        }
    }
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
