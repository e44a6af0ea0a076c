import Foundation

/// An N:M semi-structured sparsity pattern: in every group of M consecutive input channels
/// of a weight, at a fixed output channel and kernel position, N weights are kept.
///
/// The groups follow NVIDIA's Automatic SParsity (ASP) and Mishra et al.: they run along
/// the input (reduction) dimension — for a convolution `[out, in, kh, kw]` along `in`, for
/// a linear layer `[out, in]` along `in` — so that 2:4 is the layout sparse tensor cores
/// multiply. A layer whose input size (`in`, or `in/groups` for a grouped convolution) is
/// not a multiple of M is left dense with a note, as ASP skips the layers it can't shape
/// (the usual case: a first convolution with 1 or 3 input channels).
///
/// Selection under a pattern keeps, in each group, the N highest-scoring weights of any
/// weight criterion; the pattern alone fixes the mask of the layers it covers (sparsity
/// 1 − N/M there), see ``SelectionSettings/pattern``.
///
/// References: Mishra et al., "Accelerating Sparse Deep Neural Networks", arXiv:2104.08378,
/// 2021; NVIDIA apex `contrib/sparsity` (ASP).
public struct NMPattern: Sendable, Hashable, CustomStringConvertible {
    /// Weights kept per group, 1 ≤ n < m.
    public let n: Int
    /// Group size: consecutive input channels.
    public let m: Int

    /// - Throws: ``PruneKitError`` `.invalidArgument` unless 1 ≤ n < m.
    public init(n: Int, m: Int) throws {
        guard n >= 1, m >= 1 else {
            throw PruneKitError(.invalidArgument, "the N:M pattern \(n):\(m) needs N and M of at least 1",
                                hint: "keep N of every M weights with 1 ≤ N < M, such as 2:4")
        }
        guard n < m else {
            throw PruneKitError(.invalidArgument, "the N:M pattern \(n):\(m) keeps \(n) of every \(m) weights: N must be less than M",
                                hint: "N = M would prune nothing; give a pattern such as 2:4 or 1:4")
        }
        self.n = n; self.m = m
    }

    /// Parses `"N:M"` (`"2:4"`).
    /// - Throws: ``PruneKitError`` `.invalidArgument` for text that is not two integers
    ///   separated by a colon, or numbers outside 1 ≤ N < M.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[0].trimmingCharacters(in: .whitespaces)),
              let m = Int(parts[1].trimmingCharacters(in: .whitespaces)) else {
            throw PruneKitError(.invalidArgument, "'\(text)' is not an N:M pattern",
                                hint: "give two whole numbers separated by a colon, such as 2:4 (keep 2 of every 4 weights)")
        }
        try self.init(n: n, m: m)
    }

    /// The sparsity of a layer the pattern covers: 1 − N/M.
    public var sparsity: Double { 1 - Double(n) / Double(m) }

    public var description: String { "\(n):\(m)" }
}

/// The N:M groups of one weight tensor `[out, in, k…]`: M consecutive input channels at a
/// fixed output channel and kernel position. Group `t` is `(o, g, k)` in row-major order
/// (`t = (o · in/M + g) · K + k`, K the product of the kernel dimensions); its element `j`
/// (0 ≤ j < M) is at `((o · in + g · M + j) · K + k)` of the row-major weights.
struct NMGroups {
    let rows: Int, channels: Int, inner: Int, m: Int

    /// `nil` when the shape has no input dimension, or its input size is 0 or not a multiple of `m`.
    init?(shape: [Int], m: Int) {
        guard shape.count >= 2, m >= 1, shape[1] > 0, shape[1] % m == 0 else { return nil }
        rows = shape[0]; channels = shape[1]; inner = shape.dropFirst(2).reduce(1, *); self.m = m
    }

    /// Groups per output row.
    var perRow: Int { channels / m * inner }
    var count: Int { rows * perRow }
    /// Elements per output row.
    var rowLength: Int { channels * inner }

    /// The element offset of position 0 of group `t`; positions step by ``inner``.
    @inline(__always)
    func start(ofGroup t: Int) -> Int {
        let o = t / perRow, r = t % perRow, g = r / inner, k = r % inner
        return (o * channels + g * m) * inner + k
    }
}

/// Whether element `j` of a group's keys is among its `n` best, ordered by
/// ``sortableKey(_:)`` then position: the M − N lowest by (score, position) are pruned, so
/// among equal scores the earlier positions go first, as in
/// ``selectLowest(_:count:chunkSize:threads:)``. Cost: M comparisons.
@inline(__always)
func nmKept(_ keys: UnsafeBufferPointer<UInt32>, _ j: Int, n: Int) -> Bool {
    var above = 0
    let kj = keys[j]
    for i in keys.indices where keys[i] > kj || (keys[i] == kj && i > j) {
        above += 1
        if above >= n { return false }
    }
    return true
}

/// The keep bits (``PruningPlan/Layer/keepWords``) of one layer under an N:M pattern:
/// reads the source in chunks of whole output rows (about `chunkSize` scores), keeps the
/// N best of every group. Cost: at most `count · M` comparisons, one pass over the scores.
func nmKeepWords(_ source: ScoreSource, groups: NMGroups, n: Int, chunkSize: Int) throws -> [UInt64] {
    var words = [UInt64](repeating: 0, count: PruningPlan.Layer.wordCount(source.count))
    let rowLength = groups.rowLength, m = groups.m, inner = groups.inner
    guard rowLength > 0 else { return words }
    let rowsPerChunk = max(1, chunkSize / rowLength)
    let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: rowsPerChunk * rowLength)
    defer { scratch.deallocate() }
    let keys = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: m)
    defer { keys.deallocate() }
    try words.withUnsafeMutableBufferPointer { w in
        var row = 0
        while row < groups.rows {
            let rows = min(rowsPerChunk, groups.rows - row)
            let range = (row * rowLength)..<((row + rows) * rowLength)
            try source.read(range, scratch) { scores in
                assert(scores.count == range.count)
                for t in (row * groups.perRow)..<((row + rows) * groups.perRow) {
                    let start = groups.start(ofGroup: t)
                    let local = start - range.lowerBound
                    for j in 0..<m { keys[j] = sortableKey(scores[local + j * inner]) }
                    for j in 0..<m where nmKept(UnsafeBufferPointer(keys), j, n: n) {
                        let p = start + j * inner
                        w[p >> 6] |= 1 << UInt64(p & 63)
                    }
                }
            }
            row += rows
        }
    }
    return words
}
