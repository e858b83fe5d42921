import Logging
import Postgres

/// Work that runs after the migrations, under the same advisory lock, on the engine's connection.
///
/// The engine knows nothing of what a hook does; the role sync plugs in here. A hook that throws stops the run
/// with a non-zero exit and its name in the message.
public protocol PostMigrateHook: Sendable {
    /// Shown in logs, errors and reports.
    var name: String { get }
    /// Called with the connection idle and outside a transaction; a hook opens and ends its own.
    func run(_ context: HookContext) throws -> HookReport
    /// What `status` and `verify` show for the hook; nil when it has nothing to report. `upToDate == false` makes
    /// `verify` fail.
    func status(_ connection: Connection, schema: OwnSchema) throws -> HookStatus?
    /// What the hook keeps in migrator's own schema, installed and upgraded by the engine under the lock before the
    /// hook runs; nil when it keeps nothing.
    var ownObjects: OwnObjectsComponent? { get }
    /// Called by `migrate` under the lock right after the history is read, before the files are compared with it:
    /// the hook may send the statement it runs first when nothing is applied (``Connection/sendAhead(_:_:)``), so
    /// the server answers it meanwhile. Its answer is used only if the hook's first query is that statement and
    /// nothing ran before it; otherwise it is dropped.
    func sendAhead(_ connection: Connection, schema: OwnSchema)
}

/// A hook's error that carries the server's: when it is a lock not granted (SQLSTATE 55P03, or a deadlock) and the
/// hook's transaction was rolled back, the engine runs the hook again with backoff, as it does a migration, until
/// ``MigratorOptions/ddlLockRetryBudget`` is spent.
public protocol HookServerFailure: Error {
    /// The server's error, when the hook's work was rolled back whole; nil otherwise (then it is never retried).
    var rolledBackServerError: PostgresError? { get }
}

extension PostMigrateHook {
    public func status(_ connection: Connection, schema: OwnSchema) throws -> HookStatus? { nil }
    public var ownObjects: OwnObjectsComponent? { nil }
    public func sendAhead(_ connection: Connection, schema: OwnSchema) {}
}

/// A hook's state, for `status` and `verify`.
public struct HookStatus: Sendable, Codable, Equatable {
    public var name: String
    public var upToDate: Bool
    public var summary: String
    public var details: [String: String]

    public init(name: String, upToDate: Bool, summary: String, details: [String: String] = [:]) {
        self.name = name
        self.upToDate = upToDate
        self.summary = summary
        self.details = details
    }
}

/// What a hook is told about the run.
public struct HookContext {
    public let connection: Connection
    /// Where migrator's own objects are (installed by the time the hook runs).
    public let schema: OwnSchema
    public let logger: Logger
    /// Versions applied by this run, in order (empty when there was nothing to apply).
    public let appliedVersions: [Int64]
    /// Migrations still pending after this run (`--to` stopped short of them): what a hook needs may not exist yet.
    public let pendingMigrations: Int
    /// True for `migrate --dry-run`: the hook must not change anything.
    public let dryRun: Bool
}

/// A hook's result, shown in the summary and in `--json`.
public struct HookReport: Sendable, Codable, Equatable {
    public var name: String
    public var summary: String
    public var details: [String: String]

    public init(name: String, summary: String, details: [String: String] = [:]) {
        self.name = name
        self.summary = summary
        self.details = details
    }
}
