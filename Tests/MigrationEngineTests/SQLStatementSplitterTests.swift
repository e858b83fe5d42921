import MigrationEngine
import Testing

@Suite("SQLStatementSplitter")
struct SQLStatementSplitterTests {
    /// Where a statement is expected to start, in the units PostgreSQL reports (unicode scalars).
    struct ExpectedPosition: Sendable, Equatable, CustomStringConvertible {
        let line: Int
        let column: Int
        let offset: Int

        init(_ line: Int, _ column: Int, _ offset: Int) {
            self.line = line
            self.column = column
            self.offset = offset
        }

        var description: String { "\(line):\(column)@\(offset)" }
    }

    /// One row of the splitting table. Positions are only given where they are the point of the row.
    struct SplitCase: Sendable, CustomTestStringConvertible {
        let name: String
        let input: String
        let expected: [String]
        var positions: [ExpectedPosition]? = nil

        var testDescription: String { name }
    }

    static let splitCases: [SplitCase] = [
        // Basics
        SplitCase(
            name: "simple multi-statement",
            input: "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nSELECT * FROM a;\n",
            expected: ["CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)", "SELECT * FROM a"],
            positions: [ExpectedPosition(1, 1, 0), ExpectedPosition(2, 1, 25), ExpectedPosition(3, 1, 51)]),
        SplitCase(
            name: "trailing statement without semicolon",
            input: "SELECT 1;\nSELECT 2\n\n",
            expected: ["SELECT 1", "SELECT 2"]),
        SplitCase(name: "empty input", input: "", expected: []),
        SplitCase(name: "only whitespace", input: " \n\t\r\n  ", expected: []),
        SplitCase(name: "only comments", input: "-- one; two\n/* three; 'four' */\n-- five", expected: []),
        SplitCase(name: "lone semicolons", input: ";;;", expected: []),
        SplitCase(name: "empty statements between real ones", input: "; ;SELECT 1;; -- x\n;", expected: ["SELECT 1"]),
        SplitCase(
            name: "trailing whitespace trimmed, inner comments kept",
            input: "SELECT 1 /* keep; me */  \n ;",
            expected: ["SELECT 1 /* keep; me */"]),
        SplitCase(
            name: "last statement ending in a line comment keeps it",
            input: "SELECT 1 -- trailing; note",
            expected: ["SELECT 1 -- trailing; note"]),

        // Single-quoted strings
        SplitCase(
            name: "doubled quote inside string",
            input: "SELECT 'it''s; fine'; SELECT 2",
            expected: ["SELECT 'it''s; fine'", "SELECT 2"]),
        SplitCase(
            name: "backslash is not an escape in a plain string",
            input: #"SELECT 'C:\' ; select 2"#,
            expected: [#"SELECT 'C:\'"#, "select 2"]),
        SplitCase(
            name: "E string with escaped quote",
            input: #"SELECT E'\'' ; SELECT 3"#,
            expected: [#"SELECT E'\''"#, "SELECT 3"]),
        SplitCase(
            name: "E string ending in escaped backslash",
            input: #"SELECT E'a\\' ; x"#,
            expected: [#"SELECT E'a\\'"#, "x"]),
        SplitCase(
            name: "lowercase e string hides a semicolon",
            input: #"select e'\';' ; select 1"#,
            expected: [#"select e'\';'"#, "select 1"]),
        SplitCase(
            name: "e at the end of an identifier is not an E prefix",
            input: #"SELECT thee'\'; SELECT 2"#,
            expected: [#"SELECT thee'\'"#, "SELECT 2"]),
        SplitCase(
            name: "E string continued on the next line keeps backslash escapes",
            input: "SELECT E'a'\n'\\'; still'; SELECT 2",
            expected: ["SELECT E'a'\n'\\'; still'", "SELECT 2"]),
        SplitCase(
            name: "plain string continued on the next line keeps plain rules",
            input: "SELECT 'a' -- c\n  'b\\'; SELECT 2",
            expected: ["SELECT 'a' -- c\n  'b\\'", "SELECT 2"]),
        SplitCase(
            name: "B X N and U& prefixes use plain quoting",
            input: #"SELECT B'01', X'1F', N'x;y', U&'d\0061t;a', n'\'; SELECT 2"#,
            expected: [#"SELECT B'01', X'1F', N'x;y', U&'d\0061t;a', n'\'"#, "SELECT 2"]),

        // Quoted identifiers
        SplitCase(
            name: "quoted identifier with semicolon and doubled quote",
            input: #"SELECT 1 AS "a;b""c'"; SELECT 2"#,
            expected: [#"SELECT 1 AS "a;b""c'""#, "SELECT 2"]),
        SplitCase(
            name: "U& quoted identifier",
            input: #"SELECT U&"d;x"; SELECT 2"#,
            expected: [#"SELECT U&"d;x""#, "SELECT 2"]),

        // Dollar quoting
        SplitCase(
            name: "$$ body with semicolons",
            input: "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;\nSELECT 2;",
            expected: ["CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$", "SELECT 2"]),
        SplitCase(
            name: "$fn$ body containing $$",
            input: "DO $fn$ BEGIN EXECUTE $$SELECT 1;$$; END $fn$; SELECT 2",
            expected: ["DO $fn$ BEGIN EXECUTE $$SELECT 1;$$; END $fn$", "SELECT 2"]),
        SplitCase(
            name: "a different tag does not close a dollar quote",
            input: "SELECT $a$ $b$; $ab$; $a $a$; SELECT 2",
            expected: ["SELECT $a$ $b$; $ab$; $a $a$", "SELECT 2"]),
        SplitCase(
            name: "dollar-quote tags are case-sensitive",
            input: "SELECT $A$ x; $a$; $A$; SELECT 2",
            expected: ["SELECT $A$ x; $a$; $A$", "SELECT 2"]),
        SplitCase(
            name: "closing tag glued to a preceding $",
            input: "SELECT $q$a$$q$; SELECT 2",
            expected: ["SELECT $q$a$$q$", "SELECT 2"]),
        SplitCase(
            name: "$1 is a parameter, not a quote",
            input: "PREPARE p(int) AS SELECT $1; SELECT $2, 'x'",
            expected: ["PREPARE p(int) AS SELECT $1", "SELECT $2, 'x'"]),
        SplitCase(
            name: "$$ right after a parameter opens a quote",
            input: "SELECT $1$$; $$; SELECT 2",
            expected: ["SELECT $1$$; $$", "SELECT 2"]),
        SplitCase(
            name: "lone dollar sign",
            input: "SELECT $ ; SELECT $x ; SELECT 2",
            expected: ["SELECT $", "SELECT $x", "SELECT 2"]),
        SplitCase(
            name: "$ inside identifiers does not start a quote",
            input: "SELECT a$b, a$$b, _$$; SELECT 2",
            expected: ["SELECT a$b, a$$b, _$$", "SELECT 2"]),
        SplitCase(
            name: "$$ glued to a number's trailing letters belongs to the number",
            input: "SELECT 1e$$; SELECT 1.5$$;$$; SELECT 2",
            expected: ["SELECT 1e$$", "SELECT 1.5$$;$$", "SELECT 2"]),

        // Comments
        SplitCase(
            name: "nested block comment with semicolons and quotes",
            input: "SELECT /* a /* b; 'c */ d\"; */ 1; SELECT 2",
            expected: ["SELECT /* a /* b; 'c */ d\"; */ 1", "SELECT 2"]),
        SplitCase(
            name: "slash-star-slash does not close the comment it opens",
            input: "SELECT /*/ ; */ 1; SELECT 2",
            expected: ["SELECT /*/ ; */ 1", "SELECT 2"]),
        SplitCase(
            name: "comment start inside an operator",
            input: "SELECT 2 */* c; */ 3; SELECT 4",
            expected: ["SELECT 2 */* c; */ 3", "SELECT 4"]),
        SplitCase(
            name: "line comment with semicolon and quote",
            input: "SELECT 1 -- it's; here\n+ 1; SELECT 2",
            expected: ["SELECT 1 -- it's; here\n+ 1", "SELECT 2"]),
        SplitCase(
            name: "comments before a statement are not part of it",
            input: "-- header; comment\n/* block; */\n  SELECT 1;",
            expected: ["SELECT 1"],
            positions: [ExpectedPosition(3, 3, 34)]),
        SplitCase(
            name: "a carriage return ends a line comment but not a line",
            input: "-- c\rSELECT 1;\rSELECT 2",
            expected: ["SELECT 1", "SELECT 2"],
            positions: [ExpectedPosition(1, 6, 5), ExpectedPosition(1, 16, 15)]),

        // SQL-standard function bodies
        SplitCase(
            name: "BEGIN ATOMIC body with several statements and CASE",
            input: """
                CREATE FUNCTION f(x int) RETURNS int
                LANGUAGE sql
                BEGIN ATOMIC
                  SELECT 1;
                  SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END;
                  SELECT x;
                END;
                SELECT 2;
                """,
            expected: [
                """
                CREATE FUNCTION f(x int) RETURNS int
                LANGUAGE sql
                BEGIN ATOMIC
                  SELECT 1;
                  SELECT CASE WHEN x > 0 THEN 1 ELSE 2 END;
                  SELECT x;
                END
                """,
                "SELECT 2",
            ],
            positions: [ExpectedPosition(1, 1, 0), ExpectedPosition(8, 1, 136)]),
        SplitCase(
            name: "create or replace procedure with lowercase begin atomic",
            input: "create or replace procedure p() language sql begin atomic insert into t values (1); delete from u; end; call p()",
            expected: [
                "create or replace procedure p() language sql begin atomic insert into t values (1); delete from u; end",
                "call p()",
            ]),
        SplitCase(
            name: "words merely containing begin or end are not counted",
            input: #"CREATE FUNCTION begin_date() RETURNS int LANGUAGE sql RETURN 1; CREATE FUNCTION "begin"() RETURNS int LANGUAGE sql RETURN 1; SELECT 3"#,
            expected: [
                "CREATE FUNCTION begin_date() RETURNS int LANGUAGE sql RETURN 1",
                #"CREATE FUNCTION "begin"() RETURNS int LANGUAGE sql RETURN 1"#,
                "SELECT 3",
            ]),
        SplitCase(
            name: "quoted or longer END inside a body does not close it",
            input: #"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT "end" FROM t; SELECT end_date FROM t; END; SELECT 2"#,
            expected: [
                #"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT "end" FROM t; SELECT end_date FROM t; END"#,
                "SELECT 2",
            ]),
        SplitCase(
            name: "CASE inside parentheses in a body is not counted",
            input: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END; SELECT 2",
            expected: [
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT (CASE WHEN true THEN 1 END); END",
                "SELECT 2",
            ]),
        SplitCase(
            name: "transaction BEGIN and END are ordinary statements",
            input: "BEGIN; SELECT CASE WHEN true THEN 1 END; END; begin transaction; commit",
            expected: ["BEGIN", "SELECT CASE WHEN true THEN 1 END", "END", "begin transaction", "commit"]),
        SplitCase(
            name: "BEGIN in a statement that is not a routine definition",
            input: "CREATE TABLE t (a int); COMMENT ON TABLE t IS 'x'; BEGIN; SELECT 1",
            expected: ["CREATE TABLE t (a int)", "COMMENT ON TABLE t IS 'x'", "BEGIN", "SELECT 1"]),

        // Parentheses
        SplitCase(
            name: "semicolon inside parentheses does not split",
            input: "SELECT (1; 2); SELECT 3",
            expected: ["SELECT (1; 2)", "SELECT 3"]),
        SplitCase(
            name: "unbalanced closing parenthesis is ignored",
            input: "SELECT 1); SELECT 2",
            expected: ["SELECT 1)", "SELECT 2"]),

        // Realistic no-transaction migration
        SplitCase(
            name: "CREATE INDEX CONCURRENTLY statements",
            input: """
                -- migrate:no-transaction
                CREATE INDEX CONCURRENTLY idx_a ON t (a);
                CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_b ON t (lower(b)) WHERE b <> '';

                """,
            expected: [
                "CREATE INDEX CONCURRENTLY idx_a ON t (a)",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS idx_b ON t (lower(b)) WHERE b <> ''",
            ],
            positions: [ExpectedPosition(2, 1, 26), ExpectedPosition(3, 1, 68)]),

        // Positions
        SplitCase(
            name: "unicode before a statement counts scalars",
            input: "SELECT 'é';\nSELECT '😀'; SELECT 3",
            expected: ["SELECT 'é'", "SELECT '😀'", "SELECT 3"],
            positions: [ExpectedPosition(1, 1, 0), ExpectedPosition(2, 1, 12), ExpectedPosition(2, 13, 24)]),
        SplitCase(
            name: "unicode in a leading comment",
            input: "/* ünïcödé 😀 */ SELECT 1",
            expected: ["SELECT 1"],
            positions: [ExpectedPosition(1, 17, 16)]),
        SplitCase(
            name: "combining characters count as separate scalars",
            input: "SELECT 'e\u{301}'; SELECT 2",
            expected: ["SELECT 'e\u{301}'", "SELECT 2"],
            positions: [ExpectedPosition(1, 1, 0), ExpectedPosition(1, 14, 13)]),
        SplitCase(
            name: "multi-line positions",
            input: "\n\n  SELECT 1;\n\tSELECT\n2; /* x\n */ SELECT 3",
            expected: ["SELECT 1", "SELECT\n2", "SELECT 3"],
            positions: [ExpectedPosition(3, 3, 4), ExpectedPosition(4, 2, 15), ExpectedPosition(6, 5, 34)]),
    ]

    @Test("splits", arguments: splitCases)
    func splits(_ testCase: SplitCase) throws {
        let statements = try SQLStatementSplitter.split(testCase.input)
        #expect(statements.map(\.text) == testCase.expected)
        if let positions = testCase.positions {
            #expect(statements.map { ExpectedPosition($0.line, $0.column, $0.offset) } == positions)
        }
    }

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        let name: String
        let input: String
        let kind: SQLSyntaxError.Kind
        let position: ExpectedPosition
        let descriptionContains: String

        var testDescription: String { name }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(
            name: "unterminated string", input: "SELECT 1;\nSELECT 'abc;\nSELECT 2;",
            kind: .unterminatedString, position: ExpectedPosition(2, 8, 17), descriptionContains: "unterminated quoted string"),
        ErrorCase(
            name: "E string whose last quote is escaped", input: "SELECT 1;\nSELECT E'ab\\';",
            kind: .unterminatedString, position: ExpectedPosition(2, 8, 17), descriptionContains: "unterminated quoted string"),
        ErrorCase(
            name: "E string ending in a lone backslash", input: "SELECT E'ab\\",
            kind: .unterminatedString, position: ExpectedPosition(1, 8, 7), descriptionContains: "unterminated quoted string"),
        ErrorCase(
            name: "continued string reports where the literal began", input: "SELECT 'a'\n'b",
            kind: .unterminatedString, position: ExpectedPosition(1, 8, 7), descriptionContains: "unterminated quoted string"),
        ErrorCase(
            name: "unterminated quoted identifier", input: "SELECT 'é', \"ü;",
            kind: .unterminatedQuotedIdentifier, position: ExpectedPosition(1, 13, 12),
            descriptionContains: "unterminated quoted identifier"),
        ErrorCase(
            name: "unterminated dollar quote", input: "SELECT 1;\n  SELECT $fn$ body $fn ; $$;",
            kind: .unterminatedDollarQuote, position: ExpectedPosition(2, 10, 19),
            descriptionContains: "unterminated dollar-quoted string $fn$ starting here"),
        ErrorCase(
            name: "unterminated $$", input: "DO $$ BEGIN",
            kind: .unterminatedDollarQuote, position: ExpectedPosition(1, 4, 3),
            descriptionContains: "unterminated dollar-quoted string $$ starting here"),
        ErrorCase(
            name: "nested comment closed only once", input: "SELECT 1;\n/* a /* b */ SELECT 2;",
            kind: .unterminatedBlockComment, position: ExpectedPosition(2, 1, 10),
            descriptionContains: "unterminated /* comment starting here"),
    ]

    @Test("reports where an unterminated construct starts", arguments: errorCases)
    func reportsUnterminated(_ testCase: ErrorCase) {
        #expect {
            _ = try SQLStatementSplitter.split(testCase.input)
        } throws: { error in
            guard let error = error as? SQLSyntaxError else { return false }
            return error.kind == testCase.kind
                && ExpectedPosition(error.line, error.column, error.offset) == testCase.position
                && error.description.contains(testCase.descriptionContains)
        }
    }

    @Test func errorCarriesAllFields() {
        do throws(SQLSyntaxError) {
            _ = try SQLStatementSplitter.split("SELECT /* x")
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .unterminatedBlockComment)
            #expect(ExpectedPosition(error.line, error.column, error.offset) == ExpectedPosition(1, 8, 7))
            #expect(error.description == "unterminated /* comment starting here")
        }
    }

    @Test(
        "leading words",
        arguments: [
            ("CREATE INDEX CONCURRENTLY idx ON t (a)", 2, ["CREATE", "INDEX"]),
            ("begin", 3, ["BEGIN"]),
            ("start /* a; */ transaction -- b\n isolation level serializable", 3, ["START", "TRANSACTION", "ISOLATION"]),
            ("commit prepared 'x'", 5, ["COMMIT", "PREPARED"]),
            (#"SELECT "x" FROM t"#, 3, ["SELECT"]),
            ("SELECT E'x'", 3, ["SELECT"]),
            ("SELECT U&'x'", 3, ["SELECT"]),
            ("SELECT(1)", 3, ["SELECT"]),
            ("alter table ünï add", 3, ["ALTER", "TABLE", "üNï"]),
            ("select a$b", 3, ["SELECT", "A$B"]),
            ("SELECT 1", 0, []),
        ] as [(String, Int, [String])])
    func leadingWords(_ source: String, _ count: Int, _ expected: [String]) throws {
        let statements = try SQLStatementSplitter.split(source)
        try #require(statements.count == 1)
        #expect(statements[0].leadingWords(count) == expected)
    }

    @Test(
        "transaction control",
        arguments: [
            ("BEGIN", true),
            ("begin transaction isolation level serializable", true),
            ("BEGIN WORK", true),
            ("START TRANSACTION", true),
            ("COMMIT", true),
            ("commit and chain", true),
            ("END", true),
            ("end transaction", true),
            ("ROLLBACK", true),
            ("ROLLBACK AND NO CHAIN", true),
            ("ABORT", true),
            ("commit prepared 'x'", true),
            ("ROLLBACK PREPARED 'x'", true),
            ("PREPARE TRANSACTION 'x'", true),
            ("-- note\nCOMMIT", true),
            ("SAVEPOINT a", false),
            ("ROLLBACK TO SAVEPOINT a", false),
            ("rollback to a", false),
            ("ROLLBACK WORK TO SAVEPOINT a", false),
            ("RELEASE a", false),
            ("RELEASE SAVEPOINT a", false),
            ("PREPARE q AS SELECT 1", false),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false),
            ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", false),
            ("DO $$ BEGIN NULL; END $$", false),
            ("SELECT 1", false),
            (#""begin""#, false),
        ] as [(String, Bool)])
    func transactionControl(_ source: String, _ expected: Bool) throws {
        let statements = try SQLStatementSplitter.split(source)
        try #require(statements.count == 1)
        #expect(SQLStatementSplitter.isTransactionControl(statements[0]) == expected)
    }

    /// Guards the single-pass design: a large script must come back whole, with positions
    /// still right at its far end (timing is left to benchmarks, not unit tests).
    @Test func largeScript() throws {
        let count = 100_000
        var script = ""
        script.reserveCapacity(count * 56)
        for i in 0..<count {
            switch i % 4 {
            case 0: script += "INSERT INTO t (id, note) VALUES (\(i), 'row; \(i) it''s');\n"
            case 1: script += "/* c; */ UPDATE t SET note = $$x; \(i)$$ WHERE id = \(i);\n"
            case 2: script += "-- c;\nDELETE FROM \"t;x\" WHERE id = \(i) AND é = 'ü';\n"
            default: script += "CREATE INDEX CONCURRENTLY i\(i) ON t ((id + \(i)));\n"
            }
        }
        #expect(script.utf8.count > 5_000_000)

        let statements = try SQLStatementSplitter.split(script)
        #expect(statements.count == count)
        let last = try #require(statements.last)
        #expect(last.text == "CREATE INDEX CONCURRENTLY i\(count - 1) ON t ((id + \(count - 1)))")
        #expect(last.line == count + count / 4)
        #expect(last.column == 1)
        #expect(last.offset == script.unicodeScalars.count - last.text.unicodeScalars.count - 2)
    }
}
