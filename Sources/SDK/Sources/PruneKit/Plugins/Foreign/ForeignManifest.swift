import Foundation

/// The C type of one parameter of a C criterion's scoring function, as a manifest names it.
public enum ForeignArgumentType: String, Sendable, CaseIterable {
    case floatPointer = "float*"
    case constFloatPointer = "const float*"
    case int64, int32, double, float
}

/// What PruneKit passes for one parameter of a C criterion's scoring function.
public enum ForeignArgumentValue: Sendable, Equatable, CustomStringConvertible {
    /// The layer's weights, `[outputs · fanIn]` row-major (`const float*`).
    case weights
    /// ∂L/∂W, the same shape (`const float*`); needs the `weight-gradients` evidence.
    case weightGradient
    /// The layer's bias, `[outputs]`, or NULL when it has none (`const float*`).
    case bias
    /// Output channels, fan-in, and the number of scores to write (`int64` or `int32`).
    case outputs, fanIn, scoreCount
    /// The buffer the function writes its scores to (`float*`).
    case scores
    /// The value of an option declared in the manifest's `options`.
    case option(String)

    /// The names a manifest uses, without `option:NAME`.
    public static let names: [(String, ForeignArgumentValue)] = [
        ("weights", .weights), ("weight-gradient", .weightGradient), ("bias", .bias),
        ("outputs", .outputs), ("fan-in", .fanIn), ("score-count", .scoreCount), ("scores", .scores),
    ]

    init?(name: String) {
        if name.hasPrefix("option:") {
            self = .option(String(name.dropFirst("option:".count)))
        } else if let v = ForeignArgumentValue.names.first(where: { $0.0 == name })?.1 {
            self = v
        } else {
            return nil
        }
    }

    public var description: String {
        if case let .option(name) = self { return "option:" + name }
        return ForeignArgumentValue.names.first { $0.1 == self }!.0
    }
}

/// One parameter of a C criterion's scoring function: its C type and what PruneKit passes.
public struct ForeignArgument: Sendable, Equatable {
    public let type: ForeignArgumentType
    public let value: ForeignArgumentValue
    /// The parameter's name in the C source, if the manifest gives one (for messages only).
    public let name: String?
}

/// The return type of a C criterion's scoring function.
public enum ForeignReturnType: String, Sendable, CaseIterable {
    /// Nothing: the function cannot fail.
    case void
    /// A status: 0 for success, anything else fails the criterion with that code.
    case int32
}

/// A C criterion's JSON manifest, checked, with its library loaded and its call prepared.
///
/// The format is documented in `Plugins/Foreign/MANIFEST.md`. Every error (the JSON, the
/// declared arguments, the library, the symbol) is found here, before any call:
/// ``PruneKitError`` `.plugin`, naming the manifest file.
public final class ForeignCriterionManifest: @unchecked Sendable {
    /// The manifest file, as given.
    public let file: String
    public let id: String
    public let summary: String
    /// The criterion's own version (`version`, default `0`).
    public let version: String
    /// The shared library, resolved against the manifest's directory.
    public let libraryPath: String
    /// The scoring function's name.
    public let symbol: String
    public let granularity: Granularity
    public let evidence: Evidence
    /// The options users set as `key=value`.
    public let options: [OptionSpec]
    /// The scoring function's parameters, in order.
    public let arguments: [ForeignArgument]
    public let returnType: ForeignReturnType
    /// The loaded function and its prepared libffi call.
    let function: ForeignFunction

    static let keys: Set = ["id", "summary", "version", "library", "symbol", "granularity", "evidence",
                            "options", "arguments", "return"]
    static let supportedEvidence: Evidence = [.weightGradients]

    /// Reads and checks the manifest at `path`, loads its library (never unloaded) and
    /// prepares the call.
    /// - Throws: ``PruneKitError`` `.plugin` naming `path`, for any problem.
    public init(contentsOf path: String) throws {
        file = path
        func fail(_ message: String, hint: String? = nil) -> PruneKitError {
            PruneKitError(.plugin, "C criterion manifest \(path): \(message)", hint: hint)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw fail("cannot read the file")
        }
        let top: JSONValue
        do {
            top = try JSONValue.parse([UInt8](data))
        } catch let error as JSONValue.SyntaxError {
            throw fail("invalid JSON: \(error.message) (at byte \(error.offset))")
        }
        guard let members = top.objectMembers else { throw fail("invalid JSON: the top level must be an object") }
        if let unknown = members.map(\.0).first(where: { !Self.keys.contains($0) }) {
            throw fail("unknown key '\(unknown)'", hint: "keys: \(Self.keys.sorted().joined(separator: ", "))")
        }

        func string(_ key: String, default value: String? = nil) throws -> String {
            switch top[key] {
            case let .string(s)?: return s
            case nil: if let value { return value }; throw fail("missing '\(key)'")
            default: throw fail("'\(key)' must be a string")
            }
        }
        id = try string("id")
        guard !id.isEmpty else { throw fail("'id' is empty") }
        summary = try string("summary", default: "")
        version = try string("version", default: "0")
        symbol = try string("symbol")
        guard !symbol.isEmpty else { throw fail("'symbol' is empty") }
        let library = try string("library")
        guard !library.isEmpty else { throw fail("'library' is empty") }

        let granularityName = try string("granularity")
        guard let granularity = Granularity(rawValue: granularityName) else {
            throw fail("unknown granularity '\(granularityName)'", hint: "granularity: weight or channel")
        }
        self.granularity = granularity

        // Evidence.
        var evidence: Evidence = []
        switch top["evidence"] {
        case nil: break
        case let .array(items)?:
            for item in items {
                guard case let .string(name) = item else { throw fail("'evidence' must be a list of names") }
                guard let e = Evidence.names.first(where: { $0.0 == name })?.1 else {
                    throw fail("unknown evidence '\(name)'", hint: "known: \(Evidence.names.map(\.0).joined(separator: ", "))")
                }
                guard Self.supportedEvidence.contains(e) else {
                    throw fail("evidence '\(name)' is not supported for C criteria yet",
                               hint: "supported: \(Self.supportedEvidence.names.joined(separator: ", ")); write the criterion in Swift to use it")
                }
                evidence.insert(e)
            }
        default: throw fail("'evidence' must be a list of names")
        }
        self.evidence = evidence

        // Options.
        var options: [OptionSpec] = []
        switch top["options"] {
        case nil: break
        case let .array(items)?:
            for (i, item) in items.enumerated() {
                options.append(try Self.option(item, number: i + 1, fail: fail))
                if options.dropLast().contains(where: { $0.name == options.last!.name }) {
                    throw fail("option '\(options.last!.name)' is declared twice")
                }
            }
        default: throw fail("'options' must be a list of objects")
        }
        self.options = options

        // Arguments.
        guard let argumentsJSON = top["arguments"] else { throw fail("missing 'arguments'") }
        guard case let .array(items) = argumentsJSON else { throw fail("'arguments' must be a list of objects") }
        var arguments: [ForeignArgument] = []
        for (i, item) in items.enumerated() {
            arguments.append(try Self.argument(item, number: i + 1, options: options, evidence: evidence, fail: fail))
        }
        switch arguments.filter({ $0.value == .scores }).count {
        case 0: throw fail("no argument receives the scores",
                           hint: "add {\"type\": \"float*\", \"value\": \"scores\"} where the function takes its output buffer")
        case 1: break
        default: throw fail("more than one argument receives 'scores'")
        }
        self.arguments = arguments

        let returnName = try string("return", default: "void")
        guard let returnType = ForeignReturnType(rawValue: returnName) else {
            throw fail("unknown return type '\(returnName)'", hint: "return: void or int32 (non-zero: the criterion failed)")
        }
        self.returnType = returnType

        // The library and the symbol.
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        libraryPath = library.hasPrefix("/") ? library : directory.appendingPathComponent(library).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: libraryPath, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw fail("library file not found: \(libraryPath)",
                       hint: "'library' is resolved against the manifest's directory; build it first (see Templates/c-criterion/README.md)")
        }
        function = try ForeignFunction(library: libraryPath, symbol: symbol, arguments: arguments.map(\.type),
                                       returnType: returnType, fail: fail)
    }

    private static func option(_ item: JSONValue, number: Int,
                               fail: (String, String?) -> PruneKitError) throws -> OptionSpec {
        guard let keys = item.objectMembers?.map(\.0) else { throw fail("option \(number) must be an object", nil) }
        let o = item
        if let unknown = keys.first(where: { !["name", "type", "default", "help"].contains($0) }) {
            throw fail("option \(number): unknown key '\(unknown)'", "option keys: name, type, default, help")
        }
        guard case let .string(name)? = o["name"], !name.isEmpty,
              name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            throw fail("option \(number): 'name' must be a name of letters, digits, '-' and '_'", nil)
        }
        guard case let .string(typeName)? = o["type"] else { throw fail("option '\(name)': missing 'type'", nil) }
        let help: String
        switch o["help"] {
        case nil: help = ""
        case let .string(s)?: help = s
        default: throw fail("option '\(name)': 'help' must be a string", nil)
        }
        guard let defaultJSON = o["default"] else { throw fail("option '\(name)': missing 'default'", nil) }
        var value: OptionValue?
        switch typeName {
        case "int": value = defaultJSON.intValue.map(OptionValue.int)
        case "double": value = defaultJSON.doubleValue.flatMap { $0.isFinite ? OptionValue.double($0) : nil }
        case "bool": if case let .bool(v) = defaultJSON { value = .bool(v) }
        case "string":
            throw fail("option '\(name)': string options cannot be passed to C", "option types: int, double, bool")
        default:
            throw fail("option '\(name)': unknown type '\(typeName)'", "option types: int, double, bool")
        }
        guard let value else {
            throw fail("option '\(name)': the default \(defaultJSON.serialized()) is not a value of type \(typeName)", nil)
        }
        return OptionSpec(name, OptionType(rawValue: typeName)!, default: value, help: help)
    }

    private static func argument(_ item: JSONValue, number: Int, options: [OptionSpec], evidence: Evidence,
                                 fail: (String, String?) -> PruneKitError) throws -> ForeignArgument {
        guard let keys = item.objectMembers?.map(\.0) else { throw fail("argument \(number) must be an object", nil) }
        let o = item
        if let unknown = keys.first(where: { !["type", "value", "name"].contains($0) }) {
            throw fail("argument \(number): unknown key '\(unknown)'", "argument keys: type, value, name")
        }
        var label = "argument \(number)"
        switch o["name"] {
        case nil: break
        case let .string(s)?: label += " (\(s))"
        default: throw fail("\(label): 'name' must be a string", nil)
        }
        guard case let .string(typeName)? = o["type"] else { throw fail("\(label): missing 'type'", nil) }
        guard let type = ForeignArgumentType(rawValue: typeName) else {
            throw fail("\(label): unknown type '\(typeName)'",
                       "types: \(ForeignArgumentType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard case let .string(valueName)? = o["value"] else { throw fail("\(label): missing 'value'", nil) }
        guard let value = ForeignArgumentValue(name: valueName) else {
            throw fail("\(label): unknown value '\(valueName)'",
                       "values: \(ForeignArgumentValue.names.map(\.0).joined(separator: ", ")), option:NAME")
        }
        let allowed: [ForeignArgumentType]
        switch value {
        case .weights, .weightGradient, .bias: allowed = [.constFloatPointer]
        case .scores: allowed = [.floatPointer]
        case .outputs, .fanIn, .scoreCount: allowed = [.int64, .int32]
        case let .option(name):
            guard let spec = options.first(where: { $0.name == name }) else {
                throw fail("\(label): option '\(name)' is not declared in 'options'",
                           "declare it: {\"name\": \"\(name)\", \"type\": \"double\", \"default\": 1.0, \"help\": \"…\"}")
            }
            switch spec.type {
            case .int, .bool: allowed = [.int64, .int32]
            case .double: allowed = [.double, .float]
            case .string: allowed = []
            }
        }
        guard allowed.contains(type) else {
            throw fail("\(label): '\(valueName)' is passed as \(allowed.map(\.rawValue).joined(separator: " or ")), not \(typeName)", nil)
        }
        if value == .weightGradient && !evidence.contains(.weightGradients) {
            throw fail("\(label): 'weight-gradient' needs \"weight-gradients\" in 'evidence'", nil)
        }
        return ForeignArgument(type: type, value: value, name: { if case let .string(s)? = o["name"] { return s }; return nil }())
    }
}
