import Foundation

/// A small JSON value for PruneKit's own files (safetensors headers, `model.json`).
///
/// PruneKit parses these itself rather than with `JSONSerialization` so that it can
/// reject duplicate keys (a safetensors header naming one tensor twice), keep integers
/// exact (byte offsets up to 2⁶⁴), keep the order of object members, and report where
/// in the text a syntax error is.
enum JSONValue: Equatable {
    case null
    case bool(Bool)
    /// The number's text as written, so integers are read exactly.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in file order; keys are unique (the parser rejects duplicates).
    case object([(String, JSONValue)])

    static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// A number from an integer.
    static func int(_ v: Int) -> JSONValue { .number(String(v)) }

    /// A number from a double: integral values as integers, values that are exactly a
    /// `Float` in `Float`'s shortest form (`1e-05`, not `9.999999747378752e-06`).
    /// Returns `nil` for infinities and NaN, which JSON cannot hold.
    static func double(_ v: Double) -> JSONValue? {
        guard v.isFinite else { return nil }
        if v == v.rounded(), abs(v) < 1e15 { return .number(String(Int64(v))) }
        if let f = Float(exactly: v) { return .number(String(describing: f)) }
        return .number(String(describing: v))
    }

    var objectMembers: [(String, JSONValue)]? { if case .object(let m) = self { return m } else { return nil } }
    var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    var doubleValue: Double? { if case .number(let s) = self { return Double(s) } else { return nil } }

    /// The value as an exact integer; `nil` for non-numbers, fractions and values out of range.
    var intValue: Int? {
        guard case .number(let s) = self else { return nil }
        if let i = Int(s) { return i }
        // `1e3` or `4.0` are integers too; accept them when exact.
        guard let d = Double(s), d == d.rounded(), abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }

    /// The member with this key.
    subscript(key: String) -> JSONValue? {
        objectMembers?.first { $0.0 == key }?.1
    }

    /// A short name for the value's type, for error messages.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    // MARK: Writing

    /// The value as JSON text: compact on one line, or indented by two spaces with
    /// values nested at most two deep (a shape, a model node with its config) kept on one line.
    func serialized(pretty: Bool = false) -> String {
        var out = ""
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    /// 0 for scalars, 1 + the deepest member for arrays and objects.
    private var nestingDepth: Int {
        switch self {
        case .array(let a): return 1 + (a.map(\.nestingDepth).max() ?? 0)
        case .object(let m): return 1 + (m.map(\.1.nestingDepth).max() ?? 0)
        default: return 0
        }
    }

    private func write(into out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let s): out += s
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            if !pretty || nestingDepth <= 2 {
                out += "["
                for (i, v) in a.enumerated() {
                    if i > 0 { out += pretty ? ", " : "," }
                    v.write(into: &out, pretty: pretty, indent: indent)
                }
                out += "]"
            } else {
                out += "[\n"
                for (i, v) in a.enumerated() {
                    out += String(repeating: " ", count: indent + 2)
                    v.write(into: &out, pretty: pretty, indent: indent + 2)
                    out += i + 1 < a.count ? ",\n" : "\n"
                }
                out += String(repeating: " ", count: indent) + "]"
            }
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            if !pretty || nestingDepth <= 2 {
                out += "{"
                for (i, (k, v)) in members.enumerated() {
                    if i > 0 { out += pretty ? ", " : "," }
                    JSONValue.writeString(k, into: &out)
                    out += pretty ? ": " : ":"
                    v.write(into: &out, pretty: pretty, indent: indent)
                }
                out += "}"
            } else {
                out += "{\n"
                for (i, (k, v)) in members.enumerated() {
                    out += String(repeating: " ", count: indent + 2)
                    JSONValue.writeString(k, into: &out)
                    out += ": "
                    v.write(into: &out, pretty: pretty, indent: indent + 2)
                    out += i + 1 < members.count ? ",\n" : "\n"
                }
                out += String(repeating: " ", count: indent) + "}"
            }
        }
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    // MARK: Parsing

    /// A syntax error: what is wrong and at which byte offset of the text.
    struct SyntaxError: Error {
        let message: String
        let offset: Int
        /// The key, when the error is a key repeated in the top-level object.
        var duplicateKey: String? = nil
    }

    /// Parses UTF-8 JSON text; trailing whitespace is allowed, anything else after the value is not.
    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSONValue {
        var p = Parser(bytes: bytes)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.i == bytes.count else { throw p.error("unexpected text after the JSON value") }
        return v
    }

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0) }
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var i = 0
        static let maxDepth = 64

        func error(_ message: String) -> SyntaxError { SyntaxError(message: message, offset: i) }

        mutating func skipWhitespace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ literal: String, _ v: JSONValue) throws -> JSONValue {
            for b in literal.utf8 {
                guard i < bytes.count, bytes[i] == b else { throw error("invalid literal (expected '\(literal)')") }
                i += 1
            }
            return v
        }

        mutating func value(depth: Int) throws -> JSONValue {
            guard depth < Parser.maxDepth else { throw error("nested more than \(Parser.maxDepth) levels deep") }
            guard i < bytes.count else { throw error("unexpected end of text") }
            switch bytes[i] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw error("unexpected character '\(Character(Unicode.Scalar(bytes[i])))'")
            }
        }

        mutating func object(depth: Int) throws -> JSONValue {
            i += 1
            var members: [(String, JSONValue)] = [], keys = Set<String>()
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object([]) }
            while true {
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
                let keyOffset = i
                let key = try string()
                guard keys.insert(key).inserted else {
                    throw SyntaxError(message: "the key \"\(key)\" appears twice in one object", offset: keyOffset,
                                      duplicateKey: depth == 0 ? key : nil)
                }
                skipWhitespace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
                i += 1
                skipWhitespace()
                members.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end of text in an object") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw error("expected ',' or '}' in an object")
            }
        }

        mutating func array(depth: Int) throws -> JSONValue {
            i += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array([]) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard i < bytes.count else { throw error("unexpected end of text in an array") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw error("expected ',' or ']' in an array")
            }
        }

        mutating func number() throws -> JSONValue {
            let start = i
            func digits(_ p: inout Parser) -> Int {
                let s = p.i
                while p.i < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.i]) { p.i += 1 }
                return p.i - s
            }
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits(&self) > 0 else { throw error("invalid number") }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits(&self) > 0 else { throw error("invalid number") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits(&self) > 0 else { throw error("invalid number") }
            }
            return .number(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count else { throw error("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw error("invalid \\u escape")
                }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }

        mutating func string() throws -> String {
            i += 1   // the opening quote
            var raw: [UInt8] = []
            while true {
                guard i < bytes.count else { throw error("unterminated string") }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw error("control character in a string") }
                if c != UInt8(ascii: "\\") { raw.append(c); i += 1; continue }
                i += 1
                guard i < bytes.count else { throw error("unterminated string") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): raw.append(0x22)
                case UInt8(ascii: "\\"): raw.append(0x5C)
                case UInt8(ascii: "/"): raw.append(0x2F)
                case UInt8(ascii: "b"): raw.append(0x08)
                case UInt8(ascii: "f"): raw.append(0x0C)
                case UInt8(ascii: "n"): raw.append(0x0A)
                case UInt8(ascii: "r"): raw.append(0x0D)
                case UInt8(ascii: "t"): raw.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard i + 2 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in a \\u escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in a \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw error("invalid \\u escape") }
                    raw.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw error("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
                }
            }
            guard let s = String(validating: raw, as: UTF8.self) else { throw error("a string is not valid UTF-8") }
            return s
        }
    }
}
