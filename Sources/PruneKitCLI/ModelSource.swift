import Foundation
import PruneKit
import PruneKitONNX

/// What `--model` names: a saved model folder, an ONNX file, or a zoo name. The one place
/// the commands turn that option into a model.
struct ModelSource {
    enum Origin: Equatable {
        /// A folder written by `Model.save` (train, prune, import).
        case saved
        /// An `.onnx` file, imported on the fly.
        case onnx
        /// A zoo name, freshly initialised.
        case zoo
    }

    let model: Model
    let origin: Origin
    /// The saved model's metadata; for an ONNX file, what `prunekit import` would save with it.
    let metadata: [String: String]

    /// The ONNX initialiser names to keep on export.
    var onnxInitializerNames: [String: String] { ONNX.initializerNames(fromMetadata: metadata) }

    /// Loads `name`.
    /// - Parameters:
    ///   - zoo: the input shape and class count a zoo model is built for, and its seed; `nil`
    ///     when the command takes no zoo name.
    /// - Throws: ``PruneKitError`` for a name that is none of the three, with a hint listing them.
    static func load(_ name: String, zoo: (() throws -> (shape: [Int], classes: Int, seed: UInt64))?) throws -> ModelSource {
        if ONNX.isONNXPath(name) {
            let imported = try ONNX.importModel(contentsOf: name)
            return ModelSource(model: imported.model, origin: .onnx, metadata: imported.metadata(source: name))
        }
        if FileManager.default.fileExists(atPath: name) {
            let model = try Model.load(from: name)
            return ModelSource(model: model, origin: .saved, metadata: (try? Model.savedMetadata(in: name)) ?? [:])
        }
        guard let zoo, ModelZoo.names.contains(name) else { throw unknown(name, zooAllowed: zoo != nil) }
        let (shape, classes, seed) = try zoo()
        return ModelSource(model: try ModelZoo.make(name, inputShape: shape, classCount: classes, seed: seed),
                           origin: .zoo, metadata: [:])
    }

    /// The error for a `--model` that names nothing PruneKit reads.
    static func unknown(_ name: String, zooAllowed: Bool) -> PruneKitError {
        PruneKitError(.invalidArgument, "'\(name)' is neither a saved model folder, an ONNX file (.onnx)" + (zooAllowed ? " nor a zoo model" : ""),
                      hint: zooAllowed ? "zoo models: \(ModelZoo.names.joined(separator: ", "))"
                                       : "give a folder written by prunekit train, prune or import, or a .onnx file")
    }

    /// The metadata keys a derived model (pruned, finetuned) carries over from this one:
    /// where it came from in ONNX, so that its export keeps the original initialiser names.
    var inheritedMetadata: [String: String] {
        metadata.filter { $0.key == ONNX.initializerNamesKey || $0.key == ONNX.sourceKey }
    }
}
