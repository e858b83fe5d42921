import Foundation

/// A real PgBouncer (Debian's `pgbouncer`) in front of the test server, for one test: its own folder, port and
/// configuration, stopped by ``stop()`` (and at deinit).
///
/// `.ci/run` installs the package; a machine without it fails the test with the command that installs it.
public final class PgBouncer: @unchecked Sendable {
    public enum PoolMode: String, Sendable { case session, transaction, statement }

    public let port: Int
    let folder: URL
    let process: Process
    let user: String
    let password: String

    /// - Parameter port: where it listens; a free one when nil.
    public init(poolMode: PoolMode, port chosenPort: Int? = nil) throws {
        guard let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestSetupError("PgBouncer is not installed: apt-get install -y pgbouncer (.ci/run installs it)")
        }
        guard let server = URLComponents(string: try TestDatabase.adminURL), let serverPort = server.port else {
            throw TestSetupError("MIGRATOR_TEST_DATABASE_URL has no port")
        }
        user = server.user ?? "postgres"
        password = server.password ?? ""
        port = try chosenPort ?? Loopback.freePort()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("migrator-pgbouncer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let configuration = """
            [databases]
            * = host=\(server.host ?? "127.0.0.1") port=\(serverPort)
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(port)
            unix_socket_dir =
            auth_type = scram-sha-256
            auth_file = \(folder.path)/userlist.txt
            pool_mode = \(poolMode.rawValue)
            logfile = \(folder.path)/pgbouncer.log
            max_client_conn = 200
            default_pool_size = 20

            """
        try configuration.write(to: folder.appendingPathComponent("pgbouncer.ini"), atomically: true, encoding: .utf8)
        try "\"\(user)\" \"\(password)\"\n".write(to: folder.appendingPathComponent("userlist.txt"), atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        // PgBouncer refuses to run as root; as root (CI), it runs as the server's own `postgres` user.
        var arguments = [folder.appendingPathComponent("pgbouncer.ini").path]
        if getuid() == 0 {
            arguments = ["-u", "postgres"] + arguments
            _ = try? FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: folder.path)
            for file in ["pgbouncer.ini", "userlist.txt"] {
                _ = try? FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: folder.appendingPathComponent(file).path)
            }
        }
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Ready when it accepts a connection; the bound is for a PgBouncer that never comes up.
        let deadline = Date().addingTimeInterval(20)
        while !Loopback.accepts(port: port) {
            guard process.isRunning, Date() < deadline else {
                let log = (try? String(contentsOf: folder.appendingPathComponent("pgbouncer.log"), encoding: .utf8)) ?? ""
                stop()
                throw TestSetupError("PgBouncer did not start on 127.0.0.1:\(port): \(log.suffix(2000))")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    deinit { stop() }

    /// A URL for `database` through the pooler, with the test server's credentials.
    public func url(database: String) -> String {
        var components = URLComponents()
        components.scheme = "postgresql"
        components.user = user
        components.password = password
        components.host = "127.0.0.1"
        components.port = port
        components.path = "/" + database
        return components.string ?? ""
    }

    public func stop() {
        if process.isRunning {
            // SIGTERM makes PgBouncer wait for its clients to go; a throwaway pooler is simply killed.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: folder)
    }
}
