import MigrationEngine
import Testing
@testable import MigratorCLI

/// The one renderer of errors: what a terminal shows for the error data the engine gives.
@Suite("Error text")
struct ErrorTextTests {
    @Test("a located problem is rendered compiler-style: place, message, SQLSTATE, the line with a caret, server fields, hint, notes")
    func located() {
        var error = MigrationError(
            code: .migrationFailed, message: #"relation "sites" does not exist"#,
            location: SourceLocation(file: "Migrations/0002_bad.sql", line: 4, column: 19, lineText: "\t CREATE INDEX ON sites (name);"),
            hint: "create sites first", notes: ["the connection stayed open"],
            server: ServerDiagnostics(sqlState: "42P01", message: #"relation "sites" does not exist"#, detail: "d", hint: "h", context: "c")
        ).adding(note: "0002_bad was rolled back; nothing of it remains")
        error.appliedBeforeFailure = ["0001_ok"]
        #expect(ErrorText.render(error) == """
            Migrations/0002_bad.sql:4:19: error: relation "sites" does not exist (SQLSTATE 42P01)
               4 | \t CREATE INDEX ON sites (name);
                 | \t                 ^
            detail: d
            hint: h
            context: c
            hint: create sites first
            note: the connection stayed open
            note: 0002_bad was rolled back; nothing of it remains
            note: applied by this run before the failure: 0001_ok
            """)
    }

    @Test("several problems are listed in order; a problem without a place has none; no excerpt without the line's text")
    func several() {
        let error = MigrationError(code: .historyMismatch, diagnostics: [
            Diagnostic(message: "migration 1 was changed", location: SourceLocation(file: "M/0001_a.sql")),
            Diagnostic(message: "not UTF-8", location: SourceLocation(file: "M/0002_b.sql", line: 2, column: 12)),
            Diagnostic(message: "no place", hint: "do this"),
        ], notes: ["nothing was applied"])
        #expect(ErrorText.render(error) == """
            M/0001_a.sql: error: migration 1 was changed
            M/0002_b.sql:2:12: error: not UTF-8
            error: no place
            hint: do this
            note: nothing was applied
            """)
    }

    @Test("a failed migration without earlier ones says that nothing was applied by this run")
    func nothingApplied() {
        let error = MigrationError(code: .migrationFailed, message: "boom")
        #expect(ErrorText.render(error) == "error: boom\nnote: no migration was applied by this run")
        #expect(ErrorText.render(MigrationError(code: .lockTimeout, message: "gave up")) == "error: gave up")
    }
}
