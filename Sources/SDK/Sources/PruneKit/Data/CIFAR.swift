/// The binary format of CIFAR-10 and CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html).
///
/// A file is a sequence of fixed-size records: CIFAR-10 has 1 label byte then 3,072
/// pixel bytes (1,024 red, 1,024 green, 1,024 blue, each 32 × 32 row-major, so already
/// `[C, H, W]`); CIFAR-100 has a coarse label byte, a fine label byte, then the same
/// 3,072 pixel bytes. PruneKit uses the fine (100-class) label.
public enum CIFAR {
    /// Which of the two formats.
    public enum Variant: Sendable {
        /// 10 classes, records of 1 + 3,072 bytes.
        case cifar10
        /// 100 fine classes (20 coarse), records of 2 + 3,072 bytes.
        case cifar100

        /// The number of label bytes in front of each image.
        public var labelBytes: Int { self == .cifar10 ? 1 : 2 }
        /// The number of bytes in one record.
        public var recordSize: Int { labelBytes + 3 * 32 * 32 }
        /// The number of classes of the label PruneKit uses.
        public var classCount: Int { self == .cifar10 ? 10 : 100 }
        /// The mean and std of the training images.
        public var normalization: Normalization { self == .cifar10 ? .cifar10 : .cifar100 }
    }

    /// Reads one or more binary files (plain or gzip) into one ``Dataset``, in file order.
    /// - Parameters:
    ///   - paths: the files, such as `data_batch_1.bin` … `data_batch_5.bin`.
    ///   - variant: CIFAR-10 or CIFAR-100.
    ///   - name: the data set's name for reports.
    /// - Throws: ``PruneKitError`` `.invalidFile` for a missing file, a length that is not a
    ///   positive multiple of the record size, or a label out of range.
    public static func read(_ paths: [String], variant: Variant, name: String) throws -> Dataset {
        let size = 3 * 32 * 32, record = variant.recordSize
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        for path in paths {
            let data = try DataFile.read(path)
            guard !data.isEmpty, data.count % record == 0 else {
                let kind = variant == .cifar10 ? "CIFAR-10" : "CIFAR-100"
                throw PruneKitError(.invalidFile, "\(path): \(data.count) bytes is not a whole number of \(kind) records "
                                    + "of \(record) bytes (\(variant.labelBytes) label byte\(variant.labelBytes == 1 ? "" : "s") "
                                    + "+ \(size) pixels)",
                                    hint: "the file is truncated or of the other CIFAR variant: use the binary version "
                                    + "of the data set, and download it again if it is damaged")
            }
            let n = data.count / record
            pixels.reserveCapacity(pixels.count + n * size)
            labels.reserveCapacity(labels.count + n)
            for r in 0..<n {
                let base = r * record
                if variant == .cifar100, data[base] >= 20 {
                    throw PruneKitError(.invalidFile, "\(path): record \(r) has coarse label \(data[base]), expected 0..<20",
                                        hint: "check that this is a CIFAR-100 binary file")
                }
                let label = data[base + variant.labelBytes - 1]
                guard Int(label) < variant.classCount else {
                    throw PruneKitError(.invalidFile, "\(path): record \(r) has label \(label), expected 0..<\(variant.classCount)",
                                        hint: "check that this is a \(variant == .cifar10 ? "CIFAR-10" : "CIFAR-100") binary file")
                }
                labels.append(Int32(label))
                pixels.append(contentsOf: data[(base + variant.labelBytes)..<(base + record)])
            }
        }
        return try Dataset(name: name, imageShape: [3, 32, 32], classCount: variant.classCount, pixels: pixels,
                           labels: labels, normalization: variant.normalization)
    }
}
