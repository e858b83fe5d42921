import Foundation

/// A temporary migrations folder that a test fills with files and that is removed afterwards.
public final class MigrationFolder: Sendable {
    public let path: String

    public init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("migrator-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes a file; `content` is written as UTF-8 exactly as given.
    @discardableResult
    public func write(_ name: String, _ content: String) throws -> String {
        try write(name, bytes: Array(content.utf8))
    }

    @discardableResult
    public func write(_ name: String, bytes: [UInt8]) throws -> String {
        let file = (path as NSString).appendingPathComponent(name)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }

    public func remove(_ name: String) throws {
        try FileManager.default.removeItem(atPath: (path as NSString).appendingPathComponent(name))
    }

    /// Copies the repository's shipped `Migrations/` into this folder.
    public static func shipped() throws -> MigrationFolder {
        let folder = try MigrationFolder()
        let source = RepositoryPaths.root.appendingPathComponent("Migrations").path
        for name in try FileManager.default.contentsOfDirectory(atPath: source) where name.hasSuffix(".sql") {
            try FileManager.default.copyItem(atPath: (source as NSString).appendingPathComponent(name), toPath: (folder.path as NSString).appendingPathComponent(name))
        }
        return folder
    }
}

public enum RepositoryPaths {
    /// The package root, found from this source file's place in it.
    public static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}
