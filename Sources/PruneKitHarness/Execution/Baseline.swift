import Foundation
import PruneKit

// Baselines: the one trained checkpoint every criterion of a (model, data, seed) starts
// from. Trained once per configuration and cached on disk by its hash:
//
//   CACHE/HASH/model/                 the trained model (model.json, model.safetensors)
//   CACHE/HASH/checkpoints/epoch-K.safetensors   weights after K epochs (rewinding)
//   CACHE/HASH/baseline.json          accuracies, training time, epoch records
//   CACHE/HASH/oracle-KEY.json        oracle loss increases (see Oracle.swift)
//   CACHE/HASH/oracle-KEY.lock        flock(2) lock: one trial computes the oracle, the others wait
//   CACHE/HASH.lock                   flock(2) lock: one process trains, the others wait
//
// An entry is built in a temporary directory and renamed into place, so a crash while
// training leaves no half-written entry (only a hidden `.HASH.tmp-…` folder).

/// A baseline checkpoint on disk, ready for trials.
public struct BaselineArtifact: Codable, Equatable, Sendable {
    /// The cache entry (`CACHE/HASH`): oracle values are cached here too.
    public var entryDirectory: String
    /// The saved model (a directory `Model.load(from:)` reads).
    public var directory: String
    /// `BaselineConfiguration.hash` of the configuration it was made from.
    public var hash: String
    /// Accuracy on the test split, and on the validation split (held out from training).
    public var testAccuracy: Accuracy
    public var validationAccuracy: Accuracy?
    /// Seconds the training took (0 for a saved model that was imported).
    public var seconds: Double
    /// Whether this call trained it (false: found in the cache).
    public var trainedNow: Bool
    /// The epochs whose weights were kept (see ``BaselineConfiguration/checkpointEpochs``).
    public var checkpointEpochs: [Int]
    /// The training run's per-epoch figures (empty for an imported model).
    public var epochs: [EpochRecord]

    /// The weights kept after `epoch` epochs of training.
    public func checkpointPath(epoch: Int) -> String { "\(entryDirectory)/checkpoints/epoch-\(epoch).safetensors" }

    /// Loads the kept checkpoints of `epochs`, by epoch.
    /// - Throws: ``PruneKitError`` `.invalidArgument` naming an epoch that was not kept.
    public func loadCheckpoints(_ epochs: Set<Int>) throws -> [Int: [String: Tensor]] {
        var out: [Int: [String: Tensor]] = [:]
        for k in epochs.sorted() {
            guard checkpointEpochs.contains(k) else {
                throw PruneKitError(.invalidArgument, "the baseline keeps no checkpoint of epoch \(k) (kept: \(checkpointEpochs.isEmpty ? "none" : checkpointEpochs.map(String.init).joined(separator: ", ")))",
                                    hint: "set the baseline's checkpointEpochs to include \(k) (what the finetuning strategy's checkpointEpochs asks for)")
            }
            out[k] = try SafeTensors.read(checkpointPath(epoch: k)).tensors
        }
        return out
    }
}

extension BaselineConfiguration {
    /// Whether `model` names a saved model directory rather than a zoo model.
    public var isSavedModel: Bool { !ModelZoo.names.contains(model) }

    /// The training settings of the baseline, which finetuning strategies replay
    /// (`FinetuneContext.training`): SGD with momentum 0.9, cosine decay, weight decay
    /// 5·10⁻⁴, and this configuration's epochs, batch size, learning rate and seed (the
    /// seed also fixes the data order of every later training run: a paired design).
    public var trainingConfiguration: TrainingConfiguration {
        var c = TrainingConfiguration()
        c.epochs = epochs; c.batchSize = batchSize; c.learningRate = Float(learningRate); c.seed = seed
        let cifar = dataset.lowercased().hasPrefix("cifar")
        let folder = DatasetCatalog.isPath(dataset) && ImageFolder.isImageFolder(dataset)
        c.augmentation = (augment ?? (cifar || folder)) ? (folder ? .imageNet : .cifar) : .none
        return c
    }

    /// The data of this baseline: the training split without the validation images (and
    /// cut to `trainingImages`), the validation split carved from the training data with
    /// the baseline's seed, and the test split. Trials use exactly these.
    public func loadData() throws -> DataSplits {
        var splits = try DatasetCatalog.load(dataset, directory: dataDirectory, validationCount: validationCount, seed: seed,
                                             options: dataOptions ?? DataSourceOptions())
        if let n = trainingImages {
            guard n >= 1 else {
                throw PruneKitError(.invalidArgument, "trainingImages must be at least 1, got \(n)", hint: "leave it unset to use every training image")
            }
            if n < splits.train.count { splits.train = splits.train.subset(Array(0..<n), name: splits.train.name) }
        }
        return splits
    }
}

/// Trains, caches and finds baselines.
public enum BaselineCache {
    /// The baseline of `b`, trained now unless the cache already holds it.
    ///
    /// A zoo model is initialised with the baseline's seed and trained with
    /// ``BaselineConfiguration/trainingConfiguration`` on ``BaselineConfiguration/loadData()``'s
    /// training split (never the test split), keeping the checkpoints of
    /// `b.checkpointEpochs`. A saved model (`b.model` is a directory) is imported as it is:
    /// nothing is trained; the entry is rebuilt if the model's files change.
    ///
    /// Safe when several processes ask at once: one trains under a `flock(2)` lock on
    /// `CACHE/HASH.lock`, the others wait and then read its entry. The entry is written to a
    /// temporary directory and renamed into place.
    /// - Parameters:
    ///   - cacheDirectory: where entries live (created if needed).
    ///   - log: hears a line per training epoch and when training starts.
    /// - Throws: ``PruneKitError``: unknown model or data set, a NaN loss while training,
    ///   a model that doesn't load, an unwritable cache.
    /// Cost: the baseline's training, once per configuration; a few file reads otherwise.
    public static func ensure(_ b: BaselineConfiguration, cacheDirectory: String,
                              log: ((String) -> Void)? = nil) throws -> BaselineArtifact {
        let cache = URL(fileURLWithPath: cacheDirectory).standardizedFileURL.path
        try makeDirectory(cache)
        let hash = b.hash
        let entry = "\(cache)/\(hash)"
        let lock = try FileLock(path: "\(cache)/\(hash).lock")
        defer { lock.unlock() }
        let fingerprint = try b.isSavedModel ? savedModelFingerprint(b.model) : nil
        if let found = try? read(entry), found.fingerprint == fingerprint { return found.artifact }

        // Only the lock holder writes `.HASH.tmp-…`: any found now was left by a killed trainer.
        for stale in (try? FileManager.default.contentsOfDirectory(atPath: cache))?.filter({ $0.hasPrefix(".\(hash).tmp-") }) ?? [] {
            try? FileManager.default.removeItem(atPath: "\(cache)/\(stale)")
        }
        let temporary = "\(cache)/.\(hash).tmp-\(getpid())-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        try makeDirectory(temporary)
        let splits = try b.loadData()
        let model: Model
        var records: [EpochRecord] = [], kept: [Int] = [], seconds = 0.0
        if b.isSavedModel {
            model = try Model.load(from: b.model)
            try model.checkFits(splits.train)
        } else {
            model = try ModelZoo.make(b.model, inputShape: splits.train.imageShape, classCount: splits.train.classCount, seed: b.seed)
            let c = b.trainingConfiguration
            let wanted = Set(b.checkpointEpochs ?? [])
            if let bad = wanted.first(where: { $0 < 0 || $0 > c.epochs }) {
                throw PruneKitError(.invalidArgument, "checkpoint epoch \(bad) is outside 0...\(c.epochs) (the baseline's epochs)")
            }
            log?("training baseline \(b.model) on \(splits.train.name) (\(splits.train.count) images, \(c.epochs) epochs, seed \(b.seed))")
            let start = Date()
            let run = try model.fit(splits.train, validation: splits.validation, configuration: c, checkpointEpochs: wanted,
                                    epochEnded: { r in log?(String(format: "baseline epoch %d/%d  loss %.4f  acc %.2f%%", r.epoch + 1, c.epochs, r.trainLoss, r.trainAccuracy * 100)) })
            seconds = Date().timeIntervalSince(start)
            records = run.records
            try makeDirectory("\(temporary)/checkpoints")
            for (k, weights) in run.checkpoints.sorted(by: { $0.key < $1.key }) {
                try SafeTensors.write(weights.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) },
                                      to: "\(temporary)/checkpoints/epoch-\(k).safetensors")
                kept.append(k)
            }
        }
        try model.save(to: "\(temporary)/model", metadata: ["baseline": hash])
        let record = EntryFile(hash: hash, configuration: b, fingerprint: fingerprint,
                               testAccuracy: try accuracy(model.evaluate(splits.test), classes: splits.test.classCount,
                                                          of: "the baseline on the test split"),
                               validationAccuracy: try splits.validation.map {
                                   try accuracy(model.evaluate($0), classes: $0.classCount, of: "the baseline on the validation split")
                               },
                               seconds: seconds, checkpointEpochs: kept, epochs: records)
        guard record.testAccuracy.loss?.isFinite ?? true else {
            throw PruneKitError(.numerical, "the baseline's test loss is \(record.testAccuracy.loss ?? .nan)", hint: "lower the learning rate")
        }
        try writeJSON(record, to: "\(temporary)/baseline.json")
        if FileManager.default.fileExists(atPath: entry) { try FileManager.default.removeItem(atPath: entry) }
        guard rename(temporary, entry) == 0 else {
            throw PruneKitError(.io, "could not move the trained baseline into \(entry): \(String(cString: strerror(errno)))")
        }
        var artifact = try read(entry).artifact
        artifact.trainedNow = true
        return artifact
    }

    /// The baseline of `b` if the cache holds it, read without locking or training
    /// (`nil` otherwise): for figures about it, such as its seconds per epoch.
    public static func cached(_ b: BaselineConfiguration, cacheDirectory: String) -> BaselineArtifact? {
        let cache = URL(fileURLWithPath: cacheDirectory).standardizedFileURL.path
        return try? read("\(cache)/\(b.hash)").artifact
    }

    /// What `baseline.json` holds.
    struct EntryFile: Codable {
        var hash: String
        var configuration: BaselineConfiguration
        /// A saved model's files (size and modification time), to notice a change.
        var fingerprint: String?
        var testAccuracy: Accuracy
        var validationAccuracy: Accuracy?
        var seconds: Double
        var checkpointEpochs: [Int]
        var epochs: [EpochRecord]
    }

    private static func read(_ entry: String) throws -> (artifact: BaselineArtifact, fingerprint: String?) {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(entry)/baseline.json"))
        let f = try JSONDecoder().decode(EntryFile.self, from: data)
        guard FileManager.default.fileExists(atPath: "\(entry)/model/\(Model.architectureFileName)") else {
            throw PruneKitError(.invalidFile, "the baseline entry \(entry) has no model")
        }
        return (BaselineArtifact(entryDirectory: entry, directory: "\(entry)/model", hash: f.hash, testAccuracy: f.testAccuracy,
                                 validationAccuracy: f.validationAccuracy, seconds: f.seconds, trainedNow: false,
                                 checkpointEpochs: f.checkpointEpochs, epochs: f.epochs), f.fingerprint)
    }

    private static func savedModelFingerprint(_ directory: String) throws -> String {
        var parts: [String] = []
        for name in [Model.architectureFileName, Model.weightsFileName, Model.masksFileName] {
            let path = "\(directory)/\(name)"
            guard let a = try? FileManager.default.attributesOfItem(atPath: path) else {
                if name == Model.masksFileName { continue }
                throw PruneKitError(.invalidFile, "'\(directory)' is neither a zoo model nor a saved model directory (no \(name))",
                                    hint: "zoo models: \(ModelZoo.names.joined(separator: ", ")); or give a directory written by `prunekit train`")
            }
            let size = (a[.size] as? NSNumber)?.intValue ?? -1
            let time = (a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            parts.append("\(name):\(size):\(time)")
        }
        return parts.joined(separator: ",")
    }
}

/// An ``Accuracy`` from an evaluation: top-5 only where there are more than 5 classes.
/// - Throws: ``PruneKitError`` `.numerical` when some outputs were NaN or infinite
///   (``Evaluation/requiringFiniteOutputs(_:)``): such a model has no accuracy to record.
func accuracy(_ e: Evaluation, classes: Int, of what: String) throws -> Accuracy {
    let e = try e.requiringFiniteOutputs(what)
    return Accuracy(top1: e.top1, top5: classes > 5 ? e.top5 : nil, loss: Double(e.loss))
}

/// Writes `value` as pretty JSON with sorted keys, atomically (temporary file, rename).
func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    do {
        try encoder.encode(value).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw PruneKitError(.io, "could not write \(path): \(error.localizedDescription)")
    }
}

/// Creates a directory and its parents, if missing.
func makeDirectory(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw PruneKitError(.io, "could not create the directory \(path): \(error.localizedDescription)")
    }
}

/// Reads JSON written by ``writeJSON(_:to:)``.
func readJSON<T: Decodable>(_ type: T.Type, from path: String, what: String) throws -> T {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw PruneKitError(.invalidFile, "no \(what) at \(path)")
    }
    return try decodeJSON(type, data, what: "\(what) (\(path))")
}

/// Decodes JSON written by ``writeJSON(_:to:)``.
func decodeJSON<T: Decodable>(_ type: T.Type, _ data: Data, what: String) throws -> T {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    do { return try decoder.decode(T.self, from: data) } catch {
        throw PruneKitError(.invalidFile, "not a valid \(what): \(error)")
    }
}

/// An exclusive `flock(2)` lock on a file, held until ``unlock()`` (or the process ends:
/// the kernel drops it, so a killed trainer never leaves the cache locked).
final class FileLock {
    private var fd: Int32

    init(path: String) throws {
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw PruneKitError(.io, "could not open the lock file \(path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let message = String(cString: strerror(errno))
                close(fd)
                throw PruneKitError(.io, "could not lock \(path): \(message)")
            }
        }
    }

    func unlock() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN); close(fd); fd = -1
    }

    deinit { unlock() }
}
