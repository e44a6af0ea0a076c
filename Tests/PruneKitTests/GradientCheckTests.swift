import Foundation
import PruneKit
import XCTest

/// Every layer's backward pass against central finite differences of L = Σ r ⊙ y,
/// with r a fixed random tensor, so ∂L/∂y = r.
final class GradientCheckTests: XCTestCase {
    private func loss(_ y: Tensor, _ r: Tensor) -> Double {
        y.withUnsafeBufferPointer { yp in r.withUnsafeBufferPointer { rp in
            var s: Double = 0
            for i in 0..<yp.count { s += Double(yp[i]) * Double(rp[i]) }
            return s
        } }
    }

    /// Checks ∂L/∂input and ∂L/∂parameters of `layer` at `inputs`, on up to `samples`
    /// coordinates of each tensor.
    private func check(_ layer: Layer, inputs: [Tensor], mode: ForwardMode = .training, eps: Float = 1e-2,
                       tolerance: Double = 2e-2, samples: Int = 40, file: StaticString = #filePath, line: UInt = #line) {
        var rng = RandomGenerator(seed: 7)
        let y0 = layer.forward(inputs, mode: mode)
        let r = Tensor.randomNormal(y0.shape, using: &rng)
        for p in layer.parameters where p.parameter.isTrainable { p.parameter.zeroGradient() }
        let grads = layer.backward(r, needsInputGradient: inputs.map { _ in true })
        XCTAssertEqual(grads.count, inputs.count, file: file, line: line)

        func numeric(_ perturb: (Float) -> Void) -> Double {
            perturb(eps); let lp = loss(layer.forward(inputs, mode: mode), r)
            perturb(-2 * eps); let lm = loss(layer.forward(inputs, mode: mode), r)
            perturb(eps)
            return (lp - lm) / (2 * Double(eps))
        }
        func compare(_ analytic: Double, _ num: Double, _ what: String) {
            let scale = max(1, abs(analytic), abs(num))
            XCTAssertLessThanOrEqual(abs(analytic - num) / scale, tolerance,
                                     "\(type(of: layer)) \(what): analytic \(analytic), numeric \(num)", file: file, line: line)
        }

        var ins = inputs
        for k in 0..<ins.count {
            guard let g = grads[k] else { XCTFail("no input gradient for input \(k)", file: file, line: line); continue }
            XCTAssertEqual(g.shape, ins[k].shape, file: file, line: line)
            for i in sampleIndices(ins[k].count, samples, &rng) {
                let plus: Double, minus: Double
                ins[k].withUnsafeMutableBufferPointer { $0[i] += eps }
                plus = loss(layer.forward(ins, mode: mode), r)
                ins[k].withUnsafeMutableBufferPointer { $0[i] -= 2 * eps }
                minus = loss(layer.forward(ins, mode: mode), r)
                ins[k].withUnsafeMutableBufferPointer { $0[i] += eps }
                compare(Double(g.scalars[i]), (plus - minus) / (2 * Double(eps)), "input \(k)[\(i)]")
            }
        }
        for (name, p) in layer.parameters where p.isTrainable {
            let analytic = p.gradient
            for i in sampleIndices(p.value.count, samples, &rng) {
                let num = numeric { d in p.value.withUnsafeMutableBufferPointer { $0[i] += d } }
                compare(Double(analytic.scalars[i]), num, "\(name)[\(i)]")
            }
        }
    }

    private func sampleIndices(_ n: Int, _ k: Int, _ rng: inout RandomGenerator) -> [Int] {
        n <= k ? Array(0..<n) : (0..<k).map { _ in rng.nextInt(below: n) }
    }

    private func random(_ shape: [Int], seed: UInt64 = 1) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return .randomNormal(shape, using: &rng)
    }

    func testLinear() {
        var rng = RandomGenerator(seed: 3)
        check(Linear(inFeatures: 5, outFeatures: 4, rng: &rng), inputs: [random([3, 5])])
        check(Linear(inFeatures: 5, outFeatures: 4, bias: false, rng: &rng), inputs: [random([3, 5])])
    }

    func testConv2dPaddedStrided() {
        var rng = RandomGenerator(seed: 3)
        check(Conv2d(inChannels: 3, outChannels: 4, kernelSize: 3, stride: 2, padding: 1, rng: &rng),
              inputs: [random([3, 2, 7, 6])])
        check(Conv2d(inChannels: 2, outChannels: 3, kernelSize: 5, padding: 2, rng: &rng), inputs: [random([2, 2, 6, 6])])
    }

    func testConv2dGroupsDepthwiseAndPointwise() {
        var rng = RandomGenerator(seed: 3)
        check(Conv2d(inChannels: 4, outChannels: 6, kernelSize: 3, padding: 1, groups: 2, rng: &rng),
              inputs: [random([4, 2, 5, 5])])
        check(Conv2d(inChannels: 3, outChannels: 3, kernelSize: 3, stride: 1, padding: 1, groups: 3, bias: false, rng: &rng),
              inputs: [random([3, 2, 5, 4])])
        check(Conv2d(inChannels: 3, outChannels: 2, kernelSize: 1, rng: &rng), inputs: [random([3, 2, 4, 4])])
    }

    /// Non-square kernels, per-axis strides, dilation, asymmetric padding, with groups.
    func testConv2dGeneralWindows() {
        var rng = RandomGenerator(seed: 3)
        check(Conv2d(inChannels: 3, outChannels: 4, kernel: (3, 2),
                     window: ConvWindow(strideHeight: 2, strideWidth: 1, padTop: 0, padLeft: 1, padBottom: 1, padRight: 0), rng: &rng),
              inputs: [random([3, 2, 7, 6])])
        check(Conv2d(inChannels: 2, outChannels: 3, kernel: (3, 3),
                     window: ConvWindow(dilationHeight: 2, dilationWidth: 2, padTop: 2, padLeft: 2, padBottom: 2, padRight: 2), rng: &rng),
              inputs: [random([2, 2, 6, 6])])
        check(Conv2d(inChannels: 4, outChannels: 4, kernel: (1, 3),
                     window: ConvWindow(strideHeight: 1, strideWidth: 2, dilationWidth: 2, padLeft: 2, padRight: 1), groups: 2, rng: &rng),
              inputs: [random([4, 2, 5, 9])])
    }

    func testBatchNorm2dAndEval() {
        let bn = BatchNorm(featureCount: 3)
        bn.weight.assign(random([3], seed: 4)); bn.bias.assign(random([3], seed: 5))
        check(bn, inputs: [random([3, 4, 3, 3])], tolerance: 3e-2)
        bn.runningVar.assign(Tensor(shape: [3], scalars: [0.5, 2, 1.5]))
        check(bn, inputs: [random([3, 4, 3, 3])], mode: .evaluationWithGradients)
    }

    func testBatchNorm1d() {
        let bn = BatchNorm(featureCount: 4)
        bn.weight.assign(random([4], seed: 4))
        check(bn, inputs: [random([6, 4])], tolerance: 3e-2)
    }

    func testReLU() { check(ReLU(), inputs: [random([2, 3, 4, 4])], eps: 1e-3) }

    /// The element-wise activations of ONNX import, on inputs scaled ×4 so that every piece
    /// of HardSigmoid and HardSwish (below, on and above the ramp) is sampled.
    func testLeakyReLUTanhHardSigmoidHardSwishGELU() {
        var x = random([2, 3, 4, 4])
        x.withUnsafeMutableBufferPointer { for i in 0..<$0.count { $0[i] *= 4 } }
        check(LeakyReLU(alpha: 0.1), inputs: [x], eps: 1e-3)
        check(Tanh(), inputs: [x], eps: 1e-3)
        check(HardSigmoid(alpha: 0.2, beta: 0.5), inputs: [x], eps: 1e-3)
        check(HardSigmoid(alpha: 1 / 6, beta: 0.5), inputs: [x], eps: 1e-3)
        check(HardSwish(), inputs: [x], eps: 1e-3)
        check(GELU(), inputs: [x], eps: 1e-3)
        check(GELU(approximation: .tanh), inputs: [x], eps: 1e-3)
        XCTAssert(x.scalars.contains { $0 > 3 } && x.scalars.contains { $0 < -3 } && x.scalars.contains { abs($0) < 2 })
    }

    /// Forward values against the definitions, computed in Double (GELU's Φ by erf and by tanh).
    func testActivationValuesAgainstTheirDefinitions() {
        let values: [Float] = [-5, -3, -2.5, -1, -0.25, 0, 0.3, 1, 2.9, 3, 4]
        let x = Tensor(shape: [values.count], scalars: values)
        func run(_ layer: Layer) -> [Float] { layer.forward([x], mode: .inference).scalars }
        func close(_ a: [Float], _ b: [Double], _ what: String) {
            for (u, v) in zip(a, b) { XCTAssertEqual(Double(u), v, accuracy: 1e-6 * max(1, abs(v)), what) }
        }
        let d = values.map(Double.init)
        close(run(LeakyReLU(alpha: 0.1)), d.map { $0 >= 0 ? $0 : 0.1 * $0 }, "leakyRelu")
        close(run(Tanh()), d.map { Foundation.tanh($0) }, "tanh")
        close(run(HardSigmoid()), d.map { max(0, min(1, 0.2 * $0 + 0.5)) }, "hardSigmoid")
        close(run(HardSwish()), d.map { $0 * max(0, min(1, $0 / 6 + 0.5)) }, "hardSwish")
        close(run(GELU()), d.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }, "gelu")
        close(run(GELU(approximation: .tanh)),
              d.map { 0.5 * $0 * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * ($0 + 0.044715 * $0 * $0 * $0))) }, "gelu tanh")
    }

    func testZeroPad2d() {
        check(ZeroPad2d(top: 1, left: 0, bottom: 2, right: 1), inputs: [random([2, 3, 4, 5])])
        let y = ZeroPad2d(top: 1, left: 2, bottom: 0, right: 1).forward([Tensor(shape: [1, 1, 1, 1], scalars: [7])], mode: .inference)
        XCTAssertEqual(y.shape, [1, 1, 2, 4])
        XCTAssertEqual(y.scalars, [0, 0, 0, 0, 0, 0, 7, 0])
    }

    /// A 3×3 "same" convolution with 16 input channels on 8×8 maps: Winograd forward,
    /// input gradient and weight gradient.
    func testConv2dWinogradShaped() {
        var rng = RandomGenerator(seed: 4)
        let conv = Conv2d(inChannels: 16, outChannels: 16, kernelSize: 3, padding: 1, rng: &rng)
        check(conv, inputs: [random([16, 2, 8, 8])], eps: 1e-2, tolerance: 3e-2)
    }

    func testMaxPool() { check(MaxPool2d(kernelSize: 2), inputs: [random([2, 3, 6, 6])], eps: 1e-3) }

    /// 2×2 windows that do not tile a 7×7 plane: the fast forward path with the general backward.
    func testMaxPoolOddSize() { check(MaxPool2d(kernelSize: 2), inputs: [random([2, 2, 7, 7])], eps: 1e-3) }

    /// The 2×2 stride-2 fast path against a direct computation of max and its gradient.
    func testMaxPool2x2AgainstDirect() {
        let x = random([3, 2, 6, 8], seed: 9)
        let pool = MaxPool2d(kernelSize: 2)
        let y = pool.forward([x], mode: .training).scalars
        let g = Tensor(shape: [3, 2, 3, 4], scalars: (0..<72).map { Float($0 % 7) - 3 })
        let dx = pool.backward(g, needsInputGradient: [true])[0]!.scalars
        let (xs, gs) = (x.scalars, g.scalars)
        var expected = [Float](repeating: 0, count: x.count)
        for pl in 0..<6 { for oy in 0..<3 { for ox in 0..<4 {
            var best = -Float.infinity, at = 0
            for ky in 0..<2 { for kx in 0..<2 {
                let i = pl * 48 + (2 * oy + ky) * 8 + 2 * ox + kx
                if xs[i] > best { best = xs[i]; at = i }
            } }
            let o = pl * 12 + oy * 4 + ox
            XCTAssertEqual(y[o], best)
            expected[at] += gs[o]
        } } }
        XCTAssertEqual(dx, expected)
    }

    func testMaxPoolOverlapping() { check(MaxPool2d(kernelSize: 3, stride: 2), inputs: [random([2, 2, 7, 7])], eps: 1e-3) }

    /// ReLU6 (ONNX Clip 0…6) and one-sided bounds; inputs scaled so that some lie above 6.
    func testClip() {
        var x = random([2, 3, 4, 4])
        x.withUnsafeMutableBufferPointer { for i in 0..<$0.count { $0[i] *= 8 } }
        check(Clip(lower: 0, upper: 6), inputs: [x], eps: 1e-3)
        check(Clip(lower: -1, upper: nil), inputs: [x], eps: 1e-3)
        check(Clip(lower: nil, upper: 2), inputs: [x], eps: 1e-3)
        let y = Clip(lower: 0, upper: 6).forward([x], mode: .inference)
        XCTAssertEqual(y.scalars, x.scalars.map { min(max($0, 0), 6) })
        XCTAssert(x.scalars.contains { $0 > 6 } && x.scalars.contains { $0 < 0 })
    }

    /// torchvision's ResNet stem pool: 3×3, stride 2, padding 1 (as ONNX import reads it).
    func testMaxPoolPadded() { check(MaxPool2d(kernelSize: 3, stride: 2, padding: 1), inputs: [random([2, 2, 7, 7])], eps: 1e-3) }

    /// Padding is −∞: the padded pool equals the unpadded one over a map framed with a huge
    /// negative value (the naive reference), forward and backward.
    func testMaxPoolPaddingAgainstAnExplicitFrame() {
        let (c, n, h, w, p) = (2, 3, 6, 5, 1)
        let x = random([c, n, h, w])
        var framed = Tensor(shape: [c, n, h + 2 * p, w + 2 * p], repeating: -1e30)
        for i in 0..<c { for j in 0..<n { for y in 0..<h { for z in 0..<w { framed[i, j, y + p, z + p] = x[i, j, y, z] } } } }
        let padded = MaxPool2d(kernelSize: 3, stride: 2, padding: p), plain = MaxPool2d(kernelSize: 3, stride: 2)
        let a = padded.forward([x], mode: .training), b = plain.forward([framed], mode: .training)
        XCTAssertEqual(a.shape, b.shape)
        XCTAssertEqual(a.scalars, b.scalars)
        let g = random(a.shape)
        let da = padded.backward(g, needsInputGradient: [true])[0]!, db = plain.backward(g, needsInputGradient: [true])[0]!
        for i in 0..<c { for j in 0..<n { for y in 0..<h { for z in 0..<w { XCTAssertEqual(da[i, j, y, z], db[i, j, y + p, z + p]) } } } }
        XCTAssertEqual(try padded.outputShape(for: [[c, h, w]]), [c, 3, 3])
        XCTAssertEqual(padded.configuration["padding"], 1)
        XCTAssertNil(plain.configuration["padding"], "an unpadded pool saves as before")
    }

    func testAvgPool() { check(AvgPool2d(kernelSize: 2), inputs: [random([2, 3, 6, 6])]) }

    /// Non-square windows, per-axis strides, asymmetric padding and ceil_mode's partial windows.
    func testMaxPoolGeneralWindows() {
        let pool = MaxPool2d(kernel: (3, 2), window: ConvWindow(strideHeight: 2, strideWidth: 1, padTop: 1, padLeft: 0, padBottom: 0, padRight: 1),
                             ceilMode: true)
        XCTAssertEqual(try pool.outputShape(for: [[2, 7, 6]]), [2, 4, 6])   // ⌈(7 + 1 − 3)/2⌉ + 1 = 4; (6 + 1 − 2) + 1 = 6
        check(pool, inputs: [random([2, 2, 7, 6])], eps: 1e-3)
        // The last window would start on the bottom padding alone: ceil_mode drops it (8 + 1 − 3 = 6, ⌈6/3⌉ + 1 = 3 → 3·… ).
        let dropped = MaxPool2d(kernel: (3, 3), window: ConvWindow(stride: 3, padding: 1), ceilMode: true)
        XCTAssertEqual(try dropped.outputShape(for: [[1, 5, 5]]), [1, 2, 2])
        check(dropped, inputs: [random([1, 2, 5, 5])], eps: 1e-3)
    }

    /// AveragePool with padding, ceil_mode, and both divisors, against finite differences and a
    /// direct computation of one partial window.
    func testAvgPoolGeneralWindows() {
        for include in [false, true] {
            let pool = AvgPool2d(kernel: (2, 3), window: ConvWindow(strideHeight: 2, strideWidth: 2, padTop: 0, padLeft: 1, padBottom: 0, padRight: 1),
                                 ceilMode: true, countIncludePad: include)
            XCTAssertEqual(try pool.outputShape(for: [[2, 5, 9]]), [2, 3, 5])
            check(pool, inputs: [random([2, 2, 5, 9])])
            // Output (2, 0): rows 4..<5 (the window's second row is past the map: ceil_mode),
            // columns −1..<2 (one padded): 2 values inside; with count_include_pad 3 positions
            // (the padded column counts, the row past the map's end does not).
            let x = random([1, 1, 5, 9], seed: 3)
            let y = pool.forward([x], mode: .inference)
            XCTAssertEqual(y[0, 0, 2, 0], (x[0, 0, 4, 0] + x[0, 0, 4, 1]) / (include ? 3 : 2), accuracy: 1e-6)
        }
    }

    func testGlobalAvgPool() { check(GlobalAvgPool(), inputs: [random([3, 2, 4, 5])]) }

    func testFlatten() { check(Flatten(), inputs: [random([3, 2, 2, 2])]) }

    func testAdd() { check(Add(), inputs: [random([2, 3, 2, 2], seed: 1), random([2, 3, 2, 2], seed: 2)]) }

    /// Sigmoid and SiLU against their formulas in Double, on inputs large enough to saturate.
    func testSigmoidAndSiLU() {
        var x = random([2, 3, 4, 4])
        x.withUnsafeMutableBufferPointer { for i in 0..<$0.count { $0[i] *= 4 } }
        check(Sigmoid(), inputs: [x], eps: 1e-3)
        check(SiLU(), inputs: [x], eps: 1e-3)
        let extremes = Tensor(shape: [1, 6], scalars: [-100, -20, 0, 1, 20, 100])
        for (layer, f) in [(Sigmoid() as Layer, { (v: Double) in 1 / (1 + exp(-v)) }), (SiLU(), { (v: Double) in v / (1 + exp(-v)) })] {
            for input in [x, extremes] {
                let y = layer.forward([input], mode: .inference).scalars
                for (a, v) in zip(y, input.scalars) {
                    XCTAssertEqual(Double(a), f(Double(v)), accuracy: 1e-6 * max(1, abs(f(Double(v)))), "\(type(of: layer))(\(v))")
                }
            }
        }
        check(Sigmoid(), inputs: [random([3, 5])], eps: 1e-3)
    }

    /// Concat of one, two and three maps; its output against a channel-by-channel copy.
    func testConcat() {
        let (a, b, c) = (random([2, 2, 3, 3], seed: 1), random([3, 2, 3, 3], seed: 2), random([1, 2, 3, 3], seed: 3))
        check(Concat(), inputs: [a])
        check(Concat(), inputs: [a, b])
        check(Concat(), inputs: [a, b, c])
        // Channel-major [C, N, H, W]: channel k of the output is channel k − offset of its input.
        let y = Concat().forward([a, b, c], mode: .inference)
        XCTAssertEqual(y.shape, [6, 2, 3, 3])
        let per = 2 * 3 * 3
        for k in 0..<6 {
            let (source, channel) = k < 2 ? (a, k) : k < 5 ? (b, k - 2) : (c, k - 5)
            XCTAssertEqual(Array(y.scalars[(k * per)..<((k + 1) * per)]), Array(source.scalars[(channel * per)..<((channel + 1) * per)]))
        }
        XCTAssertThrowsError(try Concat().outputShape(for: [[2, 3, 3], [2, 4, 3]]))
        XCTAssertThrowsError(try Concat().outputShape(for: [[2], [3]]))
    }

    /// Squeeze-and-excitation's rescaling: the map's and the gate's gradients, and the product
    /// against a direct loop over [C, N, H, W] × [N, C].
    func testChannelMul() {
        let x = random([3, 2, 4, 5], seed: 1), g = random([2, 3], seed: 2)
        check(ChannelMul(), inputs: [x, g])
        let y = ChannelMul().forward([x, g], mode: .inference)
        for c in 0..<3 { for n in 0..<2 { for j in 0..<20 {
            let i = (c * 2 + n) * 20 + j
            XCTAssertEqual(y.scalars[i], x.scalars[i] * g.scalars[n * 3 + c])
        } } }
        XCTAssertEqual(try ChannelMul().outputShape(for: [[3, 4, 5], [3]]), [3, 4, 5])
        XCTAssertThrowsError(try ChannelMul().outputShape(for: [[3, 4, 5], [4]]))
        XCTAssertThrowsError(try ChannelMul().outputShape(for: [[3, 4, 5], [3, 4, 5]]))
    }

    func testChannelPadShortcut() {
        check(ChannelPadShortcut(outChannels: 4, stride: 2), inputs: [random([2, 2, 5, 5])])
    }

    func testDropoutUsesTheSameMaskForwardAndBackward() {
        let d = Dropout(probability: 0.5, seed: 1)
        let x = random([4, 10])
        let y = d.forward([x], mode: .training)
        let g = d.backward(Tensor(shape: [4, 10], repeating: 1), needsInputGradient: [true])[0]!
        for i in 0..<x.count {
            // y = x·m/(1−p) and ∂y/∂x = m/(1−p): the same factor.
            XCTAssertEqual(y.scalars[i], x.scalars[i] * g.scalars[i], accuracy: 1e-6)
            XCTAssert(g.scalars[i] == 0 || g.scalars[i] == 2)
        }
        XCTAssertEqual(d.forward([x], mode: .inference), x)
    }

    func testSoftmaxCrossEntropyGradient() {
        let logits = random([3, 5])
        let labels = [0, 4, 2]
        let (l0, g) = softmaxCrossEntropy(logits: logits, labels: labels)
        // Reference value by hand for row 0 in double precision.
        let rows = logits.rows.map { $0.map(Double.init) }
        let expected = zip(rows, labels).map { row, y in log(row.map(exp).reduce(0, +)) - row[y] }.reduce(0, +) / 3
        XCTAssertEqual(Double(l0), expected, accuracy: 1e-5)
        let eps: Float = 1e-2
        for i in 0..<logits.count {
            var p = logits, m = logits
            p.withUnsafeMutableBufferPointer { $0[i] += eps }
            m.withUnsafeMutableBufferPointer { $0[i] -= eps }
            let num = (softmaxCrossEntropy(logits: p, labels: labels).loss - softmaxCrossEntropy(logits: m, labels: labels).loss) / (2 * eps)
            XCTAssertEqual(g.scalars[i], num, accuracy: 2e-3)
        }
        // Stable for huge logits.
        let big = Tensor(shape: [1, 3], scalars: [1000, -1000, 999])
        let (lb, gb) = softmaxCrossEntropy(logits: big, labels: [2])
        XCTAssert(lb.isFinite && gb.isFinite)
        XCTAssertEqual(Double(lb), log(1 + exp(-1.0)) + 1, accuracy: 1e-4)
    }

    /// Without parameter gradients, backward gives the same input gradients and leaves every
    /// parameter gradient untouched (what evidence gathering for Taylor relies on).
    func testBackwardWithoutParameterGradients() throws {
        let x = random([2, 1, 12, 12])
        func run(_ params: Bool) throws -> (Tensor, [Float]) {
            let model = try ModelZoo.make("vgg-small", inputShape: [1, 12, 12], classCount: 3, seed: 1)
            model.mode = ForwardMode(training: false, recordsForBackward: true, parameterGradients: params)
            model.zeroGradients()
            var inputGradient: Tensor?
            model.backwardObserver = { i, g in if i == 1 { inputGradient = g } }   // ∂L/∂(first conv's output)
            model.backward(softmaxCrossEntropy(logits: model.forward(x), labels: [0, 2]).gradient)
            return (try XCTUnwrap(inputGradient), model.trainableParameters.map { $0.gradient.maxAbs() })
        }
        let (withParams, gradsOn) = try run(true), (without, gradsOff) = try run(false)
        XCTAssertEqual(withParams, without)
        XCTAssert(gradsOn.allSatisfy { $0 > 0 })
        XCTAssert(gradsOff.allSatisfy { $0 == 0 })
    }

    /// A whole residual model end to end: the graph's backward against finite differences
    /// of the cross-entropy loss.
    func testResidualModelEndToEnd() throws {
        let model = try ModelZoo.make("resnet-20", inputShape: [3, 8, 8], classCount: 3, seed: 1)
        let x = random([2, 3, 8, 8])
        let labels = [1, 2]
        model.isTraining = true
        model.zeroGradients()
        let (_, g) = softmaxCrossEntropy(logits: model.forward(x), labels: labels)
        model.backward(g)
        var rng = RandomGenerator(seed: 9)
        let eps: Float = 1e-2
        for name in ["conv1.weight", "layer2.0.conv1.weight", "layer3.2.bn2.weight", "fc.bias"] {
            let p = model.namedParameters.first { $0.path == name }!.parameter
            for _ in 0..<4 {
                let i = rng.nextInt(below: p.value.count)
                p.value.withUnsafeMutableBufferPointer { $0[i] += eps }
                let lp = softmaxCrossEntropy(logits: model.forward(x), labels: labels).loss
                p.value.withUnsafeMutableBufferPointer { $0[i] -= 2 * eps }
                let lm = softmaxCrossEntropy(logits: model.forward(x), labels: labels).loss
                p.value.withUnsafeMutableBufferPointer { $0[i] += eps }
                let num = (lp - lm) / (2 * eps)
                XCTAssertEqual(p.gradient.scalars[i], num, accuracy: 3e-2 * max(1, abs(num)), "\(name)[\(i)]")
            }
        }
    }
}
