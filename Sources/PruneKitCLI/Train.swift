import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness

/// Where a data set comes from, shared by the commands that read one.
struct DataOptions: ParsableArguments {
    @Option(help: "Data set: mnist-5k (bundled), mnist, fashion-mnist, cifar-10, cifar-100, or your own: an .npz file, a folder of .npy files, an image folder (ROOT/train/<class>/…).")
    var dataset: String = DatasetCatalog.defaultName

    @Option(help: "Folder holding the data set's files (not needed for mnist-5k).")
    var dataDir: String?

    @OptionGroup var source: DataSourceFlags

    /// The splits, with any warnings printed.
    func load(validation: Int = 0, seed: UInt64 = 0) throws -> DataSplits {
        let splits = try DatasetCatalog.load(dataset, directory: dataDir, validationCount: validation, seed: seed,
                                             options: try source.options())
        printWarnings(splits)
        return splits
    }
}

/// What `prunekit train` writes beside the model: how it was trained and how it did.
struct TrainingLog: Codable {
    var model: String
    var dataset: String
    var seed: UInt64
    var settings: [String: String]
    var epochs: [EpochRecord]
    var testTop1: Double
    var testTop5: Double
    var testLoss: Float
    var seconds: Double
    /// How your own data was read (absent for the built-in data sets and older logs):
    /// `eval` reads the data the same way unless told otherwise.
    var dataOptions: DataSourceOptions?

    static let fileName = "training.json"
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a zoo model (or go on training a saved one) and save it.",
        discussion: "Example: prunekit train --model lenet-5 --dataset mnist-5k --epochs 10 --seed 0 --out runs/lenet5")

    @Option(help: "Model: \(ModelZoo.names.joined(separator: ", ")), or a saved model folder (trained further from its weights).")
    var model: String = "lenet-5"
    @OptionGroup var data: DataOptions
    @Option(help: "Epochs.") var epochs: Int = 10
    @Option(help: "Examples per batch.") var batchSize: Int = 64
    @Option(help: "Optimiser.") var optimizer: OptimizerName = .sgd
    @Option(help: "Initial learning rate.") var learningRate: Float = 0.05
    @Option(name: .customLong("lr"), help: .hidden) var lrAlias: Float?
    @Option(help: "SGD momentum, in [0, 1).") var momentum: Float = 0.9
    @Flag(help: "Nesterov momentum (SGD).") var nesterov = false
    @Option(help: "L2 weight decay.") var weightDecay: Float = 5e-4
    @Option(help: "How the learning rate decays (not to be confused with a pruning --schedule).") var lrSchedule: DecayName = .cosine
    @Option(name: .customLong("schedule"), help: .hidden) var lrScheduleAlias: DecayName?
    @Option(help: "For --lr-schedule step: epochs between decays.") var stepEvery: Int = 30
    @Option(help: "For --lr-schedule step: the decay factor, in (0, 1].") var gamma: Float = 0.1
    @Option(help: "Epochs of linear learning-rate warm-up.") var warmupEpochs: Double = 0
    @Option(name: .customLong("warmup"), help: .hidden) var warmupAlias: Double?
    @Flag(help: "Random crop and horizontal flip: padded crops for fixed-size images (CIFAR), random resized crops for an image folder.") var augment = false
    @Option(help: "Training images held out for validation (reported each epoch; never the test split).")
    var validation: Int = defaultValidationImages
    @Option(help: "Seed for the initial weights, data order and augmentation.") var seed: UInt64 = 0
    @Option(help: "Folder to save the trained model in (default: runs/MODEL-DATASET-sSEED).") var out: String?
    @OptionGroup var engine: EngineOptions

    /// Every option checked at parse time: numbers finite and in range, names known.
    func validate() throws {
        try reportingErrors {
            _ = try configuration()
            guard validation >= 0 else { throw PruneKitError(.invalidArgument, "--validation must be 0 or more, got \(validation)") }
        }
    }

    /// The training run the options describe, checked (``TrainingConfiguration/validate()``).
    private func configuration() throws -> TrainingConfiguration {
        var config = TrainingConfiguration()
        config.epochs = epochs; config.batchSize = batchSize
        config.learningRate = lrAlias ?? learningRate; config.weightDecay = weightDecay
        config.warmupEpochs = warmupAlias ?? warmupEpochs; config.seed = seed
        config.augmentation = augment ? .cifar : .none
        switch optimizer {
        case .sgd: config.optimizer = .sgd(momentum: momentum, nesterov: nesterov)
        case .adam: config.optimizer = .adam()
        }
        switch lrScheduleAlias ?? lrSchedule {
        case .cosine: config.decay = .cosine(minimum: 0)
        case .step: config.decay = .step(every: stepEvery, gamma: gamma)
        case .constant: config.decay = .constant
        }
        try config.validate()
        return config
    }

    func run() throws {
        try reportingErrors {
            try engine.apply()
            var config = try configuration()
            let splits = try data.load(validation: validation, seed: seed)
            if augment { config.augmentation = .standard(for: splits.train) }
            // A saved model or an ONNX file continues from its weights; a zoo name starts afresh.
            let source = try ModelSource.load(model) { (splits.train.imageShape, splits.train.classCount, seed) }
            let net = source.model
            let isSaved = source.origin != .zoo
            try net.checkFits(splits.train)
            let modelName = isSaved ? URL(fileURLWithPath: model).lastPathComponent : model
            let outDir = out ?? "runs/\(modelName)-\(splits.train.name.replacingOccurrences(of: "/", with: "-"))-s\(seed)"
            print("training \(modelName) (\(Units.count(net.parameterCount)) parameters) on \(splits.train.name): "
                  + "\(splits.train.count) training, \(splits.validation?.count ?? 0) validation, \(splits.test.count) test images")
            let display = ProgressDisplay()
            let start = Date()
            let records = try net.fit(splits.train, validation: splits.validation, configuration: config,
                                      progress: display.update,
                                      epochEnded: { display.epochEnded($0, epochs: epochs) })
            let seconds = Date().timeIntervalSince(start)
            let test = try net.evaluate(splits.test).requiringFiniteOutputs("the trained \(model) on \(splits.test.name)'s test split")
            print("test accuracy: top-1 \(percent(test.top1)), top-5 \(percent(test.top5)), loss "
                  + String(format: "%.4f", test.loss) + " on \(test.count) images; trained in "
                  + String(format: "%.1f s", seconds))
            try net.save(to: outDir, metadata: ["dataset": splits.train.name, "seed": "\(seed)"])
            let log = TrainingLog(
                model: model, dataset: data.dataset, seed: seed,
                settings: ["epochs": "\(epochs)", "batch_size": "\(batchSize)", "optimizer": optimizer.rawValue,
                           "learning_rate": "\(config.learningRate)", "momentum": "\(momentum)", "nesterov": "\(nesterov)",
                           "weight_decay": "\(weightDecay)", "lr_schedule": (lrScheduleAlias ?? lrSchedule).rawValue,
                           "warmup_epochs": "\(config.warmupEpochs)",
                           "augment": "\(augment)", "validation": "\(validation)", "threads": "\(Parallel.threadCount)"],
                epochs: records, testTop1: test.top1, testTop5: test.top5, testLoss: test.loss, seconds: seconds,
                dataOptions: DatasetCatalog.isPath(data.dataset) ? try data.source.options() : nil)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(log).write(to: URL(fileURLWithPath: outDir).appendingPathComponent(TrainingLog.fileName))
            print("saved to \(outDir)")
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Evaluate a saved model on a data set's test split.")

    @Option(help: "Folder of a saved model (written by prunekit train), or an ONNX file.") var model: String
    @Option(help: "Data set (default: the one the model was trained on, else mnist-5k), or your own: an .npz file, a folder of .npy files, an image folder.") var dataset: String?
    @Option(help: "Folder holding the data set's files (not needed for mnist-5k).") var dataDir: String?
    @OptionGroup var source: DataSourceFlags
    @OptionGroup var engine: EngineOptions

    func run() throws {
        try reportingErrors {
            try engine.apply()
            let net = try ModelSource.load(model, zoo: nil).model
            let logURL = URL(fileURLWithPath: model).appendingPathComponent(TrainingLog.fileName)
            let log = (try? Data(contentsOf: logURL)).flatMap { try? JSONDecoder().decode(TrainingLog.self, from: $0) }
            let name = dataset ?? log?.dataset ?? DatasetCatalog.defaultName
            // Your own data is read as the model was trained on it, unless options say otherwise.
            let base = (dataset == nil || dataset == log?.dataset) ? log?.dataOptions ?? DataSourceOptions() : DataSourceOptions()
            let splits = try DatasetCatalog.load(name, directory: dataDir, options: try source.options(over: base))
            printWarnings(splits)
            try net.checkFits(splits.test)
            let e = try net.evaluate(splits.test).requiringFiniteOutputs("the model in \(model) on \(splits.test.name)'s test split")
            print("\(net.architecture) on \(splits.test.name): top-1 \(percent(e.top1)), top-5 \(percent(e.top5)), "
                  + String(format: "loss %.4f", e.loss) + " (\(e.count) images)")
        }
    }
}
