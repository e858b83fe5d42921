import MigratorTestSupport
@testable import Postgres
import Testing

@Suite("binary COPY read as text")
struct BinaryCopyTests {
    /// Every type ``BinaryCopy`` reads, with the values that are easy to get wrong: the text a SELECT of the same
    /// rows prints is the reference.
    @Test("a binary COPY's rows turn into exactly the text a SELECT of the same columns prints, in one round trip")
    func sameTextAsSelect() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            try connection.execute(script: """
                CREATE TABLE t (n bigint, i integer, b boolean, d double precision, s text, at timestamptz, a text[]);
                INSERT INTO t VALUES
                  (9223372036854775807, -2147483648, true, 0.1, 'plain', '2026-12-03 14:24:13.052999+00', '{a,b}'),
                  (-1, 0, false, -1e300, 'quote " back \\ slash, {brace}', '1999-12-31 23:59:59.999+00', '{"x\\"y","z\\\\w",NULL,""}'),
                  (0, 7, NULL, 12345.678, 'ünïcode ✓', '1970-01-01 00:00:00+00', '{}'),
                  (NULL, NULL, true, 'NaN', '', '2000-02-29 12:00:00.0005+00', NULL),
                  (1, 1, false, 'Infinity', 'x', '1900-03-01 01:02:03.004+00', '{NULL}'),
                  (2, 2, true, 1, 'y', 'infinity', '{" "}'),
                  (3, 3, true, 2.5, 'z', '2400-12-31 23:59:59.123456+00', '{"multi\nline"}');
                """)
            let select = try connection.query("""
                SELECT n, i, b, d, s, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, a FROM t ORDER BY n NULLS FIRST, s
                """)
            let before = connection.roundTrips
            let data = try connection.copyOut("COPY (SELECT * FROM t ORDER BY n NULLS FIRST, s) TO STDOUT (FORMAT binary)")
            #expect(connection.roundTrips == before + 1)
            let copied = try BinaryCopy.textRows(data, types: [.int8, .int4, .bool, .float8, .text, .timestamptzUTC, .textArray])
            #expect(copied.count == 7)
            for (row, values) in zip(select.rows, copied) {
                for (index, column) in ["n", "i", "b", "d", "s", "at"].enumerated() {
                    if column == "d" {
                        // The server prints a double its own way; what matters is the value read back.
                        if let text = row.values[index], ["NaN", "Infinity", "-Infinity"].contains(text) {
                            #expect(values[index] == text)
                        } else {
                            #expect(row.values[index].flatMap(Double.init) == values[index].flatMap(Double.init))
                        }
                    } else {
                        #expect(row.values[index] == values[index], "column \(column)")
                    }
                }
                let arrayIndex = 6
                #expect(row.values[arrayIndex].map(PostgresArray.parse) == values[arrayIndex].map(PostgresArray.parse))
            }
            // The connection is ready for more.
            #expect(try connection.query("SELECT 1 AS one").first?.text("one") == "1")
        }
    }

    @Test("a COPY's error is the server's, a statement that is not a COPY is refused, and the connection goes on")
    func errors() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            let missing = #expect(throws: PostgresError.self) { try connection.copyOut("COPY missing_table TO STDOUT (FORMAT binary)") }
            #expect(missing?.sqlState == SQLState.undefinedTable)
            #expect(throws: PostgresError.self) { try connection.copyOut("SELECT 1") }
            // A COPY that fails after sending rows: the error, not a partial answer.
            #expect(throws: PostgresError.self) {
                try connection.copyOut("COPY (SELECT 1 / (3 - g) FROM generate_series(1, 5) g) TO STDOUT (FORMAT binary)")
            }
            #expect(try connection.query("SELECT 2 AS two").first?.text("two") == "2")
        }
    }

    @Test("a stream that is cut short, or a field that does not fit its type, is refused")
    func malformed() throws {
        try TestDatabase.with { database in
            let connection = try database.connect()
            let data = try connection.copyOut("COPY (SELECT 1::bigint, 'x'::text) TO STDOUT (FORMAT binary)")
            #expect(try BinaryCopy.textRows(data, types: [.int8, .text]) == [["1", "x"]])
            #expect(throws: BinaryCopy.Malformed.self) { try BinaryCopy.textRows(Array(data.dropLast(3)), types: [.int8, .text]) }
            #expect(throws: BinaryCopy.Malformed.self) { try BinaryCopy.textRows(data, types: [.int4, .text]) }
            #expect(throws: BinaryCopy.Malformed.self) { try BinaryCopy.textRows(data, types: [.int8]) }
            #expect(throws: BinaryCopy.Malformed.self) { try BinaryCopy.textRows(Array(data.dropFirst()), types: [.int8, .text]) }
        }
    }
}
