/// Per-channel normalisation of pixels: `x ↦ (x / 255 − mean[c]) / std[c]`.
public struct Normalization: Sendable, Equatable {
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

/// An in-memory set of labelled images.
///
/// Pixels are kept compactly as bytes, `[count, C, H, W]` in NCHW order (one byte per
/// channel value, 0…255); they become normalised `Float` tensors only batch by batch
/// (``DataLoader``) or all at once (``normalizedImages()``).
public struct Dataset: Sendable {
    /// A name for reports, such as `mnist-5k/train`.
    public var name: String
    /// The shape of one image, `[C, H, W]`.
    public let imageShape: [Int]
    /// The number of classes; every label is in `0..<classCount`.
    public let classCount: Int
    /// The per-channel normalisation applied when pixels become tensors.
    public var normalization: Normalization
    /// The pixels, `[count, C, H, W]` row-major, 0…255.
    public private(set) var pixels: [UInt8]
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
        let channels = imageShape[0]
        guard normalization.mean.count == channels, normalization.std.count == channels else {
            throw PruneKitError(.shapeMismatch, "data set \(name): normalisation has \(normalization.mean.count) means and "
                                + "\(normalization.std.count) stds for \(channels) channels",
                                hint: "give one mean and one std per channel")
        }
        guard normalization.std.allSatisfy({ $0 > 0 && $0.isFinite }), normalization.mean.allSatisfy(\.isFinite) else {
            throw PruneKitError(.invalidArgument, "data set \(name): normalisation std must be positive and finite "
                                + "(got \(normalization.std)) and the means finite",
                                hint: "use the per-channel statistics of the training images, on the 0…1 scale")
        }
        if let sourceIndices, sourceIndices.count != labels.count {
            throw PruneKitError(.shapeMismatch, "data set \(name): \(sourceIndices.count) source indices for \(labels.count) images",
                                hint: "give one source index per image, or none")
        }
        self.init(unchecked: name, imageShape: imageShape, classCount: classCount, pixels: pixels, labels: labels,
                  normalization: normalization, sourceIndices: sourceIndices ?? Array(0..<labels.count))
    }

    init(unchecked name: String, imageShape: [Int], classCount: Int, pixels: [UInt8], labels: [Int32],
         normalization: Normalization, sourceIndices: [Int]) {
        self.name = name
        self.imageShape = imageShape
        self.classCount = classCount
        self.pixels = pixels
        self.labels = labels
        self.normalization = normalization
        self.sourceIndices = sourceIndices
    }

    /// The images at `indices`, in that order (repeats allowed).
    /// - Precondition: every index is in `0..<count`.
    /// - Complexity: O(`indices.count` · C·H·W).
    public func subset(_ indices: [Int], name: String? = nil) -> Dataset {
        let size = imageSize
        var newPixels = [UInt8](repeating: 0, count: indices.count * size)
        var newLabels = [Int32](repeating: 0, count: indices.count)
        var newSources = [Int](repeating: 0, count: indices.count)
        pixels.withUnsafeBufferPointer { src in
            newPixels.withUnsafeMutableBufferPointer { dst in
                for (k, i) in indices.enumerated() {
                    precondition(i >= 0 && i < count, "Dataset.subset: index \(i) out of range 0..<\(count)")
                    dst.baseAddress!.advanced(by: k * size).update(from: src.baseAddress!.advanced(by: i * size), count: size)
                    newLabels[k] = labels[i]
                    newSources[k] = sourceIndices[i]
                }
            }
        }
        return Dataset(unchecked: name ?? self.name, imageShape: imageShape, classCount: classCount, pixels: newPixels,
                       labels: newLabels, normalization: normalization, sourceIndices: newSources)
    }

    /// The bytes of image `index`, `[C, H, W]` row-major.
    public func image(at index: Int) -> ArraySlice<UInt8> {
        precondition(index >= 0 && index < count, "Dataset.image(at:): index \(index) out of range 0..<\(count)")
        return pixels[(index * imageSize)..<((index + 1) * imageSize)]
    }

    /// How many images each class has: `[classCount]`.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: classCount)
        for l in labels { counts[Int(l)] += 1 }
        return counts
    }

    /// The labels as `Int`s, in image order.
    public var intLabels: [Int] { labels.map(Int.init) }

    /// Every image as one normalised tensor `[count, C, H, W]`, for evaluation.
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
private func transformImage(_ image: UnsafePointer<UInt8>, into dst: UnsafeMutablePointer<Float>,
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
