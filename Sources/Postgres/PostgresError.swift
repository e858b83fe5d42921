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
    /// shutting down or out of connection slots. A wrong password, an unknown database, a connection string that
    /// cannot be used, an SSL set-up that cannot work (a missing certificate file, a server without SSL when SSL is
    /// required, a certificate that does not verify) and a server that is not what `target_session_attrs` asks for
    /// are final. With several hosts, libpq reports one attempt per host: waiting may help when it may help any
    /// of them (one is down, another is a standby that cannot take writes yet).
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
            return Self.attempts(in: message).contains(where: Self.attemptMayBeRetried)
        case .invalidConnectionString, .queryFailed, .clientError:
            return false
        }
    }

    /// libpq's message for a failed connection, one entry per attempt (each starts "connection to server").
    static func attempts(in message: String) -> [String] {
        var attempts: [String] = []
        for line in message.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("connection to server") || attempts.isEmpty {
                attempts.append(String(line))
            } else {
                attempts[attempts.count - 1] += "\n" + line
            }
        }
        return attempts.isEmpty ? [message] : attempts
    }

    /// What libpq and the server say when the set-up itself is wrong: retrying the same attempt gives the same
    /// answer. Lower-case fragments of libpq's messages (PostgreSQL 13 to 17).
    static let finalAttemptReasons = [
        // SSL: the files, the server's support, the certificate.
        "ssl was required", "root certificate file", "could not open certificate file", "could not load private key",
        "could not open private key file", "private key file", "certificate present, but not private key",
        "certificate verify failed", "does not match host name", "could not get server's host name from server certificate",
        "ssl_min_protocol_version", "ssl_max_protocol_version", "channel binding is required",
        // A value libpq does not know (sslmode, gssencmode, target_session_attrs, load_balance_hosts, ...).
        "invalid sslmode value", "invalid gssencmode value", "invalid target_session_attrs value",
        "invalid channel_binding value", "invalid load_balance_hosts value", "invalid require_auth",
        "invalid integer value", "invalid port number",
        // target_session_attrs: the server answers, but is not the kind asked for.
        "session is read-only", "session is not read-only", "server is in hot standby mode",
        "server is not in hot standby mode",
    ]

    static func attemptMayBeRetried(_ attempt: String) -> Bool {
        let text = attempt.lowercased()
        if finalAttemptReasons.contains(where: { text.contains($0) }) { return false }
        // libpq does not expose the SQLSTATE of a refused start-up; the server's refusal is marked FATAL.
        if text.contains("fatal:") {
            return text.contains("starting up") || text.contains("shutting down")
                || text.contains("too many clients") || text.contains("not yet accepting connections")
                || text.contains("in recovery mode")
        }
        return true
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
