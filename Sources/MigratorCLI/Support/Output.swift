import FoundationEssentials
import MigrationEngine
import SystemSupport

/// Prints results: human text by default, one JSON document with `--json`.
public enum Output {
    static func print(_ text: String) {
        writeStandardOutput(text + "\n")
    }

    public static func printError(_ text: String) {
        writeStandardError(text + "\n")
    }

    static func json<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        print(String(decoding: data, as: UTF8.self))
    }

    /// A failure as `--json` prints it: the error's fields, and the text a terminal shows.
    struct Failure: Encodable {
        var ok = false
        var exitCode: Int32
        var error: ErrorBody

        struct ErrorBody: Encodable {
            var code: String
            /// The first problem's message, without location or prefix.
            var message: String
            var diagnostics: [Diagnostic]
            var notes: [String]
            var appliedBeforeFailure: [String]
            /// The first problem's server fields, when the server reported it.
            var server: ServerDiagnostics?
            /// Everything, as the terminal shows it.
            var text: String
        }
    }

    /// Reports a failure in the chosen form and returns the exit status that goes with it.
    public static func fail(_ error: MigrationError, json: Bool) -> ExitStatus {
        let status = ExitStatus(error.code)
        let text = ErrorText.render(error)
        if json {
            Output.json(Failure(
                exitCode: status.rawValue,
                error: .init(
                    code: error.code.rawValue, message: error.message, diagnostics: error.diagnostics,
                    notes: error.notes, appliedBeforeFailure: error.appliedBeforeFailure, server: error.serverError,
                    text: text
                )
            ))
        }
        printError(text)
        return status
    }

    static func milliseconds(_ value: Double) -> String {
        value < 10 ? TextFormat.fixed(value, 1) + " ms" : "\(Int(value.rounded())) ms"
    }
}
