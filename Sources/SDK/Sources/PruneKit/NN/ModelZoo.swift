/// Builds a model node by node; each node reads the previous one unless told otherwise.
public struct ModelBuilder {
    public private(set) var nodes: [Model.Node] = []
    public let architecture: String
    public let inputShape: [Int]

    public init(architecture: String, inputShape: [Int]) {
        self.architecture = architecture
        self.inputShape = inputShape
    }

    /// The index of the last node added (the model input before any).
    public var last: Int { nodes.count - 1 }

    /// Appends a node and returns its index.
    @discardableResult
    public mutating func add(_ name: String, _ layer: Layer, inputs: [Int]? = nil) -> Int {
        nodes.append(Model.Node(name: name, layer: layer, inputs: inputs ?? [last]))
        return last
    }

    public func build() throws -> Model {
        try Model(architecture: architecture, inputShape: inputShape, nodes: nodes)
    }
}

/// The models PruneKit knows by name.
///
/// | name | layers |
/// |---|---|
/// | `lenet-300-100` | fc 300, fc 100, fc classes (LeCun et al. 1998) |
/// | `lenet-5` | conv 6 5×5 pad 2, pool; conv 16 5×5, pool; fc 120, 84, classes |
/// | `vgg-small` | conv 32, 32, pool, 64, 64, pool, 128 (3×3, BN, ReLU); global average pool; fc |
/// | `vgg-11`, `vgg-16` | CIFAR-style VGG with BN (Simonyan & Zisserman 2015; Liu et al. 2017) |
/// | `resnet-20`, `resnet-56` | CIFAR ResNets, option-A shortcuts (He et al. 2016) |
///
/// The input shape follows the data set (`[1, 28, 28]` for MNIST, `[3, 32, 32]` for CIFAR).
/// VGG-11/16 skip a max-pool when the feature map is already smaller than 2×2, and end
/// with global average pooling and one linear layer, so they fit 28×28 input too.
public enum ModelZoo {
    /// Every model name, in the order `prunekit` lists them.
    public static let names = ["lenet-300-100", "lenet-5", "vgg-small", "vgg-11", "vgg-16", "resnet-20", "resnet-56"]

    /// A freshly initialised model.
    ///
    /// - Parameters:
    ///   - name: one of ``names``.
    ///   - inputShape: the per-example input, `[C, H, W]`.
    ///   - classCount: the number of outputs.
    ///   - seed: determines the initial weights.
    /// - Throws: ``PruneKitError`` for an unknown name or an input too small for the model.
    public static func make(_ name: String, inputShape: [Int], classCount: Int, seed: UInt64) throws -> Model {
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }), classCount > 0 else {
            throw PruneKitError(.invalidArgument, "model '\(name)' needs an input shape [C, H, W] and at least one class, got \(inputShape) and \(classCount)")
        }
        var rng = RandomGenerator(seed: seed, stream: "init")
        let (c, h, w) = (inputShape[0], inputShape[1], inputShape[2])
        var b = ModelBuilder(architecture: name, inputShape: inputShape)
        switch name {
        case "lenet-300-100":
            b = ModelBuilder(architecture: name, inputShape: [c * h * w])
            b.add("fc1", Linear(inFeatures: c * h * w, outFeatures: 300, rng: &rng))
            b.add("relu1", ReLU())
            b.add("fc2", Linear(inFeatures: 300, outFeatures: 100, rng: &rng))
            b.add("relu2", ReLU())
            b.add("fc3", Linear(inFeatures: 100, outFeatures: classCount, rng: &rng))
        case "lenet-5":
            b.add("features.0", Conv2d(inChannels: c, outChannels: 6, kernelSize: 5, padding: 2, rng: &rng))
            b.add("features.1", ReLU())
            b.add("features.2", MaxPool2d(kernelSize: 2))
            b.add("features.3", Conv2d(inChannels: 6, outChannels: 16, kernelSize: 5, rng: &rng))
            b.add("features.4", ReLU())
            b.add("features.5", MaxPool2d(kernelSize: 2))
            b.add("flatten", Flatten())
            let flat = 16 * ((h / 2 - 4) / 2) * ((w / 2 - 4) / 2)
            guard flat > 0 else { throw tooSmall(name, inputShape) }
            b.add("classifier.0", Linear(inFeatures: flat, outFeatures: 120, rng: &rng))
            b.add("classifier.1", ReLU())
            b.add("classifier.2", Linear(inFeatures: 120, outFeatures: 84, rng: &rng))
            b.add("classifier.3", ReLU())
            b.add("classifier.4", Linear(inFeatures: 84, outFeatures: classCount, rng: &rng))
        case "vgg-small":
            try addVGGFeatures(&b, [32, 32, 0, 64, 64, 0, 128], channels: c, size: min(h, w), rng: &rng)
            b.add("pool", GlobalAvgPool())
            b.add("classifier", Linear(inFeatures: 128, outFeatures: classCount, rng: &rng))
        case "vgg-11", "vgg-16":
            let cfg = name == "vgg-11"
                ? [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]
                : [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]
            try addVGGFeatures(&b, cfg, channels: c, size: min(h, w), rng: &rng)
            b.add("pool", GlobalAvgPool())
            b.add("classifier", Linear(inFeatures: 512, outFeatures: classCount, rng: &rng))
        case "resnet-20", "resnet-56":
            let blocks = name == "resnet-20" ? 3 : 9
            b.add("conv1", Conv2d(inChannels: c, outChannels: 16, kernelSize: 3, padding: 1, bias: false,
                                  initializer: .heNormal, rng: &rng))
            b.add("bn1", BatchNorm(featureCount: 16))
            b.add("relu", ReLU())
            var width = 16
            for (stage, planes) in [16, 32, 64].enumerated() {
                for i in 0..<blocks {
                    let stride = (stage > 0 && i == 0) ? 2 : 1
                    let p = "layer\(stage + 1).\(i)"
                    let entry = b.last
                    b.add("\(p).conv1", Conv2d(inChannels: width, outChannels: planes, kernelSize: 3, stride: stride,
                                               padding: 1, bias: false, initializer: .heNormal, rng: &rng))
                    b.add("\(p).bn1", BatchNorm(featureCount: planes))
                    b.add("\(p).relu1", ReLU())
                    b.add("\(p).conv2", Conv2d(inChannels: planes, outChannels: planes, kernelSize: 3, padding: 1,
                                               bias: false, initializer: .heNormal, rng: &rng))
                    let residual = b.add("\(p).bn2", BatchNorm(featureCount: planes))
                    var shortcut = entry
                    if stride != 1 || width != planes {
                        shortcut = b.add("\(p).shortcut", ChannelPadShortcut(outChannels: planes, stride: stride), inputs: [entry])
                    }
                    b.add("\(p).add", Add(), inputs: [residual, shortcut])
                    b.add("\(p).relu2", ReLU())
                    width = planes
                }
            }
            b.add("pool", GlobalAvgPool())
            b.add("fc", Linear(inFeatures: 64, outFeatures: classCount, rng: &rng))
        default:
            throw PruneKitError(.invalidArgument, "unknown model '\(name)'",
                                hint: "known models: \(names.joined(separator: ", "))")
        }
        do { return try b.build() } catch { throw tooSmall(name, inputShape) }
    }

    /// Appends VGG-style blocks: a positive entry is a 3×3 conv of that width with BN and
    /// ReLU, a zero a 2×2 max-pool (skipped when the map is already below 2×2).
    private static func addVGGFeatures(_ b: inout ModelBuilder, _ cfg: [Int], channels: Int, size: Int,
                                       rng: inout RandomGenerator) throws {
        var c = channels, s = size, i = 0
        for v in cfg {
            if v == 0 {
                if s >= 2 { b.add("features.\(i)", MaxPool2d(kernelSize: 2)); s /= 2; i += 1 }
            } else {
                b.add("features.\(i)", Conv2d(inChannels: c, outChannels: v, kernelSize: 3, padding: 1, bias: false, rng: &rng))
                b.add("features.\(i + 1)", BatchNorm(featureCount: v))
                b.add("features.\(i + 2)", ReLU())
                c = v; i += 3
            }
        }
    }

    private static func tooSmall(_ name: String, _ shape: [Int]) -> PruneKitError {
        PruneKitError(.invalidArgument, "model '\(name)' does not fit input shape \(shape)",
                      hint: "use a data set with larger images, or another model")
    }
}
