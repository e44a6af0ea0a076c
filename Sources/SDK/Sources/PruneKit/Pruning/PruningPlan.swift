import Foundation

/// What to prune in each layer: a weight mask (unstructured) or the channels to keep
/// (structured). A plan can be applied to a model, saved, loaded and inspected.
public struct PruningPlan: Equatable {
    /// One layer's part of the plan.
    public struct Layer: Equatable {
        /// The dotted path of the layer (`features.3`).
        public let path: String
        public let granularity: Granularity
        /// Weights (weight granularity) or output channels (channel granularity) of the layer.
        public let units: Int
        /// The keep bits, one per unit: bit `i % 64` of word `i / 64` is 1 where unit `i` is
        /// kept. Bits past `units` are always 0. 1/32 of the bytes of the layer's float
        /// weights (a `[UInt8]` per unit would be 1/4: 35 MB for VGG-16).
        public private(set) var keepWords: [UInt64]

        public init(path: String, granularity: Granularity, units: Int) {
            self.path = path; self.granularity = granularity; self.units = units
            keepWords = Layer.allKept(units)
        }

        /// A layer from its keep bits (see ``keepWords``); bits past `units` are cleared.
        public init(path: String, granularity: Granularity, units: Int, keepWords: [UInt64]) {
            precondition(keepWords.count == Layer.wordCount(units), "\(keepWords.count) keep words for \(units) units")
            self.path = path; self.granularity = granularity; self.units = units
            self.keepWords = keepWords
            let tail: UInt64 = units % 64 == 0 ? ~0 : (1 << UInt64(units % 64)) - 1
            if let last = keepWords.last, last & ~tail != 0 { self.keepWords[keepWords.count - 1] = last & tail }
        }

        static func wordCount(_ units: Int) -> Int { (units + 63) / 64 }

        static func allKept(_ units: Int) -> [UInt64] {
            var w = [UInt64](repeating: ~0, count: wordCount(units))
            if units % 64 != 0 { w[w.count - 1] = (1 << UInt64(units % 64)) - 1 }
            return w
        }

        /// 1 kept, 0 pruned, one byte per unit (unpacked from ``keepWords``: prefer
        /// ``isKept(_:)`` or the positions for large layers).
        public var keep: [UInt8] { (0..<units).map { UInt8(truncatingIfNeeded: keepWords[$0 >> 6] >> UInt64($0 & 63)) & 1 } }

        /// Whether unit `i` is kept.
        @inline(__always)
        public func isKept(_ i: Int) -> Bool { keepWords[i >> 6] >> UInt64(i & 63) & 1 != 0 }

        mutating func prune(_ positions: [Int]) { for p in positions { keepWords[p >> 6] &= ~(1 << UInt64(p & 63)) } }
        mutating func restore(_ positions: [Int]) { for p in positions { keepWords[p >> 6] |= 1 << UInt64(p & 63) } }

        public var keptCount: Int { keepWords.reduce(0) { $0 + $1.nonzeroBitCount } }
        /// The kept channel indices, ascending (channel granularity).
        public var keptPositions: [Int] { positions(kept: true) }
        /// The pruned indices, ascending.
        public var prunedPositions: [Int] { positions(kept: false) }

        private func positions(kept: Bool) -> [Int] {
            var out: [Int] = []
            out.reserveCapacity(kept ? keptCount : units - keptCount)
            for (k, word) in keepWords.enumerated() {
                var w = kept ? word : ~word
                if !kept, k == keepWords.count - 1, units % 64 != 0 { w &= (1 << UInt64(units % 64)) - 1 }
                while w != 0 {
                    out.append(k << 6 | w.trailingZeroBitCount)
                    w &= w - 1
                }
            }
            return out
        }
    }

    public var criterion: String
    public var granularity: Granularity
    public var scope: SelectionSettings.Scope
    public var requestedSparsity: Double
    public var layers: [Layer]
    /// Where the plan differs from the request (a ratio clipped by the channel minimum).
    public var notes: [String]
    /// The N:M pattern the plan was selected under (``SelectionSettings/pattern``), if any.
    public var pattern: NMPattern? = nil

    public init(criterion: String, granularity: Granularity, scope: SelectionSettings.Scope,
                requestedSparsity: Double, layers: [Layer], notes: [String] = []) {
        self.criterion = criterion; self.granularity = granularity; self.scope = scope
        self.requestedSparsity = requestedSparsity; self.layers = layers; self.notes = notes
    }

    /// Masks the model: weight plans mask single weights; channel plans mask each pruned
    /// channel's weight row and bias, and its γ and β in a BatchNorm that directly follows
    /// the layer, so the channel outputs exactly zero (physical removal is the job of surgery).
    /// The masks stay in force through training (optimisers respect them).
    /// - Throws: ``PruneKitError`` if a layer of the plan is not in the model or its size differs.
    public func apply(to model: Model) throws {
        var targets: [(Parameter, [Parameter], Layer)] = []
        for plan in layers {
            guard let i = model.nodeIndex(named: plan.path), let w = model.nodes[i].layer.parameter(named: "weight") else {
                throw PruneKitError(.invalidArgument, "the plan prunes layer '\(plan.path)', which the model does not have")
            }
            let rows = w.value.shape[0], expected = plan.granularity == .channel ? rows : w.value.count
            guard plan.units == expected else {
                throw PruneKitError(.shapeMismatch, "the plan has \(plan.units) \(plan.granularity.rawValue) entries for layer '\(plan.path)', which has \(expected)")
            }
            // Per-channel vectors that go with a pruned channel: the bias, and γ, β of a
            // BatchNorm that reads only this layer.
            var perChannel = [model.nodes[i].layer.parameter(named: "bias")].compactMap { $0 }
            if let bn = model.soleConsumer(of: i), model.nodes[bn].layer.kind == .batchNorm {
                perChannel += ["weight", "bias"].compactMap { model.nodes[bn].layer.parameter(named: $0) }
            }
            targets.append((w, perChannel, plan))
        }
        for (w, perChannel, plan) in targets where plan.keptCount < plan.units {
            let perRow = w.value.count / max(w.value.shape[0], 1)
            var mask = Tensor(shape: w.value.shape, repeating: 1)
            mask.withUnsafeMutableBufferPointer { m in
                if plan.granularity == .weight {
                    for p in 0..<plan.units where !plan.isKept(p) { m[p] = 0 }
                } else {
                    for p in plan.prunedPositions { for j in 0..<perRow { m[p * perRow + j] = 0 } }
                }
            }
            w.mask = combined(w.mask, mask)
            guard plan.granularity == .channel else { continue }
            for v in perChannel where v.value.count == plan.units {
                var vm = Tensor(shape: v.value.shape, repeating: 1)
                vm.withUnsafeMutableBufferPointer { m in for p in plan.prunedPositions { m[p] = 0 } }
                v.mask = combined(v.mask, vm)
            }
        }
    }

    private func combined(_ old: Tensor?, _ new: Tensor) -> Tensor { old.map { $0 * new } ?? new }

    /// Pruned units over all units in the plan's layers.
    public var sparsity: Double {
        let total = layers.reduce(0) { $0 + $1.units }
        return total == 0 ? 0 : Double(total - layers.reduce(0) { $0 + $1.keptCount }) / Double(total)
    }

    /// A table: each layer's kept / total and sparsity.
    public var summary: String {
        var lines = ["\(criterion) (\(granularity.rawValue), \(pattern.map { "pattern \($0)" } ?? scope.rawValue)): requested sparsity "
                     + String(format: "%.4f, achieved %.4f", requestedSparsity, sparsity)]
        for l in layers {
            lines.append(l.path.padding(toLength: 24, withPad: " ", startingAt: 0)
                         + String(format: "%9d / %-9d kept  (%.1f%% pruned)", l.keptCount, l.units,
                                  100 * Double(l.units - l.keptCount) / Double(max(l.units, 1))))
        }
        return (lines + notes.map { "note: " + $0 }).joined(separator: "\n")
    }

    // MARK: Files

    private struct File: Codable {
        var format = "prunekit-plan"
        var version = 1
        var criterion: String
        var granularity: Granularity
        var scope: String
        var requested_sparsity: Double
        var notes: [String]
        var layers: [FileLayer]
        /// `"N:M"` for a plan selected under an N:M pattern.
        var pattern: String?
    }

    private struct FileLayer: Codable {
        var path: String
        var units: Int
        /// Channel plans: the kept channel indices.
        var kept_channels: [Int]?
        /// Weight plans: the keep bits, packed 8 per byte (least significant bit first), base64.
        var mask: String?
    }

    /// Writes the plan as JSON (channel plans list kept channels; weight plans a packed bitmask).
    public func save(to path: String) throws {
        let file = File(criterion: criterion, granularity: granularity, scope: scope.rawValue,
                        requested_sparsity: requestedSparsity, notes: notes, layers: layers.map { l in
            l.granularity == .channel
                ? FileLayer(path: l.path, units: l.units, kept_channels: l.keptPositions, mask: nil)
                : FileLayer(path: l.path, units: l.units, kept_channels: nil, mask: Data(packBits(l.keepWords, count: l.units)).base64EncodedString())
        }, pattern: pattern?.description)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(file).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw PruneKitError(.io, "could not write the pruning plan to \(path): \(error.localizedDescription)")
        }
    }

    /// Reads a plan written by ``save(to:)``.
    public static func load(from path: String) throws -> PruningPlan {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PruneKitError(.invalidFile, "no pruning plan at \(path)")
        }
        let file: File
        do { file = try JSONDecoder().decode(File.self, from: data) } catch {
            throw PruneKitError(.invalidFile, "\(path) is not a PruneKit pruning plan: \(error)")
        }
        guard file.format == "prunekit-plan", file.version == 1, let scope = SelectionSettings.Scope(rawValue: file.scope) else {
            throw PruneKitError(.invalidFile, "\(path): unsupported plan format '\(file.format)' version \(file.version)")
        }
        let layers = try file.layers.map { fl -> Layer in
            guard fl.units >= 0 else {
                throw PruneKitError(.invalidFile, "\(path): layer '\(fl.path)' has \(fl.units) units; a layer has zero or more")
            }
            var l = Layer(path: fl.path, granularity: file.granularity, units: fl.units)
            if let kept = fl.kept_channels {
                guard kept.allSatisfy({ $0 >= 0 && $0 < fl.units }) else {
                    throw PruneKitError(.invalidFile, "\(path): layer '\(fl.path)' keeps a channel outside 0..<\(fl.units)")
                }
                let keptSet = Set(kept)
                l.prune((0..<fl.units).filter { !keptSet.contains($0) })
            } else if let text = fl.mask, let bytes = Data(base64Encoded: text), bytes.count == (fl.units + 7) / 8 {
                l = Layer(path: fl.path, granularity: file.granularity, units: fl.units,
                          keepWords: unpackBits([UInt8](bytes), count: fl.units))
            } else {
                throw PruneKitError(.invalidFile, "\(path): layer '\(fl.path)' has neither kept channels nor a mask of \(fl.units) bits")
            }
            return l
        }
        var plan = PruningPlan(criterion: file.criterion, granularity: file.granularity, scope: scope,
                               requestedSparsity: file.requested_sparsity, layers: layers, notes: file.notes)
        do { plan.pattern = try file.pattern.map(NMPattern.init(parsing:)) } catch let e as PruneKitError {
            throw PruneKitError(.invalidFile, "\(path): \(e.message)", hint: e.hint)
        }
        return plan
    }
}

/// The keep bits as bytes, 8 per byte, least significant bit first (the file format).
func packBits(_ words: [UInt64], count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: (count + 7) / 8)
    for j in out.indices { out[j] = UInt8(truncatingIfNeeded: words[j >> 3] >> UInt64((j & 7) * 8)) }
    return out
}

/// Bytes of the file format back to keep words (bits past `count` are left for the caller to clear).
func unpackBits(_ bytes: [UInt8], count: Int) -> [UInt64] {
    var words = [UInt64](repeating: 0, count: (count + 63) / 64)
    for (j, b) in bytes.enumerated() { words[j >> 3] |= UInt64(b) << UInt64((j & 7) * 8) }
    return words
}

/// A model's compression under its current masks, on the two axes reports use.
public struct CompressionFigures: Sendable, Equatable {
    /// Weights of convolutions and linear layers, and how many are masked to zero.
    public var prunableWeights: Int, prunedWeights: Int
    /// Every trainable scalar (biases and BatchNorm parameters included), and how many are masked.
    public var parameters: Int, prunedParameters: Int

    /// prunable / remaining prunable: PruneKit's "compression".
    public var prunableRatio: Double { Double(prunableWeights) / Double(max(prunableWeights - prunedWeights, 1)) }
    /// all / remaining parameters: the whole-model ratio (ShrinkBench's definition).
    public var wholeModelRatio: Double { Double(parameters) / Double(max(parameters - prunedParameters, 1)) }
}

extension Model {
    /// Compression figures from the masks in force (a weight counts as pruned when its mask is 0).
    public var compression: CompressionFigures {
        func masked(_ p: Parameter) -> Int { p.mask.map { m in m.withUnsafeBufferPointer { $0.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } } } ?? 0 }
        var f = CompressionFigures(prunableWeights: 0, prunedWeights: 0, parameters: 0, prunedParameters: 0)
        for i in prunableNodeIndices {
            if let w = nodes[i].layer.parameter(named: "weight") { f.prunableWeights += w.value.count; f.prunedWeights += masked(w) }
        }
        for p in trainableParameters { f.parameters += p.value.count; f.prunedParameters += masked(p) }
        return f
    }
}
