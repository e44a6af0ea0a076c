import Foundation

/// Batch normalisation over the channels of feature maps (`[C, H, W]` per example,
/// BatchNorm2d) or over the features of vectors (`[F]`, BatchNorm1d).
///
/// Training mode normalises with the batch's mean and biased variance and updates the
/// running statistics with `momentum` (the running variance uses the unbiased estimate,
/// as PyTorch does); evaluation mode uses the running statistics.
/// Parameters: `weight` (γ), `bias` (β), and the untrained `running_mean`, `running_var`.
/// Cost: a few passes over the input; channels in parallel.
/// References: Ioffe & Szegedy, "Batch Normalization", ICML 2015.
public final class BatchNorm: Layer {
    public let kind = LayerKind.batchNorm
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Parameter
    public let runningVar: Parameter
    public let epsilon: Float
    public let momentum: Float
    public var featureCount: Int { weight.value.count }

    private var normalized: Tensor?      // x̂, kept for backward
    private var invStd: [Float] = []
    private var usedBatchStatistics = true
    private var parameterGradients = true
    private var layout = ChannelLayout(channels: 0, perChannel: 0, channelStride: 0, elementStride: 0)

    public init(featureCount: Int, epsilon: Float = 1e-5, momentum: Float = 0.1) {
        weight = Parameter(Tensor(shape: [featureCount], repeating: 1))
        bias = Parameter(Tensor(shape: [featureCount], repeating: 0))
        runningMean = Parameter(Tensor(shape: [featureCount], repeating: 0), trainable: false)
        runningVar = Parameter(Tensor(shape: [featureCount], repeating: 1), trainable: false)
        self.epsilon = epsilon
        self.momentum = momentum
    }

    public var parameters: [(name: String, parameter: Parameter)] {
        [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)]
    }

    public var configuration: [String: Double] { ["num_features": Double(featureCount), "eps": Double(epsilon), "momentum": Double(momentum)] }

    public func outputShape(for inputShapes: [[Int]]) throws -> [Int] {
        try requireShape(inputShapes.count == 1 && (inputShapes[0].count == 1 || inputShapes[0].count == 3)
                         && inputShapes[0][0] == featureCount,
                         "BatchNorm(\(featureCount)) expects [\(featureCount)] or [\(featureCount), H, W] inputs, got \(inputShapes)")
        return inputShapes[0]
    }

    public func macs(inputShapes: [[Int]]) -> Int { 0 }

    public func forward(_ inputs: [Tensor], mode: ForwardMode) -> Tensor {
        let x = inputs[0]
        let lay = ChannelLayout(x)
        assert(lay.channels == featureCount)
        let c = lay.channels, m = lay.perChannel
        var y = Tensor(uninitializedShape: x.shape)
        var xhat = Tensor(uninitializedShape: mode.recordsForBackward ? x.shape : [0])
        var inv = [Float](repeating: 0, count: c)
        var means = [Float](repeating: 0, count: c), vars = [Float](repeating: 0, count: c)
        let record = mode.recordsForBackward, batchStatistics = mode.training
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
            xhat.withUnsafeMutableBufferPointer { hp in
                weight.value.withUnsafeBufferPointer { gp in bias.value.withUnsafeBufferPointer { bp in
                    runningMean.value.withUnsafeBufferPointer { rm in runningVar.value.withUnsafeBufferPointer { rv in
                        inv.withUnsafeMutableBufferPointer { ip in
                            means.withUnsafeMutableBufferPointer { mp in vars.withUnsafeMutableBufferPointer { vp in
                                Parallel.forEach(c, grain: max(1, 8192 / max(m, 1))) { chans in
                                    for ch in chans {
                                        let base = ch * lay.channelStride, st = lay.elementStride
                                        var mu = rm[ch], istd = 1 / (rv[ch] + epsilon).squareRoot()
                                        if batchStatistics {
                                            let (mean, variance) = meanAndVariance(xp.baseAddress! + base, count: m, stride: st)
                                            mu = mean
                                            istd = 1 / (variance + epsilon).squareRoot()
                                            mp[ch] = mean; vp[ch] = variance
                                        }
                                        let gamma = gp[ch], beta = bp[ch]
                                        if st == 1 {
                                            // Channel-major: contiguous, so the loops vectorise.
                                            let (src, dst) = (xp.baseAddress! + base, yp.baseAddress! + base)
                                            if record {
                                                let hat = hp.baseAddress! + base
                                                for j in 0..<m {
                                                    let h = (src[j] - mu) * istd
                                                    hat[j] = h
                                                    dst[j] = gamma * h + beta
                                                }
                                            } else {
                                                let scale = gamma * istd, shift = beta - mu * scale
                                                for j in 0..<m { dst[j] = src[j] * scale + shift }
                                            }
                                        } else if record {
                                            for j in 0..<m {
                                                let i = base + j * st
                                                let h = (xp[i] - mu) * istd
                                                hp[i] = h
                                                yp[i] = gamma * h + beta
                                            }
                                        } else {
                                            let scale = gamma * istd, shift = beta - mu * scale
                                            for j in 0..<m { let i = base + j * st; yp[i] = xp[i] * scale + shift }
                                        }
                                        ip[ch] = istd
                                    }
                                }
                            } }
                        }
                    } }
                } }
            }
        } }
        if batchStatistics {
            let unbias = m > 1 ? Float(m) / Float(m - 1) : 1
            runningMean.value.withUnsafeMutableBufferPointer { rm in runningVar.value.withUnsafeMutableBufferPointer { rv in
                for ch in 0..<c {
                    rm[ch] = (1 - momentum) * rm[ch] + momentum * means[ch]
                    rv[ch] = (1 - momentum) * rv[ch] + momentum * vars[ch] * unbias
                }
            } }
        }
        if record {
            normalized = xhat; invStd = inv; layout = lay; usedBatchStatistics = batchStatistics
            parameterGradients = mode.parameterGradients
        }
        return y
    }

    public func backward(_ gradOutput: Tensor, needsInputGradient: [Bool]) -> [Tensor?] {
        guard let xhat = normalized else { return [nil] }
        normalized = nil
        let lay = layout, c = lay.channels, m = lay.perChannel
        let wantsInput = needsInputGradient.first == true, batchStatistics = usedBatchStatistics
        var dx = Tensor(uninitializedShape: wantsInput ? gradOutput.shape : [0])
        var sumsDy = [Float](repeating: 0, count: c), sumsDyH = [Float](repeating: 0, count: c)
        gradOutput.withUnsafeBufferPointer { dy in xhat.withUnsafeBufferPointer { hp in
            dx.withUnsafeMutableBufferPointer { dxp in weight.value.withUnsafeBufferPointer { gp in
                sumsDy.withUnsafeMutableBufferPointer { s1 in sumsDyH.withUnsafeMutableBufferPointer { s2 in
                    Parallel.forEach(c, grain: max(1, 8192 / max(m, 1))) { chans in
                        for ch in chans {
                            let base = ch * lay.channelStride, st = lay.elementStride
                            var a: Float = 0, b: Float = 0
                            if st == 1 {
                                a = simdSum(dy.baseAddress! + base, m)
                                b = simdDot(dy.baseAddress! + base, hp.baseAddress! + base, m)
                            } else {
                                for j in 0..<m { let i = base + j * st; a += dy[i]; b += dy[i] * hp[i] }
                            }
                            s1[ch] = a; s2[ch] = b
                            guard wantsInput else { continue }
                            if batchStatistics {
                                // x̂ depends on x through the batch mean and variance too.
                                let k = gp[ch] * invStd[ch] / Float(m)
                                let fm = Float(m), sa = Float(a), sb = Float(b)
                                for j in 0..<m {
                                    let i = base + j * st
                                    dxp[i] = k * (fm * dy[i] - sa - hp[i] * sb)
                                }
                            } else {
                                let k = gp[ch] * invStd[ch]
                                for j in 0..<m { let i = base + j * st; dxp[i] = k * dy[i] }
                            }
                        }
                    }
                } }
            } }
        } }
        if parameterGradients {
            weight.gradient.withUnsafeMutableBufferPointer { gw in bias.gradient.withUnsafeMutableBufferPointer { gb in
                for ch in 0..<c { gw[ch] += sumsDyH[ch]; gb[ch] += sumsDy[ch] }
            } }
        }
        return [wantsInput ? dx : nil]
    }
}

/// The mean and biased variance of `count` values `stride` apart (two passes).
func meanAndVariance(_ p: UnsafePointer<Float>, count m: Int, stride st: Int) -> (Float, Float) {
    if st == 1 {
        let mean = simdSum(p, m) / Float(m)
        return (mean, simdSumOfSquaredDeviations(p, m, from: mean) / Float(m))
    }
    var s: Double = 0
    for j in 0..<m { s += Double(p[j * st]) }
    let mean = s / Double(m)
    var q: Double = 0
    for j in 0..<m { let d = Double(p[j * st]) - mean; q += d * d }
    return (Float(mean), Float(q / Double(m)))
}

/// Where the elements of each channel lie in a batch tensor: `[N, F]` (features strided)
/// or channel-major `[C, N, H, W]` (each channel contiguous).
struct ChannelLayout {
    var channels: Int, perChannel: Int, channelStride: Int, elementStride: Int

    init(channels: Int, perChannel: Int, channelStride: Int, elementStride: Int) {
        self.channels = channels; self.perChannel = perChannel
        self.channelStride = channelStride; self.elementStride = elementStride
    }

    init(_ x: Tensor) {
        if x.rank == 2 {
            self.init(channels: x.shape[1], perChannel: x.shape[0], channelStride: 1, elementStride: x.shape[1])
        } else {
            let c = x.shape[0]
            self.init(channels: c, perChannel: x.count / max(c, 1), channelStride: x.count / max(c, 1), elementStride: 1)
        }
    }
}
