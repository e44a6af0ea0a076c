import PruneKit
import Foundation
func gflops(_ n: Int) -> Double {
    var r = RandomGenerator(seed: 2)
    let a = Tensor.randomNormal([n, n], using: &r), b = Tensor.randomNormal([n, n], using: &r)
    _ = a.matmul(b)
    let t0 = Date(); let reps = 5
    for _ in 0..<reps { _ = a.matmul(b) }
    return 2 * Double(n * n * n) * Double(reps) / Date().timeIntervalSince(t0) / 1e9
}
print("sgemm 1024: 2 threads", gflops(1024))
Parallel.setThreadCount(1); print("sgemm 1024: 1 thread", gflops(1024)); Parallel.setThreadCount(2)
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
