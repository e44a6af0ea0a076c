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

    public init(path: String, inputsPerChannel: Int) {
        self.path = path; self.inputsPerChannel = inputsPerChannel
    }
}

/// A set of channels that must be removed together: channel `c` of the group is output
/// channel `c` of every producer (its filter or weight row, and its bias), entry `c` of
/// every BatchNorm in the group, input channel `c` of every depthwise convolution and
/// every consumer, across all the layers that only pass the channels on (ReLU, pooling,
/// flatten, additions).
public struct ChannelGroup: Sendable, Equatable {
    /// The group's position in ``ChannelDependencies/groups``.
    public let index: Int
    /// The number of channels.
    public let channels: Int
    /// Convolutions and linear layers whose output channels these are, in node order.
    public let producers: [String]
    /// Depthwise convolutions in the group: filter `c` reads channel `c` and writes it.
    public let depthwise: [String]
    /// BatchNorm layers normalising the channels.
    public let batchNorms: [String]
    /// Layers that read the channels as inputs.
    public let consumers: [ChannelConsumer]
    /// Whether the group's channels may be removed under the policy.
    public let isPrunable: Bool
    /// Why the group is kept whole, when it is.
    public let reason: String?

    /// The layers whose per-channel scores make the group's score: the producers and the
    /// depthwise convolutions, in node order.
    public let scoredLayers: [String]
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
    /// Group of each node's output (index `nodes.count` is the model input).
    let tensorGroup: [Int]
    /// Features per channel of each node's output (1 for feature maps; H·W after a flatten).
    let tensorBlock: [Int]

    /// The group of a node's output channels (a layer's output: `features.0`), if the node exists.
    public func group(ofOutput path: String, in model: Model) -> ChannelGroup? {
        model.nodeIndex(named: path).map { groups[tensorGroup[$0]] }
    }

    /// The group whose score a scored layer (producer or depthwise convolution) contributes to.
    public func group(scoredBy path: String) -> ChannelGroup? {
        groups.first { $0.scoredLayers.contains(path) }
    }

    func group(ofTensor t: Int) -> Int { tensorGroup[t < 0 ? tensorGroup.count - 1 : t] }
    func block(ofTensor t: Int) -> Int { tensorBlock[t < 0 ? tensorBlock.count - 1 : t] }

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
                         + "  (\(state))")
        }
        return lines.joined(separator: "\n")
    }
}

/// The layers surgery knows, for error messages.
let surgerySupportedLayers = "linear, conv2d (groups 1, or depthwise: groups = in = out channels), batchNorm, relu, clip, leakyRelu, tanh, hardSigmoid (its channels kept whole), hardSwish, gelu, dropout, maxPool2d, avgPool2d, globalAvgPool, zeroPad2d, flatten, add, channelPadShortcut (within-blocks only)"

extension Model {
    /// The groups of channels that must be pruned together.
    ///
    /// Rules, followed node by node over the graph:
    /// - a convolution (groups 1) or linear layer starts a new group for its outputs and
    ///   is a consumer of its input's group;
    /// - BatchNorm, the activations, dropout, zero padding and pooling pass their input's
    ///   group on (BatchNorm joins it as a member); a ``HardSigmoid`` with β ≠ 0 keeps its
    ///   group whole (it turns a removed zero channel into the constant β);
    /// - flatten passes the group on with H·W inputs per channel, so a linear layer
    ///   behind it reads each channel as a block of inputs;
    /// - a depthwise convolution ties its input and output channels;
    /// - an addition ties the groups of all the tensors added; under
    ///   ``ResidualPolicy/withinBlocks`` such groups are kept whole;
    /// - the model input's and output's groups are kept whole.
    ///
    /// - Throws: ``PruneKitError`` naming the layer for a layer kind that can't be
    ///   pruned structurally (a grouped, non-depthwise convolution, a custom layer), and
    ///   for ``ResidualPolicy/wholeStream`` on a model with a ``ChannelPadShortcut``.
    /// Cost: linear in the number of nodes.
    public func channelDependencies(policy: ResidualPolicy = .withinBlocks) throws -> ChannelDependencies {
        let n = nodes.count
        let input = n   // tensor index of the model input
        var parent = Array(0...n)
        func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }
        func union(_ a: Int, _ b: Int) { let (ra, rb) = (find(a), find(b)); if ra != rb { parent[max(ra, rb)] = min(ra, rb) } }
        func tensor(_ i: Int) -> Int { i == Model.inputIndex ? input : i }
        var block = [Int](repeating: 1, count: n + 1)
        var channels = [Int](repeating: 0, count: n + 1)
        channels[input] = inputShape.count == 3 ? inputShape[0] : inputShape.reduce(1, *)
        // Facts gathered per tensor, attributed to the groups at the end.
        var producers: [(Int, String)] = [], depthwise: [(Int, String)] = [], norms: [(Int, String)] = []
        var consumers: [(Int, ChannelConsumer)] = []
        var additions: [Int] = [], mismatched: [(Int, String)] = []
        var nonZeroAtZero: [(Int, String)] = []

        func unsupported(_ i: Int, _ what: String) -> PruneKitError {
            PruneKitError(.invalidArgument, "layer '\(nodes[i].name)' (\(what)) can't be pruned structurally",
                          hint: "surgery supports \(surgerySupportedLayers); prune this model with a weight criterion, or mask its channels without removing them")
        }
        for (i, node) in nodes.enumerated() {
            let layer = node.layer
            let ins = node.inputs.map(tensor)
            let shape = shapes[i]
            switch layer {
            case let conv as Conv2d where conv.kind == .conv2d:
                if conv.groups == 1 {
                    channels[i] = conv.outChannels
                    producers.append((i, node.name))
                    consumers.append((ins[0], ChannelConsumer(path: node.name, inputsPerChannel: 1)))
                } else if conv.groups == conv.inChannels && conv.outChannels == conv.inChannels {
                    union(i, ins[0]); channels[i] = conv.outChannels
                    depthwise.append((i, node.name))
                } else {
                    throw unsupported(i, "conv2d with groups \(conv.groups), \(conv.inChannels)→\(conv.outChannels) channels")
                }
            case let linear as Linear where linear.kind == .linear:
                channels[i] = linear.outFeatures
                producers.append((i, node.name))
                consumers.append((ins[0], ChannelConsumer(path: node.name, inputsPerChannel: block[ins[0]])))
            case is BatchNorm, is ReLU, is Clip, is Dropout, is MaxPool2d, is AvgPool2d, is GlobalAvgPool,
                 is LeakyReLU, is Tanh, is HardSigmoid, is HardSwish, is GELU, is ZeroPad2d:
                guard [.batchNorm, .relu, .clip, .dropout, .maxPool2d, .avgPool2d, .globalAvgPool,
                       .leakyRelu, .tanh, .hardSigmoid, .hardSwish, .gelu, .zeroPad2d].contains(layer.kind) else {
                    throw unsupported(i, "a \(type(of: layer)) that reports kind \(layer.kind.rawValue)")
                }
                union(i, ins[0]); channels[i] = channels[ins[0]]; block[i] = block[ins[0]]
                if layer.kind == .batchNorm { norms.append((i, node.name)) }
                // A removed channel must read as zero downstream; HardSigmoid maps 0 to β.
                if let hs = layer as? HardSigmoid, hs.beta != 0 { nonZeroAtZero.append((i, node.name)) }
            case is Flatten where layer.kind == .flatten:
                union(i, ins[0]); channels[i] = channels[ins[0]]
                block[i] = shape[0] / max(channels[ins[0]], 1)
            case is Add where layer.kind == .add:
                for t in ins { union(i, t) }
                channels[i] = channels[ins[0]]; block[i] = block[ins[0]]
                additions.append(i)
                if Set(ins.map { block[$0] }).count > 1 { mismatched.append((i, node.name)) }
            case let pad as ChannelPadShortcut where pad.kind == .channelPadShortcut:
                if policy == .wholeStream {
                    throw PruneKitError(.invalidArgument, "the whole-stream policy can't prune through the option-A shortcut '\(node.name)', which pads channels with zeros by position",
                                        hint: "use the within-blocks policy (the default) for this model")
                }
                channels[i] = pad.outChannels
                additions.append(i); additions.append(ins[0])   // both sides stay whole
            default:
                throw unsupported(i, "\(layer.kind.rawValue), \(type(of: layer))")
            }
        }
        // Groups in order of their root (the first tensor of each).
        var groupOf = [Int: Int](), roots: [Int] = []
        for t in [input] + Array(0..<n) {
            let r = find(t)
            if groupOf[r] == nil { groupOf[r] = roots.count; roots.append(r) }
        }
        let count = roots.count
        var members = (0..<count).map { _ in (producers: [String](), depthwise: [String](), norms: [String](),
                                               consumers: [ChannelConsumer](), scored: [String](), reason: String?.none) }
        func g(_ t: Int) -> Int { groupOf[find(t)]! }
        // Scored layers in node order: producers and depthwise convolutions interleaved.
        for (t, name) in (producers + depthwise).sorted(by: { $0.0 < $1.0 }) { members[g(t)].scored.append(name) }
        for (t, name) in producers { members[g(t)].producers.append(name) }
        for (t, name) in depthwise { members[g(t)].depthwise.append(name) }
        for (t, name) in norms { members[g(t)].norms.append(name) }
        for (t, c) in consumers { members[g(t)].consumers.append(c) }
        func keepWhole(_ t: Int, _ why: String) { if members[g(t)].reason == nil { members[g(t)].reason = why } }
        keepWhole(input, "the model input's channels")
        keepWhole(n - 1, "the model's outputs")
        for (t, name) in mismatched { keepWhole(t, "added tensors differ in layout at '\(name)'") }
        for (t, name) in nonZeroAtZero {
            keepWhole(t, "'\(name)' maps a removed (zero) channel to a non-zero constant, so removing it would change the next layer's input")
        }
        if policy == .withinBlocks {
            for t in additions { keepWhole(t, "tied to a residual addition (within-blocks keeps block outputs whole)") }
        }
        for k in 0..<count where members[k].scored.isEmpty { if members[k].reason == nil { members[k].reason = "no layer produces these channels" } }
        var groupChannels = [Int](repeating: 0, count: count)
        for t in 0...n { groupChannels[g(t)] = channels[t] }
        for (t, _) in producers + depthwise { groupChannels[g(t)] = channels[t] }
        let groups = (0..<count).map { k in
            ChannelGroup(index: k, channels: groupChannels[k], producers: members[k].producers,
                         depthwise: members[k].depthwise, batchNorms: members[k].norms,
                         consumers: members[k].consumers, isPrunable: members[k].reason == nil,
                         reason: members[k].reason, scoredLayers: members[k].scored)
        }
        let tensorGroup = (0..<n).map { g($0) } + [g(input)]
        let tensorBlock = Array(block[0..<n]) + [block[input]]
        return ChannelDependencies(policy: policy, groups: groups, tensorGroup: tensorGroup, tensorBlock: tensorBlock)
    }
}
