import MigrationEngine
import Postgres

/// Where a catalogue stands against the versions stored in `migrator.role_version`, and what a sync does about it:
/// the rolling-deploy rule, decided here for the hook, `update-roles` and the daemon alike.
///
/// The rule: a catalogue never synced before is newer than everything stored (a deploy with new roles just works,
/// and the catalogue file carries no bookkeeping); a catalogue that was synced once and has been superseded since (it
/// is in the history but is not the latest row) is never applied again by a deploy step or a daemon, only by an
/// explicit `update-roles` (an intended rollback of roles). So whatever order the replicas of an old and a new release start in, the old one
/// meets a history in which its catalogue is followed by the new one, and stays out of the way.
///
/// "Newer" is the order in which catalogues were first synced on this database; nothing else is known about them.
public enum CatalogueStanding: Sendable, Equatable {
    /// The latest stored version is this catalogue's.
    case current
    /// No version is recorded at all.
    case noVersion
    /// Never synced on this database, and another version is the latest: newer than everything stored.
    case new(latest: String)
    /// Synced before, and `latest` was recorded since: this catalogue was superseded.
    case superseded(by: String)

    /// The latest stored version, if any.
    public var latestVersion: String? {
        switch self {
        case .current, .noVersion: nil
        case .new(let latest), .superseded(let latest): latest
        }
    }

    /// What a sync whose caller is `policy` does for a catalogue standing here.
    public func decision(policy: SupersededPolicy) -> Decision {
        guard case .superseded = self else { return .sync }
        return policy == .apply ? .sync : .skip
    }

    public enum Decision: Sendable, Equatable {
        /// Sync (or report `.unchanged` when the version is current and nothing forces a reconcile).
        case sync
        /// Do nothing: report `.superseded`.
        case skip
    }

    /// Reads where `version` stands, given the latest stored version (read by the target check): no query when that
    /// is the same version or none; one indexed lookup otherwise.
    static func read(
        _ connection: Connection, version: String, latest: String?, schema: String
    ) throws(RoleSyncError) -> CatalogueStanding {
        guard let latest else { return .noVersion }
        guard latest != version else { return .current }
        let statement = SyncStatement("look up the catalogue in the role version history", reads: schema) { p in
            "SELECT EXISTS (SELECT 1 FROM \(schema) WHERE version = \(p.text(version))) AS seen"
        }
        do {
            let seen: Bool = try statement.one(on: connection).decode("seen")
            return seen ? .superseded(by: latest) : .new(latest: latest)
        } catch let error as PostgresError {
            throw RoleSyncError(phase: statement.name, error: error)
        } catch let error as RowDecodingError {
            throw RoleSyncError(phase: statement.name, decoding: error)
        } catch {
            throw RoleSyncError(phase: statement.name, error: PostgresError(code: .clientError, message: "\(error)"))
        }
    }
}

/// Who may apply a superseded catalogue.
public enum SupersededPolicy: Sendable, Equatable {
    /// A deploy step or a daemon (`migrate`, `--then-exec`, the start-up migrate, `serve`): never, forced or not
    /// (`--force-roles` and `MIGRATOR_FORCE_ROLES` mean "reconcile fully", not "roll back").
    case neverApply
    /// `update-roles` and library callers: a superseded catalogue is applied — an intended rollback (a revisited
    /// version is recorded again).
    case apply
}

extension RoleSynchronizer {
    /// Where this catalogue stands, given the latest stored version (``ResolvedTarget/stored``): for the daemon's
    /// reconcile, which decides by the same rule as the sync itself.
    public func standing(_ connection: Connection, latest: String?) throws(RoleSyncError) -> CatalogueStanding {
        try CatalogueStanding.read(connection, version: catalogue.version, latest: latest, schema: schema.qualified("role_version"))
    }
}
