import Foundation
import PruneKit
import XCTest

/// Your own data as NumPy arrays: `.npy` files and `.npz` archives written here byte by
/// byte per the NumPy format spec (and the ZIP spec), read back through ``NumPy`` and
/// ``DatasetCatalog``; memory mapping; layouts and dtypes against the bytes path; every
/// bad input of issue 12.
final class NumPyTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try temporaryScratchDirectory("prunekit-numpy")
    }

    // MARK: Writing .npy and .npz by hand

    /// A `.npy` file: magic, version, header length, the dict padded with spaces to a
    /// multiple of 64 and ended by a newline, then the values.
    private func npy(descr: String, shape: [Int], fortran: Bool = false, version: UInt8 = 1, data: [UInt8]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
        let prefix = version == 1 ? 10 : 12
        while (prefix + dict.utf8.count + 1) % 64 != 0 { dict += " " }
        dict += "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        let n = dict.utf8.count
        out += version == 1 ? [UInt8(n & 255), UInt8(n >> 8)] : [UInt8(n & 255), UInt8(n >> 8 & 255), UInt8(n >> 16 & 255), UInt8(n >> 24)]
        return out + Array(dict.utf8) + data
    }

    private func f32(_ v: [Float]) -> [UInt8] { v.flatMap { x in withUnsafeBytes(of: x.bitPattern.littleEndian, Array.init) } }
    private func f16(_ v: [Float]) -> [UInt8] { v.flatMap { x in withUnsafeBytes(of: Float16(x).bitPattern.littleEndian, Array.init) } }
    private func i64(_ v: [Int64]) -> [UInt8] { v.flatMap { x in withUnsafeBytes(of: x.littleEndian, Array.init) } }
    private func i32(_ v: [Int32]) -> [UInt8] { v.flatMap { x in withUnsafeBytes(of: x.littleEndian, Array.init) } }

    /// CRC-32 (IEEE), bit by bit: a reference independent of zlib.
    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0xEDB8_8320 : 0) }
        }
        return ~c
    }

    /// The raw deflate stream of `bytes`, cut out of the system gzip tool's output (10-byte
    /// header with -n, 8-byte trailer): a compressor independent of PruneKit.
    private func deflate(_ bytes: [UInt8]) throws -> [UInt8] {
        guard let tool = ["/usr/bin/gzip", "/bin/gzip"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw XCTSkip("no gzip tool on this machine")
        }
        let path = scratch.appendingPathComponent("deflate-\(UUID().uuidString)").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["-n", "-9", "-f", path]
        try p.run(); p.waitUntilExit()
        let gz = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
        return Array(gz[10..<(gz.count - 8)])
    }

    private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255)] }
    private func le32(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255), UInt8(v >> 16 & 255), UInt8(v >> 24 & 255)] }

    /// A ZIP archive of `members` (name, bytes), stored or deflated, with a central directory.
    private func archive(_ members: [(String, [UInt8])], deflated: Bool = false) throws -> [UInt8] {
        var out: [UInt8] = [], directory: [UInt8] = []
        for (name, data) in members {
            let body = deflated ? try deflate(data) : data
            let crc = Int(crc32(data)), offset = out.count, n = Array(name.utf8)
            let common = le16(20) + le16(0) + le16(deflated ? 8 : 0) + le16(0) + le16(0x21) + le32(crc) + le32(body.count) + le32(data.count)
            out += le32(0x0403_4B50) + common + le16(n.count) + le16(0) + n + body
            directory += le32(0x0201_4B50) + le16(20) + common + le16(n.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(offset) + n
        }
        let dirOffset = out.count
        out += directory
        out += le32(0x0605_4B50) + le16(0) + le16(0) + le16(members.count) + le16(members.count) + le32(directory.count) + le32(dirOffset) + le16(0)
        return out
    }

    @discardableResult
    private func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let url = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Six 1×2×2 float images (values k/10 + pixel/100) with labels 0, 1, 2, 0, 1, 2, and two test images.
    private var floatImages: [Float] { (0..<6).flatMap { k in (0..<4).map { Float(k) / 10 + Float($0) / 100 } } }
    private func standardMembers(trainLabels: [UInt8]? = nil) -> [(String, [UInt8])] {
        [("x_train.npy", npy(descr: "<f4", shape: [6, 1, 2, 2], data: f32(floatImages))),
         ("y_train.npy", trainLabels ?? npy(descr: "<i8", shape: [6], data: i64([0, 1, 2, 0, 1, 2]))),
         ("x_test.npy", npy(descr: "<f4", shape: [2, 1, 2, 2], data: f32([0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1]))),
         ("y_test.npy", npy(descr: "<i4", shape: [2], data: i32([2, 0])))]
    }

    // MARK: Good input

    func testNpyVersionsOneTwoThreeAreReadAndMapped() throws {
        for version: UInt8 in [1, 2, 3] {
            let path = try write("v\(version).npy", npy(descr: "<f4", shape: [2, 3], version: version, data: f32([1, 2, 3, 4, 5, 6])))
            let a = try NumPy.readArray(path)
            XCTAssertEqual(a.shape, [2, 3])
            XCTAssertEqual(a.dtype, .float32)
            XCTAssertTrue(a.isMemoryMapped)
        }
    }

    func testNpzStoredMembersAreMappedDeflatedOnesInflatedAndBothGiveTheSameImages() throws {
        let stored = try write("stored.npz", archive(standardMembers()))
        let deflated = try write("deflated.npz", archive(standardMembers(), deflated: true))
        let a = try NumPy.readArchive(stored), b = try NumPy.readArchive(deflated)
        XCTAssertEqual(Set(a.keys), ["x_train", "y_train", "x_test", "y_test"])
        XCTAssertTrue(a["x_train"]!.isMemoryMapped)
        XCTAssertFalse(b["x_train"]!.isMemoryMapped)
        let s1 = try DatasetCatalog.load(stored, options: DataSourceOptions())
        let s2 = try DatasetCatalog.load(deflated, options: DataSourceOptions())
        XCTAssertEqual(s1.train.storageKind, .array)
        XCTAssertEqual(s1.train.imageShape, [1, 2, 2])
        XCTAssertEqual(s1.train.classCount, 3)
        XCTAssertEqual(s1.train.intLabels, [0, 1, 2, 0, 1, 2])
        XCTAssertEqual(s1.test.intLabels, [2, 0])
        // Floats are used as they are (mean 0, std 1 by default).
        XCTAssertEqual(s1.train.normalizedImages().scalars, floatImages)
        XCTAssertEqual(s2.train.normalizedImages().scalars, floatImages)
        XCTAssertEqual(s1.test.normalizedImages().scalars, [0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1])
        XCTAssertEqual(s1.train.pixels, [], "float arrays have no byte view")
    }

    func testFolderOfNpyFilesWithCustomNamesAndNormalisation() throws {
        let dir = scratch.appendingPathComponent("arrays").path
        for (name, bytes) in standardMembers() {
            try write("arrays/\(name.replacingOccurrences(of: "x_", with: "images_").replacingOccurrences(of: "y_", with: "labels_"))", bytes)
        }
        var options = DataSourceOptions()
        options.arrayNames = try NumPy.ArrayNames.parse("images_train,labels_train,images_test,labels_test")
        options.normalize = "0.5/0.25"
        let splits = try DatasetCatalog.load(dir, options: options)
        XCTAssertEqual(splits.train.normalization, Normalization(mean: [0.5], std: [0.25]))
        let x = splits.train.normalizedImages().scalars
        for (k, v) in floatImages.enumerated() { XCTAssertEqual(x[k], (v - 0.5) / 0.25, accuracy: 1e-6) }
    }

    /// uint8 NHWC read from an array matches the same images given as NCHW bytes in memory,
    /// with and without the CIFAR augmentation (the same crops and flips).
    func testUint8NHWCArrayMatchesTheBytesPathWithAugmentation() throws {
        let n = 5, h = 4, w = 3, c = 3
        var rng = RandomGenerator(seed: 3)
        let nhwc = (0..<(n * h * w * c)).map { _ in UInt8(rng.nextInt(below: 256)) }
        var nchw = [UInt8](repeating: 0, count: nhwc.count)
        for i in 0..<n { for y in 0..<h { for x in 0..<w { for ch in 0..<c {
            nchw[((i * c + ch) * h + y) * w + x] = nhwc[((i * h + y) * w + x) * c + ch]
        } } } }
        let labels: [Int64] = [0, 1, 0, 1, 1]
        let path = try write("nhwc.npz", archive([
            ("x_train.npy", npy(descr: "|u1", shape: [n, h, w, c], data: nhwc)),
            ("y_train.npy", npy(descr: "<i8", shape: [n], data: i64(labels))),
            ("x_test.npy", npy(descr: "|u1", shape: [n, h, w, c], data: nhwc)),
            ("y_test.npy", npy(descr: "|u1", shape: [n], data: labels.map { UInt8($0) }))]))
        var options = DataSourceOptions()
        options.normalize = "0.4,0.5,0.6/0.2,0.25,0.3"
        let array = try DatasetCatalog.load(path, options: options).train
        XCTAssertEqual(array.imageShape, [3, 4, 3], "NHWC detected from the shape")
        XCTAssertEqual(array.pixels, nchw, "the byte view gathers NHWC into NCHW")
        let bytes = try Dataset(name: "bytes", imageShape: [3, 4, 3], classCount: 2, pixels: nchw, labels: labels.map { Int32($0) },
                                normalization: array.normalization)
        for augmentation in [Augmentation.none, .cifar] {
            for epoch in 0..<3 {
                let a = try DataLoader(array, batchSize: 2, shuffle: true, seed: 9, epoch: epoch, augmentation: augmentation)
                let b = try DataLoader(bytes, batchSize: 2, shuffle: true, seed: 9, epoch: epoch, augmentation: augmentation)
                for (x, y) in zip(a, b) {
                    XCTAssertEqual(x.labels, y.labels)
                    for (u, v) in zip(x.images.scalars, y.images.scalars) { XCTAssertEqual(u, v, accuracy: 1e-6) }
                }
            }
        }
    }

    func testFloat16NHWCAndStatedLayout() throws {
        // [2, 3, 3, 3]: ambiguous (3 first and last) — stated as NHWC.
        let values = (0..<54).map { Float($0) / 64 }
        let path = try write("f16.npz", archive([
            ("x_train.npy", npy(descr: "<f2", shape: [2, 3, 3, 3], data: f16(values))),
            ("y_train.npy", npy(descr: "<i8", shape: [2, 1], data: i64([0, 1]))),
            ("x_test.npy", npy(descr: "<f2", shape: [2, 3, 3, 3], data: f16(values))),
            ("y_test.npy", npy(descr: "<i8", shape: [2], data: i64([1, 0])))]))
        var options = DataSourceOptions()
        XCTAssertThrowsError(try DatasetCatalog.load(path, options: options)) { error in
            XCTAssertTrue("\(error)".contains("cannot tell whether images [2, 3, 3, 3]"), "\(error)")
        }
        options.layout = .nhwc
        let data = try DatasetCatalog.load(path, options: options).train
        let x = data.normalizedImages().scalars
        // out[i, c, y, x] = in[i, y, x, c]; every value k/64 is exact in float16.
        for i in 0..<2 { for ch in 0..<3 { for p in 0..<9 {
            XCTAssertEqual(x[(i * 3 + ch) * 9 + p], values[(i * 9 + p) * 3 + ch])
        } } }
    }

    func testValidationIsCarvedFromTrainingAndEvaluationGoesBatchByBatch() throws {
        let n = 40
        var rng = RandomGenerator(seed: 1)
        let images = (0..<(n * 4)).map { _ in UInt8(rng.nextInt(below: 256)) }
        let labels = (0..<n).map { Int64($0 % 4) }
        let path = try write("val.npz", archive([
            ("x_train.npy", npy(descr: "|u1", shape: [n, 2, 2], data: images)),
            ("y_train.npy", npy(descr: "<i8", shape: [n], data: i64(labels))),
            ("x_test.npy", npy(descr: "|u1", shape: [n, 2, 2], data: images)),
            ("y_test.npy", npy(descr: "<i8", shape: [n], data: i64(labels)))]))
        let splits = try DatasetCatalog.load(path, validationCount: 10, seed: 4, options: DataSourceOptions())
        let validation = try XCTUnwrap(splits.validation)
        XCTAssertEqual(validation.count, 10)
        XCTAssertEqual(splits.train.count, 30)
        XCTAssertTrue(Set(validation.sourceIndices).isDisjoint(with: splits.train.sourceIndices))
        var order = RandomGenerator(seed: 4, stream: "validation")
        XCTAssertEqual(validation.sourceIndices, Array(order.permutation(n).prefix(10)), "the same carving as the named data sets")
        XCTAssertEqual(splits.test.count, n, "the test split is never cut")
        // A subset keeps reading the same rows.
        XCTAssertEqual(Array(validation.image(at: 3)), Array(images[(validation.sourceIndices[3] * 4)..<(validation.sourceIndices[3] * 4 + 4)]))
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 2, 2], classCount: 4, seed: 0)
        let streamed = model.evaluate(splits.test, batchSize: 7)
        let whole = model.evaluate(images: splits.test.normalizedImages(), labels: splits.test.intLabels, batchSize: 7)
        XCTAssertEqual(streamed.loss, whole.loss)
        XCTAssertEqual(streamed.top1, whole.top1)
        XCTAssertEqual(streamed.count, n)
    }

    // MARK: Bad input

    private func assertLoadError(_ path: String, _ fragments: [String], options: DataSourceOptions = DataSourceOptions(),
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try DatasetCatalog.load(path, options: options)
            XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
        } catch let error as PruneKitError {
            for f in fragments { XCTAssertTrue(error.message.contains(f), "\"\(error.message)\" lacks \"\(f)\"", file: file, line: line) }
            XCTAssertNotNil(error.hint, "\(error) has no hint", file: file, line: line)
        } catch {
            XCTFail("expected a PruneKitError, got \(error)", file: file, line: line)
        }
    }

    func testMissingKeysAreNamedWithTheKeysTheFileHas() throws {
        let path = try write("missing.npz", archive(Array(standardMembers().prefix(3)) + [("labels.npy", npy(descr: "<i8", shape: [2], data: i64([0, 1])))]))
        assertLoadError(path, ["no array y_test", "the file has labels, x_test, x_train, y_train"])
    }

    func testMismatchedLengthsWrongDtypesAndShapes() throws {
        assertLoadError(try write("len.npz", archive(standardMembers(trainLabels: npy(descr: "<i8", shape: [5], data: i64([0, 1, 2, 0, 1]))))),
                        ["has 5 labels", "has 6 images"])
        assertLoadError(try write("floatlabels.npz", archive(standardMembers(trainLabels: npy(descr: "<f4", shape: [6], data: f32([0, 1, 2, 0, 1, 2]))))),
                        ["labels of dtype float32, expected an integer type"])
        assertLoadError(try write("onehot.npz", archive(standardMembers(trainLabels: npy(descr: "<i8", shape: [6, 3], data: i64(Array(repeating: 0, count: 18)))))),
                        ["labels of shape [6, 3]"])
        var members = standardMembers()
        members[0] = ("x_train.npy", npy(descr: "<i4", shape: [6, 1, 2, 2], data: i32(Array(repeating: 1, count: 24))))
        assertLoadError(try write("intimages.npz", archive(members)), ["images of dtype int32 are not supported"])
        members = standardMembers()
        members[0] = ("x_train.npy", npy(descr: "<f4", shape: [6, 4], data: f32(floatImages)))
        assertLoadError(try write("flat.npz", archive(members)), ["images of shape [6, 4]"])
        members = standardMembers()
        members[2] = ("x_test.npy", npy(descr: "<f4", shape: [2, 1, 4, 2], data: f32(Array(repeating: 0.5, count: 16))))
        assertLoadError(try write("shapes.npz", archive(members)), ["training images are [1, 2, 2]", "test images are [1, 4, 2]"])
    }

    func testLabelsOutOfRange() throws {
        assertLoadError(try write("negative.npz", archive(standardMembers(trainLabels: npy(descr: "<i8", shape: [6], data: i64([0, 1, -1, 0, 1, 2]))))),
                        ["label -1 of example 2 is outside 0..<3"])
        var options = DataSourceOptions()
        options.classCount = 2
        assertLoadError(try write("toolarge.npz", archive(standardMembers())), ["label 2 of example 2 is outside 0..<2"], options: options)
    }

    func testHeaderProblemsAreClearErrors() throws {
        let data = f32([1, 2, 3, 4])
        func member(_ bytes: [UInt8]) throws -> String {
            var m = standardMembers()
            m[0] = ("x_train.npy", bytes)
            return try write("h-\(UUID().uuidString).npz", archive(m))
        }
        assertLoadError(try member(npy(descr: "<f4", shape: [1, 1, 2, 2], fortran: true, data: data)), ["Fortran (column-major) order"])
        assertLoadError(try member(npy(descr: ">f4", shape: [1, 1, 2, 2], data: data)), ["big-endian '>f4' is not supported"])
        assertLoadError(try member(npy(descr: "<c8", shape: [1, 1, 2, 2], data: data + data)), ["dtype '<c8' is not supported"])
        assertLoadError(try member(npy(descr: "<f4", shape: [1, 1, 2, 2], version: 4, data: data)), ["format version 4.0 is not supported"])
        assertLoadError(try member(npy(descr: "<f4", shape: [1, 1, 2, 2], data: Array(data.prefix(10)))), ["needs 16 bytes after the header, the file has 10"])
        assertLoadError(try member(Array("not numpy at all".utf8)), ["not a NumPy .npy file"])
        assertLoadError(try write("garbage.npz", Array(repeating: 7, count: 100)), ["not an .npz file"])
        assertLoadError(try write("x.npy", npy(descr: "<f4", shape: [4], data: data)), ["a single .npy file holds one array"])
        assertLoadError(scratch.appendingPathComponent("absent.npz").path, ["no such file or folder"])
        // A damaged deflated member: CRC or stream errors, never a crash.
        var bytes = try archive(standardMembers(), deflated: true)
        bytes[60] ^= 0xFF
        assertLoadError(try write("damaged.npz", bytes), ["damaged .npz member"])
    }

    func testModelThatDoesNotFitIsRefusedWithBothShapes() throws {
        let splits = try DatasetCatalog.load(try write("fit.npz", archive(standardMembers())), options: DataSourceOptions())
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        XCTAssertThrowsError(try model.checkFits(splits.train)) { error in
            XCTAssertTrue("\(error)".contains("[1, 2, 2]") && "\(error)".contains("[1, 28, 28]"), "\(error)")
        }
        // The same number of values in another shape is refused too, for a model that reads images.
        let conv = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 3, seed: 0)
        let reshaped = try Dataset(name: "wide", imageShape: [1, 14, 56], classCount: 3, pixels: Array(repeating: 0, count: 784),
                                   labels: [0], normalization: .mnist)
        XCTAssertThrowsError(try conv.checkFits(reshaped)) { error in
            XCTAssertTrue("\(error)".contains("has images [1, 14, 56], but the model expects [1, 28, 28]"), "\(error)")
        }
    }
    // MARK: Every command

    /// 60 uint8 8×8 images of 3 classes (a bright square whose corner gives the class) and 30 test images.
    private func commandData(_ name: String, side: Int = 8) throws -> String {
        func set(_ n: Int, seed: UInt64) -> ([UInt8], [Int64]) {
            var rng = RandomGenerator(seed: seed)
            var x: [UInt8] = [], y: [Int64] = []
            for _ in 0..<n {
                let c = rng.nextInt(below: 3)
                for r in 0..<side { for q in 0..<side {
                    let on = (c == 0 && r < side / 2 && q < side / 2) || (c == 1 && r >= side / 2 && q < side / 2) || (c == 2 && q >= side / 2)
                    x.append(on ? 200 : UInt8(rng.nextInt(below: 40)))
                } }
                y.append(Int64(c))
            }
            return (x, y)
        }
        let (xt, yt) = set(60, seed: 1), (xs, ys) = set(30, seed: 2)
        return try write(name, archive([
            ("x_train.npy", npy(descr: "|u1", shape: [60, side, side], data: xt)), ("y_train.npy", npy(descr: "<i8", shape: [60], data: i64(yt))),
            ("x_test.npy", npy(descr: "|u1", shape: [30, side, side], data: xs)), ("y_test.npy", npy(descr: "<i8", shape: [30], data: i64(ys)))]))
    }

    func testTrainEvalScorePruneAndCompareTakeAnNpz() throws {
        let data = try commandData("cmd.npz")
        let model = scratch.appendingPathComponent("model").path
        let train = try TestSupport.runPrunekit(["train", "--model", "lenet-300-100", "--dataset", data, "--epochs", "2",
                                                  "--validation", "10", "--out", model])
        XCTAssertEqual(train.status, 0, train.err)
        XCTAssertTrue(train.out.contains("on cmd/train: 50 training, 10 validation, 30 test images"), train.out)
        let eval = try TestSupport.runPrunekit(["eval", "--model", model])
        XCTAssertEqual(eval.status, 0, eval.err)
        XCTAssertTrue(eval.out.contains("on cmd/test: top-1"), eval.out)
        let score = try TestSupport.runPrunekit(["score", "--criterion", "l1-filter", "--model", model, "--dataset", data])
        XCTAssertEqual(score.status, 0, score.err)
        let pruned = scratch.appendingPathComponent("pruned").path
        let prune = try TestSupport.runPrunekit(["prune", "--model", model, "--dataset", data, "--criterion", "global-magnitude",
                                                  "--compression", "2", "--finetune", "none", "--validation", "10",
                                                  "--latency-runs", "1", "--batches", "1", "--out", pruned])
        XCTAssertEqual(prune.status, 0, prune.err + prune.out)
        // A saved model goes on training on the same data.
        let more = try TestSupport.runPrunekit(["train", "--model", model, "--dataset", data, "--epochs", "1", "--validation", "10",
                                                 "--out", scratch.appendingPathComponent("more").path])
        XCTAssertEqual(more.status, 0, more.err)
        let spec = """
            model: lenet-300-100
            dataset: \(data)
            normalize: none
            criteria: [global-magnitude]
            compressions: [2]
            finetune-epochs: 1
            baseline: {epochs: 1, validation-images: 10}
            calibration: {batches: 1, batch-size: 16}
            oracle: off
            jobs: 1
            """
        try Data(spec.utf8).write(to: scratch.appendingPathComponent("spec.yaml"))
        let compare = try TestSupport.runPrunekit(["compare", "spec.yaml", "--store", "out/results.sqlite"], in: scratch)
        XCTAssertEqual(compare.status, 0, compare.err + compare.out)
        XCTAssertTrue(compare.out.contains("1 run now, 0 failed"), compare.out)
    }

    func testCommandsRefuseDataThatDoesNotFitTheModelAndBadOptions() throws {
        let small = try commandData("small.npz"), large = try commandData("large.npz", side: 12)
        let model = scratch.appendingPathComponent("m").path
        XCTAssertEqual(try TestSupport.runPrunekit(["train", "--model", "lenet-300-100", "--dataset", small, "--epochs", "0",
                                                     "--validation", "0", "--out", model]).status, 0)
        for command in [["eval", "--model", model], ["score", "--criterion", "l1-filter", "--model", model],
                        ["train", "--model", model, "--epochs", "1", "--validation", "0"]] {
            let r = try TestSupport.runPrunekit(command + ["--dataset", large])
            XCTAssertNotEqual(r.status, 0, "\(command)")
            XCTAssertTrue(r.err.contains("has images [1, 12, 12], but the model expects [64]"), "\(command): \(r.err)")
        }
        let cases: [([String], String)] = [
            (["--normalize", "bright"], "normalisation 'bright' is not imagenet, none or MEANS/STDS"),
            (["--crop", "300"], "image size 256 and crop 300"),
            (["--arrays", "a,b,c"], "array names 'a,b,c' are not four distinct names"),
            (["--max-unreadable", "2"], "must be in 0…1"),
        ]
        for (extra, message) in cases {
            let r = try TestSupport.runPrunekit(["train", "--dataset", small, "--epochs", "0"] + extra)
            XCTAssertEqual(r.status, 64, "\(extra): \(r.err)")
            XCTAssertTrue(r.err.contains("error: " + message) || r.err.contains(message), "\(extra): \(r.err)")
        }
    }
}
