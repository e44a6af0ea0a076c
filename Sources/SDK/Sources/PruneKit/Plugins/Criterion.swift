/// What a criterion ranks: single weights (unstructured pruning) or whole output channels.
public enum Granularity: String, Sendable, Codable, CaseIterable {
    /// One score per weight of the layer, `[outputs · fanIn]` in row order.
    case weight
    /// One score per output channel (row of the weight matrix).
    case channel
}

/// The data a criterion needs beyond the weights, gathered over calibration batches.
public struct Evidence: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// ∂L/∂W of each prunable layer, summed over the calibration batches
    /// (``ScoringContext/weightGradient``).
    public static let weightGradients = Evidence(rawValue: 1 << 0)
    /// Each layer's output after its non-linearity (and BatchNorm, where there is one),
    /// per batch (``LayerBatch/activations``).
    public static let activations = Evidence(rawValue: 1 << 1)
    /// ∂L/∂(that output), per batch (``LayerBatch/activationGradients``).
    public static let activationGradients = Evidence(rawValue: 1 << 2)
    /// The inputs of the next prunable layer, and its view, per batch
    /// (``LayerBatch/nextLayerInputs``): what ThiNet reconstructs.
    public static let nextLayerInputs = Evidence(rawValue: 1 << 3)
    /// The calibration batches themselves, for passes the criterion runs on its own in
    /// ``Criterion/gather(_:into:)`` (``CalibrationSession/batch(_:)``): second-order
    /// saliency, Hessian–gradient products, per-example gradients. Declared with
    /// ``ownPasses``. A criterion whose own passes need no data (SynFlow) does not declare it.
    public static let calibrationData = Evidence(rawValue: 1 << 4)
    /// Passes the criterion runs itself over the model in ``Criterion/gather(_:into:)``
    /// (``CalibrationSession/pass(_:objective:observing:weightGradients:parameters:)``),
    /// declared so that tools can tell: such a criterion needs a model (a synthetic layer
    /// can't feed it), and its passes are its own work. On its own it needs no data.
    public static let ownPasses = Evidence(rawValue: 1 << 5)

    /// The kinds the standard calibration pass hands to ``Criterion/observe(_:layer:state:)``
    /// batch by batch.
    public static let perBatch: Evidence = [.activations, .activationGradients, .nextLayerInputs]

    /// The names used in manifests and listings.
    public static let names: [(String, Evidence)] = [
        ("weight-gradients", .weightGradients), ("activations", .activations),
        ("activation-gradients", .activationGradients), ("next-layer-inputs", .nextLayerInputs),
        ("calibration-data", .calibrationData), ("own-passes", .ownPasses),
    ]

    public var names: [String] { Evidence.names.filter { contains($0.1) }.map(\.0) }
}

/// A normalised view of one prunable layer (a convolution or a linear layer): criteria
/// see this, never layer types.
public struct PrunableLayer {
    /// The dotted path of the layer's node (`features.3`); its weight is `path + ".weight"`.
    public let path: String
    /// `linear` or `conv2d`, for reports; a criterion should not need it.
    public let kind: LayerKind
    /// The weights as a matrix `[outputs, fanIn]` (a conv's `[O, C/g, kh, kw]` flattened per filter).
    public let weights: Tensor
    /// The weight tensor's own shape (`[O, C/g, kh, kw]` or `[out, in]`).
    public let weightShape: [Int]
    /// The bias `[outputs]`, if the layer has one.
    public let bias: Tensor?
    /// Multiply–accumulates of one example's forward pass through this layer.
    public let macs: Int
    /// The position of the layer among the model's prunable layers.
    public let index: Int
    /// Whether this is the model's last prunable layer (the classifier).
    public let isClassifier: Bool
    /// The scale γ `[outputs]` of a BatchNorm that directly follows the layer, if one does
    /// (what network slimming ranks), and that BatchNorm's dotted path.
    public let batchNormScale: Tensor?
    public let batchNormPath: String?
    /// A convolution's stride, zero padding and groups (`nil` for a linear layer): what the
    /// weights alone don't say, needed to recompute the layer's output from its input
    /// (ThiNet's per-channel contributions).
    public var convolution: ConvolutionSettings?

    public init(path: String, kind: LayerKind, weights: Tensor, weightShape: [Int], bias: Tensor?,
                macs: Int, index: Int, isClassifier: Bool, batchNormScale: Tensor? = nil, batchNormPath: String? = nil) {
        self.path = path; self.kind = kind; self.weights = weights; self.weightShape = weightShape
        self.bias = bias; self.macs = macs; self.index = index; self.isClassifier = isClassifier
        self.batchNormScale = batchNormScale; self.batchNormPath = batchNormPath
    }

    /// Output channels (rows of ``weights``).
    public var outputs: Int { weights.shape[0] }
    /// Inputs per output (columns of ``weights``).
    public var fanIn: Int { weights.shape[1] }
    /// FLOPs of one example's forward pass (2 per multiply–accumulate).
    public var flops: Int { 2 * macs }
}

/// The geometry of a convolution beyond its weight shape `[O, C/groups, kh, kw]`.
public struct ConvolutionSettings: Sendable, Equatable {
    /// The vertical stride and the top padding: the whole window when it is uniform.
    public var stride: Int
    public var padding: Int
    public var groups: Int
    /// Strides, dilations and the padding of each side (``stride`` and ``padding`` on every
    /// axis and side unless set otherwise).
    public var window: ConvWindow

    public init(stride: Int = 1, padding: Int = 0, groups: Int = 1) {
        self.stride = stride; self.padding = padding; self.groups = groups
        self.window = ConvWindow(stride: stride, padding: padding)
    }

    public init(window: ConvWindow, groups: Int = 1) {
        self.stride = window.strideHeight; self.padding = window.padTop; self.groups = groups
        self.window = window
    }
}

/// The evidence of one calibration batch for one prunable layer: only what the
/// criterion declared in ``Criterion/evidence`` is filled in.
public struct LayerBatch {
    /// The layer's output after its non-linearity: `[C, N, H, W]` (channel-major) for a
    /// convolution, `[N, F]` for a linear layer.
    public var activations: Tensor?
    /// ∂L/∂``activations``, the same shape.
    public var activationGradients: Tensor?
    /// The input of the next prunable layer (same layouts), and that layer's view.
    public var nextLayerInputs: Tensor?
    public var nextLayer: PrunableLayer?
    /// The number of examples in the batch.
    public var exampleCount: Int

    public init(activations: Tensor? = nil, activationGradients: Tensor? = nil, nextLayerInputs: Tensor? = nil,
                nextLayer: PrunableLayer? = nil, exampleCount: Int) {
        self.activations = activations; self.activationGradients = activationGradients
        self.nextLayerInputs = nextLayerInputs; self.nextLayer = nextLayer; self.exampleCount = exampleCount
    }
}

/// How the channels of an activation (or activation gradient) lie in memory, for criteria
/// that reduce per channel.
public struct ActivationLayout: Sendable, Equatable {
    /// Channels (the layer's outputs).
    public let channels: Int
    /// Examples in the batch, and spatial positions per example (1 for vectors).
    public let examples: Int, positions: Int
    /// `[C, N, H, W]`: each channel's `examples · positions` values are contiguous
    /// (per example, `positions` contiguous). Otherwise `[N, F]`: channel `c` of example
    /// `n` is at `n · channels + c`.
    public let isChannelMajor: Bool

    /// Values of one channel in the batch.
    public var perChannel: Int { examples * positions }

    /// The layout of `tensor`, an activation of `layer`.
    /// - Throws: ``PruneKitError`` `.shapeMismatch` naming the layer when the tensor is
    ///   neither `[outputs, N, H, W]` nor `[N, outputs]`.
    public init(of tensor: Tensor, layer: PrunableLayer, criterion: String) throws {
        let shape = tensor.shape
        switch shape.count {
        case 4 where shape[0] == layer.outputs:
            channels = shape[0]; examples = shape[1]; positions = shape[2] * shape[3]; isChannelMajor = true
        case 2 where shape[1] == layer.outputs:
            channels = shape[1]; examples = shape[0]; positions = 1; isChannelMajor = false
        default:
            throw PruneKitError(.shapeMismatch, "\(criterion): layer '\(layer.path)' has \(layer.outputs) outputs but its activation is \(shape); expected [C, N, H, W] or [N, F]")
        }
    }
}

/// Everything a criterion may use to score one layer besides the layer itself.
public struct ScoringContext {
    /// ∂L/∂W summed over the calibration batches, `[outputs, fanIn]`, when the criterion
    /// asked for ``Evidence/weightGradients``.
    public var weightGradient: Tensor?
    /// Calibration batches and examples seen.
    public var batchCount: Int
    public var exampleCount: Int
    /// A generator for this layer, derived from the run's seed and the layer's path, so a
    /// random criterion is reproducible and layers are independent.
    public var rng: RandomGenerator
    /// The criterion's ``Criterion/State`` for this layer, kept by the SDK between scoring
    /// and ``Criterion/adjustWeights(of:keeping:model:state:context:)``; criteria receive
    /// it typed, never through this.
    var state: Any?

    /// The criterion's gathered ``Criterion/State`` for this layer, for inspection by tools
    /// and tests (a plugin's state type is its own); `nil` before gathering.
    public var gatheredState: Any? { state }

    public init(weightGradient: Tensor? = nil, batchCount: Int = 0, exampleCount: Int = 0, rng: RandomGenerator) {
        self.weightGradient = weightGradient
        self.batchCount = batchCount; self.exampleCount = exampleCount; self.rng = rng
    }
}

/// What a registry makes by id from `key=value` options: a plugin's criterion, schedule or
/// finetuning strategy declares it beside its behaviour (``Criterion``, ``Schedule``,
/// ``FinetuneStrategy``).
///
/// Construction is kept apart from behaviour so that a value the pipeline runs need not be
/// made from options: a wrapper around another criterion (a sanity control, a timer) or a
/// C criterion made from its manifest conforms to the behaviour protocol alone.
public protocol OptionConstructible {
    /// The id users name it by (`l1-filter`); unique per kind across plugins.
    static var id: String { get }
    /// A line describing it, with its paper.
    static var summary: String { get }
    /// The options it accepts (set as `key=value`).
    static var options: [OptionSpec] { get }
    /// Creates it from option values already checked against ``options``.
    init(options: OptionValues) throws
}

extension OptionConstructible {
    public static var summary: String { "" }
    public static var options: [OptionSpec] { [] }
}

/// A pruning criterion: scores weights or channels; the lowest scores are pruned first.
///
/// One method is required, ``scores(for:context:)``, for a criterion that reads the weights
/// (and, declared in ``evidence``, their gradients). A plugin's criterion is also
/// ``OptionConstructible``, so that a registry can make it by id:
///
/// ```swift
/// public struct L1Filter: Criterion, OptionConstructible {
///     public static let id = "l1-filter"
///     public let granularity = Granularity.channel
///     public init(options: OptionValues) {}
///     public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
///         layer.weights.rows.map { $0.reduce(0) { $0 + abs($1) } }
///     }
/// }
/// ```
///
/// A criterion that learns from data owns a typed ``State`` per layer: it makes one in
/// ``makeState(for:)``, fills it in ``observe(_:layer:state:)`` from the evidence kinds it
/// declares (or in ``gather(_:into:)``, from passes it runs itself over the model with a
/// ``CalibrationSession``), and scores from it in ``scores(for:state:context:)``:
///
/// ```swift
/// public struct MeanActivation: Criterion, OptionConstructible {
///     public struct State { var sums: [Double]; var examples = 0 }
///     public static let id = "mean-activation"
///     public let granularity = Granularity.channel
///     public let evidence: Evidence = .activations
///     public init(options: OptionValues) {}
///     public func makeState(for layer: PrunableLayer) -> State { State(sums: Array(repeating: 0, count: layer.outputs)) }
///     public func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws { … }
///     public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] { … }
/// }
/// ```
///
/// One that changes training (network slimming) implements ``regularize(_:)``; one that
/// fixes weights after selection (ThiNet) implements
/// ``adjustWeights(of:keeping:model:state:context:)``.
public protocol Criterion {
    /// What the criterion accumulates for one layer before scoring (sums, counts, a Gram
    /// matrix), in its own types. Default: nothing (`Void`).
    associatedtype State = Void

    /// The id users name this criterion by: ``OptionConstructible/id`` for a criterion
    /// made from options (the default); criteria defined at run time (C criteria from a
    /// manifest) share one type and differ here, and a wrapper gives its inner criterion's.
    var id: String { get }

    /// Weights or channels.
    var granularity: Granularity { get }
    /// The evidence to gather before scoring (default: none, weights only).
    var evidence: Evidence { get }
    /// How the criterion's paper selects: one threshold over all layers, or the same
    /// fraction per layer. Default: global for weights, per layer for channels.
    var preferredScope: SelectionSettings.Scope { get }

    /// A fresh ``State`` for `layer`, before any evidence. Default (no state): `()`.
    func makeState(for layer: PrunableLayer) throws -> State

    /// Fills every layer's state (`states[k]` for ``CalibrationSession/layers```[k]`) before
    /// scoring. Default: the standard calibration pass
    /// (``CalibrationSession/gatherStandardEvidence(for:into:)``), which hands the kinds
    /// in ``evidence`` to ``observe(_:layer:state:)`` batch by batch. A criterion that needs
    /// other evidence runs its own passes here with ``CalibrationSession/pass(_:objective:observing:weightGradients:parameters:)``.
    func gather(_ session: CalibrationSession, into states: inout [State]) throws

    /// Accumulates one calibration batch's evidence for `layer` into `state`.
    /// Called by the standard pass when ``evidence`` asks for per-batch data. Default: does nothing.
    func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws

    /// The scores of `layer` from the weights and the ``ScoringContext`` alone:
    /// `outputs` of them for ``Granularity/channel``, `outputs · fanIn` (row order) for
    /// ``Granularity/weight``. Higher is kept. Default: throws (a criterion with a state
    /// implements ``scores(for:state:context:)`` instead).
    func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float]

    /// The scores of `layer` from its gathered ``State``: what the SDK calls. Default:
    /// ``scores(for:context:)``.
    func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float]

    /// Whether ``scores(for:context:chunk:into:)`` computes a chunk on its own, cheaply
    /// (magnitude: |w| of the range), so that selection can stream the scores instead of
    /// holding them all. Default: false (the scores are computed once per layer).
    var scoresInChunks: Bool { get }

    /// Writes the scores `chunk` (a range of the positions ``scores(for:context:)``
    /// returns) into `buffer` (`chunk.count` floats). Called several times for the same
    /// range, and concurrently for disjoint ranges; must give the same scores as
    /// ``scores(for:context:)``. Default: computes all the layer's scores and copies the
    /// range (criteria that override it say so with ``scoresInChunks``).
    func scores(for layer: PrunableLayer, context: ScoringContext, chunk: Range<Int>,
                into buffer: UnsafeMutableBufferPointer<Float>) throws

    /// Adds a training-time penalty's gradient after each backward pass (network
    /// slimming's L1 on BatchNorm γ). Default: none.
    func regularize(_ model: Model)

    /// Whether ``regularize(_:)`` adds anything: a criterion that changes training says so,
    /// and a tool trains with its penalty before pruning only then. Default: false.
    var regularizes: Bool { get }

    /// Adjusts the weights of the layer after `layer` once the channels to keep are
    /// chosen (ThiNet's least-squares rescaling), from the layer's gathered `state`.
    /// Default: nothing.
    func adjustWeights(of layer: PrunableLayer, keeping kept: [Int], model: Model, state: State, context: ScoringContext) throws
}

extension Criterion where State == Void {
    public func makeState(for layer: PrunableLayer) throws {}
}

extension Criterion where Self: OptionConstructible {
    public var id: String { Self.id }
}

extension Criterion {
    public var evidence: Evidence { [] }
    public var preferredScope: SelectionSettings.Scope { granularity == .weight ? .global : .perLayer }
    public func gather(_ session: CalibrationSession, into states: inout [State]) throws {
        try session.gatherStandardEvidence(for: self, into: &states)
    }
    public func observe(_ batch: LayerBatch, layer: PrunableLayer, state: inout State) throws {}
    public func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] {
        throw PruneKitError(.plugin, "criterion '\(id)' scores from its gathered state: call scores(for:state:context:)",
                            hint: "a criterion implements scores(for:context:) or scores(for:state:context:)")
    }
    public func scores(for layer: PrunableLayer, state: State, context: ScoringContext) throws -> [Float] {
        try scores(for: layer, context: context)
    }
    public var scoresInChunks: Bool { false }
    public func scores(for layer: PrunableLayer, context: ScoringContext, chunk: Range<Int>,
                       into buffer: UnsafeMutableBufferPointer<Float>) throws {
        let all = try scores(for: layer, context: context)
        guard chunk.lowerBound >= 0, chunk.upperBound <= all.count, buffer.count >= chunk.count else {
            throw PruneKitError(.plugin, "criterion '\(id)': chunk \(chunk) of layer '\(layer.path)' is outside its \(all.count) scores")
        }
        all.withUnsafeBufferPointer { p in _ = buffer.initialize(from: p[chunk]) }
    }
    public func regularize(_ model: Model) {}
    public var regularizes: Bool { false }
    public func adjustWeights(of layer: PrunableLayer, keeping kept: [Int], model: Model, state: State, context: ScoringContext) throws {}

    /// The state the SDK kept in `context` for this criterion, typed (`()` for a
    /// criterion without one).
    func storedState(in context: ScoringContext, layer: PrunableLayer) throws -> State {
        if let state = context.state as? State { return state }
        if let none = () as Any as? State { return none }
        throw PruneKitError(.plugin, "criterion '\(id)': no gathered state for layer '\(layer.path)'",
                            hint: "score through Model.score(with:data:settings:), which gathers it")
    }
}

/// How much to prune at each pruning step. A plugin's schedule is also ``OptionConstructible``.
public protocol Schedule {
    /// The id users name this schedule by (``OptionConstructible/id`` by default).
    var id: String { get }

    /// The sparsity (fraction of prunable weights removed) to reach at each pruning step,
    /// ending at `target`.
    func sparsities(toward target: Double) -> [Double]

    /// When the pruning steps happen, for a schedule defined over training steps (AGP):
    /// pruning step `i` (to `sparsities(toward:)[i]`) happens after `trainingSteps[i]`
    /// batches of one continuous training run, counted from the start of the pruning
    /// phase; the finetuning strategy runs once, after that run. `nil` (the default): the
    /// steps are separated by finetuning: prune, then the strategy, then the next step
    /// (one-shot, iterative).
    ///
    /// An optional requirement with a default, added in SDK 1.x: a schedule built before
    /// it keeps working and is treated as separated by finetuning.
    var trainingSteps: [Int]? { get }
}

extension Schedule where Self: OptionConstructible {
    public var id: String { Self.id }
}

extension Schedule {
    public var trainingSteps: [Int]? { nil }
}

/// What happens to the weights between and after pruning steps. A plugin's strategy is
/// also ``OptionConstructible``.
public protocol FinetuneStrategy {
    /// The id users name this strategy by (``OptionConstructible/id`` by default); a
    /// wrapper gives its inner strategy's.
    var id: String { get }

    /// Trains (or resets) `model` after pruning step `step` of `stepCount`.
    func finetune(_ model: Model, step: Int, of stepCount: Int, context: FinetuneContext) throws

    /// The epochs of the original training whose weights the strategy needs in
    /// ``FinetuneContext/checkpoints`` (weight rewinding to epoch k: `[k]`): pass them to
    /// ``Model/fit(_:validation:configuration:checkpointEpochs:regularizer:progress:epochEnded:)``.
    /// Default: none. (An optional requirement added in SDK 1.x.)
    var checkpointEpochs: Set<Int> { get }
}

extension FinetuneStrategy where Self: OptionConstructible {
    public var id: String { Self.id }
}

extension FinetuneStrategy {
    public var checkpointEpochs: Set<Int> { [] }
}

/// What a finetuning strategy may use.
public struct FinetuneContext {
    public var train: Dataset
    /// Held out from the training data; strategies that keep a best epoch choose on it.
    public var validation: Dataset?
    /// The settings of the original training (epochs, optimiser, schedule, seed).
    public var training: TrainingConfiguration
    /// Weights saved during the original training, by epoch (0: at initialisation), for
    /// rewinding strategies.
    /// Produced by ``Model/fit(_:validation:configuration:checkpointEpochs:regularizer:progress:epochEnded:)``.
    public var checkpoints: [Int: [String: Tensor]]
    /// Multiply–accumulates of one example's forward pass through the model before any
    /// pruning, for strategies that match a computation budget (Scratch-B). `nil`: the
    /// pruned model's dense ``Model/macs`` (right when pruning only masks weights).
    public var originalMACs: Int?
    /// Called after every epoch a strategy trains, with its record (progress reports, logs).
    public var epochEnded: ((EpochRecord) -> Void)?

    /// (``originalMACs`` and ``epochEnded`` are set as properties: the 1.0 initialiser is kept.)
    public init(train: Dataset, validation: Dataset?, training: TrainingConfiguration,
                checkpoints: [Int: [String: Tensor]] = [:]) {
        self.train = train; self.validation = validation; self.training = training; self.checkpoints = checkpoints
    }
}
