import CPGQuery
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// PostgreSQL's own grammar, through libpg_query (the server's parser as a C library; its version is
/// ``grammarVersion``).
enum PostgresParser {
    /// The PostgreSQL release whose grammar libpg_query carries.
    static let grammarVersion = PG_VERSION

    /// Why a text could not be parsed: the parser's message and the 1-based character position it points at.
    struct Failure: Error, Sendable {
        var message: String
        /// 1-based, in characters (Unicode scalars) of the text; 0 when the parser named none.
        var position: Int
    }

    /// The text's top-level statements, in order.
    /// - Throws: ``Failure`` for a syntax error, or a parse tree that is not the JSON libpg_query documents.
    static func parse(_ text: String) throws(Failure) -> [ParsedStatement] {
        let result = pg_query_parse(text)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error {
            throw Failure(
                message: error.pointee.message.map { String(cString: $0) } ?? "syntax error",
                position: Int(error.pointee.cursorpos)
            )
        }
        guard let tree = result.parse_tree else { throw Failure(message: "libpg_query returned no parse tree", position: 0) }
        let root: Node
        do {
            root = try JSONDecoder().decode(Node.self, from: Data(bytes: tree, count: strlen(tree)))
        } catch {
            throw Failure(message: "libpg_query's parse tree could not be read: \(error)", position: 0)
        }
        let bytes = Array(text.utf8)
        return root["stmts"]?.array.compactMap { raw -> ParsedStatement? in
            guard let statement = raw["stmt"], let type = statement.type, let fields = statement[type] else { return nil }
            let location = raw["stmt_location"]?.int ?? 0
            let (start, comments) = leadingTrivia(bytes, from: location)
            return ParsedStatement(type: type, fields: fields, start: start, leadingComments: comments)
        } ?? []
    }

    /// Skips the white space and comments a statement's location starts with (the parser puts it just after the
    /// previous `;`), returning where its first token is and the `--` comments passed. Only white space and
    /// comments can stand there, so this needs none of the lexer's rules for strings; `/* */` comments nest, as in
    /// PostgreSQL's scanner (`scan.l`, `xc`).
    static func leadingTrivia(_ bytes: [UInt8], from location: Int) -> (Int, [(text: String, offset: Int)]) {
        var index = max(0, location)
        var comments: [(text: String, offset: Int)] = []
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D || byte == 0x0C || byte == 0x0B {
                index += 1
            } else if byte == 0x2D, index + 1 < bytes.count, bytes[index + 1] == 0x2D {
                let end = bytes[index...].firstIndex(of: 0x0A) ?? bytes.count
                comments.append((String(decoding: bytes[index..<end], as: UTF8.self), index))
                index = end
            } else if byte == 0x2F, index + 1 < bytes.count, bytes[index + 1] == 0x2A {
                var depth = 1
                index += 2
                while index < bytes.count, depth > 0 {
                    if bytes[index] == 0x2F, index + 1 < bytes.count, bytes[index + 1] == 0x2A {
                        depth += 1
                        index += 2
                    } else if bytes[index] == 0x2A, index + 1 < bytes.count, bytes[index + 1] == 0x2F {
                        depth -= 1
                        index += 2
                    } else {
                        index += 1
                    }
                }
            } else {
                break
            }
        }
        return (index, comments)
    }
}
