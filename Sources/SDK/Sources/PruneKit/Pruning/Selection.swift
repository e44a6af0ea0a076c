/// Which weights or channels to prune, given scores.
///
/// Counts are exact: of the `n` prunable weights (or channels) in scope, exactly
/// `n − round(n · (1 − sparsity))` are pruned — the lowest scores, ties broken by layer
/// order then position, so the same scores always give the same plan. "Compression" is
/// `1 / (1 − sparsity)` over the **prunable** weights: the weights of the convolutions
/// and linear layers in scope, without biases or BatchNorm parameters. Reports also give
/// the whole-model ratio (every trainable parameter, biases included, as ShrinkBench
/// defines it).
public struct SelectionSettings: Sendable, Equatable {
    public enum Scope: String, Sendable, Codable {
        /// One threshold over every layer in scope.
        case global
        /// The same fraction in every layer.
        case perLayer = "layer"
    }

    public var scope: Scope
    /// The fraction of the in-scope weights (or channels) to prune, in [0, 1).
    public var sparsity: Double
    /// Dotted paths of layers never pruned (`features.0`).
    public var excluded: Set<String> = []
    /// Keep the last prunable layer (the classifier) whole, as ShrinkBench does.
    public var keepClassifier = true
    /// Channels kept in every layer at least (channel granularity).
    public var minimumChannels = 1
    /// Kept channel counts are rounded up to a multiple of this (channel granularity): the
    /// best-scored pruned channels come back until it is met, or the layer is whole. CPU
    /// runtimes compute convolutions in blocks of 8 or 16 channels, so a width of 45 costs
    /// about what 48 does; 8 turns more of a MACs reduction into measured speed
    /// (Torch-Pruning's `round_to`). Default 1: counts as selected.
    public var channelMultiple = 1
    /// An N:M pattern (weight granularity): when set, every in-scope layer keeps the N
    /// best-scored weights of each group of M input channels (``NMPattern``) and
    /// ``sparsity`` and ``scope`` are not used — the pattern alone fixes the mask, at
    /// 1 − N/M in the layers it covers. A layer whose input size is not a multiple of M is
    /// left dense, with a note in the plan.
    public var pattern: NMPattern? = nil

    public init(scope: Scope, sparsity: Double, excluded: Set<String> = [], keepClassifier: Bool = true,
                minimumChannels: Int = 1) {
        self.scope = scope; self.sparsity = sparsity; self.excluded = excluded
        self.keepClassifier = keepClassifier; self.minimumChannels = minimumChannels
    }

    /// Whether the layer at `path` may be pruned: not excluded, and not the classifier when
    /// it is kept whole. The one in-scope rule of selection and targets.
    public func isInScope(_ path: String, isClassifier: Bool) -> Bool {
        !excluded.contains(path) && !(keepClassifier && isClassifier)
    }

    /// Sparsity for a compression ratio: 1 − 1/ratio.
    public static func sparsity(forCompression ratio: Double) -> Double { 1 - 1 / ratio }
}

/// One layer's scores as a source that yields them chunk by chunk: what the streaming
/// selection reads, so that the scores of all layers never exist at once.
///
/// A source is read several times (once per radix pass) and concurrently for disjoint
/// ranges; it must give the same scores every time.
public struct ScoreSource {
    /// The dotted path of the layer (`features.3`).
    public let path: String
    /// The number of scores (weights or channels) of the layer.
    public let count: Int
    /// Whether this is the model's last prunable layer (see ``SelectionSettings/keepClassifier``).
    public let isClassifier: Bool
    /// The shape of the layer's weights (`[out, in, kh, kw]`, `[out, in]`), which N:M
    /// selection (``SelectionSettings/pattern``) groups along `in`; set by the sources made
    /// from a layer, `nil` for sources made from bare scores.
    public var weightShape: [Int]? = nil
    /// Calls the body with the scores of `range`, computed into the scratch buffer
    /// (`scratch.count ≥ range.count`) or read from where they are stored.
    let read: (Range<Int>, UnsafeMutableBufferPointer<Float>, (UnsafeBufferPointer<Float>) -> Void) throws -> Void

    /// A source that computes the scores of a range on demand into a buffer of exactly
    /// `range.count` floats.
    public init(path: String, count: Int, isClassifier: Bool = false,
                chunk: @escaping (_ range: Range<Int>, _ buffer: UnsafeMutableBufferPointer<Float>) throws -> Void) {
        self.path = path; self.count = count; self.isClassifier = isClassifier
        read = { range, scratch, body in
            let buffer = UnsafeMutableBufferPointer(rebasing: scratch[0..<range.count])
            try chunk(range, buffer)
            body(UnsafeBufferPointer(buffer))
        }
    }

    /// A source over stored scores (no copy).
    public init(path: String, scores: [Float], isClassifier: Bool = false) {
        self.path = path; self.count = scores.count; self.isClassifier = isClassifier
        read = { range, _, body in scores.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[range])) } }
    }

    /// A source over a layer's computed scores.
    public init(_ scores: LayerScores) {
        self.init(path: scores.layer.path, scores: scores.scores, isClassifier: scores.layer.isClassifier)
        weightShape = scores.layer.weightShape
    }

    /// All the scores of the source, as an array (for small layers: channel scores).
    public func allScores() throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { o in
            try read(0..<count, o) { p in if p.baseAddress != UnsafePointer(o.baseAddress) { _ = o.initialize(from: p) } }
        }
        return out
    }
}

/// Chooses what to prune from per-layer scores.
/// - Throws: ``PruneKitError`` for a sparsity outside [0, 1), an excluded path that names
///   no layer, or nothing left in scope; with an N:M ``SelectionSettings/pattern``, for
///   channel granularity or a source without a ``ScoreSource/weightShape``.
public func selectPruning(_ scores: [LayerScores], granularity: Granularity, settings: SelectionSettings,
                          criterion: String) throws -> PruningPlan {
    try selectPruning(scores.map(ScoreSource.init), granularity: granularity, settings: settings, criterion: criterion)
}

/// Chooses what to prune from per-layer score sources, streaming: the scores are read
/// chunk by chunk (`chunkSize` per thread, in a reusable buffer) in each pass of the
/// radix select, and the result is written straight into the plan's keep bits. Memory:
/// the plan's bits (1/32 of the float weights) and one chunk buffer per thread.
///
/// Gives exactly the plan of ``selectPruning(_:granularity:settings:criterion:)`` on the
/// same scores, whatever `chunkSize` and `threads` (default: ``Parallel/threadCount``).
/// - Throws: as the array version, and whatever a source throws.
public func selectPruning(_ sources: [ScoreSource], granularity: Granularity, settings: SelectionSettings,
                          criterion: String, chunkSize: Int = 1 << 16, threads: Int? = nil) throws -> PruningPlan {
    guard settings.sparsity >= 0, settings.sparsity < 1, settings.sparsity.isFinite else {
        throw PruneKitError(.invalidArgument, "sparsity \(settings.sparsity) is outside [0, 1)",
                            hint: "a compression ratio r corresponds to sparsity 1 − 1/r; r must be ≥ 1")
    }
    let paths = Set(sources.map(\.path))
    if let unknown = settings.excluded.first(where: { !paths.contains($0) }) {
        throw PruneKitError(.invalidArgument, "excluded layer '\(unknown)' is not a prunable layer of the model",
                            hint: "prunable layers: \(sources.map(\.path).joined(separator: ", "))")
    }
    let inScope = sources.map { settings.isInScope($0.path, isClassifier: $0.isClassifier) }
    guard inScope.contains(true) else {
        throw PruneKitError(.invalidArgument, "no prunable layer is left in scope",
                            hint: "exclude fewer layers, or allow the classifier to be pruned")
    }
    if let pattern = settings.pattern {
        return try selectPattern(pattern, sources, inScope, granularity, settings, criterion, chunkSize)
    }
    var words: [[UInt64]?] = Array(repeating: nil, count: sources.count)
    switch settings.scope {
    case .perLayer:
        for k in sources.indices where inScope[k] {
            let units = sources[k].count
            let prune = units - Int((Double(units) * (1 - settings.sparsity)).rounded())
            words[k] = try selectLowest([sources[k]], count: prune, chunkSize: chunkSize, threads: threads)[0]
        }
    case .global:
        let candidates = sources.indices.filter { inScope[$0] }
        let total = candidates.reduce(0) { $0 + sources[$1].count }
        let prune = total - Int((Double(total) * (1 - settings.sparsity)).rounded())
        let selected = try selectLowest(candidates.map { sources[$0] }, count: prune, chunkSize: chunkSize, threads: threads)
        for (k, w) in zip(candidates, selected) { words[k] = w }
    }
    let plans = sources.indices.map { k in
        words[k].map { PruningPlan.Layer(path: sources[k].path, granularity: granularity, units: sources[k].count, keepWords: $0) }
            ?? PruningPlan.Layer(path: sources[k].path, granularity: granularity, units: sources[k].count)
    }
    return try finish(plans, sources, granularity, settings, criterion)
}

/// N:M selection (``SelectionSettings/pattern``): each in-scope layer whose input size is a
/// multiple of M keeps the N best of every group; the others stay dense, with a note.
private func selectPattern(_ pattern: NMPattern, _ sources: [ScoreSource], _ inScope: [Bool], _ granularity: Granularity,
                           _ settings: SelectionSettings, _ criterion: String, _ chunkSize: Int) throws -> PruningPlan {
    guard granularity == .weight else {
        throw PruneKitError(.invalidArgument, "an N:M pattern selects single weights, but '\(criterion)' scores \(granularity.rawValue)s",
                            hint: "use a weight criterion (global-magnitude, layer-magnitude, …) with an N:M pattern")
    }
    var notes: [String] = []
    let layers = try sources.indices.map { k -> PruningPlan.Layer in
        let s = sources[k]
        let dense = PruningPlan.Layer(path: s.path, granularity: .weight, units: s.count)
        guard inScope[k] else { return dense }
        guard let shape = s.weightShape, shape.reduce(1, *) == s.count else {
            throw PruneKitError(.invalidArgument, "the score source of layer '\(s.path)' has no weight shape, which N:M selection needs",
                                hint: "make score sources with ScoreSource(layer:criterion:context:) or set their weightShape")
        }
        guard let groups = NMGroups(shape: shape, m: pattern.m) else {
            let inputs = shape.count >= 2 ? "its \(shape[1]) input channels are not a multiple of \(pattern.m)" : "it has no input dimension"
            notes.append("layer '\(s.path)' is left dense: \(inputs) (pattern \(pattern))")
            return dense
        }
        let words = try nmKeepWords(s, groups: groups, n: pattern.n, chunkSize: chunkSize)
        return PruningPlan.Layer(path: s.path, granularity: .weight, units: s.count, keepWords: words)
    }
    var plan = PruningPlan(criterion: criterion, granularity: .weight, scope: settings.scope,
                           requestedSparsity: pattern.sparsity, layers: layers, notes: notes)
    plan.pattern = pattern
    return plan
}

/// Enforces the channel minimum, noting layers whose requested ratio was clipped.
private func finish(_ plans: [PruningPlan.Layer], _ sources: [ScoreSource], _ granularity: Granularity,
                    _ settings: SelectionSettings, _ criterion: String) throws -> PruningPlan {
    var plans = plans, notes: [String] = []
    if granularity == .channel {
        let minimum = max(settings.minimumChannels, 1)
        for k in plans.indices where plans[k].keptCount < min(minimum, plans[k].units) {
            // Restore the best-scored pruned channels until the minimum is met.
            let scores = try sources[k].allScores()
            let need = min(minimum, plans[k].units) - plans[k].keptCount
            let pruned = plans[k].prunedPositions.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            plans[k].restore(Array(pruned.prefix(need)))
            notes.append("layer '\(plans[k].path)' keeps \(plans[k].keptCount) of \(plans[k].units) channels: the requested ratio would have removed all but \(plans[k].keptCount - need)")
        }
        let multiple = max(settings.channelMultiple, 1)
        for k in plans.indices where multiple > 1 && plans[k].keptCount % multiple != 0 && plans[k].keptCount < plans[k].units {
            // Restore the best-scored pruned channels up to the next multiple (or all of them).
            let scores = try sources[k].allScores()
            let need = min((plans[k].keptCount + multiple - 1) / multiple * multiple, plans[k].units) - plans[k].keptCount
            let pruned = plans[k].prunedPositions.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            plans[k].restore(Array(pruned.prefix(need)))
        }
    }
    return PruningPlan(criterion: criterion, granularity: granularity, scope: settings.scope,
                       requestedSparsity: settings.sparsity, layers: plans, notes: notes)
}

/// The positions of the `count` lowest scores over several layers, as (layer → positions).
///
/// Ties are broken by layer order, then position. Never sorts or copies all the scores:
/// see ``selectLowest(_:count:chunkSize:threads:)``, which this wraps.
public func lowestScores(_ layers: [(Int, [Float])], count: Int) -> [Int: [Int]] {
    guard count > 0 else { return [:] }
    let total = layers.reduce(0) { $0 + $1.1.count }
    if count >= total {
        return Dictionary(uniqueKeysWithValues: layers.map { ($0.0, Array($0.1.indices)) })
    }
    // Array sources never throw.
    let words = try! selectLowest(layers.map { ScoreSource(path: "", scores: $0.1) }, count: count)
    var result: [Int: [Int]] = [:]
    for ((k, s), w) in zip(layers, words) {
        let positions = PruningPlan.Layer(path: "", granularity: .weight, units: s.count, keepWords: w).prunedPositions
        if !positions.isEmpty { result[k] = positions }
    }
    return result
}

/// The keep bits (see ``PruningPlan/Layer/keepWords``) that prune the `count` lowest
/// scores over the sources, ties broken by source order, then position.
///
/// Never sorts or copies the scores: a two-pass radix select over the scores' sortable
/// bit patterns (16 bits each, a 65,536-bucket histogram per thread) finds the threshold
/// key, then a third pass writes the bits, 64 at a time. Each pass reads every source
/// in chunks of `chunkSize` on `threads` threads (default ``Parallel/threadCount``); the
/// threads own fixed contiguous ranges of the sources' concatenation, so the result
/// never depends on the thread count or the chunk size. Ties at the threshold are taken
/// in order: the last pass's per-thread counts of the threshold key tell each range how
/// many it may take. Scores are ordered by their bit patterns: as floats, except that
/// −0 ranks below +0 (as before the streaming path). Bits past a layer's units are 0.
public func selectLowest(_ sources: [ScoreSource], count: Int, chunkSize: Int = 1 << 16,
                         threads: Int? = nil) throws -> [[UInt64]] {
    let total = sources.reduce(0) { $0 + $1.count }
    if count <= 0 { return sources.map { PruningPlan.Layer.allKept($0.count) } }
    if count >= total { return sources.map { [UInt64](repeating: 0, count: PruningPlan.Layer.wordCount($0.count)) } }
    let chunk = max(64, (chunkSize + 63) / 64 * 64)
    // Partitions: contiguous ranges of the concatenation, cut on 64-unit boundaries of a
    // layer so that no two threads write the same word of keep bits.
    var offsets = [0]
    for s in sources { offsets.append(offsets.last! + s.count) }
    var parts = threads ?? min(Parallel.threadCount, max(1, total / (1 << 16)))
    parts = max(parts, 1, total / Int(UInt32.max) + 1)   // histogram counts are 32-bit
    let cuts: [Int] = (0...parts).map { p in
        if p == 0 { return 0 }
        if p == parts { return total }
        let g = Int((Double(total) * Double(p) / Double(parts)).rounded(.down))
        let k = offsets.lastIndex { $0 <= g }!
        return k == sources.count ? total : offsets[k] + (g - offsets[k]) / 64 * 64
    }
    // Each partition's (source, range) pieces, in order, at most `chunk` long.
    let pieces: [[(Int, Range<Int>)]] = (0..<parts).map { p in
        var out: [(Int, Range<Int>)] = []
        for k in sources.indices {
            let lo = max(cuts[p], offsets[k]), hi = min(cuts[p + 1], offsets[k + 1])
            var a = lo
            while a < hi { out.append((k, (a - offsets[k])..<(min(a + chunk, hi) - offsets[k]))); a += chunk }
        }
        return out
    }
    let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunk * parts)
    defer { scratch.deallocate() }
    var errors = [Error?](repeating: nil, count: parts)
    /// Runs `body` over every piece of every partition, partitions concurrently.
    func eachPiece(_ body: (_ part: Int, _ source: Int, _ range: Range<Int>, _ scores: UnsafeBufferPointer<Float>) -> Void) throws {
        errors.withUnsafeMutableBufferPointer { errs in
            Parallel.forEach(parts) { ps in
                for p in ps {
                    let buffer = UnsafeMutableBufferPointer(rebasing: scratch[(p * chunk)..<((p + 1) * chunk)])
                    do {
                        for (k, r) in pieces[p] { try sources[k].read(r, buffer) { body(p, k, r, $0) } }
                    } catch { errs[p] = error }
                }
            }
        }
        if let e = errors.lazy.compactMap({ $0 }).first { throw e }
    }

    // Radix passes: 16 bits, then the other 16 under the chosen prefix.
    let buckets = 1 << 16
    let histograms = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: buckets * parts)
    defer { histograms.deallocate() }
    var prefix: UInt32 = 0, remaining = count
    var equalPerPart = [Int](repeating: 0, count: parts)
    for pass in 0..<2 {
        _ = histograms.initialize(repeating: 0)
        let h = histograms.baseAddress!
        let expected = prefix
        try eachPiece { p, _, _, scores in
            let hp = h + p * buckets
            if pass == 0 {
                for v in scores { hp[Int(sortableKey(v) >> 16)] &+= 1 }
            } else {
                // Only keys under the prefix count (a small fraction): test 16 at a time.
                let expectedHigh = SIMD16<Int32>(repeating: Int32(bitPattern: (expected << 16) ^ 0x8000_0000) &>> 16)
                let base = scores.baseAddress!, n = scores.count
                var j = 0
                while j + 16 <= n {
                    if any(signedKeys(base + j) &>> 16 .== expectedHigh) {
                        for v in UnsafeBufferPointer(start: base + j, count: 16) {
                            let key = sortableKey(v)
                            if key >> 16 == expected { hp[Int(key & 0xffff)] &+= 1 }
                        }
                    }
                    j += 16
                }
                for v in UnsafeBufferPointer(start: base + j, count: n - j) {
                    let key = sortableKey(v)
                    if key >> 16 == expected { hp[Int(key & 0xffff)] &+= 1 }
                }
            }
        }
        var bucket = 0
        while true {
            var n = 0
            for p in 0..<parts { n += Int(histograms[p * buckets + bucket]) }
            if remaining <= n { break }
            remaining -= n; bucket += 1
        }
        prefix = pass == 0 ? UInt32(bucket) : (prefix << 16) | UInt32(bucket)
        if pass == 1 { for p in 0..<parts { equalPerPart[p] = Int(histograms[p * buckets + bucket]) } }
    }
    let threshold = prefix   // the full key; the first `remaining` elements equal to it are pruned
    var quota = [Int](repeating: 0, count: parts)
    var left = remaining
    for p in 0..<parts { quota[p] = min(left, equalPerPart[p]); left -= quota[p] }

    // Collection: keep bits, 64 at a time, straight into each layer's words.
    let words = sources.map { UnsafeMutableBufferPointer<UInt64>.allocate(capacity: PruningPlan.Layer.wordCount($0.count)) }
    var moved = 0
    defer { for w in words[moved...] { w.deallocate() } }
    let wordBases = words.map { $0.baseAddress! }
    var taken = [Int](repeating: 0, count: parts)
    try taken.withUnsafeMutableBufferPointer { takenBuffer in
        let takenBase = takenBuffer.baseAddress!
        let quotaCopy = quota
        try eachPiece { p, k, range, scores in
            let out = wordBases[k] + range.lowerBound / 64
            var took = takenBase[p]
            let n = scores.count
            let signedThreshold = SIMD16<Int32>(repeating: Int32(bitPattern: threshold ^ 0x8000_0000))
            let base = scores.baseAddress!
            var j = 0, w = 0
            while j < n {
                var keep: UInt64 = 0, equal: UInt64 = 0
                if j + 64 <= n {
                    for q in 0..<4 {
                        let k = signedKeys(base + j + 16 * q)
                        keep |= UInt64(bitsOf(k .> signedThreshold)) << UInt64(16 * q)
                        let eq = k .== signedThreshold
                        if any(eq) { equal |= UInt64(bitsOf(eq)) << UInt64(16 * q) }
                    }
                } else {
                    for t in 0..<(n - j) {
                        let key = sortableKey(base[j + t])
                        if key > threshold { keep |= 1 << UInt64(t) }
                        if key == threshold { equal |= 1 << UInt64(t) }
                    }
                }
                while equal != 0 {
                    if took < quotaCopy[p] { took += 1 } else { keep |= equal & (~equal &+ 1) }
                    equal &= equal &- 1
                }
                out[w] = keep
                j += 64; w += 1
            }
            takenBase[p] = took
        }
    }
    // One layer's bits exist twice at most while they move into arrays.
    var result: [[UInt64]] = []
    for w in words { result.append(Array(w)); w.deallocate(); moved += 1 }
    return result
}

/// Maps a float to an unsigned key with the same order (negative numbers below positive).
@inline(__always)
func sortableKey(_ v: Float) -> UInt32 {
    let b = v.bitPattern
    return b ^ (UInt32(bitPattern: Int32(bitPattern: b) >> 31) | 0x8000_0000)
}

/// The sortable keys of 16 floats as signed integers (the key with its top bit flipped,
/// so that signed comparisons order them): `b` for positive floats, `b ^ 0x7fffffff` for negative.
@inline(__always)
func signedKeys(_ p: UnsafePointer<Float>) -> SIMD16<Int32> {
    let b = UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Int32>.self)
    return b ^ ((b &>> 31) & 0x7fff_ffff)
}

/// Lane i of the mask as bit i.
@inline(__always)
func bitsOf(_ m: SIMDMask<SIMD16<Int32>>) -> UInt32 {
    let powers = SIMD16<Int32>(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
    return UInt32(bitPattern: SIMD16<Int32>(repeating: 0).replacing(with: powers, where: m).wrappedSum())
}

/// Whether any of the floats is infinite or NaN (exponent bits all ones): adding 1 to
/// the exponent field carries into the sign bit exactly for those.
func containsNonFinite(_ p: UnsafeBufferPointer<Float>) -> Bool {
    guard let base = p.baseAddress else { return false }
    var carry = SIMD16<UInt32>(repeating: 0)
    var j = 0
    while j + 16 <= p.count {
        carry |= (UnsafeRawPointer(base + j).loadUnaligned(as: SIMD16<UInt32>.self) & 0x7f80_0000) &+ 0x0080_0000
        j += 16
    }
    var tail: UInt32 = 0
    for v in p[j...] { tail |= (v.bitPattern & 0x7f80_0000) &+ 0x0080_0000 }
    for lane in carry.indices { tail |= carry[lane] }
    return tail & 0x8000_0000 != 0
}
