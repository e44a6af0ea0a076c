import ArgumentParser
import Foundation
import PruneKit

struct New: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Create a plugin package — a criterion, a schedule or a finetuning strategy — that builds, tests and loads out of the box.",
        discussion: """
        Copies Templates/criterion/, Templates/schedule/ or Templates/finetuning/ of the PruneKit checkout this \
        prunekit was built from, naming the plugin's type NAME and its id the kebab-case of NAME \
        (MyFilter → my-filter) unless --id is given. The new package depends on that checkout's SDK by absolute path.

        Examples:
          prunekit new criterion MyFilter --dir ../MyFilter
          prunekit new schedule MyRamp --dir ../MyRamp
          prunekit new finetune MyFinetune --dir ../MyFinetune
        """
    )

    @Argument(help: "What the plugin adds to PruneKit.")
    var kind: PluginScaffold.Kind

    @Argument(help: "The plugin's Swift type name, in CamelCase (MyFilter).")
    var name: String

    @Option(help: "The id users name it by (default: NAME in kebab-case).")
    var id: String?

    @Option(help: "The package directory to create (default: ./NAME). It must not exist or be empty.")
    var dir: String?

    @Option(help: "The PruneKit checkout to take the templates and the SDK from (default: the one this prunekit was built in, else one above the current directory).")
    var prunekitRoot: String?

    func run() throws {
        try reportingErrors {
            let scaffold = try PluginScaffold(kind: kind, name: name, id: id)
            let root = try prunekitRoot.map { try PluginScaffold.checkRoot($0, for: kind) } ?? PluginScaffold.findRoot(for: kind)
            let destination = URL(fileURLWithPath: dir ?? name).standardizedFileURL
            try scaffold.write(from: root, to: destination)
            let path = destination.path
            let library = "\(path)/.build/release/lib\(scaffold.name).so"
            print("""
            Created the \(kind.noun) \(scaffold.name) (id '\(scaffold.id)') in \(path)
            from \(root.path)/\(kind.templatePath).

            Next steps:
              cd \(path)
              swift build -c release    # → .build/release/lib\(scaffold.name).so
              swift test                # \(kind.testsDo)
              \(kind.tryIt(id: scaffold.id, library: library))
            Edit Sources/\(scaffold.name)Plugin/\(scaffold.name).swift to write your \(kind.noun).
            """)
        }
    }
}

/// Writes a plugin package from a template of a PruneKit checkout: `Templates/criterion/`,
/// `Templates/schedule/` or `Templates/finetuning/`, one code path for every kind.
///
/// Templates are found in the checkout rather than embedded in the executable because
/// the generated package must depend on a checkout's SDK by path anyway: taking both
/// from the same checkout keeps the template and the SDK it was written for in step.
/// The checkout is found by walking up from the real path of the running executable
/// (`.build/<config>/prunekit` sits inside it), then from the current directory;
/// `--prunekit-root` overrides both.
struct PluginScaffold {
    /// The kinds of plugin `prunekit new` writes, each from its own template directory.
    enum Kind: String, CaseIterable, ExpressibleByArgument {
        case criterion, schedule, finetune

        /// The template's directory, relative to the checkout.
        var templatePath: String {
            switch self {
            case .criterion: return "Templates/criterion"
            case .schedule: return "Templates/schedule"
            case .finetune: return "Templates/finetuning"
            }
        }

        /// What the kind is called in messages.
        var noun: String {
            switch self {
            case .criterion: return "criterion"
            case .schedule: return "schedule"
            case .finetune: return "finetuning strategy"
            }
        }

        /// What the template's tests check, for the next-steps message.
        var testsDo: String {
            switch self {
            case .criterion: return "runs PruneKit's conformance checker on it"
            case .schedule: return "checks its sparsities and its entry point"
            case .finetune: return "runs it on a small pruned model and checks the masks survive"
            }
        }

        /// A command that loads the built plugin into prunekit and uses it.
        func tryIt(id: String, library: String) -> String {
            switch self {
            case .criterion:
                return "prunekit score --criterion \(id) --model lenet-5 --plugin \(library)"
            case .schedule:
                return "prunekit prune --model lenet-5 --epochs 1 --criterion l1-filter --compression 2 --schedule \(id) --plugin \(library) --out lenet5-\(id)"
            case .finetune:
                return "prunekit prune --model lenet-5 --epochs 1 --criterion l1-filter --compression 2 --finetune \(id) --plugin \(library) --out lenet5-\(id)"
            }
        }
    }

    let kind: Kind
    let name: String
    let id: String

    /// The placeholders the template files and file names use.
    static let placeholders = ["__NAME__", "__ID__", "__SDK_PATH__", "__TESTING_PATH__"]

    /// Type names that would shadow the SDK's or Swift's own inside the plugin module
    /// (those the templates use, for every kind).
    static let reserved: Set<String> = ["Self", "Any", "Type", "Protocol", "PruneKit", "PruneKitTesting", "Criterion",
                                        "Schedule", "FinetuneStrategy", "FinetuneContext", "Tensor", "Registry", "Model",
                                        "ModelZoo", "Layer", "Dataset", "DatasetCatalog", "Evidence", "Granularity",
                                        "PluginEntry", "OptionSpec", "OptionValues", "PruneKitError", "TrainingConfiguration",
                                        "PrunableLayer", "ScoringContext", "RandomGenerator", "SDKLinkage"]

    init(kind: Kind, name: String, id: String?) throws {
        let hint = "a \(kind.noun) name is a Swift type name in CamelCase: a capital letter, then letters and digits (MyFilter, TaylorFO2)"
        guard let first = name.unicodeScalars.first, ("A"..."Z").contains(first),
              name.unicodeScalars.allSatisfy({ ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) }) else {
            throw PruneKitError(.invalidArgument, "'\(name)' is not a CamelCase Swift identifier", hint: hint)
        }
        guard !PluginScaffold.reserved.contains(name) else {
            throw PruneKitError(.invalidArgument, "'\(name)' would shadow a Swift or PruneKit type of the same name", hint: "choose a more specific name, e.g. My\(name)")
        }
        self.kind = kind
        self.name = name
        self.id = id ?? PluginScaffold.kebabCase(name)
        guard let head = self.id.unicodeScalars.first, ("a"..."z").contains(head) || ("0"..."9").contains(head),
              self.id.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }) else {
            throw PruneKitError(.invalidArgument, "'\(self.id)' is not a valid \(kind.noun) id",
                                hint: "ids are lower case: letters, digits, '-', '_' and '.', starting with a letter or digit (my-filter)")
        }
    }

    /// `MyL1Filter` → `my-l1-filter`, `HTTPScore` → `http-score`.
    static func kebabCase(_ name: String) -> String {
        let chars = Array(name)
        var out = ""
        for (i, c) in chars.enumerated() {
            if i > 0, c.isUppercase {
                let prev = chars[i - 1]
                let nextIsLower = i + 1 < chars.count && chars[i + 1].isLowercase
                if prev.isLowercase || prev.isNumber || (prev.isUppercase && nextIsLower) { out.append("-") }
            }
            out.append(contentsOf: c.lowercased())
        }
        return out
    }

    /// A directory is a PruneKit checkout for `kind` when it has that kind's template and the SDK package.
    static func isRoot(_ url: URL, for kind: Kind) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: url.appendingPathComponent("\(kind.templatePath)/Package.swift").path)
            && fm.fileExists(atPath: url.appendingPathComponent("Sources/SDK/Package.swift").path)
            && fm.fileExists(atPath: url.appendingPathComponent("Sources/PruneKitTesting/Package.swift").path)
    }

    static func checkRoot(_ path: String, for kind: Kind) throws -> URL {
        let url = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        guard isRoot(url, for: kind) else {
            throw PruneKitError(.invalidArgument, "\(url.path) is not a PruneKit checkout with a \(kind.noun) template (no \(kind.templatePath) or Sources/SDK in it)",
                                hint: "give --prunekit-root the directory of PruneKit's top-level Package.swift")
        }
        return url
    }

    static func findRoot(for kind: Kind) throws -> URL {
        var starts: [URL] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        } else if let exe = Bundle.main.executableURL {
            starts.append(exe.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        starts.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                if isRoot(dir, for: kind) { return dir }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        throw PruneKitError(.invalidFile, "cannot find PruneKit's \(kind.noun) template (\(kind.templatePath)) above \(starts.map(\.path).joined(separator: " or "))",
                            hint: "run the prunekit built in a PruneKit checkout, or pass --prunekit-root PATH-TO-CHECKOUT")
    }

    /// Copies the template into `destination`, substituting the placeholders in file names
    /// and contents. Writes into a temporary sibling first and renames it, so a failure
    /// leaves nothing half-written.
    func write(from root: URL, to destination: URL) throws {
        let fm = FileManager.default
        let template = root.appendingPathComponent(kind.templatePath)
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: destination.path, isDirectory: &isDir) {
            let contents = (try? fm.contentsOfDirectory(atPath: destination.path)) ?? ["?"]
            guard isDir.boolValue, contents.isEmpty else {
                throw PruneKitError(.invalidArgument, "\(destination.path) already exists\(isDir.boolValue ? " and is not empty" : "")",
                                    hint: "choose another --dir, or remove it first; prunekit never overwrites a directory")
            }
        }
        let sdk = root.appendingPathComponent("Sources/SDK").path
        let testing = root.appendingPathComponent("Sources/PruneKitTesting").path
        for path in [sdk, testing] where path.contains("\"") || path.contains("\\") {
            throw PruneKitError(.invalidArgument, "the PruneKit checkout's path \(path) contains a quote or backslash, which Package.swift cannot hold as written",
                                hint: "move the checkout to a plainer path")
        }
        let values = ["__NAME__": name, "__ID__": id, "__SDK_PATH__": sdk, "__TESTING_PATH__": testing]
        func substitute(_ text: String) -> String {
            values.reduce(text) { $0.replacingOccurrences(of: $1.key, with: $1.value) }
        }

        guard let enumerator = fm.enumerator(at: template, includingPropertiesForKeys: [.isDirectoryKey]) else {
            throw PruneKitError(.invalidFile, "cannot read the template directory \(template.path)")
        }
        let parent = destination.deletingLastPathComponent()
        let staging = parent.appendingPathComponent(".\(destination.lastPathComponent).prunekit-new-\(getpid())")
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
            try fm.createDirectory(at: staging, withIntermediateDirectories: false)
            var written = 0
            let base = template.standardizedFileURL.resolvingSymlinksInPath().path
            for case let file as URL in enumerator {
                let full = file.standardizedFileURL.resolvingSymlinksInPath().path
                guard full.hasPrefix(base + "/") else { continue }
                let relative = substitute(String(full.dropFirst(base.count + 1)))
                let target = staging.appendingPathComponent(relative)
                if (try file.resourceValues(forKeys: [.isDirectoryKey])).isDirectory == true {
                    try fm.createDirectory(at: target, withIntermediateDirectories: true)
                    continue
                }
                let text = try String(contentsOf: file, encoding: .utf8)
                try fm.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try substitute(text).write(to: target, atomically: false, encoding: .utf8)
                written += 1
            }
            guard written > 0 else { throw PruneKitError(.invalidFile, "the template directory \(template.path) has no files") }
            if fm.fileExists(atPath: destination.path) { try fm.removeItem(at: destination) }   // empty, checked above
            try fm.moveItem(at: staging, to: destination)
        } catch {
            try? fm.removeItem(at: staging)
            if let error = error as? PruneKitError { throw error }
            throw PruneKitError(.io, "cannot write the package to \(destination.path): \(error.localizedDescription)")
        }
    }
}
