// TEMPORARY: replaced by the SDK's model files when the io branch is merged.
import PruneKit
extension Model {
    func save(to directory: String, metadata: [String: String]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    static func load(from directory: String) throws -> Model {
        throw PruneKitError(.invalidFile, "not implemented yet")
    }
}
import Foundation
