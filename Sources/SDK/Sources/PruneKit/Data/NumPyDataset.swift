import Foundation

/// Images that are the rows of a NumPy array `[N, C, H, W]` or `[N, H, W, C]` (or `[N, H, W]`,
/// one channel), read in place.
///
/// Values become `(x · s − mean[c]) / std[c]` with `s = 1/255` for uint8 and `s = 1` for
/// float arrays: float images are taken to be on the 0…1 scale already (or already
/// normalised, with the default mean 0 and std 1).
final class NumPyImages: @unchecked Sendable {
    let array: NumPyArray
    /// Whether the array is `[N, H, W, C]` (else `[N, C, H, W]`).
    let channelsLast: Bool
    let channels: Int, height: Int, width: Int

    var dtype: NumPyArray.DType { array.dtype }

    init(array: NumPyArray, channelsLast: Bool, imageShape: [Int]) {
        self.array = array
        self.channelsLast = channelsLast
        (channels, height, width) = (imageShape[0], imageShape[1], imageShape[2])
    }

    /// The bytes of row `row` of a uint8 array, in `[C, H, W]` order.
    func copyBytes(row: Int, into dst: UnsafeMutablePointer<UInt8>) {
        assert(dtype == .uint8)
        let size = channels * height * width, plane = height * width
        let src = array.base.assumingMemoryBound(to: UInt8.self) + row * size
        if !channelsLast { dst.update(from: src, count: size); return }
        for p in 0..<plane { for c in 0..<channels { dst[c * plane + p] = src[p * channels + c] } }
    }

    /// The normalised images of `rows`, `[rows.count, C, H, W]`, with the padded crop and
    /// flip of each transform (as ``Dataset``'s bytes path does).
    func makeTensor(_ rows: [Int], imageShape: [Int], normalization: Normalization,
                    transforms: [ImageTransform]?, padding: Int) -> Tensor {
        let c = channels, h = height, w = width, size = c * h * w, plane = h * w
        let scale: Float = dtype == .uint8 ? 1 / 255 : 1
        let mean = normalization.mean, inverseStd = normalization.std.map { 1 / $0 }
        var tensor = Tensor(shape: [rows.count, c, h, w], repeating: 0)
        tensor.withUnsafeMutableBufferPointer { out in
            let outBase = out.baseAddress!
            Parallel.forEach(rows.count, grain: max(1, 32_768 / size)) { range in
                var scratch = [Float](repeating: 0, count: size)
                scratch.withUnsafeMutableBufferPointer { tmp in
                    for k in range {
                        let t = transforms?[k]
                        let transformed = t.map { $0.dy != padding || $0.dx != padding || $0.flip } ?? false
                        let dst = transformed ? tmp.baseAddress! : outBase + k * size
                        let first = rows[k] * size
                        for ch in 0..<c {
                            let m = mean[ch], s = inverseStd[ch]
                            for p in 0..<plane {
                                let i = first + (channelsLast ? p * c + ch : ch * plane + p)
                                dst[ch * plane + p] = (array.float(at: i) * scale - m) * s
                            }
                        }
                        if transformed, let t {
                            shiftAndFlip(tmp.baseAddress!, into: outBase + k * size, channels: c, height: h, width: w,
                                         shiftY: t.dy - padding, shiftX: t.dx - padding, flip: t.flip,
                                         zero: (0..<c).map { -mean[$0] * inverseStd[$0] })
                        }
                    }
                }
            }
        }
        return tensor
    }
}

/// `out[c, y, x] = in[c, y + shiftY, x' + shiftX]` with `x' = flip ? W − 1 − x : x`, or
/// `zero[c]` (the normalised value of black) where that falls outside the image: the
/// float twin of the bytes path's `transformImage`.
private func shiftAndFlip(_ image: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, channels: Int,
                          height: Int, width: Int, shiftY: Int, shiftX: Int, flip: Bool, zero: [Float]) {
    for ch in 0..<channels {
        let plane = image + ch * height * width, outPlane = dst + ch * height * width
        for y in 0..<height {
            let sy = y + shiftY
            for x in 0..<width {
                let sx = (flip ? width - 1 - x : x) + shiftX
                outPlane[y * width + x] = (sy >= 0 && sy < height && sx >= 0 && sx < width) ? plane[sy * width + sx] : zero[ch]
            }
        }
    }
}

extension NumPy {
    /// Which `.npz` members (or `.npy` files in a folder, `NAME.npy`) hold the four arrays.
    public struct ArrayNames: Sendable, Hashable, Codable {
        public var trainImages = "x_train", trainLabels = "y_train", testImages = "x_test", testLabels = "y_test"
        public init() {}
        public init(trainImages: String, trainLabels: String, testImages: String, testLabels: String) {
            (self.trainImages, self.trainLabels, self.testImages, self.testLabels) = (trainImages, trainLabels, testImages, testLabels)
        }
        /// The four names in the order x_train, y_train, x_test, y_test.
        public var all: [String] { [trainImages, trainLabels, testImages, testLabels] }

        /// Parses four comma-separated names, in the order x_train,y_train,x_test,y_test.
        /// - Throws: ``PruneKitError`` `.invalidArgument` unless there are four distinct, non-empty names.
        public static func parse(_ text: String) throws -> ArrayNames {
            let n = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard n.count == 4, n.allSatisfy({ !$0.isEmpty }), Set(n).count == 4 else {
                throw PruneKitError(.invalidArgument, "array names '\(text)' are not four distinct names",
                                    hint: "give the training images, training labels, test images and test labels: x_train,y_train,x_test,y_test")
            }
            return ArrayNames(trainImages: n[0], trainLabels: n[1], testImages: n[2], testLabels: n[3])
        }
    }

    /// The memory layout of an image array.
    public enum Layout: String, Sendable, CaseIterable, Codable {
        /// Decided from the shape: `[N, C, H, W]` when the second extent is 1 or 3 and the
        /// last is not, `[N, H, W, C]` the other way round; ambiguous shapes are refused.
        case auto
        /// `[N, C, H, W]`.
        case nchw
        /// `[N, H, W, C]`.
        case nhwc
    }

    /// The training and test sets of an `.npz` archive or a folder of `.npy` files.
    ///
    /// Images: float32, float16 or uint8, `[N, C, H, W]`, `[N, H, W, C]` or `[N, H, W]`;
    /// labels: any integer type, `[N]` or `[N, 1]`, in `0..<classCount` (default: the
    /// largest label + 1). Train and test images must have the same image shape.
    /// - Parameters:
    ///   - path: an `.npz` file, or a folder holding `NAME.npy` for each of `names`.
    ///   - names: the four arrays' names.
    ///   - layout: the images' layout, or `.auto`.
    ///   - classCount: the number of classes, or `nil` for the largest label + 1.
    ///   - normalization: per-channel mean and std (default: mean 0, std 1).
    /// - Throws: ``PruneKitError`` `.invalidFile` for a missing array (naming the arrays the
    ///   file has), a wrong dtype or rank, lengths that differ, a label out of range, or
    ///   shapes that differ between train and test; `.invalidArgument` for an ambiguous layout.
    public static func loadDataset(_ path: String, names: ArrayNames = ArrayNames(), layout: Layout = .auto,
                                   classCount: Int? = nil, normalization: Normalization? = nil) throws -> (train: Dataset, test: Dataset) {
        try loadDataset(path, names: names, layout: layout, classCount: classCount, normalization: normalization, normalize: nil)
    }

    static func loadDataset(_ path: String, names: ArrayNames, layout: Layout, classCount: Int?,
                            normalization: Normalization? = nil, normalize: String?) throws -> (train: Dataset, test: Dataset) {
        var arrays: [String: NumPyArray] = [:]
        let stem = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        if DataFile.isDirectory(path) {
            for name in names.all {
                let file = "\(path)/\(name).npy"
                guard DataFile.exists(file) else {
                    throw PruneKitError(.invalidFile, "\(path): no \(name).npy (a folder of .npy files needs \(names.all.map { "\($0).npy" }.joined(separator: ", ")))",
                                        hint: "save the arrays with numpy.save under those names, or name them with the array-name options")
                }
                arrays[name] = try readArray(file)
            }
        } else {
            arrays = try readArchive(path)
            let missing = names.all.filter { arrays[$0] == nil }
            guard missing.isEmpty else {
                throw PruneKitError(.invalidFile, "\(path): no array\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")); "
                                    + "the file has \(arrays.keys.sorted().joined(separator: ", "))",
                                    hint: "save them with numpy.savez(path, x_train=…, y_train=…, x_test=…, y_test=…), "
                                    + "or name the arrays the file has with the array-name options")
            }
        }
        let xTrain = arrays[names.trainImages]!, yTrain = arrays[names.trainLabels]!
        let xTest = arrays[names.testImages]!, yTest = arrays[names.testLabels]!
        let (trainShape, trainLast) = try imageShape(of: xTrain, layout: layout)
        let (testShape, testLast) = try imageShape(of: xTest, layout: layout)
        guard trainShape == testShape else {
            throw PruneKitError(.invalidFile, "\(path): training images are \(trainShape) ([C, H, W]) but test images are \(testShape)",
                                hint: "give both splits images of one shape")
        }
        let trainLabels = try labels(yTrain, count: xTrain.shape[0], images: xTrain)
        let testLabels = try labels(yTest, count: xTest.shape[0], images: xTest)
        let largest = max(trainLabels.max() ?? 0, testLabels.max() ?? 0)
        let classes = classCount ?? Int(largest) + 1
        for (ls, array) in [(trainLabels, yTrain), (testLabels, yTest)] {
            if let bad = ls.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
                throw PruneKitError(.invalidFile, "\(array.source): label \(ls[bad]) of example \(bad) is outside 0..<\(classes)"
                                    + (classCount == nil ? " (labels must not be negative)" : " (\(classes) classes)"),
                                    hint: classCount == nil ? "labels are class numbers 0, 1, 2, …" : "give the right class count, or fix the labels")
            }
        }
        let norm = try normalization ?? normalize.map { try Normalization.parse($0, channels: trainShape[0]) } ?? .unit(channels: trainShape[0])
        func make(_ x: NumPyArray, _ ls: [Int32], last: Bool, split: String) throws -> Dataset {
            let storage = ImageStorage.array(NumPyImages(array: x, channelsLast: last, imageShape: trainShape), rows: Array(0..<ls.count))
            let d = Dataset(unchecked: "\(stem)/\(split)", imageShape: trainShape, classCount: classes, storage: storage,
                            labels: ls, normalization: norm, sourceIndices: Array(0..<ls.count))
            try d.checkNormalization()
            return d
        }
        return (try make(xTrain, trainLabels, last: trainLast, split: "train"),
                try make(xTest, testLabels, last: testLast, split: "test"))
    }

    /// The `[C, H, W]` of one image of `x`, and whether `x` is channels-last.
    static func imageShape(of x: NumPyArray, layout: Layout) throws -> ([Int], Bool) {
        guard x.dtype == .float32 || x.dtype == .float16 || x.dtype == .uint8 else {
            throw PruneKitError(.invalidFile, "\(x.source): images of dtype \(x.dtype.numpyName) are not supported (float32, float16, uint8 are)",
                                hint: "convert them, e.g. x.astype('float32') / 255")
        }
        let s = x.shape
        switch s.count {
        case 3:
            guard s[1] > 0, s[2] > 0, s[0] > 0 else { break }
            return ([1, s[1], s[2]], false)
        case 4:
            guard s.allSatisfy({ $0 > 0 }) else { break }
            let first = s[1] == 1 || s[1] == 3, last = s[3] == 1 || s[3] == 3
            switch layout {
            case .nchw: return ([s[1], s[2], s[3]], false)
            case .nhwc: return ([s[3], s[1], s[2]], true)
            case .auto:
                if first && !last { return ([s[1], s[2], s[3]], false) }
                if last && !first { return ([s[3], s[1], s[2]], true) }
                throw PruneKitError(.invalidArgument, "\(x.source): cannot tell whether images \(s) are [N, C, H, W] or [N, H, W, C]",
                                    hint: "state the layout: nchw or nhwc")
            }
        default: break
        }
        throw PruneKitError(.invalidFile, "\(x.source): images of shape \(s) are not [N, C, H, W], [N, H, W, C] or [N, H, W] "
                            + "with positive extents", hint: "reshape flat rows to images first, e.g. x.reshape(-1, 1, 28, 28)")
    }

    /// The labels in `y`, checked against the number of images.
    static func labels(_ y: NumPyArray, count: Int, images: NumPyArray) throws -> [Int32] {
        guard y.dtype.isInteger else {
            throw PruneKitError(.invalidFile, "\(y.source): labels of dtype \(y.dtype.numpyName), expected an integer type",
                                hint: "save class numbers, e.g. y.astype('int64')")
        }
        guard y.shape.count == 1 || (y.shape.count == 2 && y.shape[1] == 1) else {
            throw PruneKitError(.invalidFile, "\(y.source): labels of shape \(y.shape), expected [N] (one class number per image)",
                                hint: "save class numbers, not one-hot rows: y.argmax(axis=1)")
        }
        guard y.shape[0] == count else {
            throw PruneKitError(.invalidFile, "\(y.source) has \(y.shape[0]) labels but \(images.source) has \(count) images",
                                hint: "save one label per image")
        }
        return (0..<count).map { i in
            let v = y.integer(at: i)
            return Int32(clamping: v < 0 ? -1 : v)
        }
    }
}

extension Dataset {
    /// Throws unless the normalisation has one finite mean and one positive, finite std per channel.
    func checkNormalization() throws {
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
    }
}
