import Foundation
import Logging
import Postgres

/// A fresh database on the test server, dropped when the test is done.
///
/// The server comes from `MIGRATOR_TEST_DATABASE_URL` (a `postgresql://` URL of a role that may create databases).
/// `scripts/test` starts a throwaway server and sets it; a test run without one fails with a message saying so.
public struct TestDatabase: Sendable {
    public let name: String
    /// A URL for this database, with the server's credentials.
    public let url: String
    /// The server's admin URL when it is not MIGRATOR_TEST_DATABASE_URL's (a test's own server).
    let admin: String?

    public static var adminURL: String {
        get throws {
            let environment = ProcessInfo.processInfo.environment
            guard let url = environment["MIGRATOR_TEST_DATABASE_URL"], !url.isEmpty else {
                throw TestSetupError(
                    "MIGRATOR_TEST_DATABASE_URL is not set. Run the tests with scripts/test, which starts a throwaway "
                        + "PostgreSQL, or set it to postgresql://USER:PASSWORD@HOST:PORT/postgres for a role that may create databases."
                )
            }
            return url
        }
    }

    /// The password in the admin URL; tests check that it never appears in any output.
    public static var password: String? {
        (try? adminURL).flatMap { URLComponents(string: $0)?.password }
    }

    /// Creates a database named after the test, runs `body`, and drops the database whatever happens.
    public static func with<T>(_ label: String = #function, admin: String? = nil, _ body: (TestDatabase) throws -> T) throws -> T {
        let database = try create(label, admin: admin)
        defer { database.drop() }
        return try body(database)
    }

    public static func with<T>(_ label: String = #function, _ body: (TestDatabase) async throws -> T) async throws -> T {
        let database = try create(label)
        defer { database.drop() }
        return try await body(database)
    }

    public static func create(_ label: String, admin adminOverride: String? = nil) throws -> TestDatabase {
        _ = QuietLogging.installed
        let admin = try adminConnection(adminOverride)
        let slug = label.lowercased().unicodeScalars.filter { ("a"..."z").contains($0) || ("0"..."9").contains($0) }
        let name = "mt_" + String(String.UnicodeScalarView(slug.prefix(30))) + "_" + UUID().uuidString.prefix(8).lowercased()
        // A database name cannot be a parameter; this one is made of [a-z0-9_] only.
        try admin.query("CREATE DATABASE \(name)")
        guard var components = URLComponents(string: try adminOverride ?? adminURL) else {
            throw TestSetupError("MIGRATOR_TEST_DATABASE_URL is not a URL")
        }
        components.path = "/" + name
        return TestDatabase(name: name, url: components.string ?? "", admin: adminOverride)
    }

    public func drop() {
        guard let admin = try? Self.adminConnection(self.admin) else { return }
        _ = try? admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    public func connect(logger: Logger = Logger(label: "test")) throws -> Connection {
        try Connection(config: ConnectionConfig(connectionString: url), logger: logger)
    }

    /// This database's URL on another port of the same host: a standby of the test's server.
    public func url(port: Int) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.port = port
        return components.string ?? url
    }

    public func connect(port: Int) throws -> Connection {
        try Connection(config: ConnectionConfig(connectionString: url(port: port)), logger: Logger(label: "test"))
    }

    public static func adminConnection(_ override: String? = nil) throws -> Connection {
        do {
            return try Connection(config: ConnectionConfig(connectionString: try override ?? adminURL), logger: Logger(label: "test-admin"))
        } catch let error as PostgresError {
            throw TestSetupError("cannot connect to the test server in MIGRATOR_TEST_DATABASE_URL (\(error.message)); start one with scripts/test")
        }
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Tests that log through `Logger(label:)` stay quiet unless MIGRATOR_TEST_LOGS=1; tests that check log output build
/// their own handler and are not affected.
enum QuietLogging {
    static let installed: Bool = {
        if ProcessInfo.processInfo.environment["MIGRATOR_TEST_LOGS"] == "1" { return false }
        LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        return true
    }()
}
