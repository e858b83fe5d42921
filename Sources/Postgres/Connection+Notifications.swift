import CLibPQ
#if canImport(Glibc)
import Glibc
#endif

/// A NOTIFY received on a channel this connection listens to.
public struct PostgresNotification: Sendable, Equatable {
    public var channel: String
    public var payload: String
    /// The server process that sent it.
    public var senderPID: Int32
}

extension Connection {
    /// Starts listening on a channel. The name is quoted as an identifier by libpq, never spliced raw.
    public func listen(_ channel: String) throws(PostgresError) {
        try query("LISTEN " + (try quotedIdentifier(channel)))
    }

    public func unlisten(_ channel: String) throws(PostgresError) {
        try query("UNLISTEN " + (try quotedIdentifier(channel)))
    }

    /// Waits up to `timeout` for notifications and returns every one that has arrived (empty on timeout). It blocks
    /// the calling thread on the connection's socket, holding no transaction.
    /// - Throws: ``PostgresError`` `.connectionLost` when the connection broke, so a caller can reconnect.
    public func waitForNotifications(timeout: Duration) throws(PostgresError) -> [PostgresNotification] {
        dropAhead()
        var received = drainNotifications()
        if !received.isEmpty { return received }
        let socket = PQsocket(handle)
        guard socket >= 0 else { throw lostConnection() }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let parts = timeout.components
        let milliseconds = Int32(clamping: parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&descriptor, 1, max(0, milliseconds))
        if ready < 0 && errno != EINTR { throw lostConnection() }
        if ready > 0 {
            guard PQconsumeInput(handle) == 1 else { throw lostConnection() }
            received = drainNotifications()
        }
        if PQstatus(handle) != CONNECTION_OK { throw lostConnection() }
        return received
    }

    private func drainNotifications() -> [PostgresNotification] {
        var received: [PostgresNotification] = []
        while let notification = PQnotifies(handle) {
            received.append(PostgresNotification(
                channel: String(cString: notification.pointee.relname),
                payload: String(cString: notification.pointee.extra),
                senderPID: notification.pointee.be_pid
            ))
            PQfreemem(notification)
        }
        return received
    }

    private func quotedIdentifier(_ name: String) throws(PostgresError) -> String {
        guard let quoted = PQescapeIdentifier(handle, name, name.utf8.count) else {
            throw PostgresError(code: .clientError, message: "the name '\(name)' cannot be quoted as an identifier")
        }
        defer { PQfreemem(quoted) }
        return String(cString: quoted)
    }

    private func lostConnection() -> PostgresError {
        connectionError(defaultCode: .connectionLost)
    }
}
