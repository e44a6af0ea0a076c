import Foundation

/// How channels tied together by residual additions may be pruned.
///
/// An addition `y = a + b` needs `a` and `b` to have the same channels, so a channel of
/// the residual stream can only go if it goes from every tensor added and from every
/// layer that reads the sum.
///
/// References: Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017 (inside
/// blocks only); Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023 (the
/// stream as one group).
public enum ResidualPolicy: String, Sendable, Codable, CaseIterable {
    /// Prune only inside residual blocks: every tensor that takes part in an addition keeps
    /// its width (the block's output width is kept). The default.
    case withinBlocks = "within-blocks"
    /// Prune the residual stream as one group: a channel goes from every tensor added, from
    /// the layers that produce them and from the layers that read the sums. Refused for
    /// models with option-A shortcuts (``ChannelPadShortcut``), whose zero padding places
    /// channels by position.
    case wholeStream = "whole-stream"
}

/// How a channel group's score is made from the scores of the layers in it.
public enum GroupScoreReduction: String, Sendable, Codable, CaseIterable {
    /// The mean of the members' scores (the default).
    case mean
    /// The largest member score: a channel is kept if any layer rates it highly.
    case max
    /// The sum of the members' scores.
    case sum
}

/// A layer that reads a group's channels as its inputs.
public struct ChannelConsumer: Sendable, Equatable {
    /// The dotted path of the reading layer.
    public let path: String
    /// Inputs of the layer per channel: 1 for a convolution, H·W for a linear layer that
    /// reads a flattened `[C, H, W]` map (channel c is inputs `c·H·W ..< (c+1)·H·W`).
    public let inputsPerChannel: Int
    /// The layer's input channel that is the group's channel 0: 0 unless the layer reads a
    /// concatenation, where the group's channels sit after those of the earlier inputs.
    public let offset: Int

    public init(path: String, inputsPerChannel: Int, offset: Int) {
        self.path = path; self.inputsPerChannel = inputsPerChannel; self.offset = offset
    }

    /// A consumer that reads the group's channels first (offset 0).
    public init(path: String, inputsPerChannel: Int) {
        self.init(path: path, inputsPerChannel: inputsPerChannel, offset: 0)
    }
}

/// Where a group's channels sit in a layer that holds one entry per channel (a BatchNorm):
/// channel `c` of the group is the layer's channel `offset + c`, that is its features
/// `(offset + c) · featuresPerChannel ..< (offset + c + 1) · featuresPerChannel`.
public struct ChannelSlice: Sendable, Equatable {
    /// The dotted path of the layer.
    public let path: String
    /// The layer's channel that is the group's channel 0 (non-zero after a concatenation).
    public let offset: Int
    /// Features per channel: 1, or H·W for a BatchNorm1d behind a flatten.
    public let featuresPerChannel: Int

    public init(path: String, offset: Int = 0, featuresPerChannel: Int = 1) {
        self.path = path; self.offset = offset; self.featuresPerChannel = featuresPerChannel
    }
}

/// A set of channels that must be removed together: channel `c` of the group is output
/// channel `c` of every producer (its filter or weight row, and its bias), entry `c` of
/// every BatchNorm in the group (at its slice's offset), input channel `c` of every
/// depthwise convolution, input channel `offset + c` of every consumer, across all the
/// layers that only pass the channels on (ReLU, pooling, flatten, additions,
/// concatenations, squeeze-and-excitation's rescaling).
///
/// A group that a grouped convolution reads or writes has ``blocks`` > 1: its channels
/// are that many equal, contiguous blocks (block `b` is channels
/// `b · channels/blocks ..< (b + 1) · channels/blocks`), and pruning keeps the same
/// number of channels in every block, so that each of the convolution's groups keeps the
/// same width and it stays a valid grouped convolution.
public struct ChannelGroup: Sendable, Equatable {
    /// The group's position in ``ChannelDependencies/groups``.
    public let index: Int
    /// The number of channels.
    public let channels: Int
    /// Convolutions and linear layers whose output channels these are, in node order.
    public let producers: [String]
    /// Depthwise convolutions in the group: filter `c` reads channel `c` and writes it.
    public let depthwise: [String]
    /// BatchNorm layers normalising the channels, and where in each the channels sit.
    public let batchNormSlices: [ChannelSlice]
    /// Layers that read the channels as inputs.
    public let consumers: [ChannelConsumer]
    /// Whether the group's channels may be removed under the policy.
    public let isPrunable: Bool
    /// Why the group is kept whole, when it is.
    public let reason: String?
    /// Equal blocks across which the group is pruned uniformly (the same number of channels
    /// kept in each): the least common multiple of the groups of the grouped convolutions
    /// that read or write these channels, 1 when none does. `channels` is a multiple of it.
    public let blocks: Int
    /// The grouped convolutions (not depthwise) that read or write the channels, whose
    /// groups set ``blocks``.
    public let groupedConvolutions: [String]

    /// The layers whose per-channel scores make the group's score: the producers and the
    /// depthwise convolutions, in node order.
    public let scoredLayers: [String]

    /// The BatchNorm layers normalising the channels (the paths of ``batchNormSlices``).
    public var batchNorms: [String] { batchNormSlices.map(\.path) }

    /// Channels per block (see ``blocks``).
    public var blockSize: Int { channels / max(blocks, 1) }
}

/// Which channels of a model must be pruned together, under a ``ResidualPolicy``.
///
/// Computed by ``Model/channelDependencies(policy:)`` from the model graph: every node
/// output belongs to one group (its channels, or for vectors its features in blocks).
public struct ChannelDependencies: Sendable {
    /// The policy the groups were computed under.
    public let policy: ResidualPolicy
    /// Every group, in the order of the node that first produces it (the model input's first).
    public let groups: [ChannelGroup]
    /// The channels of each node's output as runs of groups, in channel order (index
    /// `nodes.count` is the model input): one run, except after a concatenation.
    let tensorLayout: [[Segment]]
    /// Features per channel of each node's output (1 for feature maps; H·W after a flatten).
    let tensorBlock: [Int]

    /// A run of a tensor's channels that are the channels of one group.
    struct Segment: Equatable {
        var group: Int
        var channels: Int
    }

    /// The group of a node's output channels (a layer's output: `features.0`), if the node
    /// exists; for a concatenation, the group of its first channels.
    public func group(ofOutput path: String, in model: Model) -> ChannelGroup? {
        model.nodeIndex(named: path).flatMap { tensorLayout[$0].first.map { groups[$0.group] } }
    }

    /// The group whose score a scored layer (producer or depthwise convolution) contributes to.
    public func group(scoredBy path: String) -> ChannelGroup? {
        groups.first { $0.scoredLayers.contains(path) }
    }

    func layout(ofTensor t: Int) -> [Segment] { tensorLayout[t < 0 ? tensorLayout.count - 1 : t] }
    func block(ofTensor t: Int) -> Int { tensorBlock[t < 0 ? tensorBlock.count - 1 : t] }

    /// The channels of tensor `t` that stay when group `g` keeps `kept[g]` (ascending).
    func keptChannels(ofTensor t: Int, _ kept: [[Int]]) -> [Int] {
        var out: [Int] = [], offset = 0
        for s in layout(ofTensor: t) {
            out += kept[s.group].map { offset + $0 }
            offset += s.channels
        }
        return out
    }

    /// How many channels of tensor `t` stay when group `g` keeps `kept[g]` (`nil`: all).
    func keptCount(ofTensor t: Int, _ kept: [Int?]) -> Int {
        layout(ofTensor: t).reduce(0) { $0 + (kept[$1.group] ?? $1.channels) }
    }

    /// Group scores from layer scores: for each group, the reduction of its scored
    /// layers' scores channel by channel; `nil` for a group kept whole.
    ///
    /// - Parameter scores: channel scores of the model's prunable layers (as
    ///   ``Model/score(with:data:settings:)`` gives them).
    /// - Returns: one array per group, `[channels]` or `nil`.
    /// - Throws: ``PruneKitError`` when a scored layer has no scores or the wrong number.
    /// Cost: one pass over the scores.
    public func groupScores(_ scores: [LayerScores], reduction: GroupScoreReduction = .mean) throws -> [[Float]?] {
        let byPath = Dictionary(scores.map { ($0.layer.path, $0.scores) }, uniquingKeysWith: { a, _ in a })
        return try groups.map { g in
            guard g.isPrunable else { return nil }
            var out = [Float](repeating: reduction == .max ? -.infinity : 0, count: g.channels)
            for path in g.scoredLayers {
                guard let s = byPath[path], s.count == g.channels else {
                    throw PruneKitError(.invalidArgument, "layer '\(path)' needs \(g.channels) channel scores, got \(byPath[path]?.count ?? 0)",
                                        hint: "group scores need a channel criterion's scores for every prunable layer")
                }
                for c in 0..<g.channels {
                    switch reduction {
                    case .mean, .sum: out[c] += s[c]
                    case .max: out[c] = Swift.max(out[c], s[c])
                    }
                }
            }
            if reduction == .mean {
                let n = Float(Swift.max(g.scoredLayers.count, 1))
                for c in out.indices { out[c] /= n }
            }
            return out
        }
    }

    /// A table of the groups: channels, members, and why a group is kept whole.
    public var summary: String {
        var lines = ["channel groups (\(policy.rawValue)):"]
        for g in groups where !g.scoredLayers.isEmpty {
            let state = g.isPrunable ? "prunable" : "kept whole: \(g.reason ?? "")"
            lines.append(String(format: "  %3d  %5d ch  ", g.index, g.channels)
                         + "scored \(g.scoredLayers.joined(separator: ", "))"
                         + (g.batchNorms.isEmpty ? "" : "; bn \(g.batchNorms.joined(separator: ", "))")
                         + (g.consumers.isEmpty ? "" : "; read by \(g.consumers.map(\.path).joined(separator: ", "))")
                         + (g.blocks > 1 ? "; uniform over \(g.blocks) blocks of \(g.blockSize)" : "")
                         + "  (\(state))")
        }
        return lines.joined(separator: "\n")
    }
}

/// The layers surgery knows, for error messages.
let surgerySupportedLayers = "linear, conv2d (groups 1, depthwise, and grouped convolutions pruned with every group the same width), batchNorm, relu, clip, leakyRelu, tanh, hardSigmoid, hardSwish, gelu, sigmoid, silu, dropout, maxPool2d, avgPool2d, globalAvgPool, zeroPad2d, flatten, add, concat, channelMul, channelPadShortcut (within-blocks only); any other layer is kept whole with the channels it reads and writes"

extension Model {
    /// The groups of channels that must be pruned together.
    ///
    /// Every tensor's channels are followed as runs of groups (one run, except after a
    /// concatenation). Rules, node by node over the graph:
    /// - a convolution (groups 1) or linear layer starts a new group for its outputs and
    ///   is a consumer of each group of its input, at that group's offset;
    /// - BatchNorm, ReLU, Clip, LeakyReLU, Tanh, HardSwish, GELU, SiLU, dropout, zero padding
    ///   and pooling pass their input's groups on (BatchNorm joins each as a member, at its
    ///   offset); Sigmoid, a Clip whose range excludes 0 and a ``HardSigmoid`` with β ≠ 0
    ///   turn a removed (zero) channel into a non-zero value, so a layer that reads their
    ///   channels keeps them whole;
    /// - flatten passes the groups on with H·W inputs per channel, so a linear layer
    ///   behind it reads each channel as a block of inputs;
    /// - a depthwise convolution ties its input and output channels;
    /// - a concatenation lays its inputs' groups end to end: a producer's channel `c`
    ///   reaches every later reader at `offset + c` (DenseNet's producers reach many
    ///   consumers through several concatenations);
    /// - an addition ties the groups of all the tensors added, run by run; under
    ///   ``ResidualPolicy/withinBlocks`` such groups are kept whole;
    /// - ``ChannelMul`` (squeeze-and-excitation) ties the gate's channels to the map's: the
    ///   excitation's expand layer becomes a producer of the gated channels, and the
    ///   squeeze layer, which reads their pooled values, a consumer;
    /// - a grouped convolution with G groups that is not depthwise (weight
    ///   `[out, in/G, kh, kw]`; output group `b` reads only input group `b`) starts a new
    ///   group for its outputs and is a consumer of its input's group, like a convolution
    ///   with groups 1; both groups are then pruned **uniformly across G equal blocks**
    ///   (``ChannelGroup/blocks``): every input block of `in/G` channels keeps the same
    ///   number, and so does every output block of `out/G`, so the convolution stays a
    ///   valid grouped one with G groups, each narrower. A group that several grouped
    ///   convolutions touch takes the least common multiple of their groups (uniform over
    ///   4 blocks is uniform over 2). This is a choice: the cardinality G is never reduced
    ///   (whole convolution groups are not removed). A grouped convolution that reads a
    ///   concatenation (several runs) is kept whole, with the channels it reads and writes,
    ///   and so is a group whose blocks would be single channels or don't divide it;
    /// - a removed channel must be exactly zero wherever it is read: a layer that maps 0
    ///   to something else (Sigmoid: ½; a Clip whose range excludes 0) makes the groups a
    ///   convolution or linear layer reads through it whole, except as the gate of a
    ///   ``ChannelMul``, whose product is zero when the map's channel is;
    /// - structures that can't be followed are kept whole rather than refused: a layer
    ///   surgery does not know (a custom layer), tensors added or gated whose runs of
    ///   groups differ, a depthwise convolution reading a concatenation; the model's input
    ///   and output groups are kept whole too. ``ChannelGroup/reason`` names the layer.
    ///
    /// - Throws: ``PruneKitError`` only for ``ResidualPolicy/wholeStream`` on a model with
    ///   a ``ChannelPadShortcut``, whose zero padding places channels by position.
    /// Cost: linear in the number of nodes and the runs of their tensors.
    public func channelDependencies(policy: ResidualPolicy = .withinBlocks) throws -> ChannelDependencies {
        typealias Run = (set: Int, channels: Int, zeroBreaker: String?)
        let n = nodes.count
        var parent: [Int] = [], setChannels: [Int] = []
        func newSet(_ channels: Int) -> Int { parent.append(parent.count); setChannels.append(channels); return parent.count - 1 }
        func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }
        func union(_ a: Int, _ b: Int) { let (ra, rb) = (find(a), find(b)); if ra != rb { parent[max(ra, rb)] = min(ra, rb) } }
        // Runs of every tensor: index i for node i, n for the model input. zeroBreaker names
        // the layer after which a removed channel is no longer zero (nil: it is zero).
        var runs = [[Run]](repeating: [], count: n + 1)
        var block = [Int](repeating: 1, count: n + 1)
        let input = n
        func tensor(_ i: Int) -> Int { i == Model.inputIndex ? input : i }
        let inputChannels = inputShape.count == 3 ? inputShape[0] : inputShape.reduce(1, *)
        runs[input] = [(newSet(inputChannels), inputChannels, nil)]
        // Facts gathered per set, attributed to the groups at the end.
        var producers: [(Int, Int, String)] = [], depthwise: [(Int, Int, String)] = []   // (set, node, name)
        var norms: [(Int, ChannelSlice)] = [], consumers: [(Int, ChannelConsumer)] = []
        var additions: [Int] = [], whole: [(Int, String)] = []
        // Uniform-block requirements: (set, blocks, the grouped convolution's name).
        var blockNeeds: [(Int, Int, String)] = []
        func keepWhole(_ rs: [Run], _ why: String) { for r in rs { whole.append((r.set, why)) } }
        /// Ties runs of equal layout pairwise; false (nothing tied) when the layouts differ.
        func tie(_ a: [Run], _ b: [Run]) -> Bool {
            guard a.count == b.count, zip(a, b).allSatisfy({ $0.channels == $1.channels }) else { return false }
            for (x, y) in zip(a, b) { union(x.set, y.set) }
            return true
        }
        /// Consumer entries for a layer reading `rs`; groups read after a zero-breaking layer are kept whole.
        func consume(_ rs: [Run], _ name: String, perChannel: Int) {
            var offset = 0
            for r in rs {
                consumers.append((r.set, ChannelConsumer(path: name, inputsPerChannel: perChannel, offset: offset)))
                if let breaker = r.zeroBreaker {
                    whole.append((r.set, "'\(name)' reads these channels after '\(breaker)', which does not map a removed channel's zero to zero"))
                }
                offset += r.channels
            }
        }

        for (i, node) in nodes.enumerated() {
            let layer = node.layer
            let ins = node.inputs.map(tensor)
            let shape = shapes[i]
            let first = runs[ins[0]]
            func fresh(_ channels: Int) -> [Run] { [(newSet(channels), channels, nil)] }
            func opaque(_ why: String) {
                for t in ins { keepWhole(runs[t], why) }
                let c = shape.count == 3 ? shape[0] : shape.reduce(1, *)
                runs[i] = fresh(c)
                keepWhole(runs[i], why)
            }
            switch layer {
            case let conv as Conv2d where conv.kind == .conv2d:
                if conv.groups == 1 {
                    runs[i] = fresh(conv.outChannels)
                    producers.append((runs[i][0].set, i, node.name))
                    consume(first, node.name, perChannel: 1)
                } else if conv.groups == conv.inChannels && conv.outChannels == conv.inChannels && first.count == 1 {
                    runs[i] = [(first[0].set, first[0].channels, nil)]   // a masked filter and bias give zero
                    depthwise.append((first[0].set, i, node.name))
                } else if conv.groups == conv.inChannels && conv.outChannels == conv.inChannels {
                    opaque("the depthwise convolution '\(node.name)' reads a concatenation, which PruneKit keeps whole")
                } else {
                    // Grouped: output block b reads input block b only; both sides pruned
                    // uniformly across the groups.
                    consume(first, node.name, perChannel: 1)
                    runs[i] = fresh(conv.outChannels)
                    producers.append((runs[i][0].set, i, node.name))
                    if first.count == 1 {
                        blockNeeds.append((first[0].set, conv.groups, node.name))
                        blockNeeds.append((runs[i][0].set, conv.groups, node.name))
                    } else {
                        let why = "tied to the grouped convolution '\(node.name)' (groups \(conv.groups), \(conv.inChannels)→\(conv.outChannels) channels), which reads a concatenation and is kept whole"
                        for t in ins { keepWhole(runs[t], why) }
                        keepWhole(runs[i], why)
                    }
                }
            case let linear as Linear where linear.kind == .linear:
                runs[i] = fresh(linear.outFeatures)
                producers.append((runs[i][0].set, i, node.name))
                consume(first, node.name, perChannel: block[ins[0]])
            case is BatchNorm where layer.kind == .batchNorm:
                var offset = 0
                for r in first {
                    norms.append((r.set, ChannelSlice(path: node.name, offset: offset, featuresPerChannel: block[ins[0]])))
                    offset += r.channels
                }
                runs[i] = first.map { ($0.set, $0.channels, nil) }   // γ = β = 0 gives zero
                block[i] = block[ins[0]]
            case let clip as Clip where clip.kind == .clip:
                let keepsZero = (clip.lower ?? 0) <= 0 && (clip.upper ?? 0) >= 0
                runs[i] = keepsZero ? first : first.map { ($0.set, $0.channels, node.name) }
                block[i] = block[ins[0]]
            case is Sigmoid where layer.kind == .sigmoid:
                runs[i] = first.map { ($0.set, $0.channels, node.name) }
                block[i] = block[ins[0]]
            case let hardSigmoid as HardSigmoid where layer.kind == .hardSigmoid:
                // HardSigmoid maps 0 to β: only with β = 0 does a removed channel stay zero.
                runs[i] = hardSigmoid.beta == 0 ? first : first.map { ($0.set, $0.channels, node.name) }
                block[i] = block[ins[0]]
            case is ReLU, is SiLU, is Dropout, is MaxPool2d, is AvgPool2d, is GlobalAvgPool,
                 is LeakyReLU, is Tanh, is HardSwish, is GELU, is ZeroPad2d:
                guard [.relu, .silu, .dropout, .maxPool2d, .avgPool2d, .globalAvgPool,
                       .leakyRelu, .tanh, .hardSwish, .gelu, .zeroPad2d].contains(layer.kind) else {
                    opaque("'\(node.name)' is a \(type(of: layer)) that reports kind \(layer.kind.rawValue), which channel pruning does not know")
                    continue
                }
                runs[i] = first; block[i] = block[ins[0]]
            case is Flatten where layer.kind == .flatten:
                runs[i] = first
                block[i] = shape[0] / max(first.reduce(0) { $0 + $1.channels }, 1)
            case is Concat where layer.kind == .concat:
                runs[i] = ins.flatMap { runs[$0] }
            case is Add where layer.kind == .add:
                additions.append(i)
                if Set(ins.map { block[$0] }).count > 1 {
                    opaque("added tensors differ in layout at '\(node.name)'")
                    continue
                }
                var tied = true
                for t in ins.dropFirst() where !tie(first, runs[t]) { tied = false }
                if !tied {
                    opaque("the tensors added at '\(node.name)' are concatenations of different layers")
                    continue
                }
                runs[i] = first.indices.map { k in
                    (first[k].set, first[k].channels, ins.lazy.compactMap { runs[$0][k].zeroBreaker }.first)
                }
                block[i] = block[ins[0]]
            case is ChannelMul where layer.kind == .channelMul:
                let gate = runs[ins[1]]
                guard tie(first, gate) else {
                    opaque("the map and the gate multiplied at '\(node.name)' are laid out differently")
                    continue
                }
                // x · g is zero when either factor is.
                runs[i] = first.indices.map { k in
                    (first[k].set, first[k].channels, first[k].zeroBreaker == nil || gate[k].zeroBreaker == nil ? nil : first[k].zeroBreaker)
                }
            case let pad as ChannelPadShortcut where pad.kind == .channelPadShortcut:
                if policy == .wholeStream {
                    throw PruneKitError(.invalidArgument, "the whole-stream policy can't prune through the option-A shortcut '\(node.name)', which pads channels with zeros by position",
                                        hint: "use the within-blocks policy (the default) for this model")
                }
                runs[i] = fresh(pad.outChannels)
                additions.append(i); additions.append(ins[0])   // both sides stay whole
            default:
                opaque("'\(node.name)' is a \(layer.kind.rawValue) layer (\(type(of: layer))) that channel pruning does not know")
            }
        }
        keepWhole(runs[input], "the model input's channels")
        keepWhole(runs[n - 1], "the model's outputs")
        if policy == .withinBlocks {
            for t in additions { keepWhole(runs[t], "tied to a residual addition (within-blocks keeps block outputs whole)") }
        }
        // Groups in order of their root (the first set of each).
        var groupOf = [Int: Int](), roots: [Int] = []
        for s in parent.indices {
            let r = find(s)
            if groupOf[r] == nil { groupOf[r] = roots.count; roots.append(r) }
        }
        let count = roots.count
        func g(_ s: Int) -> Int { groupOf[find(s)]! }
        var members = (0..<count).map { _ in (producers: [String](), depthwise: [String](), norms: [ChannelSlice](),
                                               consumers: [ChannelConsumer](), scored: [String](), reason: String?.none,
                                               blocks: 1, grouped: [(name: String, groups: Int)]()) }
        // Scored layers in node order: producers and depthwise convolutions interleaved.
        for (s, _, name) in (producers + depthwise).sorted(by: { $0.1 < $1.1 }) { members[g(s)].scored.append(name) }
        for (s, _, name) in producers { members[g(s)].producers.append(name) }
        for (s, _, name) in depthwise { members[g(s)].depthwise.append(name) }
        for (s, slice) in norms { members[g(s)].norms.append(slice) }
        for (s, c) in consumers { members[g(s)].consumers.append(c) }
        for (s, why) in whole where members[g(s)].reason == nil { members[g(s)].reason = why }
        for k in 0..<count where members[k].scored.isEmpty { if members[k].reason == nil { members[k].reason = "no layer produces these channels" } }
        var groupChannels = [Int](repeating: 0, count: count)
        for s in parent.indices { groupChannels[g(s)] = setChannels[s] }
        for (s, blocks, name) in blockNeeds {
            let k = g(s)
            members[k].blocks = lcm(members[k].blocks, blocks)
            if !members[k].grouped.contains(where: { $0.name == name }) { members[k].grouped.append((name, blocks)) }
        }
        for k in 0..<count where members[k].blocks > 1 {
            let (blocks, channels) = (members[k].blocks, groupChannels[k])
            guard channels % blocks != 0 || channels == blocks else { continue }
            let convs = members[k].grouped.map { "'\($0.name)' (groups \($0.groups))" }.joined(separator: ", ")
            if members[k].reason == nil {
                members[k].reason = channels == blocks
                    ? "tied to the grouped convolution(s) \(convs), whose groups read or write one of these \(channels) channels each, so no channel can go from every group alike"
                    : "tied to the grouped convolutions \(convs), whose groups would need these \(channels) channels in \(blocks) equal blocks"
            }
            members[k].blocks = 1
        }
        let groups = (0..<count).map { k in
            ChannelGroup(index: k, channels: groupChannels[k], producers: members[k].producers,
                         depthwise: members[k].depthwise, batchNormSlices: members[k].norms,
                         consumers: members[k].consumers, isPrunable: members[k].reason == nil,
                         reason: members[k].reason, blocks: members[k].blocks,
                         groupedConvolutions: members[k].grouped.map(\.name), scoredLayers: members[k].scored)
        }
        let layouts = runs.map { rs -> [ChannelDependencies.Segment] in
            var merged: [ChannelDependencies.Segment] = []
            for r in rs { merged.append(ChannelDependencies.Segment(group: g(r.set), channels: r.channels)) }
            return merged
        }
        return ChannelDependencies(policy: policy, groups: groups, tensorLayout: layouts, tensorBlock: block)
    }
}

/// The greatest common divisor of two non-negative integers.
func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

/// The least common multiple of two positive integers.
func lcm(_ a: Int, _ b: Int) -> Int { a / gcd(a, b) * b }
