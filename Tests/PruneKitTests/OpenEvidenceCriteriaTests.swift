import Foundation
import PruneKit
import XCTest

/// `synflow`, `obd` and `grasp`: criteria that run passes of their own through the public
/// ``CalibrationSession`` (no SDK change for any of them), loaded from their plugin
/// libraries and checked against an independent NumPy reference
/// (Tests/Fixtures/Reference/second_order.py: GraSP's Hessian–gradient product there is
/// exact, by the R-operator), against SynFlow's conservation law, and for leaving the
/// model exactly as they found it.
final class OpenEvidenceCriteriaTests: XCTestCase {
    private func criterion(_ id: String, _ options: [String] = []) throws -> any Criterion {
        try TestSupport.builtInRegistry().criterion(id, options: options)
    }

    /// Every value within `tol` of the layer's largest reference magnitude.
    private func assertClose(_ a: [Float], _ e: [Double], _ tol: Double, _ what: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, e.count, what, file: file, line: line)
        let scale = e.map(abs).max() ?? 1
        for (i, (x, y)) in zip(a, e).enumerated() {
            XCTAssertEqual(Double(x), y, accuracy: tol * scale, "\(what) [\(i)]", file: file, line: line)
        }
    }

    private struct Reference: Decodable {
        let synflow_R: Double
        let synflow: [String: [Double]], obd: [String: [Double]]
        let grasp_T200: [String: [Double]], grasp_T1: [String: [Double]]
    }

    func testAgainstNumPyReference() throws {
        let url = TestSupport.repoRoot.appendingPathComponent("Tests/Fixtures/Reference/second_order.json")
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        let (model, data) = try TestSupport.referenceModel()
        // Two batches of 3: the reference's sums don't depend on which examples share a batch.
        let settings = CalibrationSettings(batches: 2, batchSize: 3, seed: 11)
        let before = model.namedParameters.map { ($0.path, $0.parameter.value) }
        let synflow = try model.score(with: criterion("synflow"), data: nil, settings: settings)
        let obd = try model.score(with: criterion("obd"), data: data, settings: settings)
        let grasp = try model.score(with: criterion("grasp"), data: data, settings: settings)
        let grasp1 = try model.score(with: criterion("grasp", ["temperature=1"]), data: data, settings: settings)
        for k in 0..<2 {
            let path = synflow[k].layer.path
            // float32 passes against float64, as a fraction of the layer's largest score
            // (measured: synflow 2.3e-7, obd 2.2e-7; grasp 9.7e-5 at T = 200 and 2.0e-5 at
            // T = 1, its central difference against the reference's exact R-operator).
            assertClose(synflow[k].scores, ref.synflow[path]!, 1e-6, "synflow \(path)")
            assertClose(obd[k].scores, ref.obd[path]!, 1e-6, "obd \(path)")
            assertClose(grasp[k].scores, ref.grasp_T200[path]!, 5e-4, "grasp T=200 \(path)")
            assertClose(grasp1[k].scores, ref.grasp_T1[path]!, 5e-4, "grasp T=1 \(path)")
        }
        // GraSP's scores change sign (θ·Hg): the reference has both, so the test can tell.
        XCTAssert(ref.grasp_T1.values.joined().contains { $0 < 0 } && ref.grasp_T1.values.joined().contains { $0 > 0 })
        // Every pass restored what it changed: the same weights bit for bit, zero gradients.
        for ((path, value), (_, now)) in zip(before, model.namedParameters) {
            XCTAssertEqual(value, now.value, path)
            XCTAssert(now.gradient.scalars.allSatisfy { $0 == 0 }, path)
        }
    }

    /// SynFlow's conservation law (Tanaka et al. 2020, Theorem 2): in a network without
    /// biases or BatchNorm whose non-linearities are positively homogeneous (ReLU, max and
    /// average pooling), R is homogeneous of degree 1 in each layer's weights, so every
    /// layer's scores sum to the same R = Σ_i θ_i · ∂R/∂θ_i (Euler). Independent of the
    /// reference: no number here comes from PruneKit's own formula.
    func testSynFlowScoresOfEveryLayerSumToTheSameFlow() throws {
        var rng = RandomGenerator(seed: 5)
        var b = ModelBuilder(architecture: "bias-free", inputShape: [1, 12, 12])
        b.add("features.0", Conv2d(inChannels: 1, outChannels: 6, kernelSize: 3, padding: 1, bias: false, rng: &rng))
        b.add("features.1", ReLU())
        b.add("features.2", MaxPool2d(kernelSize: 2))
        b.add("features.3", Conv2d(inChannels: 6, outChannels: 8, kernelSize: 3, stride: 2, padding: 1, bias: false, rng: &rng))
        b.add("features.4", ReLU())
        b.add("flatten", Flatten())
        b.add("fc.0", Linear(inFeatures: 8 * 3 * 3, outFeatures: 10, bias: false, rng: &rng))
        b.add("fc.1", ReLU())
        b.add("classifier", Linear(inFeatures: 10, outFeatures: 4, bias: false, rng: &rng))
        let model = try b.build()
        let scores = try model.score(with: criterion("synflow"), data: nil)
        let sums = scores.map { $0.scores.reduce(0.0) { $0 + Double($1) } }
        XCTAssertEqual(sums.count, 4)
        for (s, layer) in zip(sums, scores) {
            XCTAssertEqual(s, sums[0], accuracy: 2e-5 * sums[0], "\(layer.layer.path): \(sums)")
        }
        XCTAssertGreaterThan(sums[0], 0)
    }

    func testDeclarationsAndOptions() throws {
        let synflow = try criterion("synflow"), obd = try criterion("obd"), grasp = try criterion("grasp")
        for c in [synflow, obd, grasp] {
            XCTAssertEqual(c.granularity, .weight, c.id)
            XCTAssertEqual(c.preferredScope, .global, c.id)
        }
        XCTAssertEqual(synflow.evidence, .ownPasses, "data-free")
        XCTAssertEqual(obd.evidence, [.ownPasses, .calibrationData])
        XCTAssertEqual(grasp.evidence, [.ownPasses, .calibrationData])
        for bad in ["temperature=0", "temperature=-1", "step=0", "step=1"] {
            XCTAssertThrowsError(try criterion("grasp", [bad]), bad)
        }
        // A criterion that reads batches, given none: a clear error before any pass.
        let (model, _) = try TestSupport.referenceModel()
        for id in ["obd", "grasp"] {
            XCTAssertThrowsError(try model.score(with: criterion(id), data: nil)) { error in
                XCTAssert("\(error)".contains("calibration data"), "\(error)")
            }
        }
    }

    /// On a pruned lenet-5 (half its weights masked): every masked weight scores 0, and the
    /// masks and zeros survive the passes that perturb (grasp) or replace (synflow) weights.
    func testMaskedWeightsScoreZeroAndStayPruned() throws {
        let model = try ModelZoo.make("lenet-5", inputShape: [1, 28, 28], classCount: 10, seed: 2)
        let data = try DatasetCatalog.load().train.subset(Array(0..<16))
        try model.prune(with: criterion("global-magnitude"), toward: .sparsity(0.5), data: nil)
        // The classifier is kept whole by default: every other layer has a mask.
        let masks = model.prunableLayers().map { model.nodes[model.nodeIndex(named: $0.path)!].layer.parameter(named: "weight")!.mask }
        XCTAssert(masks.dropLast().allSatisfy { $0 != nil } && masks.last! == nil)
        let settings = CalibrationSettings(batches: 2, batchSize: 4, seed: 1)
        for id in ["synflow", "obd", "grasp"] {
            let scores = try model.score(with: criterion(id), data: data, settings: settings)
            for (layerScores, mask) in zip(scores, masks) {
                guard let m = mask?.scalars else { continue }
                for (i, s) in layerScores.scores.enumerated() where m[i] == 0 {
                    XCTAssertEqual(s, 0, "\(id) \(layerScores.layer.path)[\(i)]")
                }
                XCTAssert(layerScores.scores.enumerated().contains { m[$0.offset] != 0 && $0.element != 0 }, "\(id): kept weights score")
            }
            for layer in model.prunableLayers().dropLast() {
                let p = model.nodes[model.nodeIndex(named: layer.path)!].layer.parameter(named: "weight")!
                XCTAssertNotNil(p.mask, id)
                XCTAssert(zip(p.value.scalars, p.mask!.scalars).allSatisfy { $1 != 0 || $0 == 0 }, "\(id): \(layer.path)")
            }
        }
    }

    /// The session's own guards, through a criterion written in this test: a replacement of
    /// the wrong shape is an error naming the parameter, and the model is left as it was.
    func testACriterionsOwnPassIsCheckedAndUndone() throws {
        struct WrongReplacement: Criterion, OptionConstructible {
            static let id = "test-wrong-replacement"
            let granularity = Granularity.weight
            init(options: OptionValues) {}
            func gather(_ session: CalibrationSession, into states: inout [Void]) throws {
                _ = try session.pass(Tensor(shape: [1] + session.model.inputShape, repeating: 1), objective: .sumOfOutputs,
                                     parameters: { path, value in path == "classifier.weight" ? Tensor(shape: [1], repeating: 0) : Tensor(shape: value.shape, repeating: 7) })
            }
            func scores(for layer: PrunableLayer, context: ScoringContext) throws -> [Float] { layer.weights.scalars }
        }
        let (model, _) = try TestSupport.referenceModel()
        let before = model.namedParameters.map(\.parameter.value)
        XCTAssertThrowsError(try model.score(with: WrongReplacement(options: OptionValues(defaultsOf: [])), data: nil)) { error in
            XCTAssert("\(error)".contains("classifier.weight") && "\(error)".contains("test-wrong-replacement"), "\(error)")
        }
        XCTAssertEqual(model.namedParameters.map(\.parameter.value), before)
        XCTAssertEqual(model.mode, .training)
    }
}
