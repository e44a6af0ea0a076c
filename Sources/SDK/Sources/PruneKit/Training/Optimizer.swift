/// Updates parameters from their gradients.
///
/// Optimisers respect pruning masks: the gradient and weight decay of a masked weight
/// are zeroed before the update and the weight is multiplied by its mask after it, so
/// momentum and Adam's moments never revive a pruned weight.
public protocol Optimizer: AnyObject {
    /// The learning rate for the next step (schedules set it).
    var learningRate: Float { get set }
    /// Applies one update to every trainable parameter in `parameters`.
    func step(_ parameters: [Parameter])
}

/// Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay,
/// in PyTorch's formulation: g ← ∇ + λw; v ← μv + g; w ← w − η(g + μv) (Nesterov) or w − ηv.
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float, nesterov: Bool
    private var velocity: [ObjectIdentifier: Tensor] = [:]

    public init(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.learningRate = learningRate; self.momentum = momentum
        self.weightDecay = weightDecay; self.nesterov = nesterov
    }

    public func step(_ parameters: [Parameter]) {
        for p in parameters where p.isTrainable {
            let key = ObjectIdentifier(p)
            if momentum != 0 && velocity[key] == nil { velocity[key] = Tensor(shape: p.value.shape) }
            var v = velocity.removeValue(forKey: key) ?? Tensor(shape: [0])
            let (lr, mu, wd, nest) = (learningRate, momentum, weightDecay, nesterov)
            let mask = p.mask
            p.value.withUnsafeMutableBufferPointer { w in p.gradient.withUnsafeBufferPointer { g in
                v.withUnsafeMutableBufferPointer { vp in
                    withOptionalPointer(mask) { m in
                        let (wp, gp, vb) = (w.baseAddress!, g.baseAddress!, vp.baseAddress!)
                        Parallel.forEach(w.count, grain: 32_768) { r in
                            for i in r {
                                var d = gp[i] + wd * wp[i]
                                if let m { d *= m[i] }
                                if mu != 0 {
                                    vb[i] = mu * vb[i] + d
                                    d = nest ? d + mu * vb[i] : vb[i]
                                }
                                wp[i] -= lr * d
                                if let m { wp[i] *= m[i] }
                            }
                        }
                    }
                }
            } }
            if momentum != 0 { velocity[key] = v }
        }
    }
}

/// Adam (Kingma & Ba 2015) with bias correction and L2 weight decay added to the gradient
/// (PyTorch's `Adam`, not `AdamW`).
public final class Adam: Optimizer {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    private var moments: [ObjectIdentifier: (m: Tensor, v: Tensor)] = [:]
    private var steps = 0

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2
        self.epsilon = epsilon; self.weightDecay = weightDecay
    }

    public func step(_ parameters: [Parameter]) {
        steps += 1
        let c1 = 1 - powf(beta1, Float(steps)), c2 = 1 - powf(beta2, Float(steps))
        for p in parameters where p.isTrainable {
            let key = ObjectIdentifier(p)
            var (m, v) = moments.removeValue(forKey: key) ?? (Tensor(shape: p.value.shape), Tensor(shape: p.value.shape))
            let (lr, b1, b2, eps, wd) = (learningRate, beta1, beta2, epsilon, weightDecay)
            let mask = p.mask
            p.value.withUnsafeMutableBufferPointer { w in p.gradient.withUnsafeBufferPointer { g in
                m.withUnsafeMutableBufferPointer { mp in v.withUnsafeMutableBufferPointer { vp in
                    withOptionalPointer(mask) { mk in
                        let (wp, gp, mb, vb) = (w.baseAddress!, g.baseAddress!, mp.baseAddress!, vp.baseAddress!)
                        Parallel.forEach(w.count, grain: 32_768) { r in
                            for i in r {
                                var d = gp[i] + wd * wp[i]
                                if let mk { d *= mk[i] }
                                mb[i] = b1 * mb[i] + (1 - b1) * d
                                vb[i] = b2 * vb[i] + (1 - b2) * d * d
                                wp[i] -= lr * (mb[i] / c1) / ((vb[i] / c2).squareRoot() + eps)
                                if let mk { wp[i] *= mk[i] }
                            }
                        }
                    }
                } }
            } }
            moments[key] = (m, v)
        }
    }
}

import Foundation

/// Calls `body` with the tensor's mutable base address, or `nil` when there is no tensor.
func withOptionalMutablePointer<R>(_ t: inout Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> R) -> R {
    guard t != nil else { return body(nil) }
    return t!.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// Calls `body` with the tensor's base address, or `nil` when there is no tensor.
func withOptionalPointer<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.withUnsafeBufferPointer { body($0.baseAddress!) }
}
