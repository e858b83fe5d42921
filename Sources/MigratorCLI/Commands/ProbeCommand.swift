import ArgumentParser
import SystemSupport

struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "GET a path of a running `migrator serve` (default /readyz): exit 0 on a 2xx answer, 1 otherwise. For container healthchecks."
    )

    @Option(
        name: .customLong("http-address"),
        help: ArgumentHelp("The daemon's host:port; 0.0.0.0 is reached as 127.0.0.1 (env: MIGRATOR_HTTP_ADDRESS; default 0.0.0.0:8080).", valueName: "address")
    )
    var httpAddress: String?

    @Option(help: ArgumentHelp("Give up on the whole request after this long (default 5s; more than 0).", valueName: "duration"))
    var timeout: DurationArgument?

    @Argument(help: ArgumentHelp("The path to GET.", valueName: "path"))
    var path = "/readyz"

    func validate() throws {
        _ = try HTTPAddressOption.resolve(httpAddress)
        if let timeout, timeout.duration <= .zero {
            throw ValidationError("--timeout must be more than 0: a healthcheck that may wait forever checks nothing")
        }
        guard path.hasPrefix("/"), !path.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) else {
            var message = "the path must start with / and contain no spaces; got '\(path)'"
            // A misspelt option leaves its value to be read as the path; name the option, which is the real mistake.
            let known: Set<String> = ["--http-address", "--timeout", "--help", "-h"]
            let unknown = CommandLine.arguments.dropFirst(2).filter { $0.hasPrefix("-") && !known.contains(String($0.split(separator: "=")[0])) }
            if let first = unknown.first { message += " (is '\(first)' misspelt? the options are --http-address and --timeout)" }
            throw ValidationError(message)
        }
    }

    func run() throws {
        let address = try HTTPAddressOption.resolve(httpAddress)
        let limit = (timeout?.duration ?? .seconds(5)).seconds
        do {
            let answer = try HTTPProbe.get(host: address.loopbackHost, port: address.port, path: path, timeout: limit)
            let line = "\(answer.status) \(answer.body.trimmingWhitespace())"
            guard (200..<300).contains(answer.status) else {
                Output.printError(line)
                throw ExitStatus.migrationFailed.exitCode
            }
            Output.print(line)
        } catch let failure as HTTPProbe.Failure {
            Output.printError("error: \(failure.description)")
            throw ExitStatus.migrationFailed.exitCode
        }
    }
}
