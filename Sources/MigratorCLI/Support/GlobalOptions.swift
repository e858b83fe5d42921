import ArgumentParser
import FoundationEssentials
import Logging
import MigrationEngine
import Postgres
import SystemSupport

/// Options every command shares. Each one a container would set has an environment variable too.
public struct GlobalOptions: ParsableArguments {
    public init() {}

    @Option(
        name: .customLong("database-url"),
        help: ArgumentHelp(
            "PostgreSQL URL or key=value connection string (env: MIGRATOR_DIRECT_URL, else DATABASE_URL). Without it, libpq's PG* variables apply. Given several times (migrate, status, verify, update-roles): a fleet run over each.",
            valueName: "url"
        )
    )
    var databaseURLs: [String] = []

    /// The last --database-url, as a single option given twice always meant.
    var databaseURL: String? { databaseURLs.last }

    @Flag(
        name: .customLong("allow-session-pooler"),
        help: "Accept a connection pooler (PgBouncer) in session mode between migrator and the server; one in transaction mode breaks the lock (env: MIGRATOR_ALLOW_SESSION_POOLER=1)."
    )
    var allowSessionPooler = false

    @Option(
        name: .customLong("migrations"),
        help: ArgumentHelp("The migrations folder (env: MIGRATOR_MIGRATIONS; default ./Migrations).", valueName: "path")
    )
    var migrations: String?

    @Option(
        name: .customLong("schema"),
        help: ArgumentHelp("The schema that holds migrator's own objects: history, role versions, links, trigger functions (env: MIGRATOR_SCHEMA; default migrator).", valueName: "name")
    )
    var schema: String?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (env: MIGRATOR_LOG_LEVEL; default info).", valueName: "level")
    )
    var logLevel: String?

    @Option(
        name: .customLong("log-format"),
        help: ArgumentHelp("text or json; logs go to standard error (env: MIGRATOR_LOG_FORMAT; default text).", valueName: "format")
    )
    var logFormat: String?

    /// The process environment, read once: `ProcessInfo.environment` copies every variable into a new dictionary on each
    /// call, and a `migrate` looks up a dozen names before it connects. Nothing in migrator changes its own environment.
    public static let environment: [String: String] = ProcessInfo.processInfo.environment

    /// The option, else MIGRATOR_DIRECT_URL (a direct connection for migrator where the app's DATABASE_URL goes
    /// through a pooler), else DATABASE_URL; an empty variable counts as unset.
    var resolvedDatabaseURL: String? {
        databaseURL ?? Self.environment["MIGRATOR_DIRECT_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.environment["DATABASE_URL"]
    }

    /// Every password the environment's connection strings carry, for messages printed before options are read.
    public static var environmentRedactor: Redactor {
        ConnectionConfig(connectionString: environment["DATABASE_URL"]).redactor
            .adding(ConnectionConfig(connectionString: environment["MIGRATOR_DIRECT_URL"]).redactor)
    }
    /// The folder `migrate` and `new` work on: the option, the variable (an empty one counts as unset), or ./Migrations.
    public var resolvedMigrations: String { explicitMigrations ?? "./Migrations" }

    private var explicitMigrations: String? {
        migrations ?? Self.environment["MIGRATOR_MIGRATIONS"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// For the commands that also work without a folder (`status`, `verify`, `update-roles`, `serve --no-migrate`):
    /// the folder given, else ./Migrations if it exists, else none. A folder that was named but is missing is still an
    /// error, reported by the engine.
    public var optionalMigrations: String? {
        if let explicitMigrations { return explicitMigrations }
        return FileSystem.kind("./Migrations") == .missing ? nil : "./Migrations"
    }

    public var resolvedSchema: OwnSchema {
        get throws {
            let name = schema ?? Self.environment["MIGRATOR_SCHEMA"].flatMap { $0.isEmpty ? nil : $0 } ?? OwnSchema.defaultName
            do {
                return try OwnSchema(name)
            } catch {
                throw ValidationError(error.message)
            }
        }
    }

    var resolvedLogLevel: Logger.Level {
        get throws {
            let text = (logLevel ?? Self.environment["MIGRATOR_LOG_LEVEL"] ?? "info").lowercased()
            guard let level = Logger.Level(rawValue: text) else {
                throw ValidationError("--log-level (MIGRATOR_LOG_LEVEL) must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")); got '\(text)'")
            }
            return level
        }
    }

    var resolvedLogFormat: LogFormat {
        get throws {
            let text = (logFormat ?? Self.environment["MIGRATOR_LOG_FORMAT"] ?? "text").lowercased()
            guard let format = LogFormat(rawValue: text) else {
                throw ValidationError("--log-format (MIGRATOR_LOG_FORMAT) must be text or json; got '\(text)'")
            }
            return format
        }
    }

    public func validate() throws {
        _ = try resolvedAllowSessionPooler
        _ = try resolvedLogLevel
        _ = try resolvedLogFormat
        _ = try resolvedSchema
    }

    var resolvedAllowSessionPooler: Bool {
        get throws { try allowSessionPooler || environmentFlag("MIGRATOR_ALLOW_SESSION_POOLER") == true }
    }

    public var connectionConfig: ConnectionConfig {
        var config = ConnectionConfig(connectionString: resolvedDatabaseURL)
        config.allowSessionPooler = (try? resolvedAllowSessionPooler) ?? false
        return config
    }

    /// Sets up logging once for the process and returns the root logger.
    public func makeLogger(redacting extra: Redactor? = nil) throws -> Logger {
        let level = try resolvedLogLevel
        let format = try resolvedLogFormat
        let redactor = Redactor(combining: [connectionConfig.redactor, Self.environmentRedactor]
            + databaseURLs.map { ConnectionConfig(connectionString: $0).redactor } + (extra.map { [$0] } ?? []))
        LoggingSystem.bootstrap { label in
            var handler = MigratorLogHandler(label: label, format: format, redactor: redactor)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "migrator")
    }
}

/// Reads an optional environment-backed value with a parser, naming both spellings in the error.
func resolve<T>(
    _ value: String?, env: String, option: String, default defaultValue: T, parse: (String) -> T?
) throws -> T {
    guard let text = value ?? GlobalOptions.environment[env] else { return defaultValue }
    guard let parsed = parse(text) else {
        throw ValidationError("\(option) (\(env)) has an invalid value '\(text)'")
    }
    return parsed
}
