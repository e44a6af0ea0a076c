/// A small, fast, seedable random number generator (xoshiro256**, seeded through
/// SplitMix64), so that the same seed gives the same numbers on every machine.
///
/// Every source of randomness in PruneKit (initialisation, shuffling, augmentation,
/// dropout, random pruning) takes one of these explicitly: nothing reads a global.
public struct RandomGenerator: RandomNumberGenerator {
    private var s0, s1, s2, s3: UInt64
    private var spareNormal: Float?

    /// A generator whose whole sequence is determined by `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    /// A generator for a named sub-stream, independent of the others for practical purposes:
    /// `RandomGenerator(seed: 0, stream: "shuffle")` never depends on how many numbers
    /// another stream drew.
    public init(seed: UInt64, stream: String) {
        // FNV-1a of the stream name, mixed into the seed.
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in stream.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        self.init(seed: seed ^ h)
    }

    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1), 24 random bits.
    public mutating func nextFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform integer in `0..<bound` without modulo bias.
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "RandomGenerator.nextInt: bound must be positive")
        return Int(next(upperBound: UInt64(bound)))
    }

    /// Standard normal (Box–Muller, in double precision).
    public mutating func nextNormal() -> Float {
        if let z = spareNormal { spareNormal = nil; return z }
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        let r = (-2 * _log(u1)).squareRoot()
        spareNormal = Float(r * _sin(2 * Double.pi * u2))
        return Float(r * _cos(2 * Double.pi * u2))
    }

    /// A uniformly random permutation of `0..<n` (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 {
            for i in stride(from: n - 1, to: 0, by: -1) {
                p.swapAt(i, nextInt(below: i + 1))
            }
        }
        return p
    }
}

import Foundation
@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _sin(_ x: Double) -> Double { Foundation.sin(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
