import FoundationEssentials

/// Removes secrets from text before it can reach a terminal, a log or a metric.
///
/// libpq echoes parts of a connection string it cannot parse, so every message produced while connecting is
/// passed through here with the string and the password that was given.
public struct Redactor: Sendable {
    private var secrets: [String]

    public init(secrets: [String]) {
        // Longest first, so a password that contains another secret is removed whole.
        self.secrets = secrets.filter { $0.count >= 1 }.sorted { $0.count > $1.count }
    }

    /// The secrets of all of `redactors`, sorted once (``adding(_:)`` in a loop sorts again at every step: quadratic
    /// over a fleet of 1,000 targets).
    public init(combining redactors: [Redactor]) {
        self.init(secrets: Array(Set(redactors.flatMap(\.secrets))))
    }

    /// This redactor's secrets and `other`'s.
    public func adding(_ other: Redactor) -> Redactor {
        Redactor(secrets: secrets + other.secrets)
    }

    public func redact(_ text: String) -> String {
        var result = text
        for secret in secrets where result.contains(secret) {
            result = result.replacing(secret, with: "********")
        }
        return Self.redactURLPasswords(result)
    }

    /// Hides the `password` of any `scheme://user:password@host` that is still present, including ones that were
    /// never handed to us as a whole (a malformed URL that libpq quoted in part).
    static func redactURLPasswords(_ text: String) -> String {
        var output = ""
        var rest = Substring(text)
        while let scheme = rest.firstRange(of: "://") {
            output += rest[..<scheme.upperBound]
            rest = rest[scheme.upperBound...]
            // The authority ends at the first '/', '?', whitespace or quote; the password sits between ':' and
            // the last '@' inside it.
            let authorityEnd = rest.firstIndex(where: { "/?#\"' \n\t".contains($0) }) ?? rest.endIndex
            let authority = rest[..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                output += authority[...colon] + "********" + authority[at...]
            } else {
                output += authority
            }
            rest = rest[authorityEnd...]
        }
        return output + rest
    }
}

