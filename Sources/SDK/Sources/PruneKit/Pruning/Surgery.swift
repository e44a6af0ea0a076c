import Foundation

/// What ``Model/removingPrunedChannels(policy:minimumChannels:)`` produced: a narrower
/// model, the widths before and after, and notes.
public struct SurgeryResult {
    /// One layer's output channels (features for linear layers) before and after.
    public struct Width: Sendable, Equatable {
        /// The dotted path (`features.0`).
        public let path: String
        public let kind: LayerKind
        public let before: Int
        public let after: Int
    }

    /// The new model: the masked channels are physically gone. Its parameters are new
    /// objects; masks that remain (weight masks, channels that could not be removed) are
    /// carried over, sliced.
    public let model: Model
    /// Every convolution, linear and BatchNorm layer, in node order.
    public let widths: [Width]
    /// Where the result differs from the masks: channels kept to respect the minimum,
    /// masked channels that could not be removed (tied to a residual addition, masked in
    /// some of a group's layers only).
    public let notes: [String]

    /// The metadata key under which ``metadata`` records the widths before surgery.
    public static let originalWidthsKey = "prunekit.original-widths"

    /// Output channels before surgery, by dotted path.
    public var originalWidths: [String: Int] {
        Dictionary(widths.map { ($0.path, $0.before) }, uniquingKeysWith: { a, _ in a })
    }

    /// Metadata to save with the model (`save(to:metadata:)`): ``originalWidthsKey`` → a
    /// JSON object {dotted path: output channels before}.
    public var metadata: [String: String] {
        let pairs = originalWidths.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\($0.value)" }
        return [SurgeryResult.originalWidthsKey: "{" + pairs.joined(separator: ",") + "}"]
    }

    /// Channels removed over all the layers listed in ``widths``.
    public var removedChannels: Int { widths.reduce(0) { $0 + $1.before - $1.after } }

    /// A table: each layer whose width changed, before → after, then the notes.
    public var summary: String {
        let changed = widths.filter { $0.before != $0.after }
        var lines = ["surgery: \(changed.count) of \(widths.count) layers narrowed"]
        for w in changed {
            lines.append("  " + w.path.padding(toLength: 24, withPad: " ", startingAt: 0)
                         + String(format: "%6d → %-6d %@", w.before, w.after, w.kind.rawValue))
        }
        return (lines + notes.map { "note: " + $0 }).joined(separator: "\n")
    }
}

/// A JSON string literal.
private func jsonString(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}

extension Model {
    /// A new, narrower model without the channels that the masks of a channel plan
    /// zeroed: filters, biases, BatchNorm entries and the next layers' input channels
    /// are physically removed, so the saved file shrinks and inference does less work.
    ///
    /// A channel of a group (see ``channelDependencies(policy:)``) is removed when it is
    /// exactly zero wherever it appears: the weight masks of every scored layer of the
    /// group zero its filter, its biases are zero, and the γ and β of every BatchNorm in
    /// the group are zero. ``PruningPlan/apply(to:)`` (and
    /// ``PruningPlan/apply(to:dependencies:)``) mask channels this way, so the new model
    /// computes what the masked one does (to rounding). Groups kept whole under `policy`
    /// keep their masked channels, as zeros (the notes say so).
    ///
    /// - Parameters:
    ///   - policy: how channels tied by residual additions may go.
    ///   - minimumChannels: channels every group keeps at least (≥ 1); masked channels
    ///     are kept, still masked, to reach it, and the notes say so.
    /// - Returns: the new model with the widths before and after. This model is unchanged.
    ///
    /// A grouped convolution with G groups (weight `[out, in/G, kh, kw]`) is rebuilt with G
    /// groups, `in′` inputs and `out′` outputs: output group `b`'s kept filters, each with
    /// the kept input channels of input group `b` only. This needs the same number of
    /// channels removed from every block of a group with ``ChannelGroup/blocks`` > 1; where
    /// the masks remove more from some blocks than from others, the extra masked channels
    /// stay (as zeros, the lowest-numbered first) and the notes say so. The minimum is then
    /// `⌈minimumChannels / blocks⌉` per block.
    /// Layers whose channels are kept whole (layers channel pruning does not know, grouped
    /// convolutions reading a concatenation; see ``channelDependencies(policy:)``) keep their
    /// width; a layer PruneKit does not know is shared with the new model as it is, and the
    /// notes say so.
    ///
    /// - Throws: ``PruneKitError`` for a non-square kernel, a minimum below 1, and
    ///   for ``ResidualPolicy/wholeStream`` with option-A shortcuts.
    /// Cost: one copy of the kept weights.
    public func removingPrunedChannels(policy: ResidualPolicy = .withinBlocks, minimumChannels: Int = 1) throws -> SurgeryResult {
        guard minimumChannels >= 1 else {
            throw PruneKitError(.invalidArgument, "a layer keeps at least 1 channel; got a minimum of \(minimumChannels)",
                                hint: "give a minimum of 1 or more")
        }
        let deps = try channelDependencies(policy: policy)
        var (removed, notes) = removableChannels(deps)
        // The minimum: keep the lowest-numbered masked channels (they stay zero).
        for g in deps.groups where !removed[g.index].isEmpty {
            if g.blocks > 1 {
                removed[g.index] = uniformRemoval(removed[g.index], g, minimumChannels: minimumChannels, notes: &notes)
                continue
            }
            let keep = min(minimumChannels, g.channels)
            let left = g.channels - removed[g.index].count
            if left < keep {
                removed[g.index].removeFirst(keep - left)
                notes.append("'\(GroupSelector.name(g))' keeps \(keep) of \(g.channels) channels (the minimum): the masks would have removed all but \(left)")
            }
        }
        let kept: [[Int]] = deps.groups.map { g in
            let gone = Set(removed[g.index])
            return (0..<g.channels).filter { !gone.contains($0) }
        }
        var newNodes: [Node] = [], widths: [SurgeryResult.Width] = []
        for (i, node) in nodes.enumerated() {
            let outKept = deps.keptChannels(ofTensor: i, kept)
            let inTensor = node.inputs[0]
            let inKept = deps.keptChannels(ofTensor: inTensor, kept)
            let layer: Layer
            switch node.layer {
            case let conv as Conv2d where conv.kind == .conv2d:
                let (kh, kw) = conv.kernelSize
                let depthwise = conv.groups > 1 && conv.groups == conv.inChannels && conv.outChannels == conv.inChannels
                // A grouped convolution that is not depthwise keeps its groups, each narrower:
                // output group b reads the kept channels of input group b.
                let grouped = conv.groups > 1 && !depthwise
                let (inPer, outPer) = (conv.inChannels / conv.groups, conv.outChannels / conv.groups)
                if grouped {
                    for (kept, per, side) in [(inKept, inPer, "input"), (outKept, outPer, "output")] {
                        let counts = (0..<conv.groups).map { b in kept.filter { $0 / per == b }.count }
                        guard Set(counts).count == 1, counts[0] > 0 else {
                            throw PruneKitError(.invalidArgument, "the grouped convolution '\(node.name)' would keep \(counts.map(String.init).joined(separator: ", ")) \(side) channels in its \(conv.groups) groups; every group must keep the same number, at least one",
                                                hint: "this is a bug in PruneKit's dependency groups or selection; please report it with the model")
                        }
                    }
                }
                var rng = RandomGenerator(seed: 0)
                let new = Conv2d(inChannels: inKept.count, outChannels: outKept.count, kernel: (kh, kw), window: conv.window,
                                 groups: depthwise ? outKept.count : conv.groups, bias: conv.bias != nil, rng: &rng)
                if grouped {
                    // Row r (output group r / outPer) keeps the columns of its own input group.
                    let columnsOfGroup = (0..<conv.groups).map { b in inKept.filter { $0 / inPer == b }.map { $0 - b * inPer } }
                    copy(conv.weight, into: new.weight, rows: outKept, columnsOfRow: { columnsOfGroup[$0 / outPer] }, inner: kh * kw)
                } else {
                    copy(conv.weight, into: new.weight, rows: outKept, columns: depthwise ? [0] : inKept, inner: kh * kw)
                }
                if let b = conv.bias, let nb = new.bias { copy(b, into: nb, rows: outKept, columns: [0], inner: 1) }
                layer = new
            case let linear as Linear where linear.kind == .linear:
                let block = deps.block(ofTensor: inTensor)
                let columns = inKept.flatMap { c in (c * block)..<((c + 1) * block) }
                var rng = RandomGenerator(seed: 0)
                let new = Linear(inFeatures: columns.count, outFeatures: outKept.count, bias: linear.bias != nil, rng: &rng)
                copy(linear.weight, into: new.weight, rows: outKept, columns: columns, inner: 1)
                if let b = linear.bias, let nb = new.bias { copy(b, into: nb, rows: outKept, columns: [0], inner: 1) }
                layer = new
            case let bn as BatchNorm where bn.kind == .batchNorm:
                // BatchNorm1d behind a flatten normalises H·W features per channel.
                let block = deps.block(ofTensor: i)
                let features = outKept.flatMap { c in (c * block)..<((c + 1) * block) }
                let new = BatchNorm(featureCount: features.count, epsilon: bn.epsilon, momentum: bn.momentum)
                for (a, b) in zip(bn.parameters, new.parameters) { copy(a.parameter, into: b.parameter, rows: features, columns: [0], inner: 1) }
                layer = new
            default:
                if Model.rebuildableKinds.contains(node.layer.kind), node.layer.parameters.isEmpty,
                   let fresh = try? LayerFactory.make(kind: node.layer.kind, configuration: node.layer.configuration, nodeName: node.name),
                   type(of: fresh) == type(of: node.layer) {
                    // Parameter-free layers: a fresh copy (layers keep per-pass state).
                    layer = fresh
                } else {
                    // A layer surgery does not know: its channels were kept whole, so the
                    // same layer object serves the new model.
                    layer = node.layer
                    notes.append("'\(node.name)' (\(type(of: node.layer))) is shared with the new model unchanged: channel pruning does not know it")
                }
            }
            if [.conv2d, .linear, .batchNorm].contains(node.layer.kind) {
                widths.append(SurgeryResult.Width(path: node.name, kind: node.layer.kind, before: shapes[i][0],
                                                  after: outKept.count * deps.block(ofTensor: i)))
            }
            newNodes.append(Node(name: node.name, layer: layer, inputs: node.inputs))
        }
        let model = try Model(architecture: architecture, inputShape: inputShape, nodes: newNodes)
        model.mode = mode
        return SurgeryResult(model: model, widths: widths, notes: notes)
    }

    /// A group's removable channels cut down so that each of its ``ChannelGroup/blocks``
    /// equal blocks loses the same number, and keeps at least `⌈minimumChannels / blocks⌉`:
    /// in each block the lowest-numbered masked channels beyond that number stay (as zeros).
    /// - Parameters:
    ///   - removed: the group's removable channels, ascending.
    /// - Returns: the channels to remove, ascending; `notes` gains a line when some stay.
    func uniformRemoval(_ removed: [Int], _ g: ChannelGroup, minimumChannels: Int, notes: inout [String]) -> [Int] {
        let size = g.blockSize
        let perBlock = (0..<g.blocks).map { b in removed.filter { $0 / size == b } }
        let keep = min((minimumChannels + g.blocks - 1) / g.blocks, size)
        let count = min(perBlock.map(\.count).min() ?? 0, size - keep)
        let uniform = perBlock.flatMap { $0.suffix(count) }
        if uniform.count < removed.count {
            let convs = g.groupedConvolutions.map { "'\($0)'" }.joined(separator: ", ")
            notes.append("'\(GroupSelector.name(g))': \(removed.count - uniform.count) masked channel(s) stay, as zeros, so that each of its \(g.blocks) blocks of \(size) keeps \(size - count) (grouped convolution \(convs); minimum \(minimumChannels))")
        }
        return uniform
    }

    /// Per group, the channels that are exactly zero wherever they appear (see
    /// ``removingPrunedChannels(policy:minimumChannels:)``), ascending; empty for groups
    /// kept whole. Notes name masked channels that stay.
    func removableChannels(_ deps: ChannelDependencies) -> ([[Int]], [String]) {
        var removed = [[Int]](repeating: [], count: deps.groups.count), notes: [String] = []
        for g in deps.groups where !g.scoredLayers.isEmpty {
            // Channels each scored layer masks whole (weight row masked, bias zero).
            let masked: [Set<Int>] = g.scoredLayers.map { path in
                guard let i = nodeIndex(named: path), let w = nodes[i].layer.parameter(named: "weight"), let m = w.mask else { return [] }
                let rows = w.value.shape[0], perRow = w.value.count / max(rows, 1)
                let bias = nodes[i].layer.parameter(named: "bias")?.value.scalars
                return m.withUnsafeBufferPointer { mp in
                    Set((0..<rows).filter { r in
                        (0..<perRow).allSatisfy { mp[r * perRow + $0] == 0 } && (bias.map { $0[r] == 0 } ?? true)
                    })
                }
            }
            let anywhere = masked.reduce(Set<Int>()) { $0.union($1) }
            guard !anywhere.isEmpty else { continue }
            guard g.isPrunable else {
                notes.append("'\(GroupSelector.name(g))': \(anywhere.count) masked channel(s) stay, as zeros: \(g.reason ?? "kept whole")")
                continue
            }
            var everywhere = masked.dropFirst().reduce(masked[0]) { $0.intersection($1) }
            // BatchNorm entries must be zero too, or the channel is a constant, not a zero.
            for slice in g.batchNormSlices {
                guard let i = nodeIndex(named: slice.path), let bn = nodes[i].layer as? BatchNorm else { continue }
                let (gamma, beta) = (bn.weight.value.scalars, bn.bias.value.scalars)
                let per = slice.featuresPerChannel
                guard (slice.offset + g.channels) * per <= gamma.count else { continue }
                everywhere = everywhere.filter { c in
                    (0..<per).allSatisfy { f in let k = (slice.offset + c) * per + f; return gamma[k] == 0 && beta[k] == 0 }
                }
            }
            if everywhere.count < anywhere.count {
                notes.append("'\(GroupSelector.name(g))': \(anywhere.count - everywhere.count) masked channel(s) stay, as zeros: not zero in every layer of the group (filters, biases, BatchNorm γ and β)")
            }
            removed[g.index] = everywhere.sorted()
        }
        return (removed, notes)
    }
}

extension Model {
    /// Parameter-free layer kinds that surgery rebuilds from their kind and configuration.
    static let rebuildableKinds: Set<LayerKind> = [.relu, .clip, .sigmoid, .silu, .dropout, .maxPool2d, .avgPool2d, .globalAvgPool,
                                                   .flatten, .add, .concat, .channelMul, .channelPadShortcut]
}

/// Copies the kept part of a parameter viewed as `[rows, columns, inner]` (values and
/// mask; a mask that keeps everything is dropped). `columns == [0]` with a source of one
/// column reads `[rows, inner]`.
private func copy(_ source: Parameter, into target: Parameter, rows: [Int], columns: [Int], inner: Int) {
    copy(source, into: target, rows: rows, columnsOfRow: { _ in columns }, inner: inner)
}

/// Copies the kept part of a parameter viewed as `[rows, columns, inner]`, where source row
/// `r` keeps the columns `columnsOfRow(r)` (the same number for every row: a grouped
/// convolution's filters each keep their own group's input channels).
private func copy(_ source: Parameter, into target: Parameter, rows: [Int], columnsOfRow: (Int) -> [Int], inner: Int) {
    let s = source.value.shape
    let cols = s.count >= 2 ? s[1] : 1
    let width = columnsOfRow(rows.first ?? 0).count
    let shape = [rows.count] + (s.count >= 2 ? [width] + Array(s.dropFirst(2)) : [])
    func slice(_ t: Tensor) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        t.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            var o = 0
            for r in rows {
                for c in columnsOfRow(r) {
                    let base = (r * cols + c) * inner
                    for k in 0..<inner { dst[o] = src[base + k]; o += 1 }
                }
            }
        } }
        return out
    }
    target.assign(slice(source.value))
    if let m = source.mask {
        let sliced = slice(m)
        target.mask = sliced.withUnsafeBufferPointer { $0.allSatisfy { $0 != 0 } } ? nil : sliced
    } else {
        target.mask = nil
    }
}
