import Foundation

/// A pool of reusable scratch buffers for kernels (im2col columns and the like), so a
/// training step does not allocate and page-fault tens of megabytes every batch.
///
/// Thread-safe; a buffer is lent for the duration of a closure and then returned.
public enum Workspace {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var pool: [TensorStorage] = []

    /// Lends `body` a scratch buffer of at least `count` floats (contents undefined).
    public static func withBuffer<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let storage = take(count)
        defer { give(storage) }
        return try body(storage.pointer)
    }

    private static func take(_ count: Int) -> TensorStorage {
        lock.lock(); defer { lock.unlock() }
        // Smallest pooled buffer that is large enough.
        var best: Int?
        for (i, s) in pool.enumerated() where s.count >= count {
            if best == nil || s.count < pool[best!].count { best = i }
        }
        if let best { return pool.remove(at: best) }
        return TensorStorage(count: count)
    }

    private static func give(_ storage: TensorStorage) {
        lock.lock(); defer { lock.unlock() }
        pool.append(storage)
        if pool.count > 8 {   // keep the pool small: drop the smallest buffer
            let smallest = pool.indices.min { pool[$0].count < pool[$1].count }!
            pool.remove(at: smallest)
        }
    }

    /// Releases every pooled buffer (for example after a large model is no longer used).
    public static func purge() {
        lock.lock(); pool.removeAll(); lock.unlock()
    }
}
