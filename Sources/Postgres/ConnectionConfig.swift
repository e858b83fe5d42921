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
    /// Whether a connection pooler in session mode between migrator and the server is accepted (see
    /// ``Connection/isPooled``); in transaction or statement mode nothing migrator relies on holds.
    public var allowSessionPooler = false

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
                secrets.append(contentsOf: raw.split(whereSeparator: { "@/:?#".contains($0) }).map(String.init).filter { $0.count >= 4 })
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
        guard let at = authority.lastIndex(of: "@") else {
            // No '@': `postgresql://user:secret` reads the password as a port; what follows the ':' of the first
            // host is a secret unless it is a port number.
            var host = authority.prefix { !"/?,".contains($0) }
            if host.first == "[", let close = host.firstIndex(of: "]") { host = host[host.index(after: close)...] }
            guard let colon = host.firstIndex(of: ":") else { return nil }
            let after = host[host.index(after: colon)...]
            return after.isEmpty || isDigits(after) ? nil : String(after)
        }
        guard let colon = authority[..<at].firstIndex(of: ":") else { return nil }
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

    /// Checks that libpq can parse the connection string, and that nothing in it would make libpq or the server
    /// quote a piece of the password back, without connecting. Every refusal quotes nothing of the string.
    ///
    /// libpq's own messages about a string it cannot use quote the offending text, which in a malformed URL is a
    /// piece of the password: `postgresql://u:ab/cd@host/db` reads `ab` as the port ("invalid integer value "ab""),
    /// `u:ab@cd@host` makes `cd@host` the host name, `postgresql://u:secret` (no `@host`) makes the password the
    /// port, and `password=ab cd` (an unquoted space) ends in `missing "=" after "cd"`. The redactor only knows the
    /// whole password, so these shapes are refused here, before libpq or the server can print any of it.
    /// - Throws: ``PostgresError`` with code `.invalidConnectionString`: permanent, waiting cannot cure it.
    public func validate() throws(PostgresError) {
        guard let connectionString else { return }
        func refuse(_ reason: String, hint: String = Self.formatHint) -> PostgresError {
            var error = PostgresError(code: .invalidConnectionString, message: "the connection string is not valid: " + reason)
            error.hint = hint
            return error
        }
        if connectionString.utf8.contains(0) {
            throw refuse("it contains a NUL byte")
        }
        var errorMessage: UnsafeMutablePointer<CChar>?
        let options = PQconninfoParse(connectionString, &errorMessage)
        defer {
            if let options { PQconninfoFree(options) }
            if let errorMessage { PQfreemem(errorMessage) }
        }
        guard let options else {
            let reason = errorMessage.map { String(cString: $0) } ?? "it could not be parsed"
            throw refuse("libpq could not parse it (" + Self.withoutQuotedText(reason.trimmingWhitespace()) + ")")
        }
        if let problem = Self.urlShapeProblem(connectionString) {
            throw refuse(problem, hint: Self.encodingHint)
        }
        var option = options
        while let keyword = option.pointee.keyword {
            let name = String(cString: keyword)
            if Self.integerOptions.contains(name), let value = option.pointee.val.map({ String(cString: $0) }) {
                // A port may be a comma-separated list (one per host); an empty entry means the default.
                let parts = name == "port" ? value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) : [value]
                if !parts.allSatisfy({ Self.isInteger($0, allowEmpty: name == "port") }) {
                    let url = connectionString.contains("://")
                    throw refuse(
                        "the value of \(name) is not a whole number"
                            + (url && name == "port" ? " (in a URL, a ':' or '/' in the password ends the host part early)" : ""),
                        hint: url ? Self.encodingHint : Self.formatHint
                    )
                }
            }
            option += 1
        }
    }

    /// The options libpq reads as integers; it quotes a value it cannot read, which may be a piece of a password.
    static let integerOptions: Set<String> = [
        "port", "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
        "tcp_user_timeout",
    ]

    static let formatHint = "expected postgresql://user:password@host:port/database or key=value pairs "
        + "(quote a value with spaces: password='a b'); or leave the password out and set PGPASSWORD or use ~/.pgpass"

    static let encodingHint = "percent-encode the user name and password in a postgresql:// URL ('/' as %2F, '@' as "
        + "%40, ':' as %3A, '?' as %3F, '#' as %23, '%' as %25, space as %20); or leave the password out of the URL "
        + "and set PGPASSWORD or use ~/.pgpass"

    /// An integer as libpq reads one (surrounding spaces and a sign allowed); an empty port entry is the default.
    static func isInteger(_ text: String, allowEmpty: Bool) -> Bool {
        var digits = Substring(text.trimmingWhitespace())
        if digits.isEmpty { return allowEmpty }
        if digits.first == "+" || digits.first == "-" { digits = digits.dropFirst() }
        return !digits.isEmpty && isDigits(digits)
    }

    static func isDigits(_ text: Substring) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// Why a `postgresql://` URL cannot be what its writer meant, without quoting it: an `@` that is not the one
    /// between the user information and the host. In the text before the query, the user information ends at
    /// the only `@`, and no `/` comes before it; `@`, `/` in a user name, password or database name are written
    /// `%40`, `%2F`. (A query value, such as a certificate path, may hold both.)
    static func urlShapeProblem(_ text: String) -> String? {
        guard let scheme = text.firstRange(of: "://") else { return nil }
        let rest = text[scheme.upperBound...]
        let beforeQuery = rest[..<(rest.firstIndex(of: "?") ?? rest.endIndex)]
        let ats = beforeQuery.indices.filter { beforeQuery[$0] == "@" }
        if ats.count > 1 {
            return "the URL has more than one '@' before its query: a user name, password or database name holds an unencoded '@'"
        }
        if let at = ats.first, let slash = beforeQuery.firstIndex(of: "/"), slash < at {
            return "in the URL, a '/' comes before the '@' that ends the user name and password: one of them holds an unencoded '/'"
        }
        return nil
    }

    /// libpq's reason for not parsing a string, with every text it quotes replaced by "…" (the quoted text is a
    /// piece of the string, perhaps of the password); the literals libpq quotes in its own wording are put back.
    static func withoutQuotedText(_ reason: String) -> String {
        var output = ""
        var inQuote = false
        for character in reason {
            if character == "\"" {
                if !inQuote { output += "\"…\"" }
                inQuote.toggle()
            } else if !inQuote {
                output.append(character)
            }
        }
        let literals = [
            ("missing \"…\" after", "missing \"=\" after"), ("separator \"…\"", "separator \"=\""),
            ("matching \"…\"", "matching \"]\""), ("(expected \"…\" or \"…\")", "(expected \":\" or \"/\")"),
        ]
        for (placeholder, literal) in literals { output = output.replacing(placeholder, with: literal) }
        return output
    }

    /// The options libpq reads from a connection string (only those the string sets), or nil when it cannot parse
    /// it. For callers that must know what a string names before connecting (a fleet's targets file).
    public static func options(of connectionString: String) -> [String: String]? { parse(connectionString) }

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

/// Whatever prints a configuration (string interpolation, `dump`, a library that logs the value holding it, as
/// swift-service-lifecycle logs a service that threw) sees no part of the connection string.
extension ConnectionConfig: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "ConnectionConfig(connection string withheld)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}
