import ArgumentParser
import MigrationEngine

/// The documented exit codes (README "Exit codes"). Each case is distinct so a deploy script can tell them apart.
public enum ExitStatus: Int32, Sendable {
    case success = 0
    case migrationFailed = 1
    case invalidMigrations = 2
    case verifyFailed = 3
    case connectionFailed = 4
    case lockTimeout = 5
    case readOnly = 6
    /// A fleet run whose failed targets failed with different codes (each target's own code is in its line and in
    /// `--json`); when they all failed alike, the run exits with that code instead.
    case mixedFailures = 7
    case usage = 64
    /// Standard output could not be written (a full disk, a closed pipe); what the command did stays done.
    case outputFailed = 74

    /// `migrator lint`: at least one finding of severity error (the code a failed migration has in `migrate`).
    static var lintErrors: ExitStatus { .migrationFailed }

    init(_ code: MigrationError.Code) {
        switch code {
        // `.stopped` comes only from a run whose options ask to stop (the daemon, which exits 0 itself); a command
        // that got it anyway did not finish, so it does not report success.
        case .migrationFailed, .hookFailed, .databaseError, .stopped: self = .migrationFailed
        case .invalidMigrationFile, .historyMismatch, .invalidInput: self = .invalidMigrations
        case .connectionFailed: self = .connectionFailed
        case .lockTimeout: self = .lockTimeout
        case .readOnly: self = .readOnly
        }
    }

    public var exitCode: ExitCode { ExitCode(rawValue) }
}
