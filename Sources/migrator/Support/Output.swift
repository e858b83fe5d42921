import FoundationEssentials
import MigrationEngine
import SystemSupport

/// Prints results: human text by default, one JSON document with `--json`.
enum Output {
    static func print(_ text: String) {
        writeStandardOutput(text + "\n")
    }

    static func printError(_ text: String) {
        writeStandardError(text + "\n")
    }

    static func json<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        print(String(decoding: data, as: UTF8.self))
    }

    /// A failure as `--json` prints it.
    struct Failure: Encodable {
        var ok = false
        var exitCode: Int32
        var error: ErrorBody

        struct ErrorBody: Encodable {
            var code: String
            var message: String
            var appliedBeforeFailure: [String]
            var server: SendablePostgresDetails?
        }
    }

    /// Reports a failure in the chosen form and returns the exit status that goes with it.
    static func fail(_ error: MigrationError, json: Bool) -> ExitStatus {
        let status = ExitStatus(error.code)
        if json {
            Output.json(Failure(
                exitCode: status.rawValue,
                error: .init(
                    code: error.code.rawValue, message: error.description,
                    appliedBeforeFailure: error.appliedBeforeFailure, server: error.serverError
                )
            ))
        }
        printError(error.description)
        return status
    }

    static func milliseconds(_ value: Double) -> String {
        value < 10 ? TextFormat.fixed(value, 1) + " ms" : "\(Int(value.rounded())) ms"
    }
}
