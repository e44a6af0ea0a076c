import Foundation

/// Rank statistics shared by the oracle evaluation and the reports.
public enum RankStatistics {
    /// Ranks 1…n of `values`, ties given the mean of the ranks they span (so the ranks of
    /// `[10, 20, 20, 30]` are `[1, 2.5, 2.5, 4]`). NaN values are not allowed.
    public static func ranks(_ values: [Double]) -> [Double] {
        let order = values.indices.sorted { values[$0] < values[$1] }
        var ranks = [Double](repeating: 0, count: values.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count, values[order[j + 1]] == values[order[i]] { j += 1 }
            let mean = Double(i + j) / 2 + 1
            for k in i...j { ranks[order[k]] = mean }
            i = j + 1
        }
        return ranks
    }

    /// Spearman's rank correlation: Pearson's correlation of the two rankings (ties
    /// averaged). `nil` when there are fewer than two pairs, a value is not finite, or a
    /// ranking is constant (the correlation is undefined).
    public static func spearman(_ x: [Double], _ y: [Double]) -> Double? {
        precondition(x.count == y.count, "spearman: \(x.count) values against \(y.count)")
        guard x.count >= 2, x.allSatisfy(\.isFinite), y.allSatisfy(\.isFinite) else { return nil }
        return pearson(ranks(x), ranks(y))
    }

    /// Pearson's correlation; `nil` when either input is constant.
    public static func pearson(_ x: [Double], _ y: [Double]) -> Double? {
        let n = Double(x.count)
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) {
            sxy += (a - mx) * (b - my); sxx += (a - mx) * (a - mx); syy += (b - my) * (b - my)
        }
        guard sxx > 0, syy > 0 else { return nil }
        return sxy / (sxx * syy).squareRoot()
    }
}
