import Foundation

/// Owns one 64-byte aligned block of `Float`s. Tensors share it copy-on-write.
@usableFromInline
final class TensorStorage {
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    @usableFromInline let count: Int

    @usableFromInline init(count: Int) {
        self.count = count
        var raw: UnsafeMutableRawPointer?
        // posix_memalign only fails on out-of-memory, which Swift treats as fatal anyway.
        let status = posix_memalign(&raw, 64, max(count, 1) * MemoryLayout<Float>.stride)
        guard status == 0, let raw else { fatalError("PruneKit: out of memory allocating \(count) floats") }
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    @usableFromInline convenience init(copying other: TensorStorage) {
        self.init(count: other.count)
        pointer.update(from: other.pointer, count: count)
    }

    deinit { free(pointer) }
}

/// A dense, row-major array of `Float32` with a shape.
///
/// `Tensor` has value semantics: copies share storage until one of them is written
/// (copy-on-write). Hot code reaches the elements through
/// ``withUnsafeBufferPointer(_:)`` and ``withUnsafeMutableBufferPointer(_:)``.
///
/// Feature maps inside a ``Model`` are stored **channel-major**, `[C, N, H, W]`, so
/// that a convolution over a whole batch is one matrix product and per-channel work
/// (BatchNorm, channel scores) reads contiguous memory. Data sets and
/// ``Model/forward(_:)`` use the usual `[N, C, H, W]` at the boundary.
public struct Tensor: CustomStringConvertible {
    /// The extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage

    /// The number of elements (the product of `shape`).
    public var count: Int { storage.count }
    /// The number of dimensions.
    public var rank: Int { shape.count }

    /// A tensor of `shape` with every element set to `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        let n = Tensor.elementCount(shape)
        storage = TensorStorage(count: n)
        self.shape = shape
        storage.pointer.initialize(repeating: value, count: n)
    }

    /// A tensor of `shape` holding `scalars` in row-major order.
    /// - Precondition: `scalars.count` equals the product of `shape`.
    public init(shape: [Int], scalars: [Float]) {
        let n = Tensor.elementCount(shape)
        precondition(scalars.count == n, "Tensor: \(scalars.count) scalars for shape \(shape) (\(n) elements)")
        storage = TensorStorage(count: n)
        self.shape = shape
        scalars.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: n) }
    }

    /// A tensor whose elements are left uninitialised, for kernels that write every element.
    @usableFromInline
    init(uninitializedShape shape: [Int]) {
        storage = TensorStorage(count: Tensor.elementCount(shape))
        self.shape = shape
    }

    /// A tensor of zeros.
    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }

    /// Samples from N(`mean`, `std`²) drawn from `rng`.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                    using rng: inout RandomGenerator) -> Tensor {
        var t = Tensor(uninitializedShape: shape)
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count { p[i] = mean + std * rng.nextNormal() }
        }
        return t
    }

    /// Samples from U(`low`, `high`) drawn from `rng`.
    public static func randomUniform(_ shape: [Int], low: Float, high: Float,
                                     using rng: inout RandomGenerator) -> Tensor {
        var t = Tensor(uninitializedShape: shape)
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count { p[i] = low + (high - low) * rng.nextFloat() }
        }
        return t
    }

    static func elementCount(_ shape: [Int]) -> Int {
        shape.reduce(1) { a, d in
            precondition(d >= 0, "Tensor: negative dimension in shape \(shape)")
            return a * d
        }
    }

    // MARK: Element access

    /// The elements in row-major order.
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// Reads the elements without copying them.
    @inlinable
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// Writes the elements in place (copying the storage first if it is shared).
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) { storage = TensorStorage(copying: storage) }
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// The element at a multi-dimensional index (slow; for tests and small tensors).
    public subscript(_ index: Int...) -> Float {
        get { storage.pointer[flatIndex(index)] }
        set {
            let i = flatIndex(index)
            withUnsafeMutableBufferPointer { $0[i] = newValue }
        }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == shape.count, "Tensor: index \(index) for shape \(shape)")
        var flat = 0
        for (i, d) in zip(index, shape) {
            precondition(i >= 0 && i < d, "Tensor: index \(index) out of range for shape \(shape)")
            flat = flat * d + i
        }
        return flat
    }

    // MARK: Shape

    /// The same elements with another shape of equal element count; `-1` infers one dimension.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var dims = newShape
        if let k = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != k }.reduce(1) { $0 * $1.element }
            precondition(known > 0 && count % known == 0, "Tensor: cannot reshape \(shape) to \(newShape)")
            dims[k] = count / known
        }
        precondition(Tensor.elementCount(dims) == count, "Tensor: cannot reshape \(shape) to \(newShape)")
        var t = self
        t.shape = dims
        return t
    }

    /// The rows of a tensor viewed as `[shape[0], rest]`: for a weight `[out, in, kh, kw]`,
    /// one row of `in·kh·kw` values per output channel.
    public var rows: [[Float]] {
        guard let n = shape.first, n > 0 else { return [] }
        let width = count / n
        return withUnsafeBufferPointer { p in
            (0..<n).map { Array(p[($0 * width)..<(($0 + 1) * width)]) }
        }
    }

    public var description: String {
        let preview = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(preview)\(count > 8 ? ", …" : "")])"
    }
}

extension Tensor: Equatable {
    /// Exact equality of shape and every element.
    public static func == (a: Tensor, b: Tensor) -> Bool {
        guard a.shape == b.shape else { return false }
        return a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            memcmp(pa.baseAddress!, pb.baseAddress!, a.count * MemoryLayout<Float>.stride) == 0
        } }
    }
}
