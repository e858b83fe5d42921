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
    var timeout: DurationArgument?

    func run() throws {
        let logger = try global.makeLogger()
        let limit = try DurationSetting.waitTimeout.resolved(timeout)
        let wait = DatabaseWait(connection: global.connectionConfig, timeout: limit, logger: logger) { delay in
            usleep(UInt32(max(10, delay.milliseconds) * 1000))
        }
        do {
            if let (connection, attempts) = try wait.run() {
                Output.print("ready: \(connection.safeDescription) accepts connections (after \(attempts) attempts)")
            }
        } catch {
            throw Output.fail(error, json: false).exitCode
        }
    }
}
