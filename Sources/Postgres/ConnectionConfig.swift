import CLibPQ
import FoundationEssentials
import SystemSupport

/// Where and how to connect, as given by the user, plus the defaults migrator adds.
///
/// The connection string may be a `postgresql://` URL or a libpq key/value string; when there is none, libpq's own
/// `PG*` environment variables, `.pgpass` and service files apply, exactly as in psql. Everything is handed to
/// libpq: multi-host strings, `sslmode` and `target_session_attrs` work as they do there.
public struct ConnectionConfig: Sendable {
    /// The URL or key/value string, or nil to let libpq use the environment and its defaults.
    public var connectionString: String?
    /// Sent as `fallback_application_name`, so a user's own `application_name` still wins.
    public var applicationName: String
    /// Seconds libpq waits for a connection before giving up (libpq's `connect_timeout`), unless the
    /// connection string sets its own.
    public var connectTimeoutSeconds: Int
    /// TCP keepalive settings: a runner that was killed, or whose network vanished, frees its session (and its
    /// advisory lock) within about idle + interval × count seconds.
    public var keepalivesIdleSeconds: Int
    public var keepalivesIntervalSeconds: Int
    public var keepalivesCount: Int

    public init(
        connectionString: String?,
        applicationName: String = "migrator",
        connectTimeoutSeconds: Int = 10,
        keepalivesIdleSeconds: Int = 10,
        keepalivesIntervalSeconds: Int = 5,
        keepalivesCount: Int = 3
    ) {
        let trimmed = connectionString?.trimmingWhitespace()
        self.connectionString = (trimmed?.isEmpty ?? true) ? nil : trimmed
        self.applicationName = applicationName
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.keepalivesIdleSeconds = keepalivesIdleSeconds
        self.keepalivesIntervalSeconds = keepalivesIntervalSeconds
        self.keepalivesCount = keepalivesCount
    }

    /// The keyword/value pairs for `PQconnectdbParams`. Ours come first and the user's string last: libpq keeps the
    /// last value of a repeated keyword, so anything the user wrote overrides our defaults.
    var parameters: [(String, String)] {
        var pairs: [(String, String)] = [
            ("fallback_application_name", applicationName),
            ("connect_timeout", String(connectTimeoutSeconds)),
            ("keepalives", "1"),
            ("keepalives_idle", String(keepalivesIdleSeconds)),
            ("keepalives_interval", String(keepalivesIntervalSeconds)),
            ("keepalives_count", String(keepalivesCount)),
        ]
        if let connectionString { pairs.append(("dbname", connectionString)) }
        return pairs
    }

    /// Every secret this configuration carries: the whole string and the password inside it (when libpq can parse
    /// it) or in `PGPASSWORD`.
    public var redactor: Redactor {
        var secrets: [String] = []
        if let connectionString {
            if connectionString.contains("=") || connectionString.contains("://") {
                secrets.append(connectionString)
            }
            if let password = Self.parse(connectionString)?["password"] {
                secrets.append(password)
                secrets.append(Self.percentEncoded(password))
            }
            // libpq quotes parts of a URL it cannot parse (a password with a bare '%' or '@'), and then there is
            // no parsed password: take it from the text, and its pieces around '@' that libpq may quote alone.
            if let raw = Self.urlPassword(connectionString) {
                secrets.append(raw)
                secrets.append(contentsOf: raw.split(separator: "@").map(String.init).filter { $0.count >= 4 })
            }
        }
        if let password = ProcessInfo.processInfo.environment["PGPASSWORD"], !password.isEmpty {
            secrets.append(password)
        }
        return Redactor(secrets: secrets)
    }

    /// The text between `user:` and the last `@` of a URL's authority, however malformed the rest is.
    static func urlPassword(_ text: String) -> String? {
        guard let scheme = text.firstRange(of: "://") else { return nil }
        let rest = text[scheme.upperBound...]
        // The authority ends at the first '/' that follows its last '@' (a password may hold '/' only when encoded).
        let authorityEnd = rest.lastIndex(of: "@").flatMap { at in rest[at...].firstIndex(where: { "/?".contains($0) }) }
            ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return nil }
        let password = authority[authority.index(after: colon)..<at]
        return password.isEmpty ? nil : String(password)
    }

    static func percentEncoded(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if byte < 0x80, scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-._~".unicodeScalars.contains(scalar) {
                output.unicodeScalars.append(scalar)
            } else {
                output += "%" + TextFormat.hex([byte]).uppercased()
            }
        }
        return output
    }

    /// Checks that libpq can parse the connection string, without connecting.
    /// - Throws: ``PostgresError`` with code `.invalidConnectionString` and libpq's reason, redacted.
    public func validate() throws(PostgresError) {
        guard let connectionString else { return }
        var errorMessage: UnsafeMutablePointer<CChar>?
        let options = PQconninfoParse(connectionString, &errorMessage)
        defer {
            if let options { PQconninfoFree(options) }
            if let errorMessage { PQfreemem(errorMessage) }
        }
        if options == nil {
            let reason = errorMessage.map { String(cString: $0) } ?? "it could not be parsed"
            throw PostgresError(
                code: .invalidConnectionString,
                message: "the connection string is not valid: "
                    + redactor.redact(reason.trimmingWhitespace())
                    + "; expected postgresql://user:password@host:port/database or key=value pairs"
            )
        }
    }

    /// The options libpq reads from a connection string, or nil when it cannot parse it.
    static func parse(_ connectionString: String) -> [String: String]? {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &errorMessage) else {
            if let errorMessage { PQfreemem(errorMessage) }
            return nil
        }
        defer { PQconninfoFree(options) }
        var result: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { result[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        return result
    }
}
