import Foundation
import PruneKit

/// Shows training progress: a bar redrawn in place on a terminal, plain lines otherwise.
final class ProgressDisplay {
    private let interactive = isatty(STDOUT_FILENO) != 0
    private var lastDraw = Date.distantPast

    func update(_ p: TrainingProgress) {
        guard interactive else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || p.batch + 1 == p.batches else { return }
        lastDraw = now
        let width = 24, filled = Int(Double(width) * Double(p.batch + 1) / Double(max(p.batches, 1)))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = String(format: "epoch %d/%d %@ %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  left %@",
                          p.epoch + 1, p.epochs, bar, p.batch + 1, p.batches, p.loss, p.accuracy * 100,
                          p.imagesPerSecond, formatDuration(p.remaining))
        FileHandle.standardOutput.write(Data("\r\u{1B}[K\(line)".utf8))
    }

    func epochEnded(_ r: EpochRecord, epochs: Int) {
        if interactive { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        var line = String(format: "epoch %d/%d  loss %.4f  acc %.2f%%", r.epoch + 1, epochs, r.trainLoss, r.trainAccuracy * 100)
        if let vl = r.validationLoss, let va = r.validationAccuracy {
            line += String(format: "  val loss %.4f  val acc %.2f%%", vl, va * 100)
        }
        line += String(format: "  lr %.4g  %.2f s  %.0f img/s", r.learningRate, r.seconds, r.imagesPerSecond)
        print(line)
    }
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}

func percent(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }
