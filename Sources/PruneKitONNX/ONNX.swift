import Foundation
import PruneKit

/// Reads ONNX models into ordinary PruneKit ``Model``s and writes models back as ONNX.
///
/// An imported model prunes, trains, saves and loads like a zoo model: every ONNX operator
/// becomes one of the SDK's layers (or is dropped, as Dropout and Identity are), and the
/// layers are named after the original graph (`layer1.0.conv1`, from the initialiser
/// `layer1.0.conv1.weight`), so dotted paths match the PyTorch module that was exported.
///
/// The operators read are in ``supportedOperators``; the table that maps each to layers is
/// `ONNXOperators.table` (ONNXOperators.swift): adding an operator is one entry there.
public enum ONNX {
    /// The metadata key that holds {PruneKit parameter path: ONNX initialiser name} (JSON),
    /// written with an imported model so that an export keeps the original names.
    public static let initializerNamesKey = "prunekit.onnx-initializers"
    /// The metadata key that records the file a model was imported from.
    public static let sourceKey = "prunekit.onnx-source"

    /// The default-domain opsets this reader accepts. The operators it reads keep their
    /// meaning across these versions (later versions widen type support).
    public static let supportedOpsets = 11...28
    /// The opset written by ``exportData(_:initializerNames:)``.
    public static let exportOpset = 17

    /// The operator types (`op_type`) the importer reads, sorted.
    public static var supportedOperators: [String] { ONNXOperators.table.keys.sorted() }

    /// Whether `path` names an ONNX file (by its extension), as `--model` tells it from a
    /// saved model folder or a zoo name.
    public static func isONNXPath(_ path: String) -> Bool {
        path.lowercased().hasSuffix(".onnx")
    }
}

/// Settings for reading an ONNX model.
public struct ONNXImportOptions: Sendable, Equatable {
    /// The per-example input shape, `[C, H, W]` or `[F]`, for a graph whose input dimensions
    /// other than the batch are symbolic; `nil` takes them from the graph.
    public var inputShape: [Int]?

    public init(inputShape: [Int]? = nil) {
        self.inputShape = inputShape
    }
}

/// A model read from an ONNX file, and where its tensors came from.
public struct ONNXImportedModel {
    /// The model, in training mode like every new model (call `model.mode = .inference` to evaluate).
    public let model: Model
    /// The ONNX initialiser each PruneKit parameter was read from, by dotted path, for the
    /// parameters whose tensor is that initialiser unchanged (a transposed or scaled Gemm
    /// weight is not listed: its ONNX tensor is not the PruneKit one).
    public let initializerNames: [String: String]
    /// The default-domain opset the file declares.
    public let opset: Int
    /// The program that wrote the file (`producer_name` and `producer_version`).
    public let producer: String

    /// What to save with the model (``ONNX/initializerNamesKey``, ``ONNX/sourceKey``), so that
    /// an export of the saved model keeps the original initialiser names.
    public func metadata(source: String) -> [String: String] {
        var m = [ONNX.sourceKey: source]
        if let data = try? JSONSerialization.data(withJSONObject: initializerNames, options: [.sortedKeys]),
           let text = String(data: data, encoding: .utf8) {
            m[ONNX.initializerNamesKey] = text
        }
        return m
    }
}

extension ONNX {
    /// Reads the initialiser names that ``ONNXImportedModel/metadata(source:)`` stored.
    /// - Returns: {dotted path: initialiser name}; empty when `metadata` has none or they are unreadable.
    public static func initializerNames(fromMetadata metadata: [String: String]) -> [String: String] {
        guard let text = metadata[initializerNamesKey],
              let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String] else { return [:] }
        return object
    }
}
