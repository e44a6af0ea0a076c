import COpenBLAS

/// C ← α·op(A)·op(B) + β·C on raw row-major buffers, through OpenBLAS `cblas_sgemm`,
/// split into column blocks over ``Parallel/threadCount`` threads.
///
/// - Parameters:
///   - m, n, k: op(A) is `[m, k]`, op(B) is `[k, n]`, C is `[m, n]`.
///   - lda, ldb, ldc: row strides of A, B and C as stored.
/// - Cost: 2·m·n·k flops.
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0 else { return }
    if k == 0 {   // BLAS implementations disagree on k = 0; define it: C ← β·C.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
        return
    }
    // Split the columns of C (and of op(B)) over the engine's threads; each block is an
    // independent single-threaded OpenBLAS call, in a fixed partition (deterministic).
    let blocks = m * n * k >= 1 << 18 ? min(Parallel.threadCount, max(1, n / 16)) : 1
    Parallel.forEach(blocks, grain: 1) { r in
        for blk in r {
            let cols = Parallel.range(of: blk, in: n, chunks: blocks)
            let bOffset = transB ? cols.lowerBound * ldb : cols.lowerBound
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(m), Int32(cols.count), Int32(k), alpha, a, Int32(lda), b + bOffset, Int32(ldb),
                        beta, c + cols.lowerBound, Int32(ldc))
        }
    }
}

/// ``sgemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` on the calling thread
/// only, for kernels that already run one task per thread.
public func sgemmSerial(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                        b: UnsafePointer<Float>, ldb: Int,
                        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0, k > 0 else {
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
              b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The naive triple loop that ``sgemm(transA:transB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``
/// is tested against. Never used on a hot path.
public func referenceSgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                           alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                           b: UnsafePointer<Float>, ldb: Int,
                           beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var s: Double = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(av) * Double(bv)
            }
            c[i * ldc + j] = alpha * Float(s) + (beta == 0 ? 0 : beta * c[i * ldc + j])
        }
    }
}

extension Tensor {
    /// The matrix product of two rank-2 tensors, optionally transposing either.
    ///
    /// `[m, k] · [k, n] → [m, n]` (after the transpositions). Cost: 2·m·n·k flops on BLAS.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) -> Tensor {
        precondition(rank == 2 && other.rank == 2, "matmul: needs rank-2 tensors, got \(shape) and \(other.shape)")
        let (m, k) = transposeSelf ? (shape[1], shape[0]) : (shape[0], shape[1])
        let (k2, n) = transposeOther ? (other.shape[1], other.shape[0]) : (other.shape[0], other.shape[1])
        precondition(k == k2, "matmul: inner dimensions differ: \(shape) · \(other.shape)")
        var out = Tensor(shape: [m, n])
        withUnsafeBufferPointer { a in other.withUnsafeBufferPointer { b in out.withUnsafeMutableBufferPointer { c in
            sgemm(transA: transposeSelf, transB: transposeOther, m: m, n: n, k: k,
                  a: a.baseAddress!, lda: shape[1], b: b.baseAddress!, ldb: other.shape[1],
                  c: c.baseAddress!, ldc: n)
        } } }
        return out
    }

    /// The transpose of a rank-2 tensor.
    public func transposed() -> Tensor {
        precondition(rank == 2, "transposed: needs a rank-2 tensor, got \(shape)")
        let (r, c) = (shape[0], shape[1])
        var out = Tensor(uninitializedShape: [c, r])
        withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            transpose(src.baseAddress!, rows: r, cols: c, into: dst.baseAddress!)
        } }
        return out
    }
}

/// Writes the `[cols, rows]` transpose of the row-major `[rows, cols]` matrix `src` into
/// `dst`, in cache-sized tiles.
@inlinable
public func transpose(_ src: UnsafePointer<Float>, rows: Int, cols: Int, into dst: UnsafeMutablePointer<Float>) {
    let tile = 32
    var i0 = 0
    while i0 < rows {
        let i1 = min(i0 + tile, rows)
        var j0 = 0
        while j0 < cols {
            let j1 = min(j0 + tile, cols)
            for i in i0..<i1 { for j in j0..<j1 { dst[j * rows + i] = src[i * cols + j] } }
            j0 = j1
        }
        i0 = i1
    }
}
