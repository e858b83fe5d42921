import ArgumentParser
import MigrationEngine
import Postgres
import SystemSupport

/// The options of a fleet run (`migrate`, `status`, `verify`, `update-roles` over many targets).
public struct FleetOptions: ParsableArguments {
    public init() {}

    @Option(
        name: .customLong("targets"),
        help: ArgumentHelp("A file of targets, one connection a line (URL or key=value, optionally schema=NAME for a tenant schema); runs on each (env: MIGRATOR_TARGETS).", valueName: "file")
    )
    var targetsFile: String?

    @Flag(
        name: .customLong("allow-passwords-in-targets"),
        help: "Accept passwords inside the targets file (refused by default: set PGPASSWORD or use ~/.pgpass) (env: MIGRATOR_ALLOW_PASSWORDS_IN_TARGETS=1)."
    )
    var allowPasswords = false

    @Option(
        name: .customLong("parallel"),
        help: ArgumentHelp("How many targets at once, each on its own connection (env: MIGRATOR_PARALLEL; default \(FleetOptions.defaultParallel)).", valueName: "n")
    )
    var parallel: Int?

    @Flag(name: .customLong("fail-fast"), help: "Start no more targets once one failed; the rest are reported skipped.")
    var failFast = false

    @Option(
        name: .customLong("canary"),
        help: ArgumentHelp("Run the first K targets first; if one of them fails, skip the rest.", valueName: "k")
    )
    var canary: Int?

    @Option(
        name: .customLong("shard"),
        help: ArgumentHelp("Take only share I of N (0-based) of the targets, by a stable hash of each target's host, port, database and schema (env: MIGRATOR_SHARD).", valueName: "i/n")
    )
    var shard: String?

    @Option(
        name: .customLong("shard-count"),
        help: ArgumentHelp("Take share $JOB_COMPLETION_INDEX of N (a Kubernetes Indexed Job with N completions) (env: MIGRATOR_SHARD_COUNT).", valueName: "n")
    )
    var shardCount: Int?

    static let defaultParallel = 4

    private static func env(_ name: String) -> String? {
        GlobalOptions.environment[name].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether this is a fleet run: --targets, several --database-url, or MIGRATOR_TARGETS (unless a single
    /// --database-url, an option, overrides the variable).
    func isFleet(_ global: GlobalOptions) -> Bool {
        targetsFile != nil || global.databaseURLs.count > 1 || global.databaseURLs.isEmpty && Self.env("MIGRATOR_TARGETS") != nil
    }

    public func validate() throws {
        if let parallel, parallel < 1 { throw ValidationError("--parallel must be at least 1; got \(parallel)") }
        if let canary, canary < 1 { throw ValidationError("--canary must be at least 1; got \(canary)") }
        _ = try resolvedParallel
        _ = try resolvedShard
        _ = try environmentFlag("MIGRATOR_ALLOW_PASSWORDS_IN_TARGETS")
    }

    /// Checks that the fleet options meet a fleet run (a shard of one database is a mistake, not a no-op).
    func validate(fleet: Bool, global: GlobalOptions) throws {
        if targetsFile != nil, !global.databaseURLs.isEmpty {
            throw ValidationError("--targets and --database-url contradict each other; list every target in the file, or give --database-url once per target")
        }
        guard !fleet else { return }
        for (given, name) in [(parallel != nil, "--parallel"), (failFast, "--fail-fast"), (canary != nil, "--canary"),
                              (shard != nil, "--shard"), (shardCount != nil, "--shard-count")] where given {
            throw ValidationError("\(name) is for a fleet run: give --targets FILE (MIGRATOR_TARGETS) or --database-url several times")
        }
    }

    var resolvedParallel: Int {
        get throws {
            if let parallel { return parallel }
            guard let text = Self.env("MIGRATOR_PARALLEL") else { return Self.defaultParallel }
            guard let value = Int(text), value >= 1 else { throw ValidationError("MIGRATOR_PARALLEL must be a whole number of at least 1; got '\(text)'") }
            return value
        }
    }

    /// (index, count), or nil for every target.
    var resolvedShard: (index: Int, count: Int)? {
        get throws {
            if shard != nil, shardCount != nil {
                throw ValidationError("--shard and --shard-count contradict each other; pass one")
            }
            if let text = shard ?? (shardCount == nil ? Self.env("MIGRATOR_SHARD") : nil) {
                let parts = text.split(separator: "/", omittingEmptySubsequences: false)
                guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, index >= 0, index < count else {
                    throw ValidationError("--shard (MIGRATOR_SHARD) must be I/N with 0 <= I < N, e.g. 0/4; got '\(text)'")
                }
                return (index, count)
            }
            let countText = shardCount.map(String.init) ?? Self.env("MIGRATOR_SHARD_COUNT")
            guard let countText else { return nil }
            guard let count = Int(countText), count >= 1 else {
                throw ValidationError("--shard-count (MIGRATOR_SHARD_COUNT) must be a whole number of at least 1; got '\(countText)'")
            }
            guard let indexText = Self.env("JOB_COMPLETION_INDEX") else {
                throw ValidationError("--shard-count (MIGRATOR_SHARD_COUNT) takes its index from JOB_COMPLETION_INDEX, which is not set; in a Kubernetes Indexed Job it is, elsewhere give --shard I/N")
            }
            guard let index = Int(indexText), index >= 0, index < count else {
                throw ValidationError("JOB_COMPLETION_INDEX must be a whole number from 0 to \(count - 1) for --shard-count \(count); got '\(indexText)'")
            }
            return (index, count)
        }
    }

    /// Every target of the run (all of them, before sharding), checked whole; a bad file exits 2 at FILE:LINE:COL.
    func allTargets(_ global: GlobalOptions, ownSchema: OwnSchema, json: Bool) throws -> [FleetTarget] {
        let allow = try allowPasswords || environmentFlag("MIGRATOR_ALLOW_PASSWORDS_IN_TARGETS") == true
        do throws(MigrationError) {
            if let path = targetsFile ?? (global.databaseURLs.isEmpty ? Self.env("MIGRATOR_TARGETS") : nil) {
                if FileSystem.kind(path) == .directory {
                    throw MigrationError(code: .invalidInput, message: "this is a folder, not a targets file; check --targets (MIGRATOR_TARGETS)", location: SourceLocation(file: path))
                }
                guard let bytes = FileSystem.readFile(path, maxBytes: 64 << 20) else {
                    throw MigrationError(
                        code: .invalidInput, message: "the targets file cannot be read: \(FileSystem.lastError())",
                        location: SourceLocation(file: path), hint: "check --targets (MIGRATOR_TARGETS)"
                    )
                }
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    throw MigrationError(code: .invalidInput, message: "the targets file is not UTF-8", location: SourceLocation(file: path))
                }
                return try TargetsFile.parse(text, file: path, allowPasswords: allow, ownSchema: ownSchema, environment: GlobalOptions.environment)
            }
            return try TargetsFile.fromURLs(global.databaseURLs, environment: GlobalOptions.environment)
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
    }
}
