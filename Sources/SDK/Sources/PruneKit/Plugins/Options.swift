/// The type of a plugin option's value.
public enum OptionType: String, Sendable, Codable {
    case int, double, bool, string
}

/// A value given to a plugin option.
public enum OptionValue: Sendable, Equatable, CustomStringConvertible {
    case int(Int), double(Double), bool(Bool), string(String)

    public var description: String {
        switch self {
        case let .int(v): return String(v)
        case let .double(v): return String(v)
        case let .bool(v): return String(v)
        case let .string(v): return v
        }
    }
}

/// One option a plugin accepts: its name, type, default and a line of help.
public struct OptionSpec: Sendable, Equatable {
    public let name: String
    public let type: OptionType
    public let defaultValue: OptionValue
    public let help: String

    public init(_ name: String, _ type: OptionType, default defaultValue: OptionValue, help: String) {
        self.name = name; self.type = type; self.defaultValue = defaultValue; self.help = help
    }

    public static func int(_ name: String, default v: Int, help: String) -> OptionSpec { .init(name, .int, default: .int(v), help: help) }
    public static func double(_ name: String, default v: Double, help: String) -> OptionSpec { .init(name, .double, default: .double(v), help: help) }
    public static func bool(_ name: String, default v: Bool, help: String) -> OptionSpec { .init(name, .bool, default: .bool(v), help: help) }
    public static func string(_ name: String, default v: String, help: String) -> OptionSpec { .init(name, .string, default: .string(v), help: help) }

    /// `name=type (default): help`, for listings and error messages.
    public var summary: String { "\(name)=\(type.rawValue) (default \(defaultValue)): \(help)" }
}

/// The typed option values of one plugin instance, parsed from `key=value` text and
/// checked against the plugin's ``OptionSpec``s.
public struct OptionValues: Sendable, Equatable {
    public let specs: [OptionSpec]
    public private(set) var values: [String: OptionValue]

    /// Parses `key=value` settings for a plugin that declares `specs`.
    /// - Parameter owner: the plugin id, for error messages.
    /// - Throws: ``PruneKitError`` `.invalidArgument` for an unknown key, a malformed setting or a
    ///   value of the wrong type; the message lists the valid options.
    public init(parsing settings: [String], specs: [OptionSpec], owner: String) throws {
        self.specs = specs
        var values = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.defaultValue) })
        let valid = specs.isEmpty ? "'\(owner)' takes no options"
            : "valid options of '\(owner)':\n" + specs.map { "  " + $0.summary }.joined(separator: "\n")
        for setting in settings {
            guard let eq = setting.firstIndex(of: "="), eq != setting.startIndex else {
                throw PruneKitError(.invalidArgument, "option '\(setting)' of '\(owner)' is not of the form key=value", hint: valid)
            }
            let key = String(setting[..<eq]), text = String(setting[setting.index(after: eq)...])
            guard let spec = specs.first(where: { $0.name == key }) else {
                throw PruneKitError(.invalidArgument, "'\(owner)' has no option '\(key)'", hint: valid)
            }
            guard let value = OptionValues.parse(text, as: spec.type) else {
                throw PruneKitError(.invalidArgument, "option '\(key)' of '\(owner)' needs a value of type \(spec.type.rawValue), got '\(text)'", hint: valid)
            }
            values[key] = value
        }
        self.values = values
    }

    /// The defaults of `specs`.
    public init(defaultsOf specs: [OptionSpec]) {
        self.specs = specs
        values = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.defaultValue) })
    }

    static func parse(_ text: String, as type: OptionType) -> OptionValue? {
        switch type {
        case .int: return Int(text).map(OptionValue.int)
        case .double: return Double(text).flatMap { $0.isFinite ? OptionValue.double($0) : nil }
        case .bool:
            switch text.lowercased() {
            case "true", "yes", "1", "on": return .bool(true)
            case "false", "no", "0", "off": return .bool(false)
            default: return nil
            }
        case .string: return .string(text)
        }
    }

    /// The value of an `int` option (0 if the plugin did not declare it).
    public func int(_ name: String) -> Int { if case let .int(v)? = values[name] { return v }; return 0 }
    /// The value of a `double` option (an `int` value is widened).
    public func double(_ name: String) -> Double {
        switch values[name] {
        case let .double(v)?: return v
        case let .int(v)?: return Double(v)
        default: return 0
        }
    }
    public func bool(_ name: String) -> Bool { if case let .bool(v)? = values[name] { return v }; return false }
    public func string(_ name: String) -> String { if case let .string(v)? = values[name] { return v }; return "" }
}
