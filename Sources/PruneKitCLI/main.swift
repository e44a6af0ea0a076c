import PruneKit
import Foundation
var rng = RandomGenerator(seed: 1)
let n = 4000
let images = Tensor.randomNormal([n, 1, 28, 28], using: &rng)
let labels = (0..<n).map { _ in rng.nextInt(below: 10) }
for name in CommandLine.arguments.dropFirst() {
    let model = try ModelZoo.make(name, inputShape: [1, 28, 28], classCount: 10, seed: 0)
    let trainer = Trainer(model: model, optimizer: SGD(learningRate: 0.01, momentum: 0.9))
    for e in 0..<3 {
        let t0 = Date()
        var b = 0
        while b * 64 < n {
            let r = (b * 64)..<min(n, b * 64 + 64)
            try trainer.step(images: images.slice(examples: r, perExample: 784), labels: Array(labels[r]))
            b += 1
        }
        print(name, "epoch", e, String(format: "%.3f s", Date().timeIntervalSince(t0)))
    }
}
