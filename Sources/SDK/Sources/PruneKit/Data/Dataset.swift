import Foundation

/// Per-channel normalisation of pixels: `x ↦ (x / 255 − mean[c]) / std[c]`.
public struct Normalization: Sendable, Hashable, Codable {
    /// The mean of each channel, on the 0…1 scale.
    public var mean: [Float]
    /// The standard deviation of each channel, on the 0…1 scale.
    public var std: [Float]

    /// - Parameters:
    ///   - mean: one value per channel, on the 0…1 scale.
    ///   - std: one positive value per channel, on the 0…1 scale.
    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }

    /// MNIST (and the subset `mnist-5k`): mean 0.1307, std 0.3081.
    public static let mnist = Normalization(mean: [0.1307], std: [0.3081])
    /// Fashion-MNIST: mean 0.2860, std 0.3530.
    public static let fashionMNIST = Normalization(mean: [0.2860], std: [0.3530])
    /// CIFAR-10: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).
    public static let cifar10 = Normalization(mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616])
    /// CIFAR-100: mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762).
    public static let cifar100 = Normalization(mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762])

    /// Only rescaling to 0…1 (mean 0, std 1) for `channels` channels.
    public static func unit(channels: Int) -> Normalization {
        Normalization(mean: Array(repeating: 0, count: channels), std: Array(repeating: 1, count: channels))
    }

    /// Parses `imagenet`, `none` (mean 0, std 1, for `channels` channels) or
    /// `MEAN,MEAN,…/STD,STD,…` (one value per channel, on the 0…1 scale).
    /// - Throws: ``PruneKitError`` `.invalidArgument` saying what the text must look like.
    public static func parse(_ text: String, channels: Int = 3) throws -> Normalization {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if t == "imagenet" { return .imageNet }
        if t == "none" { return .unit(channels: channels) }
        let parts = t.split(separator: "/", omittingEmptySubsequences: false)
        let lists = parts.map { $0.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) } }
        guard parts.count == 2, lists.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0 != nil } }),
              lists[0].count == lists[1].count else {
            throw PruneKitError(.invalidArgument, "normalisation '\(text)' is not imagenet, none or MEANS/STDS",
                                hint: "e.g. imagenet, none, or 0.5,0.5,0.5/0.25,0.25,0.25 (one mean and one std per channel, 0…1 scale)")
        }
        let n = Normalization(mean: lists[0].map { $0! }, std: lists[1].map { $0! })
        guard n.std.allSatisfy({ $0 > 0 && $0.isFinite }), n.mean.allSatisfy(\.isFinite) else {
            throw PruneKitError(.invalidArgument, "normalisation '\(text)': every std must be positive and every value finite",
                                hint: "e.g. 0.5,0.5,0.5/0.25,0.25,0.25")
        }
        return n
    }

    /// The normalised value of every byte for every channel: `[channels × 256]`.
    func lookupTable() -> [Float] {
        var table = [Float](repeating: 0, count: mean.count * 256)
        for c in 0..<mean.count {
            for v in 0..<256 {
                table[c * 256 + v] = (Float(v) / 255 - mean[c]) / std[c]
            }
        }
        return table
    }
}

/// A set of labelled images.
///
/// The images are kept in one of three ways (see ``storageKind``), and become normalised
/// `Float` tensors only batch by batch (``DataLoader``) or for chosen indices
/// (``normalizedImages(at:)``):
/// - in memory as bytes, `[count, C, H, W]` in NCHW order, 0…255 (the built-in data sets;
///   ``init(name:imageShape:classCount:pixels:labels:normalization:sourceIndices:)``);
/// - as rows of a NumPy array (float32, float16 or uint8, NCHW or NHWC), memory-mapped
///   where the file allows (``NumPy``);
/// - as the files of an image folder, decoded, resized and cropped on demand (``ImageFolder``).
///
/// Labels are always in memory. A subset of an array or folder data set shares the
/// array or the file list: only its row numbers are copied.
public struct Dataset: Sendable {
    /// A name for reports, such as `mnist-5k/train`.
    public var name: String
    /// The shape of one image, `[C, H, W]`.
    public let imageShape: [Int]
    /// The number of classes; every label is in `0..<classCount`.
    public let classCount: Int
    /// The per-channel normalisation applied when pixels become tensors.
    public var normalization: Normalization
    /// The pixels, `[count, C, H, W]` row-major, 0…255, of a data set held as bytes
    /// (``storageKind`` `.bytes`) or read from a uint8 array (gathered into NCHW order on
    /// each call). Empty for a float array or an image folder, whose images exist only as
    /// normalised tensors: use ``normalizedImages(at:)`` or a ``DataLoader``.
    public var pixels: [UInt8] {
        switch storage {
        case .bytes(let bytes): return bytes
        case .array(let array, let rows) where array.dtype == .uint8:
            var out = [UInt8](repeating: 0, count: rows.count * imageSize)
            out.withUnsafeMutableBufferPointer { dst in
                for (k, r) in rows.enumerated() { array.copyBytes(row: r, into: dst.baseAddress! + k * imageSize) }
            }
            return out
        case .array, .folder: return []
        }
    }
    /// Where the images are kept (internal; ``storageKind`` says which kind, publicly).
    var storage: ImageStorage
    /// The label of each image, in `0..<classCount`.
    public private(set) var labels: [Int32]
    /// For each image, its position in the file(s) it was read from, so that a split
    /// or a subset can be traced back to the source data.
    public private(set) var sourceIndices: [Int]

    /// The number of images.
    public var count: Int { labels.count }
    /// The number of bytes (values) in one image, `C·H·W`.
    public var imageSize: Int { imageShape.reduce(1, *) }

    /// Creates a data set, checking that the pieces fit together.
    /// - Parameters:
    ///   - name: a name for reports.
    ///   - imageShape: `[C, H, W]`, every extent positive.
    ///   - classCount: the number of classes (positive).
    ///   - pixels: `count · C · H · W` bytes in NCHW order.
    ///   - labels: one label in `0..<classCount` per image.
    ///   - normalization: one mean and one positive std per channel.
    ///   - sourceIndices: the position of each image in its source; default `0..<count`.
    /// - Throws: ``PruneKitError`` `.invalidArgument` or `.shapeMismatch` saying what does not fit.
    public init(name: String, imageShape: [Int], classCount: Int, pixels: [UInt8], labels: [Int32],
                normalization: Normalization, sourceIndices: [Int]? = nil) throws {
        guard imageShape.count == 3, imageShape.allSatisfy({ $0 > 0 }) else {
            throw PruneKitError(.invalidArgument, "data set \(name): image shape \(imageShape) is not [C, H, W] with positive extents",
                                hint: "give the shape of one image as [channels, height, width]")
        }
        guard classCount > 0 else {
            throw PruneKitError(.invalidArgument, "data set \(name): class count \(classCount) must be positive",
                                hint: "give the number of classes the labels come from")
        }
        let size = imageShape.reduce(1, *)
        guard pixels.count == labels.count * size else {
            throw PruneKitError(.shapeMismatch, "data set \(name): \(pixels.count) pixel values for \(labels.count) labels "
                                + "of images \(imageShape) (expected \(labels.count * size))",
                                hint: "give C·H·W bytes per label, in NCHW order")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classCount }) {
            throw PruneKitError(.invalidArgument, "data set \(name): label \(labels[bad]) of image \(bad) is outside 0..<\(classCount)",
                                hint: "check the class count and the labels")
        }
        if let sourceIndices, sourceIndices.count != labels.count {
            throw PruneKitError(.shapeMismatch, "data set \(name): \(sourceIndices.count) source indices for \(labels.count) images",
                                hint: "give one source index per image, or none")
        }
        self.init(unchecked: name, imageShape: imageShape, classCount: classCount, pixels: pixels, labels: labels,
                  normalization: normalization, sourceIndices: sourceIndices ?? Array(0..<labels.count))
        try checkNormalization()
    }

    init(unchecked name: String, imageShape: [Int], classCount: Int, pixels: [UInt8], labels: [Int32],
         normalization: Normalization, sourceIndices: [Int]) {
        self.init(unchecked: name, imageShape: imageShape, classCount: classCount, storage: .bytes(pixels),
                  labels: labels, normalization: normalization, sourceIndices: sourceIndices)
    }

    init(unchecked name: String, imageShape: [Int], classCount: Int, storage: ImageStorage, labels: [Int32],
         normalization: Normalization, sourceIndices: [Int]) {
        self.name = name
        self.imageShape = imageShape
        self.classCount = classCount
        self.storage = storage
        self.labels = labels
        self.normalization = normalization
        self.sourceIndices = sourceIndices
    }

    /// How a data set keeps its images.
    public enum StorageKind: String, Sendable {
        /// In memory, one byte per value.
        case bytes
        /// Rows of a NumPy array, memory-mapped or (for a compressed `.npz` member) inflated into memory.
        case array
        /// Image files, decoded on demand.
        case imageFolder = "image-folder"
    }

    /// How this data set keeps its images.
    public var storageKind: StorageKind {
        switch storage {
        case .bytes: return .bytes
        case .array: return .array
        case .folder: return .imageFolder
        }
    }

    /// Whether batches cost enough to build (decoding files) that a ``DataLoader`` builds
    /// them ahead of the consumer on a background thread.
    var prefetches: Bool {
        if case .folder = storage { return true }
        return false
    }

    /// The images at `indices`, in that order (repeats allowed).
    /// - Precondition: every index is in `0..<count`.
    /// - Complexity: O(`indices.count` · C·H·W) for bytes; O(`indices.count`) for an array
    ///   or an image folder (only row numbers are copied).
    public func subset(_ indices: [Int], name: String? = nil) -> Dataset {
        for i in indices { precondition(i >= 0 && i < count, "Dataset.subset: index \(i) out of range 0..<\(count)") }
        let newLabels = indices.map { labels[$0] }, newSources = indices.map { sourceIndices[$0] }
        switch storage {
        case .bytes(let pixels):
            return Dataset(unchecked: name ?? self.name, imageShape: imageShape, classCount: classCount,
                           pixels: Dataset.gather(pixels, indices, size: imageSize), labels: newLabels,
                           normalization: normalization, sourceIndices: newSources)
        case .array(let array, let rows):
            return Dataset(unchecked: name ?? self.name, imageShape: imageShape, classCount: classCount,
                           storage: .array(array, rows: indices.map { rows[$0] }), labels: newLabels,
                           normalization: normalization, sourceIndices: newSources)
        case .folder(let folder, let rows):
            return Dataset(unchecked: name ?? self.name, imageShape: imageShape, classCount: classCount,
                           storage: .folder(folder, rows: indices.map { rows[$0] }), labels: newLabels,
                           normalization: normalization, sourceIndices: newSources)
        }
    }

    /// The images at `indices` of `pixels` (`size` bytes each), in that order.
    private static func gather(_ pixels: [UInt8], _ indices: [Int], size: Int) -> [UInt8] {
        var newPixels = [UInt8](repeating: 0, count: indices.count * size)
        pixels.withUnsafeBufferPointer { src in
            newPixels.withUnsafeMutableBufferPointer { dst in
                for (k, i) in indices.enumerated() {
                    dst.baseAddress!.advanced(by: k * size).update(from: src.baseAddress!.advanced(by: i * size), count: size)
                }
            }
        }
        return newPixels
    }

    /// The bytes of image `index`, `[C, H, W]` row-major; empty where ``pixels`` is (a float
    /// array or an image folder).
    public func image(at index: Int) -> ArraySlice<UInt8> {
        precondition(index >= 0 && index < count, "Dataset.image(at:): index \(index) out of range 0..<\(count)")
        switch storage {
        case .bytes(let pixels):
            return pixels[(index * imageSize)..<((index + 1) * imageSize)]
        case .array(let array, let rows) where array.dtype == .uint8:
            var out = [UInt8](repeating: 0, count: imageSize)
            out.withUnsafeMutableBufferPointer { array.copyBytes(row: rows[index], into: $0.baseAddress!) }
            return out[...]
        case .array, .folder:
            return []
        }
    }

    /// How many images each class has: `[classCount]`.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classCount)
        for l in labels { counts[Int(l)] += 1 }
        return counts
    }

    /// The labels as `Int`s, in image order.
    public var intLabels: [Int] { labels.map(Int.init) }

    /// Every image as one normalised tensor `[count, C, H, W]`.
    ///
    /// Its memory grows with the data set: evaluation (``Model/evaluate(_:batchSize:)``)
    /// goes batch by batch instead.
    /// - Complexity: O(count · C·H·W), split over ``Parallel/threadCount`` threads.
    public func normalizedImages() -> Tensor {
        normalizedImages(at: Array(0..<count))
    }

    /// The images at `indices`, normalised, as a tensor `[indices.count, C, H, W]`.
    /// - Precondition: every index is in `0..<count`.
    public func normalizedImages(at indices: [Int]) -> Tensor {
        for i in indices { precondition(i >= 0 && i < count, "Dataset.normalizedImages: index \(i) out of range 0..<\(count)") }
        return makeTensor(indices, transforms: nil, padding: 0)
    }

    /// Builds `[indices.count, C, H, W]` normalised floats, optionally cropping (from the
    /// image zero-padded by `padding` on every side, at offset `(dy, dx)` in `0...2·padding`)
    /// and flipping each image horizontally. The work is split over images.
    func makeTensor(_ indices: [Int], transforms: [ImageTransform]?, padding: Int) -> Tensor {
        switch storage {
        case .bytes(let pixels):
            return makeTensor(pixels, indices, transforms: transforms, padding: padding)
        case .array(let array, let rows):
            return array.makeTensor(indices.map { rows[$0] }, imageShape: imageShape, normalization: normalization,
                                    transforms: transforms, padding: padding)
        case .folder(let folder, let rows):
            // Evaluation view: resize and centre crop (the loader passes its own augmentation).
            return folder.makeTensor(indices.map { rows[$0] }, normalization: normalization, crops: nil)
        }
    }

    private func makeTensor(_ pixels: [UInt8], _ indices: [Int], transforms: [ImageTransform]?, padding: Int) -> Tensor {
        let c = imageShape[0], h = imageShape[1], w = imageShape[2], size = imageSize
        let table = normalization.lookupTable()
        var tensor = Tensor(shape: [indices.count, c, h, w], repeating: 0)
        tensor.withUnsafeMutableBufferPointer { out in
            let outBase = out.baseAddress!
            pixels.withUnsafeBufferPointer { src in
                table.withUnsafeBufferPointer { lut in
                    let srcBase = src.baseAddress!, lutBase = lut.baseAddress!
                    Parallel.forEach(indices.count, grain: max(1, 32_768 / size)) { range in
                        for k in range {
                            let image = srcBase + indices[k] * size
                            let dst = outBase + k * size
                            if let t = transforms?[k], t.dy != padding || t.dx != padding || t.flip {
                                transformImage(image, into: dst, channels: c, height: h, width: w,
                                               shiftY: t.dy - padding, shiftX: t.dx - padding, flip: t.flip, lut: lutBase)
                            } else {
                                for ch in 0..<c {
                                    let row = lutBase + ch * 256
                                    for p in (ch * h * w)..<((ch + 1) * h * w) { dst[p] = row[Int(image[p])] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return tensor
    }
}

/// The random crop offset and flip of one image.
struct ImageTransform: Equatable {
    var dy: Int
    var dx: Int
    var flip: Bool
}

/// One image, cropped after zero padding and optionally flipped (crop first, then flip):
/// `out[c, y, x] = in[c, y + shiftY, x' + shiftX]` with `x' = flip ? W − 1 − x : x`, or
/// the normalised value of 0 where that falls outside the image.
@inline(__always)
func transformImage(_ image: UnsafePointer<UInt8>, into dst: UnsafeMutablePointer<Float>,
                            channels: Int, height: Int, width: Int, shiftY: Int, shiftX: Int, flip: Bool,
                            lut: UnsafePointer<Float>) {
    for ch in 0..<channels {
        let row = lut + ch * 256
        let zero = row[0]
        let plane = image + ch * height * width
        let outPlane = dst + ch * height * width
        for y in 0..<height {
            let sy = y + shiftY
            for x in 0..<width {
                let sx = (flip ? width - 1 - x : x) + shiftX
                outPlane[y * width + x] = (sy >= 0 && sy < height && sx >= 0 && sx < width)
                    ? row[Int(plane[sy * width + sx])] : zero
            }
        }
    }
}

/// Where a ``Dataset`` keeps its images.
enum ImageStorage: @unchecked Sendable {
    /// Bytes `[count, C, H, W]`: image `i` starts at `i · C·H·W`.
    case bytes([UInt8])
    /// Rows of a NumPy array: image `i` is row `rows[i]`.
    case array(NumPyImages, rows: [Int])
    /// Files of an image folder: image `i` is file `rows[i]`.
    case folder(ImageFolderImages, rows: [Int])
}
