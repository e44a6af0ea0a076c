import CImageCodecs
import Foundation

extension Normalization {
    /// ImageNet: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) — torchvision's defaults.
    public static let imageNet = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
}

/// Image folders in torchvision's `ImageFolder` layout: `ROOT/train/<class>/*.jpg|jpeg|png`,
/// `ROOT/val/<class>/…` and/or `ROOT/test/<class>/…`.
///
/// - **Classes** are the sub-folders of `train/`, sorted by name and numbered from 0
///   (as torchvision does); files with other extensions and hidden files are ignored.
/// - **Roles**: the test split is `test/` if it exists, else `val/`; the validation split
///   is `val/` when `test/` exists too, else carved from `train/` (``DatasetCatalog``'s
///   `validationCount`). Neither `val/` nor `test/`: an error.
/// - **Images** are decoded with libjpeg-turbo or libpng into RGB (grey-scale and palette
///   images are converted to RGB; a PNG's alpha is composited onto black). Evaluation
///   view: the shorter side resized to ``Settings/resize`` (bilinear with Pillow's
///   antialiasing filter, so the values match `PIL.Image.resize(…, BILINEAR)` and
///   torchvision's `Resize` on PIL images), then the centre ``Settings/crop`` square.
///   Training view with ``Augmentation/imageNet``: random resized crop and flip. An image
///   smaller than the crop is upscaled like any other (the load reports how many).
/// - **Bad input**: a file that cannot be read or whose header is not a valid JPEG or PNG
///   is left out with a warning naming it, and the load fails if more than
///   ``Settings/maxUnreadableFraction`` of a split's files are left out. A file that
///   passed that check but fails to decode later (damaged data past its header) becomes
///   an image of the channel means (0 after normalisation) with a warning naming it, once.
///   An empty class folder in `train/` and a class in `val/` or `test/` that `train/`
///   lacks are errors; an empty class folder in `val/` or `test/` is allowed.
public enum ImageFolder {
    /// How the images are read, sized and normalised.
    public struct Settings: Sendable, Equatable {
        /// The shorter side after resizing, for the evaluation view (default 256).
        public var resize = 256
        /// The side of the square crop the model sees (default 224).
        public var crop = 224
        /// The per-channel normalisation, on the 0…1 scale (default: ImageNet's).
        public var normalization = Normalization.imageNet
        /// The largest fraction of a split's files that may be unreadable (default 0.01).
        public var maxUnreadableFraction = 0.01

        public init() {}

        /// Throws unless `crop ≥ 1`, `resize ≥ crop` and the fraction is in 0…1.
        public func validate() throws {
            guard crop >= 1, resize >= crop else {
                throw PruneKitError(.invalidArgument, "image size \(resize) and crop \(crop): the crop must be at least 1 "
                                    + "and no larger than the resized shorter side",
                                    hint: "use the ImageNet recipe (image size 256, crop 224), or an image size ≥ the crop")
            }
            guard (0...1).contains(maxUnreadableFraction) else {
                throw PruneKitError(.invalidArgument, "the fraction of unreadable files allowed must be in 0…1, got \(maxUnreadableFraction)",
                                    hint: "use 0.01 for 1 %")
            }
        }
    }

    /// Writes 8-bit pixels `[height, width, channels]` (channels 1: grey, 3: RGB) as a PNG,
    /// or as a JPEG of `quality` (1…100) when the path ends in `.jpg` or `.jpeg` — with the
    /// same libpng and libjpeg-turbo that decode them. For tests, benchmarks and fixtures.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for a size that doesn't match the
    ///   pixels, `.io` when the file can't be written.
    public static func writeImage(_ pixels: [UInt8], width: Int, height: Int, channels: Int, to path: String,
                                  quality: Int = 90) throws {
        guard width > 0, height > 0, channels == 1 || channels == 3, pixels.count == width * height * channels else {
            throw PruneKitError(.invalidArgument, "\(pixels.count) bytes are not a \(width)×\(height) image of \(channels) channels",
                                hint: "give height · width · channels bytes, channels 1 or 3")
        }
        try ImageCodec.write(pixels, width: width, height: height, channels: channels, to: path, quality: quality)
    }

    /// The file extensions read (case-insensitive).
    public static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// Whether `path` is a folder in the image-folder layout (it has a `train/` folder).
    public static func isImageFolder(_ path: String) -> Bool {
        DataFile.isDirectory("\(path)/train")
    }

    /// Loads the splits of an image folder (see the type's documentation for the roles).
    /// - Returns: the splits (validation `nil` unless `val/` and `test/` both exist) and
    ///   warnings to show (files left out, small images).
    /// - Throws: ``PruneKitError`` `.invalidFile` for a missing `train/`, no `val/` or
    ///   `test/`, an empty training class, a class `train/` lacks, or too many unreadable files.
    public static func load(_ root: String, settings: Settings = Settings())
        throws -> (train: Dataset, validation: Dataset?, test: Dataset, warnings: [String]) {
        try settings.validate()
        let root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        guard isImageFolder(root) else {
            throw PruneKitError(.invalidFile, "\(root): no train/ folder (an image folder is ROOT/train/<class>/*.jpg|png, "
                                + "with ROOT/val/ or ROOT/test/ alike)", hint: "give the folder that holds train/")
        }
        let hasVal = DataFile.isDirectory("\(root)/val"), hasTest = DataFile.isDirectory("\(root)/test")
        guard hasVal || hasTest else {
            throw PruneKitError(.invalidFile, "\(root): no val/ or test/ folder beside train/",
                                hint: "put the held-out images in ROOT/val/<class>/ (used as the test split)")
        }
        let classes = try subfolders("\(root)/train")
        guard !classes.isEmpty else {
            throw PruneKitError(.invalidFile, "\(root)/train: no class folders", hint: "put each class's images in train/<class>/")
        }
        var warnings: [String] = []
        let stem = URL(fileURLWithPath: root).lastPathComponent
        func split(_ name: String, role: String) throws -> Dataset {
            let dir = "\(root)/\(name)"
            let present = try subfolders(dir)
            if let stranger = present.first(where: { !classes.contains($0) }) {
                throw PruneKitError(.invalidFile, "\(dir)/\(stranger): class '\(stranger)' is not in train/ (classes: "
                                    + "\(classes.joined(separator: ", ")))",
                                    hint: "the model has no output for it: add its training images to train/\(stranger)/ or remove it")
            }
            var files: [String] = [], labels: [Int32] = []
            for (c, cls) in classes.enumerated() where present.contains(cls) {
                let found = try imageFiles("\(dir)/\(cls)")
                if found.isEmpty {
                    if name == "train" {
                        throw PruneKitError(.invalidFile, "\(dir)/\(cls): empty class folder (no .jpg, .jpeg or .png files)",
                                            hint: "add its images or remove the folder (classes are numbered from train/'s folders)")
                    }
                    warnings.append("\(dir)/\(cls): empty class folder")
                }
                files += found
                labels += Array(repeating: Int32(c), count: found.count)
            }
            let checks = probe(files)
            var kept: [Int] = [], small = 0
            for (i, check) in checks.enumerated() {
                switch check {
                case .failure(let reason): warnings.append("\(files[i]): \(reason); skipped")
                case .success(let size):
                    kept.append(i)
                    if min(size.width, size.height) < settings.crop { small += 1 }
                }
            }
            let skipped = files.count - kept.count
            if skipped > 0 {
                warnings.append("\(dir): skipped \(skipped) of \(files.count) files that could not be read")
                if Double(skipped) > settings.maxUnreadableFraction * Double(files.count) {
                    throw PruneKitError(.invalidFile, "\(dir): \(skipped) of \(files.count) files could not be read, more than "
                                        + "the \(settings.maxUnreadableFraction * 100) % allowed (the first: \(files[checks.firstIndex { if case .failure = $0 { return true }; return false }!]))",
                                        hint: "fix or remove the damaged files, or allow more with the unreadable-fraction setting")
                }
            }
            guard !kept.isEmpty else {
                throw PruneKitError(.invalidFile, "\(dir): no images", hint: "put .jpg or .png files in \(dir)/<class>/")
            }
            if small > 0 {
                warnings.append("\(dir): \(small) image\(small == 1 ? " is" : "s are") smaller than the \(settings.crop)-pixel crop; "
                                + "they are upscaled (bilinear)")
            }
            let images = ImageFolderImages(files: kept.map { files[$0] }, settings: settings)
            let d = Dataset(unchecked: "\(stem)/\(role)", imageShape: [3, settings.crop, settings.crop], classCount: classes.count,
                            storage: .folder(images, rows: Array(0..<kept.count)), labels: kept.map { labels[$0] },
                            normalization: settings.normalization, sourceIndices: Array(0..<kept.count))
            try d.checkNormalization()
            return d
        }
        let train = try split("train", role: "train")
        let test = try split(hasTest ? "test" : "val", role: "test")
        let validation = hasTest && hasVal ? try split("val", role: "validation") : nil
        return (train, validation, test, warnings)
    }

    static func subfolders(_ dir: String) throws -> [String] {
        try listing(dir).filter { !$0.hasPrefix(".") && DataFile.isDirectory("\(dir)/\($0)") }.sorted()
    }

    static func imageFiles(_ dir: String) throws -> [String] {
        try listing(dir).filter { name in
            !name.hasPrefix(".") && extensions.contains((name as NSString).pathExtension.lowercased()) && DataFile.exists("\(dir)/\(name)")
        }.sorted().map { "\(dir)/\($0)" }
    }

    static func listing(_ dir: String) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
            throw PruneKitError(.io, "\(dir): cannot be listed (\(error.localizedDescription))", hint: "check the folder's permissions")
        }
    }

    struct ImageSize: Equatable { var width: Int, height: Int }

    /// The size of each file from its header (read in parallel), or why it can't be read.
    static func probe(_ files: [String]) -> [Result<ImageSize, ProbeFailure>] {
        var results = [Result<ImageSize, ProbeFailure>](repeating: .failure(ProbeFailure("not read")), count: files.count)
        results.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            Parallel.forEach(files.count, grain: 16) { range in
                for i in range {
                    base[i] = Result { try ImageCodec.size(of: files[i]) }.mapError { ProbeFailure(($0 as? PruneKitError)?.message ?? "\($0)") }
                }
            }
        }
        return results
    }

    struct ProbeFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}

/// Decoding one JPEG or PNG file into 8-bit RGB.
enum ImageCodec {
    struct Image {
        var pixels: UnsafeMutablePointer<UInt8>   // [height, width, 3], malloc'd
        var width: Int, height: Int
        func free() { Foundation.free(pixels) }
    }

    /// Which decoder a file's first bytes call for.
    static func kind(_ bytes: UnsafeRawBufferPointer) -> String? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return "jpeg" }
        if bytes.count >= 8, Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return "png" }
        return nil
    }

    /// The size from the header (the first 64 KiB, or the whole file if the header is longer).
    static func size(of path: String) throws -> ImageFolder.ImageSize {
        var prefix = try read(path, limit: 65_536)
        var result = try decode(prefix.bytes, path: path, headerOnly: true, complete: prefix.complete)
        if result == nil, !prefix.complete {
            prefix = try read(path, limit: nil)
            result = try decode(prefix.bytes, path: path, headerOnly: true, complete: true)
        }
        guard let result else { throw PruneKitError(.invalidFile, "\(path): unreadable header", hint: nil) }
        return ImageFolder.ImageSize(width: result.width, height: result.height)
    }

    /// Decodes the whole file.
    static func decode(_ path: String) throws -> Image {
        let file = try read(path, limit: nil)
        guard let image = try decode(file.bytes, path: path, headerOnly: false, complete: true) else {
            throw PruneKitError(.invalidFile, "\(path): could not be decoded", hint: nil)
        }
        return image
    }

    static func read(_ path: String, limit: Int?) throws -> (bytes: [UInt8], complete: Bool) {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw PruneKitError(.io, "cannot be opened", hint: nil)
        }
        defer { try? handle.close() }
        do {
            if let limit {
                let data = try handle.read(upToCount: limit + 1) ?? Data()
                return ([UInt8](data.prefix(limit)), data.count <= limit)
            }
            return ([UInt8](try handle.readToEnd() ?? Data()), true)
        } catch {
            throw PruneKitError(.io, "cannot be read (\(error.localizedDescription))", hint: nil)
        }
    }

    /// Decodes `bytes`; `nil` when only the header was asked for, the bytes are a prefix
    /// and the header did not fit in it.
    static func decode(_ bytes: [UInt8], path: String, headerOnly: Bool, complete: Bool) throws -> Image? {
        try bytes.withUnsafeBytes { raw -> Image? in
            guard let kind = kind(raw) else {
                throw PruneKitError(.invalidFile, raw.isEmpty ? "empty file" : "not a JPEG or PNG file (by its first bytes)", hint: nil)
            }
            var width: Int32 = 0, height: Int32 = 0
            var message = [CChar](repeating: 0, count: 256)
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let out = message.withUnsafeMutableBufferPointer { m in
                kind == "jpeg"
                    ? prunekit_decode_jpeg(base, UInt(raw.count), headerOnly ? 1 : 0, &width, &height, m.baseAddress!, 256)
                    : prunekit_decode_png(base, UInt(raw.count), headerOnly ? 1 : 0, &width, &height, m.baseAddress!, 256)
            }
            guard let out else {
                if !complete { return nil }
                let reason = String(cString: message)
                throw PruneKitError(.invalidFile, "corrupt \(kind == "jpeg" ? "JPEG" : "PNG") (\(reason.isEmpty ? "unreadable" : reason))", hint: nil)
            }
            guard width > 0, height > 0 else {
                if !headerOnly { free(out) }
                throw PruneKitError(.invalidFile, "image of size \(width)×\(height)", hint: nil)
            }
            // In header-only mode the codec returns the input pointer, owned by `bytes`.
            return Image(pixels: headerOnly ? UnsafeMutablePointer(mutating: base) : out, width: Int(width), height: Int(height))
        }
    }

    /// Writes `pixels` (`[height, width, channels]`, channels 1 or 3) as a PNG file, or as a
    /// JPEG of `quality` when the path ends in `.jpg`/`.jpeg`. For tests and benchmarks.
    static func write(_ pixels: [UInt8], width: Int, height: Int, channels: Int, to path: String, quality: Int = 90) throws {
        let ext = (path as NSString).pathExtension.lowercased()
        let ok = pixels.withUnsafeBufferPointer { p in
            ext == "png" ? prunekit_write_png(path, p.baseAddress!, Int32(width), Int32(height), Int32(channels))
                : prunekit_write_jpeg(path, p.baseAddress!, Int32(width), Int32(height), Int32(channels), Int32(quality))
        }
        guard ok != 0 else { throw PruneKitError(.io, "\(path): could not be written", hint: "check the folder exists and is writable") }
    }
}

/// How one image of a training batch is cropped: a random resized crop (drawn from
/// `seed`) or the evaluation view, then mirrored or not.
struct FolderCrop {
    var seed: UInt64
    var random: Bool
    var flip: Bool
}

/// The files of one split of an image folder, decoded on demand.
final class ImageFolderImages: @unchecked Sendable {
    let files: [String]
    let settings: ImageFolder.Settings
    private let lock = NSLock()
    private var failed: Set<String> = []

    init(files: [String], settings: ImageFolder.Settings) {
        self.files = files
        self.settings = settings
    }

    /// The files that failed to decode after passing the header check, so far.
    var decodeFailures: [String] { lock.lock(); defer { lock.unlock() }; return failed.sorted() }

    /// The normalised images of files `rows`, `[rows.count, 3, crop, crop]`, decoded on
    /// ``Parallel/threadCount`` threads: the evaluation view, or each `crops` entry's view.
    func makeTensor(_ rows: [Int], normalization: Normalization, crops: [FolderCrop]?) -> Tensor {
        let side = settings.crop, size = 3 * side * side
        var tensor = Tensor(shape: [rows.count, 3, side, side], repeating: 0)
        tensor.withUnsafeMutableBufferPointer { out in
            let outBase = out.baseAddress!
            Parallel.forEach(rows.count, grain: 1) { range in
                for k in range {
                    let dst = outBase + k * size
                    let path = files[rows[k]]
                    let image: ImageCodec.Image
                    do { image = try ImageCodec.decode(path) } catch {
                        noteFailure(path, (error as? PruneKitError)?.message ?? "\(error)")
                        continue   // stays 0: the channel means
                    }
                    defer { image.free() }
                    let crop = crops?[k]
                    let view = crop.map { $0.random ? randomResizedCrop(image, seed: $0.seed) : centreView(image) } ?? centreView(image)
                    resampleBilinear(image.pixels, width: image.width, height: image.height, view: view,
                                     into: dst, flip: crop?.flip ?? false, normalization: normalization)
                }
            }
        }
        return tensor
    }

    private func noteFailure(_ path: String, _ reason: String) {
        lock.lock()
        let first = failed.insert(path).inserted
        lock.unlock()
        if first {
            FileHandle.standardError.write(Data("warning: \(path): \(reason); used as a blank image (the channel means)\n".utf8))
        }
    }

    /// The evaluation view: shorter side resized to `resize` (the longer one to
    /// ⌊resize · long / short⌋, as torchvision), then the centre crop (offsets rounded half to even).
    func centreView(_ image: ImageCodec.Image) -> ResampleView {
        let w = image.width, h = image.height, r = settings.resize, side = settings.crop
        let (outW, outH) = w <= h ? (r, Int(Double(r) * Double(h) / Double(w))) : (Int(Double(r) * Double(w) / Double(h)), r)
        let top = Int((Double(outH - side) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(outW - side) / 2).rounded(.toNearestOrEven))
        return ResampleView(box: (0, 0, w, h), outWidth: outW, outHeight: outH, left: left, top: top, side: side)
    }

    /// torchvision's `RandomResizedCrop.get_params` (scale 0.08…1, ratio 3/4…4/3, 10
    /// tries, then the centre crop of the clamped ratio), resized to the crop size.
    func randomResizedCrop(_ image: ImageCodec.Image, seed: UInt64) -> ResampleView {
        var rng = RandomGenerator(seed: seed)
        let width = image.width, height = image.height, area = Double(width * height)
        let logLow = log(3.0 / 4.0), logHigh = log(4.0 / 3.0)
        let side = settings.crop
        for _ in 0..<10 {
            let target = area * (0.08 + 0.92 * Double(rng.nextFloat()))
            let ratio = exp(logLow + (logHigh - logLow) * Double(rng.nextFloat()))
            let w = Int((target * ratio).squareRoot().rounded()), h = Int((target / ratio).squareRoot().rounded())
            if w > 0, w <= width, h > 0, h <= height {
                let i = rng.nextInt(below: height - h + 1), j = rng.nextInt(below: width - w + 1)
                return ResampleView(box: (j, i, w, h), outWidth: side, outHeight: side, left: 0, top: 0, side: side)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < 3.0 / 4.0 { h = max(1, Int((Double(w) / (3.0 / 4.0)).rounded())) }
        else if inRatio > 4.0 / 3.0 { w = max(1, Int((Double(h) * (4.0 / 3.0)).rounded())) }
        return ResampleView(box: ((width - w) / 2, (height - h) / 2, w, h), outWidth: side, outHeight: side, left: 0, top: 0, side: side)
    }
}

/// A resize of the source region `box` (x, y, width, height) to `outWidth × outHeight`, of
/// which the `side × side` window at (`left`, `top`) is kept.
struct ResampleView {
    var box: (x: Int, y: Int, width: Int, height: Int)
    var outWidth: Int, outHeight: Int
    var left: Int, top: Int, side: Int
}

/// Pillow's resampling coefficients (`precompute_coeffs` with the bilinear filter,
/// support 1, widened by the scale when shrinking), in its 8-bit fixed point (22 bits).
/// - Returns: for each output position, the first source index, the tap count and the
///   offset of its `taps` weights in `weights`.
func bilinearCoefficients(inSize: Int, from start: Double, to end: Double, outSize: Int)
    -> (first: [Int], count: [Int], weights: [Int32], taps: Int) {
    let scale = (end - start) / Double(outSize)
    let filterScale = max(scale, 1), support = filterScale
    let taps = Int(support.rounded(.up)) * 2 + 1
    var first = [Int](repeating: 0, count: outSize), count = [Int](repeating: 0, count: outSize)
    var weights = [Int32](repeating: 0, count: outSize * taps)
    var k = [Double](repeating: 0, count: taps)
    for xx in 0..<outSize {
        let center = start + (Double(xx) + 0.5) * scale
        let xmin = max(Int(center - support + 0.5), 0)
        let n = min(Int(center + support + 0.5), inSize) - xmin
        var total = 0.0
        for x in 0..<max(n, 0) {
            let t = abs((Double(x + xmin) - center + 0.5) * (1 / filterScale))
            k[x] = t < 1 ? 1 - t : 0
            total += k[x]
        }
        for x in 0..<max(n, 0) {
            let w = total != 0 ? k[x] / total : 0
            weights[xx * taps + x] = Int32(w < 0 ? w * Double(1 << 22) - 0.5 : w * Double(1 << 22) + 0.5)
        }
        first[xx] = xmin; count[xx] = max(n, 0)
    }
    return (first, count, weights, taps)
}

@inline(__always) private func clip8(_ v: Int) -> UInt8 {
    let s = v >> 22
    return s < 0 ? 0 : s > 255 ? 255 : UInt8(s)
}

/// Resizes the view's box of an RGB image (`[height, width, 3]`) with Pillow's bilinear
/// filter — horizontal pass, then vertical, each rounded to 8 bits as Pillow does — keeps
/// the view's window, mirrors it when `flip`, and writes it normalised as `[3, side, side]`.
/// - Complexity: O(side² · taps + rows · side · taps), taps ≈ 2 · scale + 1.
func resampleBilinear(_ src: UnsafePointer<UInt8>, width: Int, height: Int, view: ResampleView,
                      into dst: UnsafeMutablePointer<Float>, flip: Bool, normalization: Normalization) {
    let side = view.side
    let b = view.box
    let hc = bilinearCoefficients(inSize: width, from: Double(b.x), to: Double(b.x + b.width), outSize: view.outWidth)
    let vc = bilinearCoefficients(inSize: height, from: Double(b.y), to: Double(b.y + b.height), outSize: view.outHeight)
    // The source rows the window's output rows read.
    let rows = view.top..<(view.top + side)
    let rowFirst = rows.map { vc.first[$0] }.min()!, rowLast = rows.map { vc.first[$0] + vc.count[$0] }.max()!
    let tempRows = rowLast - rowFirst
    // Horizontal pass over those rows, for the window's columns: [tempRows, side, 3].
    var temp = [UInt8](repeating: 0, count: max(tempRows, 1) * side * 3)
    temp.withUnsafeMutableBufferPointer { t in
        for y in 0..<tempRows {
            let row = src + (rowFirst + y) * width * 3
            for c in 0..<side {
                let xx = view.left + c, x0 = hc.first[xx], wbase = xx * hc.taps
                var s0 = 1 << 21, s1 = 1 << 21, s2 = 1 << 21
                for x in 0..<hc.count[xx] {
                    let w = Int(hc.weights[wbase + x]), p = row + (x0 + x) * 3
                    s0 += Int(p[0]) * w; s1 += Int(p[1]) * w; s2 += Int(p[2]) * w
                }
                let o = (y * side + c) * 3
                t[o] = clip8(s0); t[o + 1] = clip8(s1); t[o + 2] = clip8(s2)
            }
        }
        // Vertical pass, then normalise into [3, side, side].
        let scale = (0..<3).map { 1 / (255 * normalization.std[$0]) }, shift = (0..<3).map { normalization.mean[$0] / normalization.std[$0] }
        let plane = side * side
        for r in 0..<side {
            let yy = view.top + r, y0 = vc.first[yy] - rowFirst, wbase = yy * vc.taps
            for c in 0..<side {
                var s0 = 1 << 21, s1 = 1 << 21, s2 = 1 << 21
                for y in 0..<vc.count[yy] {
                    let w = Int(vc.weights[wbase + y]), o = ((y0 + y) * side + c) * 3
                    s0 += Int(t[o]) * w; s1 += Int(t[o + 1]) * w; s2 += Int(t[o + 2]) * w
                }
                let x = flip ? side - 1 - c : c
                dst[r * side + x] = Float(clip8(s0)) * scale[0] - shift[0]
                dst[plane + r * side + x] = Float(clip8(s1)) * scale[1] - shift[1]
                dst[2 * plane + r * side + x] = Float(clip8(s2)) * scale[2] - shift[2]
            }
        }
    }
}
