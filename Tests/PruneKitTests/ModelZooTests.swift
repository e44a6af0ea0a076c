import PruneKit
import XCTest

final class ModelZooTests: XCTestCase {
    /// Parameter counts computed by hand from each architecture (weights + biases + BN γ, β).
    func testParameterCountsMatchTheArchitectures() throws {
        let mnist = [1, 28, 28], cifar = [3, 32, 32]
        let expected: [(String, [Int], Int)] = [
            ("lenet-300-100", mnist, 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),            // 266,610
            ("lenet-5", mnist, 6 * 25 + 6 + 16 * 150 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10), // 61,706
            ("vgg-small", mnist, 9 * 32 + 2 * 32 + 288 * 32 + 2 * 32 + 288 * 64 + 2 * 64 + 576 * 64 + 2 * 64
                + 576 * 128 + 2 * 128 + 128 * 10 + 10),
            // He et al. 2016's CIFAR ResNets ("0.27 M" and "0.85 M"), option-A shortcuts.
            ("resnet-20", cifar, resnetParameters(blocksPerStage: 3)),   // 269,722
            ("resnet-56", cifar, resnetParameters(blocksPerStage: 9)),   // 853,018
        ]
        for (name, shape, count) in expected {
            let model = try ModelZoo.make(name, inputShape: shape, classCount: 10, seed: 0)
            XCTAssertEqual(model.parameterCount, count, name)
            XCTAssertEqual(model.outputShape, [10], name)
        }
    }

    /// Stem conv 3→16 with BN; three stages of basic blocks (two 3×3 convs with BN each)
    /// at widths 16, 32, 64; a 64→10 classifier. Parameter-free shortcuts.
    private func resnetParameters(blocksPerStage n: Int) -> Int {
        func conv(_ i: Int, _ o: Int) -> Int { i * o * 9 }
        var total = conv(3, 16) + 2 * 16 + 64 * 10 + 10
        var width = 16
        for planes in [16, 32, 64] {
            for _ in 0..<n {
                total += conv(width, planes) + conv(planes, planes) + 4 * planes
                width = planes
            }
        }
        return total
    }

    func testEveryZooModelRunsForwardAndBackward() throws {
        for name in ModelZoo.names {
            let shape = name.hasPrefix("vgg-1") ? [3, 16, 16] : [1, 28, 28]
            let model = try ModelZoo.make(name, inputShape: shape, classCount: 7, seed: 1)
            var rng = RandomGenerator(seed: 2)
            let x = Tensor.randomNormal([2] + shape, using: &rng)
            let (loss, grad) = softmaxCrossEntropy(logits: model.forward(x), labels: [1, 6])
            XCTAssert(loss.isFinite, name)
            model.backward(grad)
            let total = model.trainableParameters.reduce(0.0) { $0 + Double($1.gradient.maxAbs()) }
            XCTAssertGreaterThan(total, 0, "\(name): no gradient reached the parameters")
        }
    }

    func testDottedPathsFollowPyTorchNaming() throws {
        let model = try ModelZoo.make("resnet-20", inputShape: [3, 32, 32], classCount: 10, seed: 0)
        let paths = Set(model.namedParameters.map(\.path))
        for p in ["conv1.weight", "bn1.running_var", "layer2.0.conv1.weight", "layer3.2.bn2.bias", "fc.weight"] {
            XCTAssert(paths.contains(p), p)
        }
        let lenet = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 0)
        XCTAssertEqual(lenet.namedParameters.map(\.path),
                       ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                        "classifier.0.weight", "classifier.0.bias", "classifier.2.weight", "classifier.2.bias",
                        "classifier.4.weight", "classifier.4.bias"])
    }

    func testSameSeedSameWeightsOtherSeedOtherWeights() throws {
        let a = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 4)
        let b = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 4)
        let c = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 5)
        XCTAssertEqual(a.namedParameters[0].parameter.value, b.namedParameters[0].parameter.value)
        XCTAssertNotEqual(a.namedParameters[0].parameter.value, c.namedParameters[0].parameter.value)
    }

    func testUnknownModelAndTooSmallInputAreClearErrors() {
        XCTAssertThrowsError(try ModelZoo.make("alexnet", inputShape: [1, 28, 28], classCount: 10, seed: 0)) { error in
            let e = error as? PruneKitError
            XCTAssertEqual(e?.kind, .invalidArgument)
            XCTAssert(e?.message.contains("alexnet") == true)
            XCTAssert(e?.hint?.contains("lenet-5") == true, "the hint should list the known models")
        }
        XCTAssertThrowsError(try ModelZoo.make("lenet-5", inputShape: [1, 6, 6], classCount: 10, seed: 0)) {
            XCTAssert("\($0)".contains("does not fit"))
        }
    }

    func testGraphValidation() {
        var rng = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try Model(architecture: "bad", inputShape: [4], nodes: [
            .init(name: "a", layer: Linear(inFeatures: 4, outFeatures: 3, rng: &rng), inputs: [Model.inputIndex]),
            .init(name: "a", layer: ReLU(), inputs: [0]),
        ])) { XCTAssert("\($0)".contains("two layers are named 'a'")) }
        XCTAssertThrowsError(try Model(architecture: "bad", inputShape: [4], nodes: [
            .init(name: "fc", layer: Linear(inFeatures: 5, outFeatures: 3, rng: &rng), inputs: [Model.inputIndex]),
        ])) { XCTAssert("\($0)".contains("layer 'fc'")) }
        XCTAssertThrowsError(try Model(architecture: "bad", inputShape: [4], nodes: [
            .init(name: "x", layer: ReLU(), inputs: [1]),
        ])) { XCTAssert("\($0)".contains("earlier layer")) }
    }
}
