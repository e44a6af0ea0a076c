import Foundation

/// Random changes made to training images, drawn afresh for every epoch and batch.
public struct Augmentation: Sendable, Equatable {
    /// Pad every side with this many zero (black) pixels, then crop a window of the
    /// original size at a uniformly random offset; 0 turns cropping off.
    public var cropPadding: Int
    /// Mirror each image left–right with probability ½ (after cropping).
    public var horizontalFlip: Bool
    /// For an image folder: instead of the evaluation view (shorter side resized, centre
    /// crop), a random part of the image — area 8–100 % of the image's, aspect ratio 3/4–4/3,
    /// up to 10 draws, else the centre crop of the ratio clamped to that range — resized
    /// to the crop size (torchvision's `RandomResizedCrop`). Only for image folders.
    public var randomResizedCrop: Bool = false

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false) {
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
    }

    /// - Parameters:
    ///   - cropPadding: zero padding, then a random crop of the original size (fixed-size images only).
    ///   - horizontalFlip: mirror with probability ½.
    ///   - randomResizedCrop: a random resized crop (image folders only).
    public init(cropPadding: Int = 0, horizontalFlip: Bool = false, randomResizedCrop: Bool) {
        self.init(cropPadding: cropPadding, horizontalFlip: horizontalFlip)
        self.randomResizedCrop = randomResizedCrop
    }

    /// No augmentation.
    public static let none = Augmentation()
    /// The usual CIFAR augmentation: random crop with 4-pixel zero padding, random horizontal flip
    /// (torchvision's `RandomCrop(32, padding: 4)` then `RandomHorizontalFlip()`).
    public static let cifar = Augmentation(cropPadding: 4, horizontalFlip: true)

    /// The usual ImageNet training augmentation, for image folders: random resized crop,
    /// then random horizontal flip (torchvision's `RandomResizedCrop(size)` then
    /// `RandomHorizontalFlip()`).
    public static let imageNet = Augmentation(horizontalFlip: true, randomResizedCrop: true)

    /// The standard training augmentation for a data set: ``imageNet`` for an image
    /// folder, ``cifar`` for anything else.
    public static func standard(for data: Dataset) -> Augmentation {
        data.storageKind == .imageFolder ? .imageNet : .cifar
    }

    /// Whether this changes any image.
    public var isIdentity: Bool { cropPadding == 0 && !horizontalFlip && !randomResizedCrop }
}

/// A mini-batch: normalised images and their labels.
public struct Batch {
    /// The images, `[B, C, H, W]`, normalised as `(x / 255 − mean[c]) / std[c]`.
    public var images: Tensor
    /// The label of each image, `[B]`.
    public var labels: [Int]
    /// The position of each image in the data set, `[B]`.
    public var indices: [Int]

    public init(images: Tensor, labels: [Int], indices: [Int]) {
        self.images = images
        self.labels = labels
        self.indices = indices
    }

    /// The number of images.
    public var count: Int { labels.count }
}

/// The mini-batches of one epoch over a ``Dataset``.
///
/// The order of epoch `e` is the permutation drawn from
/// `RandomGenerator(seed: seed, stream: "shuffle-\(e)")` (or the data set's order when
/// `shuffle` is false), and the augmentation of batch `b` in epoch `e` comes from
/// `RandomGenerator(seed: seed, stream: "augment-\(e)-\(b)")`, so every batch is
/// reproducible on its own and independent of any other random draw.
///
/// ```swift
/// let splits = try DatasetCatalog.load("mnist-5k")
/// for epoch in 0..<10 {
///     let loader = try DataLoader(splits.train, batchSize: 128, shuffle: true, seed: 1, epoch: epoch)
///     for batch in loader { /* batch.images: [128, 1, 28, 28] */ }
/// }
/// ```
public struct DataLoader: Sequence {
    /// The images to draw batches from.
    public let dataset: Dataset
    /// The number of images in a full batch.
    public let batchSize: Int
    /// Whether the order is a seeded permutation (true) or the data set's order.
    public var shuffle: Bool
    /// The seed of the shuffle and the augmentation.
    public var seed: UInt64
    /// The epoch whose order and augmentation to produce.
    public var epoch: Int
    /// Whether to leave out a last batch smaller than `batchSize`.
    public var dropLast: Bool
    /// The random changes made to each image.
    public let augmentation: Augmentation

    /// - Parameters:
    ///   - dataset: the images.
    ///   - batchSize: images per batch, at least 1.
    ///   - shuffle: shuffle the order of every epoch (default false).
    ///   - seed: the seed of the shuffle and the augmentation.
    ///   - epoch: which epoch's order and augmentation to produce.
    ///   - dropLast: leave out the last batch when it is smaller than `batchSize`.
    ///   - augmentation: random crop and flip (default none).
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a batch size below 1, a negative crop
    ///   padding, padding on an image folder or a random resized crop on anything else.
    public init(_ dataset: Dataset, batchSize: Int, shuffle: Bool = false, seed: UInt64 = 0, epoch: Int = 0,
                dropLast: Bool = false, augmentation: Augmentation = .none) throws {
        guard batchSize >= 1 else {
            throw PruneKitError(.invalidArgument, "batch size \(batchSize) must be at least 1",
                                hint: "give a positive batch size, such as 128")
        }
        guard augmentation.cropPadding >= 0 else {
            throw PruneKitError(.invalidArgument, "crop padding \(augmentation.cropPadding) must not be negative",
                                hint: "use 0 for no cropping, 4 for the usual CIFAR augmentation")
        }
        if dataset.storageKind == .imageFolder, augmentation.cropPadding > 0 {
            throw PruneKitError(.invalidArgument, "\(dataset.name): padded random crops are for fixed-size images, "
                                + "not an image folder", hint: "use Augmentation.imageNet (random resized crop and flip)")
        }
        if dataset.storageKind != .imageFolder, augmentation.randomResizedCrop {
            throw PruneKitError(.invalidArgument, "\(dataset.name): a random resized crop needs an image folder "
                                + "(its images are resized from their files)", hint: "use Augmentation.cifar (padded crop and flip)")
        }
        self.init(unchecked: dataset, batchSize: batchSize, shuffle: shuffle, seed: seed, epoch: epoch,
                  dropLast: dropLast, augmentation: augmentation)
    }

    /// A loader whose settings the caller has checked.
    init(unchecked dataset: Dataset, batchSize: Int, shuffle: Bool = false, seed: UInt64 = 0, epoch: Int = 0,
         dropLast: Bool = false, augmentation: Augmentation = .none) {
        self.dataset = dataset
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.dropLast = dropLast
        self.augmentation = augmentation
    }

    /// The number of batches in an epoch.
    public var batchCount: Int {
        dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// The data-set positions in the order this epoch visits them, `[dataset.count]`.
    public var order: [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var rng = RandomGenerator(seed: seed, stream: "shuffle-\(epoch)")
        return rng.permutation(dataset.count)
    }

    /// Batch number `index` of this epoch.
    /// - Precondition: `index` is in `0..<batchCount`.
    public func batch(_ index: Int) -> Batch {
        makeBatch(index, order: order)
    }

    func makeBatch(_ index: Int, order: [Int]) -> Batch {
        precondition(index >= 0 && index < batchCount, "DataLoader.batch: index \(index) out of range 0..<\(batchCount)")
        let start = index * batchSize
        let indices = Array(order[start..<Swift.min(start + batchSize, order.count)])
        if case .folder(let folder, let rows) = dataset.storage {
            var crops: [FolderCrop]?
            if !augmentation.isIdentity {
                var rng = RandomGenerator(seed: seed, stream: "augment-\(epoch)-\(index)")
                crops = indices.map { _ in
                    FolderCrop(seed: rng.next(), random: augmentation.randomResizedCrop,
                               flip: augmentation.horizontalFlip && (rng.next() >> 63) == 1)
                }
            }
            let images = folder.makeTensor(indices.map { rows[$0] }, normalization: dataset.normalization, crops: crops)
            return Batch(images: images, labels: indices.map { Int(dataset.labels[$0]) }, indices: indices)
        }
        var transforms: [ImageTransform]?
        if !augmentation.isIdentity {
            var rng = RandomGenerator(seed: seed, stream: "augment-\(epoch)-\(index)")
            let p = augmentation.cropPadding
            transforms = indices.map { _ in
                let dy = p > 0 ? rng.nextInt(below: 2 * p + 1) : 0
                let dx = p > 0 ? rng.nextInt(below: 2 * p + 1) : 0
                let flip = augmentation.horizontalFlip && (rng.next() >> 63) == 1
                return ImageTransform(dy: dy, dx: dx, flip: flip)
            }
        }
        let images = dataset.makeTensor(indices, transforms: transforms, padding: augmentation.cropPadding)
        return Batch(images: images, labels: indices.map { Int(dataset.labels[$0]) }, indices: indices)
    }

    public func makeIterator() -> Iterator {
        Iterator(loader: self, order: order)
    }

    /// Produces the batches of one epoch in turn. For an image folder, a background thread
    /// builds the next ``Prefetcher/depth`` batches (decoding on ``Parallel/threadCount``
    /// threads) while the consumer works on this one; memory stays bounded by those batches.
    public struct Iterator: IteratorProtocol {
        let loader: DataLoader
        let order: [Int]
        let prefetcher: Prefetcher?
        var position = 0

        init(loader: DataLoader, order: [Int], position: Int = 0) {
            self.loader = loader
            self.order = order
            self.position = position
            prefetcher = loader.dataset.prefetches && loader.batchCount - position > 1
                ? Prefetcher(loader: loader, order: order, from: position) : nil
        }

        public mutating func next() -> Batch? {
            guard position < loader.batchCount else { return nil }
            defer { position += 1 }
            if let prefetcher { return prefetcher.take(position) }
            return loader.makeBatch(position, order: order)
        }
    }

    public var underestimatedCount: Int { batchCount }
}

/// Builds the batches of one epoch on a background thread, at most ``depth`` ahead of
/// the consumer (a bounded queue: memory does not grow with the epoch). Dropping the
/// iterator that owns it stops the thread after the batch it is building.
final class Prefetcher: @unchecked Sendable {
    /// How many finished batches may wait for the consumer.
    static let depth = 2

    /// The state shared with the producer thread (which must not keep the prefetcher alive).
    private final class State: @unchecked Sendable {
        let condition = NSCondition()
        var ready: [Int: Batch] = [:]
        var consumed = 0
        var cancelled = false
    }
    private let state = State()

    init(loader: DataLoader, order: [Int], from start: Int) {
        let state = self.state
        state.consumed = start
        let thread = Thread {
            for b in start..<loader.batchCount {
                state.condition.lock()
                while !state.cancelled && b - state.consumed >= Prefetcher.depth { state.condition.wait() }
                let stop = state.cancelled
                state.condition.unlock()
                if stop { return }
                let batch = loader.makeBatch(b, order: order)
                state.condition.lock()
                state.ready[b] = batch
                state.condition.broadcast()
                state.condition.unlock()
            }
        }
        thread.name = "prunekit-prefetch"
        thread.start()
    }

    /// Batch `index`, waiting for the producer if it is not built yet. Batches are taken in order.
    func take(_ index: Int) -> Batch {
        state.condition.lock()
        defer { state.condition.unlock() }
        while state.ready[index] == nil { state.condition.wait() }
        let batch = state.ready.removeValue(forKey: index)!
        state.consumed = index + 1
        state.condition.broadcast()
        return batch
    }

    deinit {
        state.condition.lock()
        state.cancelled = true
        state.condition.broadcast()
        state.condition.unlock()
    }
}
