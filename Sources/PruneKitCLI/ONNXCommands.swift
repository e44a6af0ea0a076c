import ArgumentParser
import Foundation
import PruneKit
import PruneKitHarness
import PruneKitONNX

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert an ONNX model into a saved PruneKit model and print its per-layer table.",
        discussion: """
            Every layer keeps the name of the module it was exported from (layer1.0.conv1), and the saved model \
            remembers the original initialiser names, which `prunekit export` writes back. Any command's --model \
            also takes the .onnx file directly. Operators read: \(ONNX.supportedOperators.joined(separator: ", ")).
            Example: prunekit import resnet.onnx --out runs/resnet
            """)

    @Argument(help: "The ONNX file.") var file: String
    @Option(help: "Folder to save the model in.") var out: String
    @Option(help: ArgumentHelp("The per-example input shape, for a graph whose height and width are symbolic, such as 3x224x224.",
                               valueName: "CxHxW"))
    var inputShape: String?
    @Option(help: "Output format of the per-layer table.") var format: OutputFormat = .table

    func validate() throws {
        try reportingErrors { _ = try parsedInputShape() }
    }

    private func parsedInputShape() throws -> [Int]? {
        guard let inputShape else { return nil }
        let parts = inputShape.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard !parts.isEmpty, parts.count <= 3, parts.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw PruneKitError(.invalidArgument, "--input-shape '\(inputShape)' is not a shape such as 3x224x224",
                                hint: "give the per-example shape without the batch: CxHxW, or F for vectors")
        }
        return parts.map { $0! }
    }

    func run() throws {
        try reportingErrors {
            let imported = try ONNX.importModel(contentsOf: file, options: ONNXImportOptions(inputShape: try parsedInputShape()))
            try imported.model.save(to: out, metadata: imported.metadata(source: file))
            if format == .table {
                print("imported \(file) (opset \(imported.opset)\(imported.producer.isEmpty ? "" : ", written by \(imported.producer)")): "
                      + "\(imported.model.nodes.count) layer\(imported.model.nodes.count == 1 ? "" : "s"), input \(imported.model.inputShape.map(String.init).joined(separator: "×")), saved to \(out)")
            }
        }
        var inspect = try Inspect.parse(["--model", out, "--format", format.rawValue])
        try inspect.run()
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model as ONNX (opset \(ONNX.exportOpset)).",
        discussion: """
            A channel-pruned model is written as it is, physically narrower; an unstructured-pruned one dense, its \
            masks applied (its small form is the sparse safetensors file that prune saves). Initialisers keep the \
            names of the ONNX model a model was imported from, where the tensor survives; the others are named by \
            their dotted path. The graph's input is `input` [batch, C, H, W], its output `output` [batch, classes].
            Example: prunekit export --model runs/resnet-x2 --onnx resnet-x2.onnx
            """)

    @Option(help: "A saved model folder, an ONNX file, or a zoo name (freshly initialised).") var model: String
    @Option(help: "The ONNX file to write.") var onnx: String
    @Option(help: "For a zoo model: the data set whose input shape and classes to use.")
    var dataset: String = DatasetCatalog.defaultName

    func run() throws {
        try reportingErrors {
            let source = try ModelSource.load(model) {
                let (shape, classes) = try Inspect.inputShape(of: dataset)
                return (shape, classes, 0)
            }
            let net = source.model
            try ONNX.export(net, to: onnx, initializerNames: source.onnxInitializerNames)
            let bytes = (try? FileManager.default.attributesOfItem(atPath: onnx)[.size] as? Int) ?? 0
            print("wrote \(onnx): opset \(ONNX.exportOpset), input \(net.inputShape.map(String.init).joined(separator: "×")), "
                  + "\(Units.count(net.parameterCount)) parameters, \(Units.macs(net.macs)), \(Units.bytes(bytes))")
        }
    }
}
