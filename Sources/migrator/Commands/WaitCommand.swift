import ArgumentParser
import FoundationEssentials
import Logging
#if canImport(Glibc)
import Glibc
#endif
import MigrationEngine
import Postgres
import SystemSupport

struct WaitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait",
        abstract: "Wait until the database accepts connections. Only connection errors are retried; a wrong password or an unknown database fails at once."
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Give up after this long, e.g. 60s (env: MIGRATOR_WAIT_TIMEOUT; default 60s).", valueName: "duration"))
    var timeout: String?

    func validate() throws {
        _ = try resolve(timeout, env: "MIGRATOR_WAIT_TIMEOUT", option: "--timeout", default: Duration.seconds(60), parse: DurationParser.parse)
    }

    func run() throws {
        let logger = try global.makeLogger()
        let limit = try resolve(timeout, env: "MIGRATOR_WAIT_TIMEOUT", option: "--timeout", default: Duration.seconds(60), parse: DurationParser.parse)
        let clock = ContinuousClock()
        let start = clock.now
        var delay = 0.25
        var attempt = 0
        while true {
            attempt += 1
            do {
                let connection = try Connection(config: global.connectionConfig, logger: logger)
                Output.print("ready: \(connection.safeDescription) accepts connections (after \(attempt) attempts)")
                return
            } catch {
                let elapsed = clock.now - start
                guard error.isTransient else {
                    Output.printError("error: cannot connect to the database, and waiting will not help: \(error.message)")
                    throw ExitStatus.connectionFailed.exitCode
                }
                guard elapsed < limit else {
                    Output.printError("error: the database did not accept connections within \(DurationParser.milliseconds(limit) / 1000) s: \(error.message)")
                    throw ExitStatus.connectionFailed.exitCode
                }
                logger.info("database not reachable yet; retrying", metadata: ["db.error": "\(error.message)", "wait.attempt": "\(attempt)"])
                let remaining = Double(DurationParser.milliseconds(limit - elapsed)) / 1000
                usleep(UInt32(min(delay, max(0.01, remaining)) * 1_000_000))
                delay = min(delay * 2, 2)
            }
        }
    }
}
