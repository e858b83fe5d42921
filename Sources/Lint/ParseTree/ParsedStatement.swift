/// One top-level statement of a file as PostgreSQL's parser sees it.
struct ParsedStatement: Sendable {
    /// The statement's node type, e.g. `IndexStmt`, and its fields.
    var type: String
    var fields: Node
    /// 0-based UTF-8 byte offset of its first token.
    var start: Int
    /// The `--` comments between the previous statement and this one (its excuses are among them), each with the
    /// byte offset of its first dash.
    var leadingComments: [(text: String, offset: Int)]
}
