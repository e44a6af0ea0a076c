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
        /// 1 kept, 0 pruned, one per unit.
        public private(set) var keep: [UInt8]

        public init(path: String, granularity: Granularity, units: Int) {
            self.path = path; self.granularity = granularity; self.units = units
            keep = [UInt8](repeating: 1, count: units)
        }

        mutating func prune(_ positions: [Int]) { for p in positions { keep[p] = 0 } }
        mutating func restore(_ positions: [Int]) { for p in positions { keep[p] = 1 } }

        public var keptCount: Int { keep.reduce(0) { $0 + Int($1) } }
        /// The kept channel indices, ascending (channel granularity).
        public var keptPositions: [Int] { keep.indices.filter { keep[$0] != 0 } }
        public var prunedPositions: [Int] { keep.indices.filter { keep[$0] == 0 } }
    }

    public var criterion: String
    public var granularity: Granularity
    public var scope: SelectionSettings.Scope
    public var requestedSparsity: Double
    public var layers: [Layer]
    /// Where the plan differs from the request (a ratio clipped by the channel minimum).
    public var notes: [String]

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
                for p in plan.prunedPositions {
                    if plan.granularity == .weight { m[p] = 0 } else { for j in 0..<perRow { m[p * perRow + j] = 0 } }
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
        var lines = ["\(criterion) (\(granularity.rawValue), \(scope.rawValue)): requested sparsity "
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
                : FileLayer(path: l.path, units: l.units, kept_channels: nil, mask: Data(packBits(l.keep)).base64EncodedString())
        })
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
            var l = Layer(path: fl.path, granularity: file.granularity, units: fl.units)
            if let kept = fl.kept_channels {
                guard kept.allSatisfy({ $0 >= 0 && $0 < fl.units }) else {
                    throw PruneKitError(.invalidFile, "\(path): layer '\(fl.path)' keeps a channel outside 0..<\(fl.units)")
                }
                let keptSet = Set(kept)
                l.prune((0..<fl.units).filter { !keptSet.contains($0) })
            } else if let text = fl.mask, let bytes = Data(base64Encoded: text), bytes.count == (fl.units + 7) / 8 {
                let bits = unpackBits([UInt8](bytes), count: fl.units)
                l.prune(bits.indices.filter { bits[$0] == 0 })
            } else {
                throw PruneKitError(.invalidFile, "\(path): layer '\(fl.path)' has neither kept channels nor a mask of \(fl.units) bits")
            }
            return l
        }
        return PruningPlan(criterion: file.criterion, granularity: file.granularity, scope: scope,
                           requestedSparsity: file.requested_sparsity, layers: layers, notes: file.notes)
    }
}

func packBits(_ bits: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: (bits.count + 7) / 8)
    for (i, b) in bits.enumerated() where b != 0 { out[i >> 3] |= 1 << UInt8(i & 7) }
    return out
}

func unpackBits(_ bytes: [UInt8], count: Int) -> [UInt8] {
    (0..<count).map { (bytes[$0 >> 3] >> UInt8($0 & 7)) & 1 }
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
