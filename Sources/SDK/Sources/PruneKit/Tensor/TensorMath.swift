extension Tensor {
    /// Applies `f` to every element, returning a new tensor of the same shape.
    @inlinable
    public func map(_ f: (Float) -> Float) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        withUnsafeBufferPointer { a in out.withUnsafeMutableBufferPointer { o in
            for i in 0..<a.count { o[i] = f(a[i]) }
        } }
        return out
    }

    /// Combines two tensors of the same shape element by element.
    @inlinable
    public func zipMap(_ other: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        precondition(shape == other.shape, "elementwise op: shapes differ, \(shape) and \(other.shape)")
        var out = Tensor(uninitializedShape: shape)
        withUnsafeBufferPointer { a in other.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { o in
            for i in 0..<a.count { o[i] = f(a[i], b[i]) }
        } } }
        return out
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { a.zipMap(b, +) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.zipMap(b, -) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { a.zipMap(b, *) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.map { $0 * s } }
    public static func * (s: Float, a: Tensor) -> Tensor { a.map { $0 * s } }

    /// self += α·x, in place.
    @inlinable
    public mutating func add(_ x: Tensor, scaledBy alpha: Float = 1) {
        precondition(shape == x.shape, "add: shapes differ, \(shape) and \(x.shape)")
        x.withUnsafeBufferPointer { xs in withUnsafeMutableBufferPointer { ys in
            for i in 0..<ys.count { ys[i] += alpha * xs[i] }
        } }
    }

    /// Sets every element to `value`, in place.
    public mutating func fill(_ value: Float) {
        withUnsafeMutableBufferPointer { $0.update(repeating: value) }
    }

    /// The sum of all elements (accumulated in double precision).
    public func sum() -> Float {
        withUnsafeBufferPointer { p in
            var s: Double = 0
            for v in p { s += Double(v) }
            return Float(s)
        }
    }

    /// The mean of all elements.
    public func mean() -> Float { count == 0 ? 0 : sum() / Float(count) }

    /// The largest absolute element (0 for an empty tensor).
    public func maxAbs() -> Float { withUnsafeBufferPointer { $0.reduce(0) { max($0, abs($1)) } } }

    /// Whether every element is finite.
    public var isFinite: Bool { withUnsafeBufferPointer { p in p.allSatisfy { $0.isFinite } } }

    /// The index of the largest element of each row of a `[n, k]` tensor.
    public func argmaxRows() -> [Int] {
        precondition(rank == 2, "argmaxRows: needs a rank-2 tensor, got \(shape)")
        let k = shape[1]
        return withUnsafeBufferPointer { p in
            (0..<shape[0]).map { r in
                var best = 0
                for j in 1..<max(k, 1) where p[r * k + j] > p[r * k + best] { best = j }
                return best
            }
        }
    }
}
