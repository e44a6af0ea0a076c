import Foundation

/// Softmax cross-entropy averaged over the batch, and its gradient.
///
/// Numerically stable: each row's maximum is subtracted before exponentiating, and the
/// loss is computed as logsumexp − logit[label].
/// - Parameters:
///   - logits: `[N, K]`.
///   - labels: N class indices in `0..<K`.
/// - Returns: the mean loss and ∂loss/∂logits `[N, K]`.
public func softmaxCrossEntropy(logits: Tensor, labels: [Int]) -> (loss: Float, gradient: Tensor) {
    precondition(logits.rank == 2 && logits.shape[0] == labels.count,
                 "softmaxCrossEntropy: logits \(logits.shape) for \(labels.count) labels")
    let (n, k) = (logits.shape[0], logits.shape[1])
    var grad = Tensor(uninitializedShape: [n, k])
    var total: Double = 0
    logits.withUnsafeBufferPointer { lp in grad.withUnsafeMutableBufferPointer { gp in
        for r in 0..<n {
            let row = lp.baseAddress! + r * k, g = gp.baseAddress! + r * k
            var m = row[0]
            for j in 1..<k { m = max(m, row[j]) }
            var s: Float = 0
            for j in 0..<k { let e = expf(row[j] - m); g[j] = e; s += e }
            let label = labels[r]
            precondition(label >= 0 && label < k, "softmaxCrossEntropy: label \(label) outside 0..<\(k)")
            total += Double(logf(s) + m - row[label])
            let inv = 1 / (s * Float(n))
            for j in 0..<k { g[j] *= inv }
            g[label] -= 1 / Float(n)
        }
    } }
    return (Float(total / Double(max(n, 1))), grad)
}

/// How many of the `labels` are the top-1 and among the top-5 entries of `logits` `[N, K]`.
/// Ties count against the label (a label tied with others is ranked after them), and a
/// row with a NaN or infinite logit is never correct (``nonFiniteRows(_:)`` counts them):
/// comparisons with NaN are false, so such a row would otherwise rank its label first.
public func topKCorrect(logits: Tensor, labels: [Int]) -> (top1: Int, top5: Int) {
    let (n, k) = (logits.shape[0], logits.shape[1])
    var top1 = 0, top5 = 0
    logits.withUnsafeBufferPointer { lp in
        for r in 0..<n {
            let row = lp.baseAddress! + r * k, v = row[labels[r]]
            guard UnsafeBufferPointer(start: row, count: k).allSatisfy(\.isFinite) else { continue }
            var above = 0
            for j in 0..<k where j != labels[r] && row[j] >= v { above += 1 }
            if above == 0 { top1 += 1 }
            if above < 5 { top5 += 1 }
        }
    }
    return (top1, top5)
}

/// How many rows of `logits` `[N, K]` hold a NaN or infinite value.
public func nonFiniteRows(_ logits: Tensor) -> Int {
    let (n, k) = (logits.shape[0], logits.shape[1])
    return logits.withUnsafeBufferPointer { lp in
        (0..<n).reduce(0) { count, r in
            count + (UnsafeBufferPointer(start: lp.baseAddress! + r * k, count: k).allSatisfy(\.isFinite) ? 0 : 1)
        }
    }
}
