import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness

/// `prunekit bench data`: how fast an image folder streams through the loader (decode,
/// random resized crop, flip, normalise), and whether memory stays flat as it grows.
struct DataBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Image-folder throughput (decode + random resized crop + flip at 224×224) and peak memory at 1,000 and 20,000 images.",
        discussion: """
            Generates JPEG files (a pool of distinct images, hard-linked to reach each count) in ROOT/train/<class>/ \
            and runs one shuffled training epoch of the DataLoader over each folder, consuming every batch at once, \
            so the figure is the pipeline's own rate. Memory: the largest resident set (VmRSS) seen during the epoch, \
            each count measured in a fresh process. Example: prunekit bench data --threads 2
            """)

    @Option(parsing: .upToNextOption, help: "Image counts, one epoch each (ascending).") var images: [Int] = [1_000, 20_000]
    @Option(parsing: .upToNextOption, help: "Width and height of the generated JPEGs.") var sourceSize: [Int] = [400, 300]
    @Option(help: "Distinct images generated (the rest are hard links to them).") var distinct: Int = 200
    @Option(help: "Images per batch.") var batchSize: Int = 64
    @Option(help: "Decoding threads (PruneKit's thread count).") var threads: Int = 2
    @Option(help: "Where to generate the folders (default: a temporary folder, removed afterwards).") var dir: String?
    /// Set on the child process that measures one count (each count runs in a fresh process,
    /// so one count's memory high-water mark never carries over to the next).
    @Flag(help: .hidden) var single = false

    func validate() throws {
        try reportingErrors {
            guard !images.isEmpty, images.allSatisfy({ $0 >= 1 }) else {
                throw PruneKitError(.invalidArgument, "--images must list positive counts, got \(images)")
            }
            guard sourceSize.count == 2, sourceSize.allSatisfy({ $0 >= 1 && $0 <= 8192 }) else {
                throw PruneKitError(.invalidArgument, "--source-size takes a width and a height in 1…8192, got \(sourceSize)")
            }
            guard distinct >= 1, batchSize >= 1, threads >= 1 else {
                throw PruneKitError(.invalidArgument, "--distinct, --batch-size and --threads must be at least 1")
            }
        }
    }

    func run() throws {
        try reportingErrors {
            warnIfDebugBuild()
            Parallel.setThreadCount(threads)
            let root = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("prunekit-bench-data-\(getpid())").path
            defer { if dir == nil && !single { try? FileManager.default.removeItem(atPath: root) } }
            let pool = "\(root)/pool"
            try FileManager.default.createDirectory(atPath: pool, withIntermediateDirectories: true)
            let (w, h) = (sourceSize[0], sourceSize[1])
            var bytes = 0
            for k in 0..<distinct {
                let path = "\(pool)/\(k).jpg"
                if !FileManager.default.fileExists(atPath: path) {
                    try ImageFolder.writeImage(Self.picture(w, h, seed: k), width: w, height: h, channels: 3, to: path, quality: 90)
                }
                bytes += (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            }
            if !single { print("prunekit bench data — \(threads) thread(s), batch \(batchSize), random resized crop + flip to 224×224, "
                  + "ImageNet normalisation; JPEG \(w)×\(h), \(Units.bytes(bytes / distinct)) on average") }
            if !single {
                print("images     load s   epoch s   images/s   RSS before   peak RSS: half epoch   whole epoch (each count in a fresh process)")
                for n in images.sorted() {
                    try Self.populate("\(root)/n\(n)", count: n, pool: pool, distinct: distinct)
                    let child = Process()
                    child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
                    child.arguments = ["bench", "data", "--single", "--images", "\(n)", "--dir", root, "--batch-size", "\(batchSize)",
                                       "--threads", "\(threads)", "--distinct", "\(distinct)", "--source-size", "\(w)", "\(h)"]
                    fflush(stdout)
                    try child.run()
                    child.waitUntilExit()
                    guard child.terminationStatus == 0 else {
                        throw PruneKitError(.io, "the measurement of \(n) images failed (exit status \(child.terminationStatus))")
                    }
                }
                return
            }
            for n in images.sorted() {
                let folder = "\(root)/n\(n)"
                let loadStart = Date()
                let splits = try DatasetCatalog.load(folder, options: DataSourceOptions())
                let load = Date().timeIntervalSince(loadStart)
                let before = memoryStatus("VmRSS")
                var peak = before, checksum: Float = 0, seen = 0, peakAtHalf = before
                let start = Date()
                let loader = try DataLoader(splits.train, batchSize: batchSize, shuffle: true, seed: 0, augmentation: .imageNet)
                for batch in loader {
                    checksum += batch.images.withUnsafeBufferPointer { $0[0] }
                    seen += batch.count
                    peak = max(peak, memoryStatus("VmRSS"))
                    if seen <= splits.train.count / 2 { peakAtHalf = peak }
                }
                let seconds = Date().timeIntervalSince(start)
                guard checksum.isFinite, seen == splits.train.count else {
                    throw PruneKitError(.numerical, "bench data: the epoch gave \(seen) of \(splits.train.count) images, checksum \(checksum)",
                                        hint: "the loader lost images or decoded non-finite pixels: report this with the folder's generator settings")
                }
                print(Units.count(n).padding(toLength: 9, withPad: " ", startingAt: 0)
                      + String(format: "%7.2f  %8.2f  %9.0f", load, seconds, Double(seen) / seconds)
                      + Units.bytes(before).leftPadded(13) + Units.bytes(peakAtHalf).leftPadded(18) + Units.bytes(peak).leftPadded(14))
            }
        }
    }

    /// A photo-like RGB image: smooth colour fields with noise, so the JPEG is of a usual size.
    static func picture(_ w: Int, _ h: Int, seed: Int) -> [UInt8] {
        var rng = RandomGenerator(seed: UInt64(seed))
        let fx = 1 + rng.nextInt(below: 6), fy = 1 + rng.nextInt(below: 6), phase = rng.nextInt(below: 256)
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 {
            let base = (x * fx + y * fy + phase + 60 * c) % 256
            out[(y * w + x) * 3 + c] = UInt8(clamping: base + rng.nextInt(below: 24) - 12)
        } } }
        return out
    }

    /// `count` training images in 10 classes (hard links to the pool) and a val/ of 10.
    static func populate(_ folder: String, count: Int, pool: String, distinct: Int) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: "\(folder)/.complete") { return }
        try? fm.removeItem(atPath: folder)
        for split in ["train", "val"] {
            for c in 0..<10 { try fm.createDirectory(atPath: "\(folder)/\(split)/class\(c)", withIntermediateDirectories: true) }
        }
        for i in 0..<count {
            try fm.linkItem(atPath: "\(pool)/\(i % distinct).jpg", toPath: "\(folder)/train/class\(i % 10)/\(i).jpg")
        }
        for c in 0..<10 { try fm.linkItem(atPath: "\(pool)/\(c % distinct).jpg", toPath: "\(folder)/val/class\(c)/\(c).jpg") }
        fm.createFile(atPath: "\(folder)/.complete", contents: nil)
    }
}
