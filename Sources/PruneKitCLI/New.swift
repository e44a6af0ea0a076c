import ArgumentParser
import Foundation
import PruneKit

struct New: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Create a plugin package — a criterion, a schedule or a finetuning strategy — that builds, tests and loads out of the box.",
        discussion: """
        Copies Templates/criterion/, Templates/schedule/ or Templates/finetuning/ (of the PruneKit checkout \
        this prunekit was built in, or of its installed prefix), naming the plugin's type NAME and its id the \
        kebab-case of NAME (MyFilter → my-filter) unless --id is given.

        The new package depends on the PruneKit SDK by URL and version, \
        .package(url: "\(PluginScaffold.SDKDependency.releaseURL)", from: "\(PluginScaffold.SDKDependency.currentVersion)"): \
        the SDK version this prunekit was built with, or any later compatible one. --sdk-url names another \
        repository (a mirror, a fork, file:///… for a local bare clone); --sdk-path depends on a local SDK \
        package by path instead (Sources/SDK of a checkout, for working on the SDK and a plugin together).

        Examples:
          prunekit new criterion MyFilter --dir ../MyFilter
          prunekit new schedule MyRamp --dir ../MyRamp --sdk-url file:///srv/git/prunekit-sdk.git
          prunekit new finetune MyFinetune --dir ../MyFinetune --sdk-path ~/src/prunekit/Sources/SDK
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

    @Option(help: "The PruneKit checkout (or install prefix) to take the templates from (default: the one this prunekit was built in or installed to, else one above the current directory).")
    var prunekitRoot: String?

    @Option(help: ArgumentHelp("The git repository the package takes the SDK from, by version.", valueName: "url"))
    var sdkURL: String?

    @Option(help: ArgumentHelp("Depend on the SDK package in this directory by path instead of by URL and version.", valueName: "dir"))
    var sdkPath: String?

    func validate() throws {
        if sdkURL != nil && sdkPath != nil {
            throw ValidationError("give --sdk-url or --sdk-path, not both: a package takes the SDK from one place")
        }
    }

    func run() throws {
        try reportingErrors {
            let scaffold = try PluginScaffold(kind: kind, name: name, id: id)
            let sdk = try sdkPath.map(PluginScaffold.SDKDependency.path(checking:))
                ?? PluginScaffold.SDKDependency.url(checking: sdkURL ?? PluginScaffold.SDKDependency.releaseURL)
            let root = try prunekitRoot.map { try PluginScaffold.checkRoot($0, for: kind) } ?? PluginScaffold.findRoot(for: kind)
            let destination = URL(fileURLWithPath: dir ?? name).standardizedFileURL
            try scaffold.write(from: root, sdk: sdk, to: destination)
            let path = destination.path
            let library = "\(path)/.build/release/lib\(scaffold.name).so"
            print("""
            Created the \(kind.noun) \(scaffold.name) (id '\(scaffold.id)') in \(path)
            from \(root.path)/\(kind.templatePath); it takes the SDK from \(sdk.description).

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
/// Templates are files, not strings in the executable, so that they stay packages a
/// reader can open and CI can build. They are found by walking up from the real path of
/// the running executable (`.build/<config>/prunekit` sits inside a checkout;
/// `PREFIX/lib/prunekit/prunekit` finds `PREFIX/share/prunekit/Templates`, laid out by
/// `.ci/install-prefix`), then from the current directory; `--prunekit-root` overrides both.
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
    static let placeholders = ["__NAME__", "__ID__", "__SDK_DEPENDENCY__", "__SDK_PACKAGE__"]

    /// Where a generated package takes the SDK from: `.package(url:from:)` (the default)
    /// or `.package(path:)`.
    enum SDKDependency: CustomStringConvertible {
        case url(String, from: String)
        case path(String)

        /// The repository the SDK is released to: `Sources/SDK` of this repository, split
        /// off at each release and tagged with its version (`.ci/sdk-release`).
        static let releaseURL = "https://github.com/prunekit/prunekit-sdk.git"

        /// The version a new package asks for: the SDK this prunekit was built with.
        static var currentVersion: String { "\(SDKVersion.major).\(SDKVersion.minor).0" }

        /// A URL dependency on `url`, from ``currentVersion``.
        static func url(checking url: String) throws -> SDKDependency {
            guard !url.isEmpty, !url.contains("\""), !url.contains("\\"), !url.contains(where: \.isWhitespace) else {
                throw PruneKitError(.invalidArgument, "'\(url)' cannot be written into Package.swift as a URL",
                                    hint: "give a git URL without quotes, backslashes or spaces (https://…, file:///…)")
            }
            guard !identity(of: url).isEmpty else {
                throw PruneKitError(.invalidArgument, "'\(url)' names no repository", hint: "give a git URL that ends in the repository's name (…/prunekit-sdk.git)")
            }
            return .url(url, from: currentVersion)
        }

        /// A path dependency on the SDK package in `directory` (made absolute).
        static func path(checking directory: String) throws -> SDKDependency {
            let url = URL(fileURLWithPath: NSString(string: directory).expandingTildeInPath).standardizedFileURL.resolvingSymlinksInPath()
            let manifest = url.appendingPathComponent("Package.swift")
            guard let text = try? String(contentsOf: manifest, encoding: .utf8) else {
                throw PruneKitError(.invalidArgument, "\(url.path) has no Package.swift: it is not the SDK package",
                                    hint: "give the SDK's directory, Sources/SDK of a PruneKit checkout")
            }
            guard text.contains(#".library(name: "PruneKit""#) else {
                throw PruneKitError(.invalidArgument, "the package in \(url.path) does not vend the PruneKit library",
                                    hint: "give the SDK's directory, Sources/SDK of a PruneKit checkout")
            }
            guard !url.path.contains("\""), !url.path.contains("\\") else {
                throw PruneKitError(.invalidArgument, "the SDK's path \(url.path) contains a quote or backslash, which Package.swift cannot hold as written",
                                    hint: "move the checkout to a plainer path")
            }
            return .path(url.path)
        }

        /// SwiftPM's identity of a dependency: the last component of its URL or path,
        /// without `.git`; a target names the SDK's products with it.
        static func identity(of location: String) -> String {
            var last = location.split(separator: "/").last.map(String.init) ?? ""
            if last.hasSuffix(".git") { last.removeLast(4) }
            return last
        }

        /// The `.package(…)` line.
        var declaration: String {
            switch self {
            case .url(let url, let version): return ".package(url: \"\(url)\", from: \"\(version)\")"
            case .path(let path): return ".package(path: \"\(path)\")"
            }
        }

        /// The name targets use for the SDK package in `.product(name:package:)`.
        var package: String {
            switch self {
            case .url(let url, _): return SDKDependency.identity(of: url)
            case .path(let path): return SDKDependency.identity(of: path)
            }
        }

        var description: String {
            switch self {
            case .url(let url, let version): return "\(url), version \(version) or a later \(SDKVersion.major).x"
            case .path(let path): return "the local package \(path)"
            }
        }
    }

    /// Type names that would shadow the SDK's or Swift's own inside the plugin module
    /// (those the templates use, for every kind).
    static let reserved: Set<String> = ["Self", "Any", "Type", "Protocol", "PruneKit", "Criterion",
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

    /// A directory holds the templates for `kind` when it has that kind's template package.
    static func isRoot(_ url: URL, for kind: Kind) -> Bool {
        FileManager.default.fileExists(atPath: url.appendingPathComponent("\(kind.templatePath)/Package.swift").path)
    }

    static func checkRoot(_ path: String, for kind: Kind) throws -> URL {
        let url = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath()
        guard isRoot(url, for: kind) else {
            throw PruneKitError(.invalidArgument, "\(url.path) has no \(kind.noun) template (no \(kind.templatePath)/Package.swift in it)",
                                hint: "give --prunekit-root the directory of PruneKit's top-level Package.swift, or PREFIX/share/prunekit of an installed prunekit")
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
                let installed = dir.appendingPathComponent("share/prunekit")
                if isRoot(installed, for: kind) { return installed }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        throw PruneKitError(.invalidFile, "cannot find PruneKit's \(kind.noun) template (\(kind.templatePath)) above \(starts.map(\.path).joined(separator: " or "))",
                            hint: "run the prunekit built in a PruneKit checkout or installed with .ci/install-prefix, or pass --prunekit-root PATH-TO-CHECKOUT")
    }

    /// Copies the template into `destination`, substituting the placeholders in file names
    /// and contents. Writes into a temporary sibling first and renames it, so a failure
    /// leaves nothing half-written.
    func write(from root: URL, sdk: SDKDependency, to destination: URL) throws {
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
        let values = ["__NAME__": name, "__ID__": id, "__SDK_DEPENDENCY__": sdk.declaration, "__SDK_PACKAGE__": sdk.package]
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
