import Foundation

/// Runs the built `migrator` executable as a user would, and captures what it prints.
public struct MigratorProcess {
    public struct Result: Sendable {
        public var exitCode: Int32
        public var stdout: String
        public var stderr: String
        public var output: String { stdout + stderr }

        public init(exitCode: Int32, stdout: String, stderr: String) {
            self.exitCode = exitCode
            self.stdout = stdout
            self.stderr = stderr
        }
    }

    /// The binary next to the test bundle (SwiftPM builds every product before the tests), or `MIGRATOR_BINARY`.
    public static var binary: String {
        get throws {
            if let path = ProcessInfo.processInfo.environment["MIGRATOR_BINARY"] { return path }
            var candidates: [String] = []
            let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            var folder = executable.deletingLastPathComponent()
            for _ in 0..<4 {
                candidates.append(folder.appendingPathComponent("migrator").path)
                folder = folder.deletingLastPathComponent()
            }
            candidates.append(RepositoryPaths.root.appendingPathComponent(".build/debug/migrator").path)
            for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue {
                    return candidate
                }
            }
            throw TestSetupError("the migrator binary was not found (looked in \(candidates)); run swift build first or set MIGRATOR_BINARY")
        }
    }

    /// Starts the binary; the caller waits for it with ``finish(_:)``.
    public static func start(
        _ arguments: [String], environment: [String: String] = [:], clearDatabaseEnvironment: Bool = true,
        currentDirectory: String? = nil, standardInput: String? = nil
    ) throws -> (Process, Pipe, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try binary)
        process.arguments = arguments
        // Tests that prove a command needs no ./Migrations run it from an empty folder.
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        var env = ProcessInfo.processInfo.environment
        if clearDatabaseEnvironment {
            for key in env.keys where key.hasPrefix("PG") || key == "DATABASE_URL" || key.hasPrefix("MIGRATOR_") && key != "MIGRATOR_BINARY" {
                env[key] = nil
            }
        }
        env.merge(environment) { _, new in new }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = standardInput.map { _ in Pipe() }
        process.standardInput = input ?? FileHandle.nullDevice
        try process.run()
        if let input, let standardInput {
            // Written from another thread and closed, so a large input never blocks the test on a full pipe.
            let writer = input.fileHandleForWriting
            let data = Data(standardInput.utf8)
            DispatchQueue.global().async {
                try? writer.write(contentsOf: data)
                try? writer.close()
            }
        }
        return (process, out, err)
    }

    public static func finish(_ started: (Process, Pipe, Pipe)) -> Result {
        let (process, out, err) = started
        // Read both pipes before waiting, so a chatty child never blocks on a full pipe.
        nonisolated(unsafe) var stderrData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdoutData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Result(
            exitCode: process.terminationStatus,
            stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self)
        )
    }

    /// Runs the binary to completion.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        finish(try start(arguments, environment: environment))
    }
}
