/// One migration as `status` shows it: a file, a history row, or both.
public struct MigrationStatus: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable {
        /// In the history with the same checksum as the file.
        case applied
        /// A file that is not in the history yet.
        case pending
        /// Applied, but the file's checksum differs from the one recorded.
        case changed
        /// Applied, but the file is gone.
        case missing
        /// Outside a transaction, stopped part way; the next run resumes it.
        case failed
        /// Applied by an earlier release, whose work migrator's own objects have taken over; no file is needed.
        case superseded
    }

    public var version: Int64
    public var name: String
    public var state: State
    public var file: String?
    public var transactional: Bool?
    public var appliedAt: String?
    public var appliedBy: String?
    public var durationMs: Double?
    public var checksum: String?
    public var recordedChecksum: String?
    public var failedStatement: Int?
    public var error: String?
    /// Pending, but numbered below the newest applied migration.
    public var outOfOrder: Bool?
    /// For `superseded`: by what.
    public var supersededBy: String?
    /// For `missing`: numbered above every file of the folder, so applied by a newer release (a rolled-back image
    /// meeting the database its successor migrated).
    public var newerThanFolder: Bool?
    /// For an applied migration: whether a down was stored when it was applied (and it is not marked irreversible),
    /// so `migrate --to` below it can reverse it.
    public var reversible: Bool?
}
