import CLibPQ
import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif
import Logging
import SystemSupport

/// One libpq connection. Not thread-safe: one task or thread owns it at a time.
///
/// Every call blocks until the server answers. Callers that live in a concurrent program keep it off the
/// cooperative pool; the command-line runs are sequential and call it directly.
public final class Connection {
    let handle: OpaquePointer
    private let noticeSink: NoticeSink
    /// Removes the password and connection string from anything this connection reports.
    public let redactor: Redactor
    /// Whether the user said a pooler in session mode may stand between migrator and the server.
    public let allowsSessionPooler: Bool
    /// How many requests were sent to the server and answered. `--json` output reports it.
    public private(set) var roundTrips = 0

    /// Server notices (`RAISE NOTICE`, warnings) are logged here with `db.*` metadata. Callers add their own
    /// metadata (which migration is running) by changing this logger.
    public var logger: Logger {
        get { noticeSink.logger }
        set { noticeSink.logger = newValue }
    }

    /// Connects, or throws a ``PostgresError`` with code `.connectionFailed` (or `.invalidConnectionString`)
    /// whose message names the host and the server's reason, never the password.
    public init(config: ConnectionConfig, logger: Logger) throws(PostgresError) {
        try config.validate()
        let redactor = config.redactor
        let parameters = config.parameters
        let keywords = parameters.map { UnsafePointer(strdup($0.0)) } + [nil]
        let values = parameters.map { UnsafePointer(strdup($0.1)) } + [nil]
        defer {
            for pointer in keywords + values { free(UnsafeMutableRawPointer(mutating: pointer)) }
        }
        guard let handle = PQconnectdbParams(keywords, values, 1) else {
            throw PostgresError(code: .clientError, message: "libpq could not allocate a connection")
        }
        if PQstatus(handle) != CONNECTION_OK {
            let reason = Self.clean(String(cString: PQerrorMessage(handle)))
            PQfinish(handle)
            throw PostgresError(code: .connectionFailed, message: redactor.redact(reason))
        }
        self.handle = handle
        self.redactor = redactor
        self.allowsSessionPooler = config.allowSessionPooler
        self.noticeSink = NoticeSink(logger: logger)
        PQsetNoticeReceiver(
            handle,
            { context, result in
                guard let context, let result else { return }
                Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue().receive(result)
            },
            Unmanaged.passUnretained(noticeSink).toOpaque()
        )
    }

    deinit {
        PQfinish(handle)
    }

    /// `user@host:port/database`, for messages: never the password.
    public var safeDescription: String {
        func field(_ value: UnsafeMutablePointer<CChar>?) -> String { value.map { String(cString: $0) } ?? "" }
        let host = field(PQhost(handle))
        let shownHost = host.hasPrefix("/") ? "[\(host)]" : host
        return "\(field(PQuser(handle)))@\(shownHost):\(field(PQport(handle)))/\(field(PQdb(handle)))"
    }

    /// An option as libpq uses it on this live connection (e.g. `keepalives_idle`), or nil when unset.
    public func option(_ keyword: String) -> String? {
        guard let options = PQconninfo(handle) else { return nil }
        defer { PQconninfoFree(options) }
        var option = options
        while let name = option.pointee.keyword {
            if String(cString: name) == keyword { return option.pointee.val.map { String(cString: $0) } }
            option += 1
        }
        return nil
    }

    /// A setting the server reports to the client at connection and whenever it changes (`standard_conforming_strings`,
    /// `server_version`, `client_encoding`, …), as libpq last heard it: no round trip.
    public func parameterStatus(_ name: String) -> String? {
        PQparameterStatus(handle, name).map { String(cString: $0) }
    }

    /// The server process serving this connection, as `pg_stat_activity.pid` shows it.
    public var backendPID: Int32 { PQbackendPID(handle) }

    /// The server's version as libpq reports it at connection (150004 for 15.4), known without a query.
    public var serverVersion: Int { Int(PQserverVersion(handle)) }

    public var isConnected: Bool { PQstatus(handle) == CONNECTION_OK }

    public enum TransactionStatus: Sendable {
        case idle, active, inTransaction, inFailedTransaction, unknown
    }

    public var transactionStatus: TransactionStatus {
        dropAhead()
        return switch PQtransactionStatus(handle) {
        case PQTRANS_IDLE: .idle
        case PQTRANS_ACTIVE: .active
        case PQTRANS_INTRANS: .inTransaction
        case PQTRANS_INERROR: .inFailedTransaction
        default: .unknown
        }
    }

    /// A statement sent by ``sendAhead(_:_:)`` whose answer has not been read yet: its text and parameters.
    private var ahead: (sql: String, parameters: [String?])?

    /// Sends one statement and returns at once, so that the server runs it while the caller does other work. The
    /// next ``query(_:_:)`` of exactly this text and these parameters takes its answer (or its error) instead of
    /// sending it again, and counts no second round trip; any other use of the connection first reads the answer
    /// and drops it. One statement at a time: while one is ahead, this does nothing. For a read whose answer is
    /// only wanted when nothing else runs first (the role hook's check of a run with nothing to apply), sent right
    /// after the history is read, so the server answers it while the files are compared with the history.
    public func sendAhead(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) {
        guard ahead == nil else { return }
        let values = parameters.map { $0?.postgresText }
        let sent = Self.withCStrings(values) { texts in
            PQsendQueryParams(handle, sql, Int32(texts.count), nil, texts, nil, nil, 0) == 1
        }
        // When it could not be sent, the query that wants it sends it, and fails there if the connection did.
        guard sent else { return }
        roundTrips += 1
        ahead = (sql, values)
    }

    /// The answer of the statement sent ahead, when it is `sql` with `parameters`; nil (and the answer dropped,
    /// error or not) when another statement was sent ahead, or none.
    private func takeAhead(_ sql: String, _ parameters: [String?]) throws(PostgresError) -> QueryResult? {
        guard let pending = ahead else { return nil }
        ahead = nil
        let wanted = pending.sql == sql && pending.parameters == parameters
        var answer: Result<QueryResult, PostgresError>?
        while let result = PQgetResult(handle) {
            guard answer == nil else { PQclear(result); continue }
            do {
                answer = .success(try consume(result, sql: pending.sql))
            } catch {
                answer = .failure(error)
            }
        }
        guard wanted else { return nil }
        guard let answer else { throw connectionError(defaultCode: .connectionLost) }
        return try answer.get()
    }

    /// Reads and drops the answer of a statement sent ahead, so that the connection is ready for another.
    func dropAhead() {
        guard ahead != nil else { return }
        _ = try? takeAhead("", [])
    }

    /// Runs one statement with parameters (`$1`, `$2`, …) through `PQexecParams`, in text format.
    @discardableResult
    public func query(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) throws(PostgresError) -> QueryResult {
        let values = parameters.map { $0?.postgresText }
        if ahead != nil, let answer = try takeAhead(sql, values) { return answer }
        roundTrips += 1
        let result = Self.withCStrings(values) { texts in
            PQexecParams(handle, sql, Int32(texts.count), nil, texts, nil, nil, 0)
        }
        return try consume(result, sql: sql)
    }

    /// Runs one `COPY … TO STDOUT` (no parameters) and returns the bytes it sent, in one round trip; read them with
    /// ``BinaryCopy`` when the statement says `(FORMAT binary)`.
    /// - Throws: the server's error (a missing table or column, no privilege), or a client error when `sql` is not a
    ///   COPY to the client.
    public func copyOut(_ sql: String) throws(PostgresError) -> [UInt8] {
        dropAhead()
        roundTrips += 1
        guard let first = PQexecParams(handle, sql, 0, nil, nil, nil, nil, 0) else {
            throw connectionError(defaultCode: .connectionLost)
        }
        guard PQresultStatus(first) == PGRES_COPY_OUT else {
            _ = try consume(first, sql: sql)
            throw PostgresError(code: .clientError, message: "copyOut needs a COPY … TO STDOUT statement")
        }
        PQclear(first)
        var data: [UInt8] = []
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(handle, &buffer, 0)
            if length > 0, let buffer {
                data.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: Int(length)))
                PQfreemem(buffer)
                continue
            }
            if let buffer { PQfreemem(buffer) }
            break
        }
        // The COPY's own end: its command tag, or the error that stopped it part way.
        _ = try drainResults(sql: sql)
        return data
    }

    /// The parameters as libpq takes them (NULL for a SQL NULL), valid during `body`.
    private static func withCStrings<T>(_ values: [String?], _ body: ([UnsafePointer<CChar>?]) -> T) -> T {
        let texts: [UnsafePointer<CChar>?] = values.map { value in value.map { UnsafePointer(strdup($0)) } }
        defer {
            for pointer in texts { free(UnsafeMutableRawPointer(mutating: pointer)) }
        }
        return body(texts)
    }

    /// Runs a script of one or more statements with the simple-query protocol, as psql does with a file.
    ///
    /// Error positions are relative to the whole script. The server stops at the first error; every result is read
    /// before returning so that the connection is ready for the next call. Each statement that completes yields one
    /// result, so the error's `completedStatements` is the 0-based index of the statement that failed.
    @discardableResult
    public func execute(script: String) throws(PostgresError) -> [QueryResult] {
        dropAhead()
        roundTrips += 1
        guard PQsendQuery(handle, script) == 1 else {
            throw connectionError(defaultCode: .connectionLost)
        }
        return try drainResults(sql: script)
    }

    /// Reads every result libpq still holds for the request just sent, so that the connection is ready for the next
    /// one, and returns them; the first error among them is thrown once all are read, its `completedStatements` the
    /// number of results before it (the server stops a script at its first error).
    private func drainResults(sql: String) throws(PostgresError) -> [QueryResult] {
        var results: [QueryResult] = []
        var firstError: PostgresError?
        while let result = PQgetResult(handle) {
            do {
                results.append(try consume(result, sql: sql))
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if var firstError {
            firstError.completedStatements = results.count
            throw firstError
        }
        if PQstatus(handle) != CONNECTION_OK { throw connectionError(defaultCode: .connectionLost) }
        return results
    }

    /// Copies a result out of libpq and frees it.
    private func consume(_ result: OpaquePointer?, sql: String) throws(PostgresError) -> QueryResult {
        guard let result else {
            throw connectionError(defaultCode: PQstatus(handle) == CONNECTION_OK ? .clientError : .connectionLost)
        }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return Self.copy(result)
        case PGRES_COPY_IN:
            _ = PQputCopyEnd(handle, "COPY FROM STDIN is not supported by migrator")
            throw PostgresError(
                code: .clientError,
                message: "COPY … FROM STDIN needs data from the client, which migrator does not send; "
                    + "use INSERT, or COPY from a server-side file"
            )
        case PGRES_COPY_OUT:
            var buffer: UnsafeMutablePointer<CChar>?
            while PQgetCopyData(handle, &buffer, 0) > 0 {
                if let buffer { PQfreemem(buffer) }
                buffer = nil
            }
            throw PostgresError(code: .clientError, message: "COPY … TO STDOUT is not supported by migrator")
        default:
            throw serverError(result)
        }
    }

    private static func copy(_ result: OpaquePointer) -> QueryResult {
        let columnCount = Int(PQnfields(result))
        let rowCount = Int(PQntuples(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var rows: [Row] = []
        rows.reserveCapacity(rowCount)
        for row in 0..<Int32(rowCount) {
            var values: [String?] = []
            values.reserveCapacity(columnCount)
            for column in 0..<Int32(columnCount) {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, row, column)))
                }
            }
            rows.append(Row(columns: columns, values: values))
        }
        let tag = String(cString: PQcmdStatus(result))
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return QueryResult(columns: columns, rows: rows, commandTag: tag, affectedRows: affected)
    }

    private func serverError(_ result: OpaquePointer) -> PostgresError {
        func field(_ code: Int32) -> String? {
            PQresultErrorField(result, code).map { String(cString: $0) }
        }
        let lost = PQstatus(handle) != CONNECTION_OK
        let primary = field(DiagnosticField.messagePrimary) ?? Self.clean(String(cString: PQresultErrorMessage(result)))
        var error = PostgresError(
            code: lost ? .connectionLost : .queryFailed,
            message: redactor.redact(primary.isEmpty ? Self.clean(String(cString: PQerrorMessage(handle))) : primary),
            sqlState: field(DiagnosticField.sqlstate)
        )
        error.severity = field(DiagnosticField.severityNonlocalized) ?? field(DiagnosticField.severity)
        error.detail = field(DiagnosticField.messageDetail)
        error.hint = field(DiagnosticField.messageHint)
        error.position = field(DiagnosticField.statementPosition).flatMap { Int($0) }
        error.internalPosition = field(DiagnosticField.internalPosition).flatMap { Int($0) }
        error.internalQuery = field(DiagnosticField.internalQuery)
        error.context = field(DiagnosticField.context)
        error.schemaName = field(DiagnosticField.schemaName)
        error.tableName = field(DiagnosticField.tableName)
        error.columnName = field(DiagnosticField.columnName)
        error.constraintName = field(DiagnosticField.constraintName)
        return error
    }

    func connectionError(defaultCode: PostgresError.Code) -> PostgresError {
        let message = Self.clean(String(cString: PQerrorMessage(handle)))
        let code: PostgresError.Code = PQstatus(handle) == CONNECTION_OK ? defaultCode : .connectionLost
        return PostgresError(
            code: code,
            message: redactor.redact(message.isEmpty ? "the connection to the server was lost" : message)
        )
    }

    /// libpq messages end in a newline and may start with a severity; people read them without either.
    static func clean(_ message: String) -> String {
        var text = message.trimmingWhitespace()
        for prefix in ["ERROR:", "FATAL:"] where text.hasPrefix(prefix) {
            text = String(text.dropFirst(prefix.count)).trimmingWhitespace()
        }
        return text
    }
}

/// Receives the server's notices from libpq's callback and logs them.
private final class NoticeSink {
    var logger: Logger

    init(logger: Logger) { self.logger = logger }

    func receive(_ result: OpaquePointer) {
        func field(_ code: Int32) -> String? {
            PQresultErrorField(result, code).map { String(cString: $0) }
        }
        var metadata: Logger.Metadata = [:]
        metadata["db.severity"] = .string(field(DiagnosticField.severityNonlocalized) ?? field(DiagnosticField.severity) ?? "NOTICE")
        metadata["db.message"] = .string(field(DiagnosticField.messagePrimary) ?? "")
        if let sqlState = field(DiagnosticField.sqlstate) { metadata["db.sqlstate"] = .string(sqlState) }
        if let detail = field(DiagnosticField.messageDetail) { metadata["db.detail"] = .string(detail) }
        if let hint = field(DiagnosticField.messageHint) { metadata["db.hint"] = .string(hint) }
        let severity = field(DiagnosticField.severityNonlocalized) ?? ""
        let level: Logger.Level = severity == "WARNING" ? .warning : (severity == "DEBUG" || severity == "LOG" ? .debug : .info)
        logger.log(level: level, "server notice", metadata: metadata)
    }
}

/// libpq's PG_DIAG_* field codes, which are character macros that Swift does not import.
enum DiagnosticField {
    static let severityNonlocalized = Int32(UInt8(ascii: "V"))
    static let severity = Int32(UInt8(ascii: "S"))
    static let sqlstate = Int32(UInt8(ascii: "C"))
    static let messagePrimary = Int32(UInt8(ascii: "M"))
    static let messageDetail = Int32(UInt8(ascii: "D"))
    static let messageHint = Int32(UInt8(ascii: "H"))
    static let statementPosition = Int32(UInt8(ascii: "P"))
    static let internalPosition = Int32(UInt8(ascii: "p"))
    static let internalQuery = Int32(UInt8(ascii: "q"))
    static let context = Int32(UInt8(ascii: "W"))
    static let schemaName = Int32(UInt8(ascii: "s"))
    static let tableName = Int32(UInt8(ascii: "t"))
    static let columnName = Int32(UInt8(ascii: "c"))
    static let constraintName = Int32(UInt8(ascii: "n"))
}
