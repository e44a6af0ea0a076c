import Foundation
import PruneKit
import XCTest

/// Your own data as an image folder: PNG and JPEG files written here through the same
/// libpng and libjpeg-turbo, pixel values after resize + centre crop + normalisation
/// against Pillow (Tests/Fixtures/OwnData/make_reference.py), training augmentation,
/// the background decoding, the roles of train/val/test, and every bad input of issue 12.
final class ImageFolderTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = try temporaryScratchDirectory("prunekit-imagefolder")
    }

    /// An RGB (or grey) image of `width × height` whose gradients depend on `seed` (smooth,
    /// without wrapping around, up to about 24 × 24).
    private func pixels(_ width: Int, _ height: Int, seed: Int, channels: Int = 3) -> [UInt8] {
        var out: [UInt8] = []
        for y in 0..<height { for x in 0..<width { for c in 0..<channels {
            out.append(UInt8((x * (1 + seed % 3) + y * (2 + c) + 30 * c + 7 * seed) % 256))
        } } }
        return out
    }

    /// Writes `root/split/class/name` with a generated image.
    @discardableResult
    private func image(_ relative: String, width: Int = 20, height: Int = 16, seed: Int = 0, channels: Int = 3) throws -> String {
        let path = scratch.appendingPathComponent(relative).path
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try ImageFolder.writeImage(pixels(width, height, seed: seed, channels: channels), width: width, height: height,
                                   channels: channels, to: path, quality: 95)
        return path
    }

    private func small(_ resize: Int = 12, crop: Int = 8) -> DataSourceOptions {
        var o = DataSourceOptions()
        o.imageSize = resize; o.crop = crop
        return o
    }

    // MARK: Values against Pillow

    func testResizeCropNormaliseMatchesPillow() throws {
        let fixtures = TestSupport.repoRoot.appendingPathComponent("Tests/Fixtures/OwnData")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("reference.json"))) as! [String: Any]
        let mean = (json["mean"] as! [Double]).map(Float.init), std = (json["std"] as! [Double]).map(Float.init)
        for (k, c) in (json["cases"] as! [[String: Any]]).enumerated() {
            let name = c["image"] as! String, resize = c["resize"] as! Int, crop = c["crop"] as! Int
            let expected = (c["values"] as! [Int])
            let root = scratch.appendingPathComponent("pillow-\(k)")
            for split in ["train", "val"] {
                let dir = root.appendingPathComponent("\(split)/only")
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: fixtures.appendingPathComponent(name), to: dir.appendingPathComponent(name))
            }
            let splits = try DatasetCatalog.load(root.path, options: small(resize, crop: crop))
            XCTAssertEqual(splits.test.imageShape, [3, crop, crop])
            let x = splits.test.normalizedImages(at: [0]).scalars
            XCTAssertEqual(x.count, expected.count)
            var worst: Float = 0
            for (i, v) in expected.enumerated() {
                let ch = i / (crop * crop)
                let want = (Float(v) / 255 - mean[ch]) / std[ch]
                worst = max(worst, abs(x[i] - want))
            }
            // Pillow's fixed-point filter reproduced exactly: the 8-bit values agree, so the
            // only difference left is float rounding in the normalisation.
            XCTAssertLessThan(worst, 1e-5, "\(name) resize \(resize) crop \(crop)")
        }
    }

    // MARK: Decoding

    func testJPEGAndGreyScaleImagesDecodeToRGB() throws {
        try image("j/train/a/colour.png", width: 24, height: 24, seed: 1)
        try image("j/val/a/colour.jpg", width: 24, height: 24, seed: 1)
        try image("j/val/a/grey.png", width: 24, height: 24, seed: 2, channels: 1)
        try image("j/val/a/grey.jpg", width: 24, height: 24, seed: 2, channels: 1)
        var o = small(24, crop: 24)
        o.normalize = "none"
        let splits = try DatasetCatalog.load(scratch.appendingPathComponent("j").path, options: o)
        let train = splits.train.normalizedImages(at: [0]).scalars, test = splits.test.normalizedImages().scalars
        // At the image's own size the view is the image itself: the PNG exactly.
        let src = pixels(24, 24, seed: 1)
        for ch in 0..<3 { for p in 0..<576 { XCTAssertEqual(train[ch * 576 + p], Float(src[p * 3 + ch]) / 255, accuracy: 1e-6) } }
        // The JPEG (quality 95) is close to the PNG; files are read in sorted order: colour.jpg, grey.jpg, grey.png.
        let jpeg = Array(test[0..<1728])
        let meanError = zip(jpeg, train).map { abs($0 - $1) }.reduce(0, +) / 1728
        XCTAssertLessThan(meanError, 4 / 255, "JPEG within a few grey levels on average")
        // Grey images: three equal channels, the grey values.
        let greyPNG = Array(test[3456..<5184]), grey = pixels(24, 24, seed: 2, channels: 1)
        for p in 0..<576 {
            XCTAssertEqual(greyPNG[p], Float(grey[p]) / 255, accuracy: 1e-6)
            XCTAssertEqual(greyPNG[576 + p], greyPNG[p]); XCTAssertEqual(greyPNG[1152 + p], greyPNG[p])
        }
        let greyJPEG = Array(test[1728..<3456])
        for p in 0..<576 { XCTAssertEqual(greyJPEG[576 + p], greyJPEG[p]) }
    }

    // MARK: Roles

    func testRolesValAloneIsTheTestSplitValAndTestGiveAValidationSplit() throws {
        for k in 0..<6 { try image("r1/train/\(k % 2 == 0 ? "cat" : "dog")/\(k).png", seed: k) }
        for k in 0..<2 { try image("r1/val/\(k == 0 ? "cat" : "dog")/\(k).png", seed: 10 + k) }
        let a = try DatasetCatalog.load(scratch.appendingPathComponent("r1").path, validationCount: 2, seed: 0, options: small())
        XCTAssertEqual(a.train.count, 4); XCTAssertEqual(a.validation?.count, 2); XCTAssertEqual(a.test.count, 2)
        XCTAssertEqual(a.train.classCount, 2)
        XCTAssertEqual(a.test.intLabels, [0, 1], "classes numbered by sorted train/ folder names")
        XCTAssertEqual(a.train.storageKind, .imageFolder)
        for k in 0..<3 { try image("r2/train/cat/\(k).png", seed: k); try image("r2/val/cat/\(k).png", seed: k); try image("r2/test/cat/\(k).png", seed: k) }
        let b = try DatasetCatalog.load(scratch.appendingPathComponent("r2").path, validationCount: 1, options: small())
        XCTAssertEqual(b.train.count, 3, "with val/ and test/, nothing is carved from train/")
        XCTAssertEqual(b.validation?.name, "r2/validation")
        XCTAssertEqual(b.test.name, "r2/test")
    }

    // MARK: Augmentation and streaming

    func testFlipMirrorsTheEvaluationViewAndRandomResizedCropsAreSeeded() throws {
        for k in 0..<5 { try image("aug/train/a/\(k).png", width: 30, height: 20, seed: k) }
        try image("aug/val/a/0.png")
        let train = try DatasetCatalog.load(scratch.appendingPathComponent("aug").path, options: small()).train
        let plain = train.normalizedImages()
        let flipped = try DataLoader(train, batchSize: 5, seed: 3, augmentation: Augmentation(horizontalFlip: true)).batch(0)
        var mirrored = 0
        for i in 0..<5 {
            let a = Array(plain.scalars[(i * 192)..<((i + 1) * 192)]), b = Array(flipped.images.scalars[(i * 192)..<((i + 1) * 192)])
            var mirror = a
            for ch in 0..<3 { for y in 0..<8 { for x in 0..<8 { mirror[ch * 64 + y * 8 + x] = a[ch * 64 + y * 8 + 7 - x] } } }
            XCTAssertTrue(b == a || b == mirror, "image \(i) is its evaluation view or its mirror")
            if b == mirror && b != a { mirrored += 1 }
        }
        XCTAssertGreaterThan(mirrored, 0, "some images flipped (seeded)")
        let l1 = try DataLoader(train, batchSize: 5, seed: 3, epoch: 0, augmentation: .imageNet)
        let again = try DataLoader(train, batchSize: 5, seed: 3, epoch: 0, augmentation: .imageNet)
        let other = try DataLoader(train, batchSize: 5, seed: 3, epoch: 1, augmentation: .imageNet)
        XCTAssertEqual(l1.batch(0).images, again.batch(0).images, "the same seed and epoch: the same crops")
        XCTAssertNotEqual(l1.batch(0).images, other.batch(0).images, "another epoch: other crops")
        XCTAssertNotEqual(l1.batch(0).images, plain)
        XCTAssertEqual(l1.batch(0).images.shape, [5, 3, 8, 8])
    }

    func testBackgroundDecodingGivesTheSameBatchesInOrderAndStopsEarly() throws {
        for k in 0..<23 { try image("pf/train/\(k % 3)/\(k).png", seed: k) }
        try image("pf/val/0/x.png")
        let train = try DatasetCatalog.load(scratch.appendingPathComponent("pf").path, options: small()).train
        let loader = try DataLoader(train, batchSize: 4, shuffle: true, seed: 2, augmentation: .imageNet)
        var seen = 0
        for (b, batch) in loader.enumerated() {
            let direct = loader.batch(b)
            XCTAssertEqual(batch.images, direct.images)
            XCTAssertEqual(batch.labels, direct.labels)
            seen += batch.count
        }
        XCTAssertEqual(seen, 23)
        for batch in loader { XCTAssertEqual(batch.count, 4); break }   // dropping the iterator early must not hang
    }

    // MARK: Bad input

    private func assertLoadError(_ root: String, _ fragments: [String], options: DataSourceOptions? = nil,
                                 file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try DatasetCatalog.load(scratch.appendingPathComponent(root).path, options: options ?? small())
            XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
        } catch let error as PruneKitError {
            for f in fragments { XCTAssertTrue(error.message.contains(f), "\"\(error.message)\" lacks \"\(f)\"", file: file, line: line) }
            XCTAssertNotNil(error.hint, "\(error) has no hint", file: file, line: line)
        } catch {
            XCTFail("expected a PruneKitError, got \(error)", file: file, line: line)
        }
    }

    func testCorruptFilesAreSkippedWithAWarningNamingThemUntilTooManyFail() throws {
        for k in 0..<9 { try image("c/train/a/\(k).png", seed: k) }
        try image("c/val/a/0.png")
        let bad = scratch.appendingPathComponent("c/train/a/broken.jpg").path
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]).write(to: URL(fileURLWithPath: bad))
        let text = scratch.appendingPathComponent("c/train/a/notes.png").path
        try Data("hello".utf8).write(to: URL(fileURLWithPath: text))
        assertLoadError("c", ["2 of 11 files could not be read", "the first: \(bad)"])
        var o = small()
        o.maxUnreadableFraction = 0.2
        let splits = try DatasetCatalog.load(scratch.appendingPathComponent("c").path, options: o)
        XCTAssertEqual(splits.train.count, 9)
        XCTAssertTrue(splits.warnings.contains { $0.hasPrefix(bad) && $0.contains("corrupt JPEG") }, "\(splits.warnings)")
        XCTAssertTrue(splits.warnings.contains { $0.hasPrefix(text) && $0.contains("not a JPEG or PNG") }, "\(splits.warnings)")
        XCTAssertTrue(splits.warnings.contains { $0.contains("skipped 2 of 11 files") }, "\(splits.warnings)")
    }

    func testTruncatedImageThatPassesTheHeaderCheckBecomesABlankImage() throws {
        let path = try image("t/train/a/0.jpg", width: 64, height: 64, seed: 1)
        try image("t/val/a/0.png")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        let train = try DatasetCatalog.load(scratch.appendingPathComponent("t").path, options: small()).train
        XCTAssertEqual(train.count, 1, "the header is intact")
        XCTAssertTrue(train.normalizedImages().scalars.allSatisfy { $0 == 0 }, "the channel means: 0 after normalisation")
    }

    func testEmptyClassesUnknownClassesAndMissingFolders() throws {
        try image("e/train/a/0.png"); try image("e/val/a/0.png")
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("e/train/b"), withIntermediateDirectories: true)
        assertLoadError("e", ["e/train/b: empty class folder"])
        try image("v/train/a/0.png"); try image("v/val/a/0.png"); try image("v/val/zebra/0.png")
        assertLoadError("v", ["class 'zebra' is not in train/"])
        try image("ok/train/a/0.png"); try image("ok/train/b/0.png"); try image("ok/val/a/0.png")
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("ok/val/b"), withIntermediateDirectories: true)
        let splits = try DatasetCatalog.load(scratch.appendingPathComponent("ok").path, options: small())
        XCTAssertEqual(splits.test.count, 1)
        XCTAssertTrue(splits.warnings.contains { $0.contains("ok/val/b: empty class folder") }, "\(splits.warnings)")
        try image("noval/train/a/0.png")
        assertLoadError("noval", ["no val/ or test/ folder"])
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("neither"), withIntermediateDirectories: true)
        assertLoadError("neither", ["neither an image folder", "nor a folder of .npy files"])
    }

    func testImagesSmallerThanTheCropAreUpscaledAndCounted() throws {
        try image("s/train/a/big.png", width: 40, height: 30)
        try image("s/train/a/tiny.png", width: 3, height: 2)
        try image("s/val/a/0.png", width: 1, height: 1)
        let splits = try DatasetCatalog.load(scratch.appendingPathComponent("s").path, options: small())
        XCTAssertEqual(splits.train.normalizedImages().shape, [2, 3, 8, 8])
        XCTAssertTrue(splits.warnings.contains { $0.contains("s/train: 1 image is smaller than the 8-pixel crop") }, "\(splits.warnings)")
        XCTAssertTrue(splits.test.normalizedImages().scalars.allSatisfy(\.isFinite))
    }

    func testSettingsAndAugmentationsThatDoNotFitAreRefused() throws {
        try image("x/train/a/0.png"); try image("x/val/a/0.png")
        assertLoadError("x", ["image size 8 and crop 12"], options: small(8, crop: 12))
        var o = small()
        o.normalize = "0.5/0.5"
        assertLoadError("x", ["normalisation has 1 means and 1 stds for 3 channels"], options: o)
        let train = try DatasetCatalog.load(scratch.appendingPathComponent("x").path, options: small()).train
        XCTAssertThrowsError(try DataLoader(train, batchSize: 1, augmentation: .cifar))
        let bytes = try Dataset(name: "b", imageShape: [1, 1, 1], classCount: 1, pixels: [0], labels: [0], normalization: .mnist)
        XCTAssertThrowsError(try DataLoader(bytes, batchSize: 1, augmentation: .imageNet))
        XCTAssertEqual(Augmentation.standard(for: train), .imageNet)
        XCTAssertEqual(Augmentation.standard(for: bytes), .cifar)
    }
    // MARK: Every command

    func testTrainWithAugmentationThenEvalReadsTheFolderAsTrained() throws {
        for k in 0..<12 { try image("cli/train/\(["a", "b", "c"][k % 3])/\(k).png", width: 20 + k, height: 18, seed: k) }
        for k in 0..<3 { try image("cli/val/\(["a", "b", "c"][k])/\(k).jpg", seed: k) }
        let data = scratch.appendingPathComponent("cli").path, model = scratch.appendingPathComponent("model").path
        let train = try TestSupport.runPrunekit(["train", "--model", "lenet-5", "--dataset", data, "--image-size", "32", "--crop", "28",
                                                  "--epochs", "1", "--batch-size", "4", "--augment", "--validation", "3", "--out", model])
        XCTAssertEqual(train.status, 0, train.err)
        XCTAssertTrue(train.out.contains("9 training, 3 validation, 3 test images"), train.out)
        // eval reads the folder as the model was trained on it (crop 28, not the default 224).
        let eval = try TestSupport.runPrunekit(["eval", "--model", model])
        XCTAssertEqual(eval.status, 0, eval.err)
        XCTAssertTrue(eval.out.contains("on cli/test: top-1"), eval.out)
        let other = try TestSupport.runPrunekit(["eval", "--model", model, "--crop", "24", "--image-size", "24"])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.err.contains("has images [3, 24, 24], but the model expects [3, 28, 28]"), other.err)
    }

    func testCorruptFileWarningReachesTheCommandLine() throws {
        for k in 0..<4 { try image("w/train/a/\(k).png", seed: k) }
        try image("w/val/a/0.png")
        let bad = scratch.appendingPathComponent("w/train/a/bad.png").path
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]).write(to: URL(fileURLWithPath: bad))
        let base = ["train", "--model", "lenet-5", "--dataset", scratch.appendingPathComponent("w").path, "--image-size", "28",
                    "--crop", "28", "--epochs", "0", "--validation", "0", "--out", scratch.appendingPathComponent("m").path]
        let refused = try TestSupport.runPrunekit(base)
        XCTAssertEqual(refused.status, 1, refused.err)
        XCTAssertTrue(refused.err.contains("1 of 5 files could not be read"), refused.err)
        let ok = try TestSupport.runPrunekit(base + ["--max-unreadable", "0.25"])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.err.contains("warning: \(bad): corrupt PNG"), ok.err)
        XCTAssertTrue(ok.err.contains("skipped 1 of 5 files"), ok.err)
    }
}
