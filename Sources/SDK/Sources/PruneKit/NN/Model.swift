import Dispatch

/// A network: a graph of named layers, run in order, with a forward and a backward pass.
///
/// Every node has a dotted name (`features.3`, `layer2.0.conv1`) and every parameter a
/// dotted path (`features.3.weight`): reports, ignore lists, options and saved files all
/// use them. Nodes are stored in topological order; each reads the outputs of earlier
/// nodes (or the model input), so residual connections are ordinary nodes with two inputs.
///
/// ``forward(_:)`` takes a batch `[N, C, H, W]` (or `[N, F]`) and returns logits
/// `[N, classes]`; inside, feature maps are channel-major (see ``Tensor``).
public final class Model {
    /// One operation and where its inputs come from.
    public struct Node {
        /// The dotted name, unique in the model.
        public let name: String
        public let layer: Layer
        /// Indices of earlier nodes whose outputs feed this one; ``Model/inputIndex`` is the model input.
        public let inputs: [Int]

        public init(name: String, layer: Layer, inputs: [Int]) {
            self.name = name; self.layer = layer; self.inputs = inputs
        }
    }

    /// The index that stands for the model's input in ``Node/inputs``.
    public static let inputIndex = -1

    /// The architecture's name (a zoo name such as `lenet-5`, or one given by the caller).
    public let architecture: String
    /// The per-example input shape, `[C, H, W]` or `[F]`.
    public let inputShape: [Int]
    public let nodes: [Node]
    /// The per-example output shape of every node.
    public let shapes: [[Int]]
    /// How ``forward(_:)`` runs: ``ForwardMode/training`` (the default),
    /// ``ForwardMode/inference``, or evaluation behaviour with gradients.
    public var mode = ForwardMode.training

    /// Training behaviour with a backward pass to follow (`true`), or inference (`false`).
    public var isTraining: Bool {
        get { mode.training }
        set { mode = newValue ? .training : .inference }
    }

    /// Called with each node's index and output during ``forward(_:)``; for criteria that
    /// need activations. Feature maps are channel-major `[C, N, H, W]`.
    public var forwardObserver: ((Int, Tensor) -> Void)?
    /// Called with each node's index and the gradient of the loss with respect to its
    /// output during ``backward(_:)``.
    public var backwardObserver: ((Int, Tensor) -> Void)?

    /// When set, every node's forward and backward time is added to it (for benchmarks).
    public var profile: ModelProfile?

    private let requiresGradient: [Bool]
    private let lastUse: [Int]

    /// Builds and checks a model.
    /// - Throws: ``PruneKitError`` if a node reads a later node, a name repeats, or shapes do not fit.
    public init(architecture: String, inputShape: [Int], nodes: [Node]) throws {
        guard !nodes.isEmpty else { throw PruneKitError(.invalidArgument, "a model needs at least one layer") }
        var shapes: [[Int]] = [], requires: [Bool] = [], seen = Set<String>()
        var lastUse = [Int](repeating: -1, count: nodes.count)
        for (i, node) in nodes.enumerated() {
            guard seen.insert(node.name).inserted else {
                throw PruneKitError(.invalidArgument, "two layers are named '\(node.name)'")
            }
            guard !node.inputs.isEmpty, node.inputs.allSatisfy({ $0 >= Model.inputIndex && $0 < i }) else {
                throw PruneKitError(.invalidArgument, "layer '\(node.name)' reads inputs \(node.inputs): each must be an earlier layer or the model input")
            }
            let inShapes = node.inputs.map { $0 == Model.inputIndex ? inputShape : shapes[$0] }
            do {
                shapes.append(try node.layer.outputShape(for: inShapes))
            } catch let e as PruneKitError {
                throw PruneKitError(e.kind, "layer '\(node.name)': \(e.message)", hint: e.hint)
            }
            let own = node.layer.parameters.contains { $0.parameter.isTrainable }
            requires.append(own || node.inputs.contains { $0 >= 0 && requires[$0] })
            for j in node.inputs where j >= 0 { lastUse[j] = i }
        }
        self.architecture = architecture
        self.inputShape = inputShape
        self.nodes = nodes
        self.shapes = shapes
        self.requiresGradient = requires
        self.lastUse = lastUse
    }

    /// The per-example output shape (`[classes]` for a classifier).
    public var outputShape: [Int] { shapes[shapes.count - 1] }

    /// Every parameter and state tensor by dotted path, in node order.
    public var namedParameters: [(path: String, parameter: Parameter)] {
        nodes.flatMap { node in node.layer.parameters.map { ("\(node.name).\($0.name)", $0.parameter) } }
    }

    /// The trainable parameters.
    public var trainableParameters: [Parameter] {
        namedParameters.map(\.parameter).filter(\.isTrainable)
    }

    /// The number of trainable scalars.
    public var parameterCount: Int { trainableParameters.reduce(0) { $0 + $1.value.count } }

    /// Multiply–accumulates of one example's forward pass (convolutions and linear layers).
    public var macs: Int {
        nodes.enumerated().reduce(0) { acc, item in
            acc + item.element.layer.macs(inputShapes: item.element.inputs.map { $0 == Model.inputIndex ? inputShape : shapes[$0] })
        }
    }

    /// The index of the node with this dotted name.
    public func nodeIndex(named name: String) -> Int? { nodes.firstIndex { $0.name == name } }

    /// The per-example input shapes of node `i`.
    public func inputShapes(ofNode i: Int) -> [[Int]] {
        nodes[i].inputs.map { $0 == Model.inputIndex ? inputShape : shapes[$0] }
    }

    /// Sets every parameter's gradient to zero.
    public func zeroGradients() {
        for p in trainableParameters { p.zeroGradient() }
    }

    /// Runs the network on a batch.
    ///
    /// - Parameter input: `[N] + inputShape`, or any `[N, …]` with the same number of
    ///   elements per example (an image batch for a model that starts with vectors).
    /// - Returns: the last node's output, `[N] + outputShape` (batch-major).
    public func forward(_ input: Tensor) -> Tensor {
        let n = input.shape.first ?? 0
        let perExample = inputShape.reduce(1, *)
        precondition(input.count == n * perExample,
                     "Model.forward: input \(input.shape) does not hold [N] + \(inputShape)")
        let x = inputShape.count == 3
            ? batchMajorToChannelMajor(input.reshaped([n] + inputShape))
            : input.reshaped([n] + inputShape)
        var outputs = [Tensor?](repeating: nil, count: nodes.count)
        for (i, node) in nodes.enumerated() {
            let ins = node.inputs.map { $0 == Model.inputIndex ? x : outputs[$0]! }
            let t0 = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            let y = node.layer.forward(ins, mode: mode)
            if let profile { profile.forward[i] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 }
            forwardObserver?(i, y)
            outputs[i] = y
            for j in node.inputs where j >= 0 && lastUse[j] == i { outputs[j] = nil }
        }
        let y = outputs[nodes.count - 1]!
        return y.rank == 4 ? channelMajorToBatchMajor(y) : y
    }

    /// Back-propagates ∂L/∂output (`[N] + outputShape`) through the last training-mode
    /// forward pass, accumulating into every trainable parameter's gradient.
    public func backward(_ gradOutput: Tensor) {
        var grads = [Tensor?](repeating: nil, count: nodes.count)
        grads[nodes.count - 1] = gradOutput.rank == 4 ? batchMajorToChannelMajor(gradOutput) : gradOutput
        for i in stride(from: nodes.count - 1, through: 0, by: -1) {
            guard let g = grads[i] else { continue }   // nothing upstream needs this node
            grads[i] = nil
            backwardObserver?(i, g)
            let node = nodes[i]
            let needs = node.inputs.map { $0 >= 0 && requiresGradient[$0] }
            let t0 = profile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            let inputGrads = node.layer.backward(g, needsInputGradient: needs)
            if let profile { profile.backward[i] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 }
            for (j, dx) in zip(node.inputs, inputGrads) where j >= 0 {
                guard let dx else { continue }
                if grads[j] == nil { grads[j] = dx } else { grads[j]!.add(dx) }
            }
        }
    }
}

/// Seconds spent in each node of a model, accumulated while ``Model/profile`` is set.
public final class ModelProfile {
    /// Forward seconds per node index.
    public var forward: [Double]
    /// Backward seconds per node index.
    public var backward: [Double]

    public init(nodeCount: Int) {
        forward = Array(repeating: 0, count: nodeCount)
        backward = Array(repeating: 0, count: nodeCount)
    }
}
