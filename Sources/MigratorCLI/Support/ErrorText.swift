import MigrationEngine

/// Renders errors the way a compiler does: `file:line:column: error: message (SQLSTATE x)`, the line with a caret
/// under the column, the server's detail, hint and context, then `hint:` and `note:` lines.
enum ErrorText {
    static func render(_ error: MigrationError) -> String {
        var lines = error.diagnostics.flatMap(render)
        lines += error.notes.map { "note: \($0)" }
        if error.reportsAppliedMigrations {
            lines.append(
                error.appliedBeforeFailure.isEmpty
                    ? "note: no migration was applied by this run"
                    : "note: applied by this run before the failure: " + error.appliedBeforeFailure.joined(separator: ", ")
            )
        }
        return lines.joined(separator: "\n")
    }

    static func render(_ diagnostic: Diagnostic) -> [String] {
        var header = diagnostic.location.map { "\($0): " } ?? ""
        header += "error: " + diagnostic.message
        if let sqlState = diagnostic.server?.sqlState { header += " (SQLSTATE \(sqlState))" }
        var lines = [header]
        if let location = diagnostic.location, let line = location.line, let column = location.column,
           let text = location.lineText {
            lines += excerpt(text, line: line, column: column)
        }
        if let server = diagnostic.server {
            if let detail = server.detail { lines.append("detail: \(detail)") }
            if let hint = server.hint { lines.append("hint: \(hint)") }
            if let context = server.context { lines.append("context: \(context)") }
        }
        if let hint = diagnostic.hint { lines.append("hint: \(hint)") }
        lines += diagnostic.notes.map { "note: \($0)" }
        return lines
    }

    /// ```
    ///    12 | CREATE INDEX ON sites (name);
    ///       |                 ^
    /// ```
    static func excerpt(_ text: String, line: Int, column: Int) -> [String] {
        let gutter = String(line)
        let pad = String(repeating: " ", count: max(4, gutter.count + 1))
        let lead = String(repeating: " ", count: pad.count - gutter.count) + gutter
        // Keep tabs in the caret line so the caret sits under the column in any terminal.
        let prefix = text.unicodeScalars.prefix(max(0, column - 1)).map { $0 == "\t" ? "\t" : " " }.joined()
        return ["\(lead) | \(text)", "\(pad) | \(prefix)^"]
    }
}
