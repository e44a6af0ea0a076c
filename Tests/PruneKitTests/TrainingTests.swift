import PruneKit
import XCTest

final class TrainingTests: XCTestCase {
    /// A parameter with a fixed value and gradient.
    private func parameter(_ values: [Float], gradient: [Float]) -> Parameter {
        let p = Parameter(Tensor(shape: [values.count], scalars: values))
        p.gradient = Tensor(shape: [gradient.count], scalars: gradient)
        return p
    }

    func testSGDMomentumNesterovAndWeightDecayByHand() {
        // w = 1, g = 0.5, lr = 0.1, μ = 0.9, λ = 0.01.
        let plain = parameter([1], gradient: [0.5])
        let sgd = SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
        sgd.step([plain])                       // d = 0.5 + 0.01 = 0.51; v = 0.51; w = 1 − 0.051
        XCTAssertEqual(plain.value.scalars[0], 0.949, accuracy: 1e-6)
        sgd.step([plain])                       // d = 0.5 + 0.00949; v = 0.9·0.51 + d; w −= 0.1·v
        let d2: Float = 0.5 + 0.01 * 0.949, v2: Float = 0.9 * 0.51 + d2
        XCTAssertEqual(plain.value.scalars[0], 0.949 - 0.1 * v2, accuracy: 1e-6)

        let nest = parameter([1], gradient: [0.5])
        SGD(learningRate: 0.1, momentum: 0.9, nesterov: true).step([nest])   // v = 0.5; w −= 0.1·(0.5 + 0.45)
        XCTAssertEqual(nest.value.scalars[0], 1 - 0.095, accuracy: 1e-6)
    }

    func testAdamByHand() {
        let p = parameter([1, -2], gradient: [0.5, 0.1])
        let adam = Adam(learningRate: 0.01)
        adam.step([p])
        // First step: m̂ = g, v̂ = g², so the update is lr·g/(|g| + ε) = lr·sign(g).
        XCTAssertEqual(p.value.scalars[0], 1 - 0.01, accuracy: 1e-5)
        XCTAssertEqual(p.value.scalars[1], -2 - 0.01, accuracy: 1e-5)
        p.gradient = Tensor(shape: [2], scalars: [0.25, 0.1])
        adam.step([p])
        let m: Float = 0.9 * 0.05 + 0.1 * 0.25, v: Float = 0.999 * 0.00025 + 0.001 * 0.0625
        let step = 0.01 * (m / (1 - 0.81)) / ((v / (1 - 0.998001)).squareRoot() + 1e-8)
        XCTAssertEqual(p.value.scalars[0], 0.99 - step, accuracy: 1e-5)
    }

    func testMaskedWeightsStayZeroThroughMomentumAndAdam() {
        for optimizer in [SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.1) as Optimizer, Adam(learningRate: 0.1)] {
            let p = parameter([1, 2, 3], gradient: [0.3, -0.2, 0.1])
            optimizer.step([p])                               // build up momentum on every weight
            p.mask = Tensor(shape: [3], scalars: [1, 0, 1])   // then prune the middle one
            XCTAssertEqual(p.value.scalars[1], 0)
            for _ in 0..<5 {
                p.gradient = Tensor(shape: [3], scalars: [0.3, -0.2, 0.1])
                optimizer.step([p])
                XCTAssertEqual(p.value.scalars[1], 0, "\(type(of: optimizer)) revived a pruned weight")
            }
            XCTAssertNotEqual(p.value.scalars[0], 0)
        }
    }

    func testLearningRateSchedules() {
        let step = LearningRateSchedule(base: 0.1, decay: .step(every: 3, gamma: 0.5), totalEpochs: 10)
        XCTAssertEqual(step.rate(atEpoch: 2.9), 0.1, accuracy: 1e-7)
        XCTAssertEqual(step.rate(atEpoch: 3), 0.05, accuracy: 1e-7)
        XCTAssertEqual(step.rate(atEpoch: 6.5), 0.025, accuracy: 1e-7)
        let cosine = LearningRateSchedule(base: 0.1, decay: .cosine(minimum: 0.01), totalEpochs: 10, warmupEpochs: 2)
        XCTAssertEqual(cosine.rate(atEpoch: 0), 0.01, accuracy: 1e-7)        // warm-up starts at 10 %
        XCTAssertEqual(cosine.rate(atEpoch: 1), 0.055, accuracy: 1e-7)       // halfway through warm-up
        XCTAssertEqual(cosine.rate(atEpoch: 2), 0.1, accuracy: 1e-7)
        XCTAssertEqual(cosine.rate(atEpoch: 6), 0.055, accuracy: 1e-6)       // halfway through the decay
        XCTAssertEqual(cosine.rate(atEpoch: 10), 0.01, accuracy: 1e-7)
    }

    func testDivergenceStopsWithTheEpochBatchAndAHint() throws {
        let model = try ModelZoo.make("lenet-300-100", inputShape: [1, 8, 8], classCount: 3, seed: 0)
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.randomNormal([8, 1, 8, 8], std: 100, using: &rng)
        let trainer = Trainer(model: model, optimizer: SGD(learningRate: 1e6))
        XCTAssertThrowsError(try (0..<20).forEach { b in
            try trainer.step(images: x, labels: (0..<8).map { $0 % 3 }, position: (epoch: 2, batch: b))
        }) { error in
            let e = error as? PruneKitError
            XCTAssertEqual(e?.kind, .numerical)
            XCTAssert(e?.message.contains("epoch 3") == true, e?.message ?? "")
            XCTAssert(e?.message.contains("batch") == true)
            XCTAssert(e?.hint?.contains("lower the learning rate") == true)
        }
    }

    func testFitLearnsTheBundledDigits() throws {
        let splits = try DatasetCatalog.load()
        let small = splits.train.subset(Array(0..<1000))
        let model = try ModelZoo.make("lenet-300-100", inputShape: small.imageShape, classCount: 10, seed: 0)
        let before = model.evaluate(splits.test)
        var config = TrainingConfiguration()
        config.epochs = 2
        var seen: [Int] = []
        let records = try model.fit(small, configuration: config, epochEnded: { seen.append($0.epoch) })
        XCTAssertEqual(seen, [0, 1])
        XCTAssertLessThan(records[1].trainLoss, records[0].trainLoss)
        let after = model.evaluate(splits.test)
        XCTAssertLessThan(before.top1, 0.3)
        XCTAssertGreaterThan(after.top1, 0.8, "two epochs on 1,000 digits should reach 80 %")
        XCTAssertGreaterThanOrEqual(after.top5, after.top1)
    }

    func testFitRefusesBadSettingsAndMismatchedData() throws {
        let splits = try DatasetCatalog.load()
        let model = try ModelZoo.make("lenet-5", inputShape: [3, 32, 32], classCount: 10, seed: 0)
        XCTAssertThrowsError(try model.fit(splits.train, configuration: TrainingConfiguration())) {
            XCTAssertEqual(($0 as? PruneKitError)?.kind, .shapeMismatch)
        }
        var bad = TrainingConfiguration()
        bad.learningRate = -1
        XCTAssertThrowsError(try bad.validate()) { XCTAssert("\($0)".contains("learning rate")) }
        bad = TrainingConfiguration()
        bad.batchSize = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssert("\($0)".contains("batch size")) }
    }

    func testTopKAndCrossEntropyOnAKnownBatch() {
        let logits = Tensor(shape: [2, 6], scalars: [0, 1, 2, 3, 4, 5,
                                                    5, 4, 3, 2, 1, 0])
        let (top1, top5) = topKCorrect(logits: logits, labels: [5, 5])
        XCTAssertEqual(top1, 1)     // row 0: label 5 is the maximum; row 1: label 5 is the minimum
        XCTAssertEqual(top5, 1)     // row 1: five classes score higher than label 5
    }
}
