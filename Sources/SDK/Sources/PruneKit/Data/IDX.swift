/// An n-dimensional array of unsigned bytes read from an IDX file.
public struct IDXArray: Sendable, Equatable {
    /// The extent of each dimension, outermost first (`[count, rows, columns]` for images).
    public let dimensions: [Int]
    /// The values in row-major order.
    public let bytes: [UInt8]

    public init(dimensions: [Int], bytes: [UInt8]) {
        self.dimensions = dimensions
        self.bytes = bytes
    }
}

/// The IDX file format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).
///
/// A file starts with two zero bytes, a type byte (`0x08`: unsigned byte, the only type
/// PruneKit reads) and the number of dimensions, followed by each dimension's extent as
/// a 32-bit big-endian integer, then the values in row-major order. Files compressed
/// with gzip (`.gz`, recognised by their first bytes `1f 8b`) are inflated transparently.
public enum IDX {
    /// Reads the IDX file at `path` (plain or gzip).
    /// - Throws: ``PruneKitError`` `.invalidFile` naming the file and what is wrong.
    public static func read(_ path: String) throws -> IDXArray {
        try decode(DataFile.read(path), source: path)
    }

    /// Decodes the bytes of an (uncompressed) IDX file.
    /// - Parameters:
    ///   - data: the whole file.
    ///   - source: a name for the data (a path) used in error messages.
    /// - Throws: ``PruneKitError`` `.invalidFile` for a wrong magic number, an unsupported
    ///   type, no or zero dimensions, or data shorter or longer than the header says.
    public static func decode(_ data: [UInt8], source: String) throws -> IDXArray {
        let header = try parseHeader(data, source: source)
        return IDXArray(dimensions: header.dimensions, bytes: Array(data[header.dataOffset...]))
    }

    static func parseHeader(_ data: [UInt8], source: String) throws -> (dimensions: [Int], dataOffset: Int) {
        let formatHint = "an IDX file (MNIST format) starts with 00 00, a type byte and the number of dimensions; "
            + "check that the path names an images or labels file, uncompressed or .gz"
        guard data.count >= 4 else {
            throw PruneKitError(.invalidFile, "\(source): \(data.count) bytes is too short for an IDX file "
                                + "(expected a header of at least 4 bytes)", hint: formatHint)
        }
        guard data[0] == 0, data[1] == 0 else {
            throw PruneKitError(.invalidFile, "\(source): not an IDX file: wrong magic number "
                                + "\(hex(data[0])) \(hex(data[1])) \(hex(data[2])) \(hex(data[3])), "
                                + "expected 0x00 0x00 then a type byte and the number of dimensions", hint: formatHint)
        }
        guard data[2] == 0x08 else {
            throw PruneKitError(.invalidFile, "\(source): unsupported IDX data type \(hex(data[2])) (\(typeName(data[2]))), "
                                + "expected 0x08 (unsigned byte)",
                                hint: "PruneKit reads image and label files of unsigned bytes, as in MNIST")
        }
        let rank = Int(data[3])
        guard rank > 0 else {
            throw PruneKitError(.invalidFile, "\(source): IDX header declares 0 dimensions, expected at least 1",
                                hint: formatHint)
        }
        let offset = 4 + 4 * rank
        guard data.count >= offset else {
            throw PruneKitError(.invalidFile, "\(source): truncated IDX header: \(rank) dimensions need \(offset) header bytes, "
                                + "the file has \(data.count)", hint: "the file is damaged: download it again")
        }
        var dims: [Int] = []
        var total = 1
        for d in 0..<rank {
            let p = 4 + 4 * d
            let extent = Int(data[p]) << 24 | Int(data[p + 1]) << 16 | Int(data[p + 2]) << 8 | Int(data[p + 3])
            guard extent > 0 else {
                throw PruneKitError(.invalidFile, "\(source): IDX dimension \(d) has extent 0, expected a positive size",
                                    hint: "the file holds no data or is damaged: download it again")
            }
            dims.append(extent)
            let (product, overflow) = total.multipliedReportingOverflow(by: extent)
            guard !overflow else {
                throw PruneKitError(.invalidFile, "\(source): IDX dimensions \(dims) are too large to be real",
                                    hint: "the header is damaged: download the file again")
            }
            total = product
        }
        let found = data.count - offset
        if found < total {
            throw PruneKitError(.invalidFile, "\(source): the IDX header promises \(total) values "
                                + "(dimensions \(dims.map(String.init).joined(separator: " × "))) but the file holds only \(found)",
                                hint: "the file is truncated: download it again")
        }
        if found > total {
            throw PruneKitError(.invalidFile, "\(source): the IDX header promises \(total) values "
                                + "(dimensions \(dims.map(String.init).joined(separator: " × "))) but the file holds \(found) "
                                + "(\(found - total) bytes too many)",
                                hint: "the header does not match the data: the file is damaged or not an IDX file")
        }
        return (dims, offset)
    }

    /// Reads an images file (`[N, H, W]`, or `[N, C, H, W]`) and a labels file (`[N]`) into a ``Dataset``.
    /// - Parameters:
    ///   - images: the path of the images file (plain or gzip).
    ///   - labels: the path of the labels file (plain or gzip).
    ///   - classCount: the number of classes; every label must be below it.
    ///   - name: the data set's name for reports.
    ///   - normalization: per-channel normalisation.
    /// - Throws: ``PruneKitError`` `.invalidFile` for a bad file, image and label counts
    ///   that differ, or a label ≥ `classCount`.
    public static func loadDataset(images: String, labels: String, classCount: Int, name: String,
                                   normalization: Normalization) throws -> Dataset {
        let imageFile = try DataFile.read(images)
        let imageHeader = try parseHeader(imageFile, source: images)
        let dims = imageHeader.dimensions
        guard dims.count == 3 || dims.count == 4 else {
            throw PruneKitError(.invalidFile, "\(images): an images file needs 3 dimensions [count, height, width] "
                                + "(or 4: [count, channels, height, width]), found \(dims.count): \(dims)",
                                hint: "check that this is the images file and not the labels file")
        }
        let labelArray = try read(labels)
        guard labelArray.dimensions.count == 1 else {
            throw PruneKitError(.invalidFile, "\(labels): a labels file needs 1 dimension [count], "
                                + "found \(labelArray.dimensions.count): \(labelArray.dimensions)",
                                hint: "check that this is the labels file and not the images file")
        }
        guard labelArray.dimensions[0] == dims[0] else {
            throw PruneKitError(.invalidFile, "\(labels): \(labelArray.dimensions[0]) labels, but the images file "
                                + "\(images) has \(dims[0]) images",
                                hint: "the two files must belong together (both train or both t10k, same data set)")
        }
        if let bad = labelArray.bytes.firstIndex(where: { Int($0) >= classCount }) {
            throw PruneKitError(.invalidFile, "\(labels): label \(labelArray.bytes[bad]) of example \(bad) is outside "
                                + "0..<\(classCount) (\(classCount) classes expected)",
                                hint: "check that this is a labels file of the right data set")
        }
        let shape = dims.count == 3 ? [1, dims[1], dims[2]] : Array(dims[1...])
        return try Dataset(name: name, imageShape: shape, classCount: classCount,
                           pixels: Array(imageFile[imageHeader.dataOffset...]),
                           labels: labelArray.bytes.map { Int32($0) }, normalization: normalization)
    }

    static func typeName(_ code: UInt8) -> String {
        switch code {
        case 0x08: return "unsigned byte"
        case 0x09: return "signed byte"
        case 0x0B: return "16-bit integer"
        case 0x0C: return "32-bit integer"
        case 0x0D: return "32-bit float"
        case 0x0E: return "64-bit float"
        default: return "not an IDX type"
        }
    }
}

private func hex(_ b: UInt8) -> String {
    let s = String(b, radix: 16)
    return "0x" + (s.count == 1 ? "0" + s : s)
}
