import FoundationEssentials

/// An error from libpq or the server, with everything the server said about it.
///
/// `description` is what a person reads in a terminal. It never holds a password or a full connection string:
/// messages that come from libpq while connecting are passed through ``Redactor`` first.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The connection string itself could not be parsed.
        case invalidConnectionString
        /// No connection could be made, or the server refused it (authentication, unknown database, …).
        case connectionFailed
        /// The server answered a statement with an error.
        case queryFailed
        /// The connection broke while a statement ran or was sent.
        case connectionLost
        /// Something libpq reports outside the protocol's normal flow (out of memory, COPY not supported, …).
        case clientError
    }

    public var code: Code
    /// The primary message, without the "ERROR:" prefix.
    public var message: String
    public var severity: String?
    /// The five-character SQLSTATE, when the server sent one.
    public var sqlState: String?
    public var detail: String?
    public var hint: String?
    /// 1-based character position of the error in the statement sent, when the server gives one.
    public var position: Int?
    public var internalPosition: Int?
    public var internalQuery: String?
    public var context: String?
    public var schemaName: String?
    public var tableName: String?
    public var columnName: String?
    public var constraintName: String?
    /// For a script sent with ``Connection/execute(script:)``: how many of its statements completed before this
    /// error, which tells the caller which statement failed when the server gives no position.
    public var completedStatements: Int?

    public init(code: Code, message: String, sqlState: String? = nil) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
    }

    /// True when waiting and trying again may help: the server was not reachable, or it said it is starting up,
    /// shutting down or out of connection slots. A wrong password or an unknown database is final.
    public var isTransient: Bool {
        switch code {
        case .connectionLost:
            return true
        case .connectionFailed:
            if let sqlState {
                // 57P03 cannot_connect_now, 53300 too_many_connections, 08xxx connection exceptions.
                return sqlState == SQLState.cannotConnectNow || sqlState == SQLState.tooManyConnections
                    || sqlState.hasPrefix(SQLState.connectionExceptionClass)
            }
            // libpq does not expose the SQLSTATE of a refused start-up; the server's refusal is marked FATAL.
            let text = message.lowercased()
            if text.contains("fatal:") {
                return text.contains("starting up") || text.contains("shutting down")
                    || text.contains("too many clients") || text.contains("not yet accepting connections")
                    || text.contains("in recovery mode")
            }
            return true
        case .invalidConnectionString, .queryFailed, .clientError:
            return false
        }
    }

    public var description: String {
        var text = message
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let detail { text += "\n  detail: \(detail)" }
        if let hint { text += "\n  hint: \(hint)" }
        if let context { text += "\n  context: \(context.replacing("\n", with: "\n           "))" }
        return text
    }
}
