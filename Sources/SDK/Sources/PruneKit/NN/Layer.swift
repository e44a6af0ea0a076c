/// A tensor that training can change, with its gradient and an optional pruning mask.
///
/// Parameters are reference types: the model, the optimiser and a pruning plan all
/// see the same object. A parameter with `isTrainable == false` (BatchNorm's running
/// statistics) is state that is saved and loaded but never updated by an optimiser.
public final class Parameter {
    /// The current values.
    public var value: Tensor
    /// The accumulated gradient ∂L/∂value, the same shape as `value`.
    public var gradient: Tensor
    /// Whether an optimiser updates this parameter.
    public let isTrainable: Bool
    /// 1 where a weight is kept, 0 where it is pruned; `nil` when nothing is pruned.
    /// Optimisers keep masked weights at zero: neither gradients, weight decay nor
    /// momentum revive them.
    public var mask: Tensor? {
        didSet {
            if let mask {
                precondition(mask.shape == value.shape, "Parameter.mask: shape \(mask.shape) for a value of shape \(value.shape)")
                applyMask()
            }
        }
    }

    public init(_ value: Tensor, trainable: Bool = true) {
        self.value = value
        self.gradient = Tensor(shape: value.shape)
        self.isTrainable = trainable
    }

    /// Sets the gradient to zero.
    public func zeroGradient() { gradient.fill(0) }

    /// Multiplies the values by the mask, if there is one.
    public func applyMask() {
        guard let mask else { return }
        value.withUnsafeMutableBufferPointer { v in mask.withUnsafeBufferPointer { m in
            for i in 0..<v.count { v[i] *= m[i] }
        } }
    }

    /// Replaces the values, keeping the gradient's shape in step.
    public func assign(_ newValue: Tensor) {
        value = newValue
        if gradient.shape != newValue.shape { gradient = Tensor(shape: newValue.shape) }
        if let m = mask, m.shape != newValue.shape { mask = nil }
    }
}

/// What a layer is, for code that must know (surgery, FLOP counting, file I/O).
/// Criteria never branch on it: they see ``PrunableLayer`` views.
public enum LayerKind: String, CaseIterable, Sendable {
    case linear, conv2d, batchNorm, relu, maxPool2d, avgPool2d, globalAvgPool, flatten, dropout, add, channelPadShortcut
    /// ``Clip``: y = min(max(x, lower), upper), as ReLU6 (ONNX's Clip).
    case clip
    /// ``Concat``: feature maps joined along the channels.
    case concat
    /// ``Sigmoid``: y = 1 / (1 + e^(−x)).
    case sigmoid
    /// ``SiLU``: y = x · σ(x) (swish).
    case silu
    /// ``ChannelMul``: a `[C, H, W]` map scaled by a `[C]` gate (squeeze-and-excitation).
    case channelMul
    /// ``LeakyReLU``, ``Tanh``, ``HardSigmoid``, ``HardSwish``, ``GELU``: element-wise activations.
    case leakyRelu, tanh, hardSigmoid, hardSwish, gelu
    /// ``ZeroPad2d``: zero rows and columns around each feature map (ONNX's constant Pad).
    case zeroPad2d
}

/// One operation of a model, with a forward and a backward pass.
///
/// Shapes are given **per example** (without the batch dimension): `[F]` for vectors,
/// `[C, H, W]` for feature maps. At run time a batch of vectors is `[N, F]` and a batch
/// of feature maps is stored channel-major, `[C, N, H, W]`.
///
/// When `mode.recordsForBackward` is set, `forward` keeps what `backward` needs;
/// `backward` is called at most once after such a `forward`, and accumulates into the
/// parameters' gradients.
public protocol Layer: AnyObject {
    /// The kind of operation.
    var kind: LayerKind { get }
    /// The layer's parameters and state by local name (`weight`, `bias`, `running_mean`, …),
    /// in a fixed order.
    var parameters: [(name: String, parameter: Parameter)] { get }
    /// The hyper-parameters that, with the parameters, rebuild the layer (saved as JSON).
    var configuration: [String: Double] { get }
    /// The per-example output shape for the given per-example input shapes.
    /// - Throws: ``PruneKitError`` when the inputs do not fit the layer.
    func outputShape(for inputShapes: [[Int]]) throws -> [Int]
    /// Computes the output for a batch.
    func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor
    /// Given ∂L/∂output, accumulates parameter gradients and returns ∂L/∂input for each
    /// input whose flag in `needsInputGradient` is set (`nil` for the others).
    func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?]
    /// Multiply–accumulate operations of one example's forward pass.
    func macs(inputShapes: [[Int]]) -> Int
}

extension Layer {
    public var parameters: [(name: String, parameter: Parameter)] { [] }
    public var configuration: [String: Double] { [:] }
    public func macs(inputShapes: [[Int]]) -> Int { 0 }

    /// Looks up a parameter by local name.
    public func parameter(named name: String) -> Parameter? {
        parameters.first { $0.name == name }?.parameter
    }
}

/// How a forward pass runs.
public struct ForwardMode: Sendable, Equatable {
    /// Training behaviour: BatchNorm uses (and updates) batch statistics, Dropout drops.
    public var training: Bool
    /// Keep what a following `backward` needs.
    public var recordsForBackward: Bool
    /// Whether that backward accumulates the parameters' gradients. Evidence that needs
    /// only ∂L/∂activations (Taylor) turns this off: a convolution then skips its
    /// weight-gradient product, a third of its backward pass.
    public var parameterGradients: Bool = true

    public init(training: Bool, recordsForBackward: Bool) {
        self.training = training
        self.recordsForBackward = recordsForBackward
    }

    public init(training: Bool, recordsForBackward: Bool, parameterGradients: Bool) {
        self.training = training
        self.recordsForBackward = recordsForBackward
        self.parameterGradients = parameterGradients
    }

    /// Training: batch statistics, dropout, and a backward pass to follow.
    public static let training = ForwardMode(training: true, recordsForBackward: true)
    /// Inference: running statistics, no dropout, nothing kept.
    public static let inference = ForwardMode(training: false, recordsForBackward: false)
    /// Evaluation behaviour with a backward pass to follow (gradients of a trained model,
    /// as criteria such as Taylor need).
    public static let evaluationWithGradients = ForwardMode(training: false, recordsForBackward: true)
}

/// Checks a shape condition in `outputShape(for:)`, throwing a message a person can act on.
@inline(__always)
func requireShape(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw PruneKitError(.shapeMismatch, message()) }
}

/// Initialisation of a weight tensor.
public enum WeightInit: Sendable {
    /// U(−1/√fanIn, 1/√fanIn): PyTorch's default for Linear and Conv2d
    /// (`kaiming_uniform_` with a = √5).
    case pytorchDefault
    /// N(0, 2/fanIn): He et al. 2015, used for the ResNets.
    case heNormal
}

func initialWeight(_ shape: [Int], fanIn: Int, _ scheme: WeightInit, rng: inout RandomGenerator) -> Tensor {
    switch scheme {
    case .pytorchDefault:
        let bound = 1 / Float(max(fanIn, 1)).squareRoot()
        return .randomUniform(shape, low: -bound, high: bound, using: &rng)
    case .heNormal:
        return .randomNormal(shape, std: (2 / Float(max(fanIn, 1))).squareRoot(), using: &rng)
    }
}
