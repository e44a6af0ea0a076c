import Foundation

/// Saving, loading and copying models. See `IO/FORMAT.md` for the file format.
///
/// A saved model is a directory:
///
/// - `model.json`: the architecture (format name and version, architecture name,
///   input shape, class count, and every node's name, kind, inputs and configuration);
/// - `model.safetensors`: every parameter and state tensor as `F32`, by dotted path in
///   PyTorch's naming and layouts (`features.0.weight`, `features.1.running_mean`);
/// - `masks.safetensors`: pruning masks by parameter path, only when some parameter has one.
extension Model {
    /// The `format` value of `model.json`.
    public static let fileFormat = "prunekit-model"
    /// The `version` of `model.json` this PruneKit writes; it reads this version and older.
    public static let fileFormatVersion = 1
    /// File names inside a saved model's directory.
    public static let architectureFileName = "model.json"
    public static let weightsFileName = "model.safetensors"
    public static let masksFileName = "masks.safetensors"
    /// The name `model.json` uses, in a node's `inputs`, for the model's input.
    public static let inputName = "input"

    /// Metadata keys PruneKit itself writes into `model.safetensors`.
    static let reservedMetadataKeys: Set<String> = ["format", "prunekit.format", "prunekit.version", "prunekit.architecture",
                                                     SparseLayout.metadataKey]

    // MARK: Save

    /// Saves the model to a directory (created if needed): `model.json`,
    /// `model.safetensors`, and `masks.safetensors` when some parameter has a pruning mask.
    ///
    /// Each file is written atomically (a temporary file in the same directory, renamed
    /// into place), weights first and `model.json` last, so an interrupted save never
    /// leaves a truncated file.
    ///
    /// - Parameter metadata: strings stored in `model.safetensors`' `__metadata__`
    ///   alongside PruneKit's own (`format`: `pt`, `prunekit.format`, `prunekit.version`,
    ///   `prunekit.architecture`); read them back with ``savedMetadata(in:)``.
    /// - Throws: ``PruneKitError``: `.invalidArgument` for a metadata key PruneKit
    ///   reserves, a node named `input`, or a non-finite configuration value; `.io` when
    ///   a file cannot be written.
    public func save(to directory: String, metadata: [String: String] = [:]) throws {
        try save(to: directory, metadata: metadata, storage: .dense)
    }

    /// Saves the model to a directory, storing each parameter dense or sparse as `storage` asks.
    ///
    /// With ``ParameterStorage/dense`` this is ``save(to:metadata:)``. Otherwise a parameter
    /// chosen for sparse storage is written to `model.safetensors` as a packed keep-bitmask
    /// `<path>.__mask` (`U8`) and its kept values `<path>.__values` (`F32`), its shape in
    /// `__metadata__["prunekit.sparse"]` (layout: `IO/FORMAT.md`); its pruning mask, if it
    /// has one, is that bitmask and is not written again to `masks.safetensors`. A weight
    /// whose kept elements follow an N:M pattern is written in the smaller N:M form where
    /// that is smaller (`<path>.__nm_codes` and `<path>.__values`; see ``ParameterStorage``).
    /// ``load(from:)`` reads either layout and restores the masks, so finetuning keeps the
    /// pruned weights at zero. At 90 % sparsity a sparse weight takes 0.1 × 4 + 1/8 bytes
    /// per element instead of 4 (8 with its dense mask): about 13 % (6.6 %) of dense.
    ///
    /// - Parameters:
    ///   - metadata: as in ``save(to:metadata:)``; the key `prunekit.sparse` is reserved too.
    ///   - storage: ``ParameterStorage/dense``, ``ParameterStorage/sparse`` or
    ///     ``ParameterStorage/automatic`` (sparse where smaller).
    /// - Throws: as ``save(to:metadata:)``.
    /// Cost: one pass over every parameter (two for sparse ones) and one write per file.
    public func save(to directory: String, metadata: [String: String] = [:], storage: ParameterStorage) throws {
        let reserved = metadata.keys.filter(Model.reservedMetadataKeys.contains).sorted()
        guard reserved.isEmpty else {
            throw PruneKitError(.invalidArgument, "the metadata key\(reserved.count > 1 ? "s" : "") \(reserved.map { "'\($0)'" }.joined(separator: ", ")) \(reserved.count > 1 ? "are" : "is") reserved by PruneKit",
                                hint: "choose other keys; PruneKit writes \(Model.reservedMetadataKeys.sorted().joined(separator: ", ")) itself")
        }
        let spec = try ArchitectureSpec(self)
        var payloads: [(name: String, payload: SafeTensors.Payload)] = []
        var masks: [(name: String, tensor: Tensor)] = []
        var sparse: [(String, JSONValue)] = []
        for (path, p) in namedParameters {
            if let form = SparseLayout.form(p, path: path, storage: storage) {
                var entry: [(String, JSONValue)] = [("shape", .array(p.value.shape.map(JSONValue.int))),
                                                    ("pruning_mask", .bool(p.mask != nil))]
                switch form {
                case .bitmask:
                    let packed = SparseLayout.pack(p.value, mask: p.mask)
                    payloads.append((path + SparseLayout.maskSuffix, .u8(shape: [packed.bits.count], bytes: packed.bits)))
                    payloads.append((path + SparseLayout.valuesSuffix, .f32(packed.values)))
                case let .nm(pattern):
                    let packed = SparseLayout.packNM(p.value, mask: p.mask, pattern: pattern)
                    payloads.append((path + SparseLayout.nmCodesSuffix, .u8(shape: [packed.codes.count], bytes: packed.codes)))
                    payloads.append((path + SparseLayout.valuesSuffix, .f32(packed.values)))
                    entry.append(("pattern", .array([.int(pattern.n), .int(pattern.m)])))
                }
                sparse.append((path, .object(entry)))
            } else {
                payloads.append((path, .f32(p.value)))
                if let m = p.mask { masks.append((path, m)) }
            }
        }
        let json = try spec.json(hasMasks: !masks.isEmpty)

        try FileIO.makeDirectory(directory)
        var fileMetadata = metadata
        fileMetadata["format"] = "pt"
        fileMetadata["prunekit.format"] = Model.fileFormat
        fileMetadata["prunekit.version"] = String(Model.fileFormatVersion)
        fileMetadata["prunekit.architecture"] = architecture
        if !sparse.isEmpty { fileMetadata[SparseLayout.metadataKey] = JSONValue.object(sparse).serialized() }
        try FileIO.writeAtomically(try SafeTensors.encode(payloads: payloads, metadata: fileMetadata),
                                   to: Model.path(directory, Model.weightsFileName))
        let masksPath = Model.path(directory, Model.masksFileName)
        if !masks.isEmpty {
            try SafeTensors.write(masks, metadata: ["prunekit.format": Model.fileFormat], to: masksPath)
        }
        try FileIO.writeAtomically(Array((json.serialized(pretty: true) + "\n").utf8),
                                   to: Model.path(directory, Model.architectureFileName))
        // A masks file left by an earlier save of a pruned model no longer applies
        // (model.json, written above, no longer names it).
        if masks.isEmpty, FileManager.default.fileExists(atPath: masksPath) {
            try? FileManager.default.removeItem(atPath: masksPath)
        }
    }

    // MARK: Load

    /// Loads a model saved by ``save(to:metadata:)`` or ``save(to:metadata:storage:)``.
    ///
    /// Sparse tensors are expanded to dense ones, and those saved with a pruning mask get
    /// it back (as do dense ones, from `masks.safetensors`).
    ///
    /// - Throws: ``PruneKitError``: `.invalidFile` when the directory or a file is
    ///   missing, `model.json` is malformed, of an unknown format or a newer version, or
    ///   describes layers that do not fit together; `.shapeMismatch` when the weights do
    ///   not fit the architecture (naming each path with expected and found shapes).
    public static func load(from directory: String) throws -> Model {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw PruneKitError(.invalidFile, "the model directory '\(directory)' does not exist",
                                hint: "give the directory that Model.save(to:) wrote (it holds \(architectureFileName) and \(weightsFileName))")
        }
        guard isDirectory.boolValue else {
            throw PruneKitError(.invalidFile, "'\(directory)' is a file, not a model directory",
                                hint: "give the directory that holds \(architectureFileName) and \(weightsFileName), not a file in it")
        }
        let jsonPath = path(directory, architectureFileName)
        let data = try FileIO.read(jsonPath, what: "the architecture file")
        let spec = try data.withUnsafeBytes { try ArchitectureSpec(json: $0, source: jsonPath) }
        let model = try spec.build(seed: 0, source: jsonPath)

        let weightsPath = path(directory, weightsFileName)
        let raw = try SafeTensors.readTyped(weightsPath)
        let metadata = raw.metadata
        let (tensors, sparseMasks) = try SparseLayout.densify(raw.tensors, dtypes: raw.dtypes, metadata: metadata, source: weightsPath)
        if let saved = metadata["prunekit.architecture"], saved != spec.architecture {
            throw PruneKitError(.invalidFile, "'\(weightsPath)' holds weights of a '\(saved)' model, but '\(jsonPath)' describes a '\(spec.architecture)' model",
                                hint: "the two files come from different saves; save the model again")
        }
        var masks = sparseMasks
        if spec.hasMasks {
            let masksPath = path(directory, masksFileName)
            for (name, mask) in try SafeTensors.read(masksPath).tensors {
                guard masks[name] == nil else {
                    throw PruneKitError(.invalidFile, "'\(name)' has a mask both in '\(masksPath)' and in the bitmask of its sparse tensor in '\(weightsPath)'",
                                        hint: "the two files come from different saves; save the model again")
                }
                masks[name] = mask
            }
        }
        try model.assign(tensors, masks: masks, source: weightsPath, nameMapping: [:], strict: true)
        return model
    }

    /// The metadata strings stored in a saved model's `model.safetensors` (PruneKit's
    /// own keys included).
    public static func savedMetadata(in directory: String) throws -> [String: String] {
        try SafeTensors.read(path(directory, weightsFileName)).metadata
    }

    /// Replaces this model's weights with those in a safetensors file, for example a
    /// PyTorch `state_dict` saved with `safetensors.torch.save_file`.
    ///
    /// A file with PruneKit's sparse tensors is read as dense values; the pruning masks
    /// they carry are not applied (``load(from:)`` restores them).
    ///
    /// Every tensor is checked before any is assigned: on any error nothing is loaded.
    /// Tensors named `….num_batches_tracked` (PyTorch's BatchNorm counter) are ignored
    /// when the model has no such path. Parameters with a pruning mask keep it: the
    /// mask is applied to the loaded values.
    ///
    /// - Parameters:
    ///   - nameMapping: renames tensors of the file to model paths, file name → model
    ///     path: `["fc3.weight": "classifier.4.weight"]`. A key ending in `.` renames a
    ///     prefix (`["module.": ""]` strips DataParallel's prefix, `["fc3.": "classifier.4."]`
    ///     renames both weight and bias); exact keys win over prefixes, longer prefixes
    ///     over shorter. Mapping an exact name to `""` ignores that tensor.
    ///   - strict: when `true` (the default), every model parameter must be in the file
    ///     and every tensor in the file must be used. When `false`, missing parameters
    ///     keep their values and extra tensors are ignored. A shape mismatch is always an error.
    /// - Throws: ``PruneKitError``: `.shapeMismatch` listing every path whose shape
    ///   differs (expected vs found), that is missing, or that the model lacks;
    ///   `.invalidArgument` when two tensors map to the same path; the file errors of
    ///   ``SafeTensors/read(_:)``.
    public func loadWeights(from safetensorsPath: String, nameMapping: [String: String] = [:], strict: Bool = true) throws {
        let raw = try SafeTensors.readTyped(safetensorsPath)
        let tensors = try SparseLayout.densify(raw.tensors, dtypes: raw.dtypes, metadata: raw.metadata, source: safetensorsPath).tensors
        try assign(tensors, masks: [:], source: safetensorsPath, nameMapping: nameMapping, strict: strict)
    }

    // MARK: Clone

    /// A deep copy: the same architecture and node names, with parameters (values and
    /// masks) copied into new, independent ``Parameter`` objects, and the same ``mode``.
    /// Observers are not copied. Works in memory; nothing touches the filesystem.
    ///
    /// - Throws: ``PruneKitError`` (`.invalidArgument`) when a layer cannot be rebuilt
    ///   from its kind and configuration (a custom layer whose configuration is incomplete).
    public func clone() throws -> Model {
        let copy = try ArchitectureSpec(self).build(seed: 0, source: nil)
        for (mine, theirs) in zip(namedParameters, copy.namedParameters) {
            guard mine.path == theirs.path, mine.parameter.value.shape == theirs.parameter.value.shape else {
                throw PruneKitError(.invalidArgument, "cannot clone '\(architecture)': the parameter '\(mine.path)' \(mine.parameter.value.shape) is rebuilt as '\(theirs.path)' \(theirs.parameter.value.shape)",
                                    hint: "the layer's `configuration` must describe it completely")
            }
            theirs.parameter.assign(Tensor(shape: mine.parameter.value.shape, scalars: mine.parameter.value.scalars))
            if let m = mine.parameter.mask { theirs.parameter.mask = Tensor(shape: m.shape, scalars: m.scalars) }
        }
        guard namedParameters.count == copy.namedParameters.count else {
            throw PruneKitError(.invalidArgument, "cannot clone '\(architecture)': its layers rebuild with \(copy.namedParameters.count) parameters instead of \(namedParameters.count)",
                                hint: "the layers' `configuration` must describe them completely")
        }
        copy.mode = mode
        return copy
    }

    // MARK: Internals

    static func path(_ directory: String, _ file: String) -> String {
        URL(fileURLWithPath: directory).appendingPathComponent(file).path
    }

    /// Checks every tensor against the model, then assigns them all (or throws having assigned none).
    func assign(_ tensors: [String: Tensor], masks: [String: Tensor], source: String,
                nameMapping: [String: String], strict: Bool) throws {
        let parameters = namedParameters
        let byPath = Dictionary(parameters.map { ($0.path, $0.parameter) }, uniquingKeysWith: { a, _ in a })

        // Rename the file's tensors to model paths.
        let prefixes = nameMapping.filter { $0.key.hasSuffix(".") }.sorted { $0.key.count > $1.key.count }
        func modelPath(_ name: String) -> String? {
            if let exact = nameMapping[name] { return exact.isEmpty ? nil : exact }
            for (from, to) in prefixes where name.hasPrefix(from) { return to + name.dropFirst(from.count) }
            return name
        }
        var incoming: [String: (file: String, tensor: Tensor)] = [:]
        var unexpected: [String] = [], collisions: [String] = []
        for name in tensors.keys.sorted() {
            guard let target = modelPath(name) else { continue }
            if byPath[target] == nil {
                if !name.hasSuffix("num_batches_tracked") { unexpected.append(name == target ? name : "\(name) (→ \(target))") }
                continue
            }
            if let earlier = incoming[target] {
                collisions.append("'\(earlier.file)' and '\(name)' both map to '\(target)'")
                continue
            }
            incoming[target] = (name, tensors[name]!)
        }
        guard collisions.isEmpty else {
            throw PruneKitError(.invalidArgument, "\(source): \(collisions.joined(separator: "; ")); nothing was loaded",
                                hint: "give each model path one tensor in nameMapping (file name → model path)")
        }
        if strict {
            let unusedMappings = nameMapping.keys.filter { !$0.hasSuffix(".") && tensors[$0] == nil }.sorted()
            if !unusedMappings.isEmpty {
                throw PruneKitError(.invalidArgument, "\(source): nameMapping renames \(Model.list(unusedMappings)), which the file does not hold; nothing was loaded",
                                    hint: "check the names in nameMapping against the file's tensor names")
            }
        }

        var mismatched: [String] = [], missing: [String] = []
        for (path, parameter) in parameters {
            guard let (file, tensor) = incoming[path] else { missing.append(path); continue }
            if tensor.shape != parameter.value.shape {
                mismatched.append("'\(path)' expects \(parameter.value.shape), found \(tensor.shape)" + (file == path ? "" : " (from '\(file)')"))
            }
        }
        var maskProblems: [String] = []
        for (path, mask) in masks.sorted(by: { $0.key < $1.key }) {
            guard let p = byPath[path] else { maskProblems.append("a mask for '\(path)', which the model does not have"); continue }
            if mask.shape != p.value.shape { maskProblems.append("the mask of '\(path)' expects \(p.value.shape), found \(mask.shape)") }
        }

        var problems: [String] = []
        if !mismatched.isEmpty { problems.append("shape mismatch: \(Model.list(mismatched, quoted: false))") }
        if strict, !missing.isEmpty { problems.append("missing: \(Model.list(missing))") }
        if strict, !unexpected.isEmpty { problems.append("not in the model: \(Model.list(unexpected))") }
        problems += maskProblems
        guard problems.isEmpty else {
            let onlyShapes = missing.isEmpty && unexpected.isEmpty || !strict
            throw PruneKitError(.shapeMismatch, "the weights in '\(source)' do not fit the model '\(architecture)' — \(problems.joined(separator: "; ")); nothing was loaded",
                                hint: onlyShapes
                                    ? "the weights come from a model of another shape (another input size, class count or pruned width); build the model that matches them"
                                    : "rename tensors with nameMapping (file name → model path), or pass strict: false to allow missing and extra tensors; the model's paths are \(Model.list(parameters.map(\.path)))")
        }

        for (path, parameter) in parameters {
            if let (_, tensor) = incoming[path] { parameter.assign(tensor) }
            if let mask = masks[path] { parameter.mask = mask } else { parameter.applyMask() }
        }
    }

    /// Up to 12 names, quoted, then how many more.
    static func list(_ names: [String], quoted: Bool = true) -> String {
        let shown = names.prefix(12).map { quoted ? "'\($0)'" : $0 }.joined(separator: ", ")
        return names.count > 12 ? "\(shown) and \(names.count - 12) more" : shown
    }
}

/// A model's architecture as `model.json` holds it.
struct ArchitectureSpec {
    struct Node {
        let name: String
        let kind: String
        let inputs: [String]
        let configuration: [String: Double]
    }

    var architecture: String
    var inputShape: [Int]
    var classCount: Int?
    var nodes: [Node]
    var hasMasks = false

    /// The architecture of a model.
    init(_ model: Model) throws {
        architecture = model.architecture
        inputShape = model.inputShape
        classCount = model.outputShape.count == 1 ? model.outputShape[0] : nil
        nodes = try model.nodes.map { node in
            guard node.name != Model.inputName else {
                throw PruneKitError(.invalidArgument, "a layer is named '\(Model.inputName)', the name model.json uses for the model's input",
                                    hint: "rename the layer")
            }
            return Node(name: node.name, kind: node.layer.kind.rawValue,
                        inputs: node.inputs.map { $0 == Model.inputIndex ? Model.inputName : model.nodes[$0].name },
                        configuration: node.layer.configuration)
        }
    }

    /// Builds the model, its weights freshly initialised from `seed`.
    func build(seed: UInt64, source: String?) throws -> Model {
        func fileError(_ message: String, _ kind: PruneKitError.Kind = .invalidFile, hint: String?) -> PruneKitError {
            guard let source else { return PruneKitError(.invalidArgument, message, hint: hint) }
            return PruneKitError(kind, "\(source): \(message)", hint: hint)
        }
        var indices: [String: Int] = [:]
        var built: [Model.Node] = []
        for (i, node) in nodes.enumerated() {
            let layer: Layer
            do {
                layer = try LayerFactory.make(kind: node.kind, configuration: node.configuration, nodeName: node.name, seed: seed)
            } catch let e as PruneKitError {
                throw fileError(e.message, hint: e.hint)
            }
            let inputs = try node.inputs.map { name -> Int in
                if name == Model.inputName { return Model.inputIndex }
                guard let j = indices[name] else {
                    throw fileError("node '\(node.name)' reads '\(name)', which is not an earlier node",
                                    hint: "each input must be \"\(Model.inputName)\" or the name of a node listed before it")
                }
                return j
            }
            guard indices[node.name] == nil else {
                throw fileError("two nodes are named '\(node.name)'", hint: "node names must be unique")
            }
            indices[node.name] = i
            built.append(Model.Node(name: node.name, layer: layer, inputs: inputs))
        }
        let model: Model
        do {
            model = try Model(architecture: architecture, inputShape: inputShape, nodes: built)
        } catch let e as PruneKitError {
            throw fileError("the layers do not fit together: \(e.message)", hint: e.hint ?? "the architecture file is inconsistent; save the model again")
        }
        if let classCount, model.outputShape != [classCount] {
            throw fileError("class_count is \(classCount) but the layers produce outputs of shape \(model.outputShape)",
                            hint: "the architecture file is inconsistent; save the model again")
        }
        return model
    }

    // MARK: JSON

    func json(hasMasks: Bool) throws -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("format", .string(Model.fileFormat)),
            ("version", .int(Model.fileFormatVersion)),
            ("architecture", .string(architecture)),
            ("input_shape", .array(inputShape.map(JSONValue.int))),
        ]
        if let classCount { members.append(("class_count", .int(classCount))) }
        members.append(("weights", .string(Model.weightsFileName)))
        if hasMasks { members.append(("masks", .string(Model.masksFileName))) }
        let nodeValues = try nodes.map { node -> JSONValue in
            let config = try node.configuration.sorted { $0.key < $1.key }.map { key, value -> (String, JSONValue) in
                guard let v = JSONValue.double(value) else {
                    throw PruneKitError(.invalidArgument, "layer '\(node.name)' has the configuration \(key) = \(value), which a file cannot hold",
                                        hint: "configuration values must be finite numbers")
                }
                return (key, v)
            }
            return .object([
                ("name", .string(node.name)),
                ("kind", .string(node.kind)),
                ("inputs", .array(node.inputs.map(JSONValue.string))),
                ("config", .object(config)),
            ])
        }
        members.append(("nodes", .array(nodeValues)))
        return .object(members)
    }

    /// Parses `model.json`; `source` names the file in errors.
    init(json bytes: UnsafeRawBufferPointer, source: String) throws {
        func invalid(_ message: String, hint: String = "the architecture file is damaged or was edited by hand; fix it or save the model again") -> PruneKitError {
            PruneKitError(.invalidFile, "\(source): \(message)", hint: hint)
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch let e as JSONValue.SyntaxError {
            throw invalid("not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard root.objectMembers != nil else { throw invalid("the file holds \(root.typeName), not a JSON object") }
        guard let format = root["format"]?.stringValue, format == Model.fileFormat else {
            throw invalid("\"format\" is \(root["format"]?.serialized() ?? "missing"), not \"\(Model.fileFormat)\"",
                          hint: "this is not a PruneKit model file")
        }
        guard let version = root["version"]?.intValue, version >= 1 else {
            throw invalid("\"version\" must be a positive integer, got \(root["version"]?.serialized() ?? "nothing")")
        }
        guard version <= Model.fileFormatVersion else {
            throw invalid("the file has format version \(version), but this PruneKit reads version \(Model.fileFormatVersion) and older",
                          hint: "upgrade PruneKit to load this model")
        }
        guard let architecture = root["architecture"]?.stringValue else { throw invalid("\"architecture\" is missing or not a string") }
        guard let shapeItems = root["input_shape"]?.arrayValue, !shapeItems.isEmpty,
              case let shape = shapeItems.compactMap(\.intValue), shape.count == shapeItems.count, shape.allSatisfy({ $0 > 0 && $0 < 1 << 31 }) else {
            throw invalid("\"input_shape\" must be a non-empty array of positive integers, got \(root["input_shape"]?.serialized() ?? "nothing")")
        }
        var classCount: Int?
        if let c = root["class_count"], c != .null {
            guard let n = c.intValue, n > 0 else { throw invalid("\"class_count\" must be a positive integer, got \(c.serialized())") }
            classCount = n
        }
        if let weights = root["weights"], weights.stringValue != Model.weightsFileName {
            throw invalid("\"weights\" is \(weights.serialized()); this PruneKit reads weights only from \"\(Model.weightsFileName)\"")
        }
        var hasMasks = false
        if let masks = root["masks"] {
            guard masks.stringValue == Model.masksFileName else {
                throw invalid("\"masks\" is \(masks.serialized()); this PruneKit reads masks only from \"\(Model.masksFileName)\"")
            }
            hasMasks = true
        }
        guard let nodeItems = root["nodes"]?.arrayValue, !nodeItems.isEmpty else {
            throw invalid("\"nodes\" must be a non-empty array of layers")
        }
        var nodes: [Node] = []
        for (i, item) in nodeItems.enumerated() {
            guard item.objectMembers != nil else { throw invalid("node \(i) is \(item.typeName), not an object") }
            guard let name = item["name"]?.stringValue, !name.isEmpty else { throw invalid("node \(i) has no \"name\" string") }
            guard let kind = item["kind"]?.stringValue else { throw invalid("node '\(name)' has no \"kind\" string") }
            guard let inputItems = item["inputs"]?.arrayValue, !inputItems.isEmpty,
                  case let inputs = inputItems.compactMap(\.stringValue), inputs.count == inputItems.count else {
                throw invalid("node '\(name)' needs \"inputs\": a non-empty array of node names (or \"\(Model.inputName)\")")
            }
            var configuration: [String: Double] = [:]
            if let config = item["config"] {
                guard let members = config.objectMembers else { throw invalid("node '\(name)': \"config\" is \(config.typeName), not an object") }
                for (key, value) in members {
                    guard let v = value.doubleValue, v.isFinite else {
                        throw invalid("node '\(name)': config \"\(key)\" is \(value.serialized()), not a finite number")
                    }
                    configuration[key] = v
                }
            }
            nodes.append(Node(name: name, kind: kind, inputs: inputs, configuration: configuration))
        }
        self.architecture = architecture
        self.inputShape = shape
        self.classCount = classCount
        self.nodes = nodes
        self.hasMasks = hasMasks
    }
}

/// Facts about saved model directories, read without building the model.
public enum ModelIO {
    /// The bytes of the files a saved model consists of: `model.json`, `model.safetensors`
    /// and, when `model.json` names it, `masks.safetensors` (other files in the directory,
    /// such as `training.json`, are not counted).
    ///
    /// - Throws: ``PruneKitError`` `.invalidFile` when the directory, `model.json` or a file
    ///   it names is missing or `model.json` is malformed.
    /// Cost: reads `model.json` and the sizes of the other files.
    public static func savedSize(of directory: String) throws -> Int {
        try savedFiles(of: directory).reduce(0) { $0 + $1.bytes }
    }

    /// The files a saved model consists of (see ``savedSize(of:)``), by file name with their bytes.
    /// - Throws: as ``savedSize(of:)``.
    public static func savedFiles(of directory: String) throws -> [(name: String, bytes: Int)] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw PruneKitError(.invalidFile, "'\(directory)' is not a model directory",
                                hint: "give the directory that Model.save(to:) wrote (it holds \(Model.architectureFileName) and \(Model.weightsFileName))")
        }
        let jsonPath = Model.path(directory, Model.architectureFileName)
        let data = try FileIO.read(jsonPath, what: "the architecture file")
        let spec = try data.withUnsafeBytes { try ArchitectureSpec(json: $0, source: jsonPath) }
        var names = [Model.architectureFileName, Model.weightsFileName]
        if spec.hasMasks { names.append(Model.masksFileName) }
        return try names.map { name in
            let p = Model.path(directory, name)
            guard let size = (try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? NSNumber else {
                throw PruneKitError(.invalidFile, "the saved model in '\(directory)' has no \(name)",
                                    hint: "the directory is incomplete; save the model again")
            }
            return (name, size.intValue)
        }
    }

    /// The dotted paths of the parameters a saved model stores sparse (see
    /// ``ParameterStorage``), in the file's order; empty for a dense file.
    /// - Throws: ``PruneKitError`` `.invalidFile` for a missing or malformed `model.safetensors`
    ///   or a malformed `prunekit.sparse` entry.
    public static func sparseTensors(in directory: String) throws -> [String] {
        let weightsPath = Model.path(directory, Model.weightsFileName)
        guard let text = try Model.savedMetadata(in: directory)[SparseLayout.metadataKey] else { return [] }
        guard let parsed = try? Array(text.utf8).withUnsafeBytes({ try JSONValue.parse($0) }), let members = parsed.objectMembers else {
            throw PruneKitError(.invalidFile, "\(weightsPath): the metadata entry '\(SparseLayout.metadataKey)' is not a JSON object",
                                hint: "the sparse tensors of this file are damaged; save the model again")
        }
        return members.map(\.0)
    }
}
