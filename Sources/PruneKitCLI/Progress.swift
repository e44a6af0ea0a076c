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
        let head = "epoch \(p.epoch + 1)/\(p.epochs) "
        let tail = String(format: " %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  left ", p.batch + 1, p.batches, p.loss, p.accuracy * 100,
                          p.imagesPerSecond) + formatDuration(p.remaining)
        let line = head + progressBar(Double(p.batch + 1) / Double(max(p.batches, 1)), room: terminalColumns() - head.count - tail.count) + tail
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + fitted(line)).utf8))
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

/// The width of the terminal on standard output, in columns (80 when it can't be asked).
func terminalColumns() -> Int {
    var size = winsize()
    guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
    return Int(size.ws_col)
}

/// `text` cut to fit one line of the terminal with the last column free, so a line redrawn
/// in place (`\r`) never wraps and never leaves a copy of itself behind.
func fitted(_ text: String, columns: Int = terminalColumns()) -> String {
    text.count < columns ? text : String(text.prefix(max(columns - 2, 0))) + "…"
}

/// A bar `done` (0…1) full, 24 cells wide where there is room, narrower (down to nothing)
/// where `room` columns are all that is left.
func progressBar(_ done: Double, room: Int) -> String {
    let width = min(24, room - 2)
    guard width >= 4 else { return "" }
    let filled = min(width, max(0, Int(Double(width) * done)))
    return String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
}
