import COpenBLAS
import Glibc
import Dispatch

/// The engine's threads: one setting for OpenBLAS and for PruneKit's own kernels.
///
/// Work is split into a fixed number of contiguous chunks that depends only on the
/// problem size and ``threadCount``, never on timing, so the same seed and the same
/// thread count give bit-identical results.
public enum Parallel {
    nonisolated(unsafe) private static var _threads: Int = defaultThreadCount()

    /// The number of threads PruneKit and OpenBLAS use (default: the number of cores).
    public static var threadCount: Int { _threads }

    /// Sets the thread count for PruneKit's kernels and for OpenBLAS.
    /// Values below 1 are treated as 1.
    public static func setThreadCount(_ n: Int) {
        _threads = max(1, n)
        openblas_set_num_threads(Int32(_threads))
    }

    static func defaultThreadCount() -> Int {
        let n = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        openblas_set_num_threads(Int32(n))
        return n
    }

    /// Runs `body` over `0..<count` split into at most ``threadCount`` contiguous ranges of
    /// at least `grain` items each; the ranges run concurrently.
    @inlinable
    public static func forEach(_ count: Int, grain: Int = 1, _ body: (Range<Int>) -> Void) {
        let chunks = chunkCount(count, grain: grain)
        if chunks <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            body(range(of: c, in: count, chunks: chunks))
        }
    }

    /// The number of chunks ``forEach(_:grain:_:)`` will use for `count` items.
    @inlinable
    public static func chunkCount(_ count: Int, grain: Int) -> Int {
        guard count > 0 else { return 0 }
        return max(1, min(threadCount, count / max(grain, 1)))
    }

    /// The `c`-th of `chunks` near-equal contiguous ranges of `0..<count`.
    @inlinable
    public static func range(of c: Int, in count: Int, chunks: Int) -> Range<Int> {
        let base = count / chunks, extra = count % chunks
        let start = c * base + min(c, extra)
        return start..<(start + base + (c < extra ? 1 : 0))
    }
}
