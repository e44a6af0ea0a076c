import Foundation

/// How PruneKit writes quantities, on the terminal and in every report: one style.
///
/// Counts get thousands separators (`61,706`); bytes binary prefixes (`243.5 KiB`,
/// `1.21 MiB`); multiply–accumulates SI prefixes (`416.5 k MACs`, `21.9 M MACs`);
/// durations the unit that keeps three significant digits (`0.412 ms`, `1.23 s`).
public enum Units {
    /// `61,706`, `-1,024`.
    public static func count(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return n < 0 ? "-" + out : out
    }

    /// `512 B`, `243.5 KiB`, `1.21 MiB`, `2.05 GiB` (powers of 1024).
    public static func bytes(_ v: Double) -> String {
        guard v.isFinite else { return "—" }
        if v >= 1_073_741_824 { return String(format: "%.2f GiB", v / Double(1 << 30)) }
        if v >= 1_048_576 { return String(format: "%.2f MiB", v / Double(1 << 20)) }
        if v >= 1024 { return String(format: "%.1f KiB", v / Double(1 << 10)) }
        return String(format: "%.0f B", v)
    }

    public static func bytes(_ n: Int) -> String { bytes(Double(n)) }

    /// `812`, `416.5 k`, `21.90 M`, `1.82 G` (SI prefixes, powers of 1000).
    public static func si(_ v: Double) -> String {
        guard v.isFinite else { return "—" }
        let a = abs(v)
        if a >= 1e9 { return String(format: "%.2f G", v / 1e9) }
        if a >= 1e6 { return String(format: "%.2f M", v / 1e6) }
        if a >= 1e3 { return String(format: "%.1f k", v / 1e3) }
        return String(format: "%.0f", v)
    }

    /// `416.5 k MACs`, `21.90 M MACs`: multiply–accumulates with an SI prefix.
    public static func macs(_ n: Int) -> String { si(Double(n)) + " MACs" }

    /// `0.412 ms`, `45.1 ms`, `1.23 s`, `312 s`.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "—" }
        if seconds >= 100 { return String(format: "%.0f s", seconds) }
        if seconds >= 1 { return String(format: "%.2f s", seconds) }
        if seconds >= 0.1 { return String(format: "%.0f ms", seconds * 1e3) }
        if seconds >= 0.01 { return String(format: "%.1f ms", seconds * 1e3) }
        return String(format: "%.3f ms", seconds * 1e3)
    }

    /// `2.95×` (before / after), `—` when either side is missing or zero.
    public static func ratio(_ before: Double, _ after: Double) -> String {
        guard before > 0, after > 0, before.isFinite, after.isFinite else { return "—" }
        let r = before / after
        return String(format: r >= 100 ? "%.0f×" : r >= 10 ? "%.1f×" : "%.2f×", r)
    }
}
