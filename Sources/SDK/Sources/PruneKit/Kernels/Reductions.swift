/// Vectorised reductions over contiguous `Float` buffers.
///
/// Each keeps 16 independent partial sums (two 8-wide vectors) so the loop is not one
/// long dependency chain, and combines them in a fixed order: the result depends only
/// on the data, never on timing. Tests compare each with a plain double-precision loop.

/// Σ p[i] for i in 0..<n.
@inlinable
public func simdSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var a = SIMD8<Float>(), b = SIMD8<Float>()
    let raw = UnsafeRawPointer(p)
    var i = 0
    while i + 16 <= n {
        a += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        b += raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
        i += 16
    }
    var s = (a + b).sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// Σ p[i]·q[i] for i in 0..<n.
@inlinable
public func simdDot(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, _ n: Int) -> Float {
    var a = SIMD8<Float>(), b = SIMD8<Float>()
    let rp = UnsafeRawPointer(p), rq = UnsafeRawPointer(q)
    var i = 0
    while i + 16 <= n {
        a += rp.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            * rq.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
        b += rp.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            * rq.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
        i += 16
    }
    var s = (a + b).sum()
    while i < n { s += p[i] * q[i]; i += 1 }
    return s
}

/// Σ (p[i] − c)² for i in 0..<n (the second pass of a two-pass variance).
@inlinable
public func simdSumOfSquaredDeviations(_ p: UnsafePointer<Float>, _ n: Int, from c: Float) -> Float {
    var a = SIMD8<Float>(), b = SIMD8<Float>()
    let raw = UnsafeRawPointer(p), cv = SIMD8<Float>(repeating: c)
    var i = 0
    while i + 16 <= n {
        let x = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) - cv
        let y = raw.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self) - cv
        a += x * x; b += y * y
        i += 16
    }
    var s = (a + b).sum()
    while i < n { let d = p[i] - c; s += d * d; i += 1 }
    return s
}
