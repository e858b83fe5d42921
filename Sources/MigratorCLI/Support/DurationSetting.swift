import ArgumentParser
import MigrationEngine

/// A duration option, its environment variable and its default, declared once; every command that takes it resolves
/// it through here (the option wins over the variable, the variable over the default). The defaults themselves
/// live with the types that use them (``MigratorOptions``, the daemon's configuration).
public struct DurationSetting: Sendable {
    public let option: String
    public let env: String
    public let defaultValue: Duration?

    public init(option: String, env: String, defaultValue: Duration?) {
        self.option = option
        self.env = env
        self.defaultValue = defaultValue
    }

    /// The option's value, else the variable's (whose text is checked here: the option's is checked by the parser),
    /// else the default.
    public func resolve(_ value: DurationArgument?) throws -> Duration? {
        if let value { return value.duration }
        guard let text = GlobalOptions.environment[env] else { return defaultValue }
        guard let parsed = DurationParser.parse(text) else {
            throw ValidationError("\(env) (for \(option)) has an invalid value '\(text)'; \(DurationArgument.forms)")
        }
        return parsed
    }

    /// For a setting with a default.
    public func resolved(_ value: DurationArgument?) throws -> Duration {
        try resolve(value) ?? defaultValue ?? .zero
    }

    static let lockTimeout = DurationSetting(option: "--lock-timeout", env: "MIGRATOR_LOCK_TIMEOUT", defaultValue: MigratorOptions.defaultLockTimeout)
    static let ddlLockTimeout = DurationSetting(option: "--ddl-lock-timeout", env: "MIGRATOR_DDL_LOCK_TIMEOUT", defaultValue: MigratorOptions.defaultDDLLockTimeout)
    static let ddlLockRetries = DurationSetting(option: "--ddl-lock-retries", env: "MIGRATOR_DDL_LOCK_RETRIES", defaultValue: MigratorOptions.defaultDDLLockRetryBudget)
    static let progressEvery = DurationSetting(option: "--progress-every", env: "MIGRATOR_PROGRESS_EVERY", defaultValue: MigratorOptions.defaultProgressEvery)
    static let statementTimeout = DurationSetting(option: "--statement-timeout", env: "MIGRATOR_STATEMENT_TIMEOUT", defaultValue: nil)
    /// `serve --wait-timeout` and `wait --timeout` share the variable and the default. (`serve`'s own settings are
    /// declared in migrator-serve, beside the daemon's defaults.)
    public static let serveWaitTimeout = DurationSetting(option: "--wait-timeout", env: "MIGRATOR_WAIT_TIMEOUT", defaultValue: DatabaseWait.defaultTimeout)
    static let waitTimeout = DurationSetting(option: "--timeout", env: "MIGRATOR_WAIT_TIMEOUT", defaultValue: serveWaitTimeout.defaultValue)
}

/// A duration as the options take it, checked by the argument parser (an invalid value is a usage error that names
/// the option).
public struct DurationArgument: ExpressibleByArgument, Sendable {
    public var duration: Duration

    public init?(argument: String) {
        guard let duration = DurationParser.parse(argument) else { return nil }
        self.duration = duration
    }

    static let forms = "write a duration such as 30s, 1500ms, 5m or 1h (a bare number is seconds)"
}
