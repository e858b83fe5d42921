import Daemon
import MigrationEngine

/// A duration option, its environment variable and its default, declared once; every command that takes it resolves
/// it through here (the option wins over the variable, the variable over the default). The defaults themselves
/// live with the types that use them (``MigratorOptions``, the daemon's configuration).
struct DurationSetting {
    let option: String
    let env: String
    let defaultValue: Duration?

    func resolve(_ value: String?) throws -> Duration? {
        try migrator.resolve(value, env: env, option: option, default: defaultValue, parse: DurationParser.parse)
    }

    /// For a setting with a default.
    func resolved(_ value: String?) throws -> Duration {
        try resolve(value) ?? defaultValue ?? .zero
    }

    static let lockTimeout = DurationSetting(option: "--lock-timeout", env: "MIGRATOR_LOCK_TIMEOUT", defaultValue: MigratorOptions.defaultLockTimeout)
    static let ddlLockTimeout = DurationSetting(option: "--ddl-lock-timeout", env: "MIGRATOR_DDL_LOCK_TIMEOUT", defaultValue: MigratorOptions.defaultDDLLockTimeout)
    static let statementTimeout = DurationSetting(option: "--statement-timeout", env: "MIGRATOR_STATEMENT_TIMEOUT", defaultValue: nil)
    static let reconcileInterval = DurationSetting(option: "--reconcile-interval", env: "MIGRATOR_RECONCILE_INTERVAL", defaultValue: DaemonConfiguration.defaultReconcileInterval)
    /// `serve --wait-timeout` and `wait --timeout` share the variable and the default.
    static let serveWaitTimeout = DurationSetting(option: "--wait-timeout", env: "MIGRATOR_WAIT_TIMEOUT", defaultValue: DaemonConfiguration.defaultWaitTimeout)
    static let waitTimeout = DurationSetting(option: "--timeout", env: "MIGRATOR_WAIT_TIMEOUT", defaultValue: serveWaitTimeout.defaultValue)
}
