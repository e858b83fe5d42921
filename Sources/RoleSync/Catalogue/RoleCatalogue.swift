import Crypto
import FoundationEssentials

/// The roles every project has, each with the project permissions (codenames) it grants, and the display names of
/// those permissions. Always held sorted and checked, so two equal catalogues serialise to the same bytes.
public struct RoleCatalogue: Sendable, Equatable {
    public struct Role: Sendable, Equatable {
        public var name: String
        /// Sorted, without duplicates.
        public var permissions: [String]
    }

    public struct Permission: Sendable, Equatable {
        public var codename: String
        public var name: String
    }

    /// Sorted by name.
    public private(set) var roles: [Role]
    /// Every permission the catalogue declares or a role uses, sorted by codename.
    public private(set) var permissions: [Permission]
    /// Where the projects are and how their groups are named; part of the version when it is not the default.
    public var target: RoleTarget = .reference

    /// Limits of the tables the sync writes: `auth_permission.codename` is varchar(100), `auth_permission.name`
    /// varchar(255), `auth_group.name` varchar(150) = up to 19 digits of id + `_` + 80 of project name + `_` + role.
    public static let maxCodenameLength = 100
    public static let maxDisplayNameLength = 255
    public static let maxRoleNameLength = 49

    /// Checks and normalises a catalogue.
    /// - Parameters:
    ///   - permissions: declared permissions, codename and display name.
    ///   - roles: role names with the codenames they grant; a codename without a declared display name gets
    ///     Django's form, `Can ` + the codename with underscores as spaces (`view_project` → `Can view project`).
    /// - Throws: ``CatalogueError`` naming the role and codename at fault.
    public init(permissions: [(String, String)], roles: [(String, [String])], source: String = "the role catalogue") throws(CatalogueError) {
        var names: [String: String] = [:]
        for (codename, name) in permissions {
            try Self.checkCodename(codename, role: nil, source: source)
            guard !name.isEmpty else {
                throw CatalogueError(source: source, codename: codename, message: "the permission's display name is empty")
            }
            try Self.refuseNUL(name, what: "the display name", role: nil, codename: codename, source: source)
            guard Self.length(name) <= Self.maxDisplayNameLength else {
                throw CatalogueError(
                    source: source, codename: codename,
                    message: "the display name has \(Self.length(name)) characters (code points, as PostgreSQL counts them); "
                        + "auth_permission.name holds at most \(Self.maxDisplayNameLength)"
                )
            }
            if let other = names[codename], other != name {
                throw CatalogueError(source: source, codename: codename, message: "the permission is declared twice, as '\(other)' and as '\(name)'")
            }
            names[codename] = name
        }
        var seenRoles = Set<String>()
        var normalisedRoles: [Role] = []
        for (role, codenames) in roles {
            try Self.checkRoleName(role, source: source)
            guard seenRoles.insert(role).inserted else {
                throw CatalogueError(source: source, role: role, message: "the role is declared twice")
            }
            var seen = Set<String>()
            for codename in codenames {
                try Self.checkCodename(codename, role: role, source: source)
                guard seen.insert(codename).inserted else {
                    throw CatalogueError(source: source, role: role, codename: codename, message: "the role lists this permission twice")
                }
                if names[codename] == nil { names[codename] = Self.djangoDisplayName(codename) }
            }
            normalisedRoles.append(Role(name: role, permissions: seen.sorted(by: Self.byteOrder)))
        }
        guard !normalisedRoles.isEmpty else {
            throw CatalogueError(source: source, message: "the catalogue declares no roles")
        }
        self.roles = normalisedRoles.sorted { Self.byteOrder($0.name, $1.name) }
        self.permissions = names.map { Permission(codename: $0.key, name: $0.value) }.sorted { Self.byteOrder($0.codename, $1.codename) }
    }

    /// Django's default display name for a codename without one.
    public static func djangoDisplayName(_ codename: String) -> String {
        "Can " + codename.replacing("_", with: " ")
    }

    /// Sorting by UTF-8 bytes: the same order on every platform and in every locale.
    static func byteOrder(_ left: String, _ right: String) -> Bool {
        left.utf8.lexicographicallyPrecedes(right.utf8)
    }

    private static func checkRoleName(_ role: String, source: String) throws(CatalogueError) {
        guard !role.isEmpty else { throw CatalogueError(source: source, role: role, message: "a role name is empty") }
        let scalars = Array(role.unicodeScalars)
        let isIdentifier = scalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
            && !("0"..."9").contains(scalars[0])
        guard isIdentifier else {
            throw CatalogueError(
                source: source, role: role,
                message: "the role name is not an identifier (ASCII letters, digits and _, not starting with a digit)"
            )
        }
        guard length(role) <= maxRoleNameLength else {
            throw CatalogueError(
                source: source, role: role,
                message: "the role name has \(length(role)) characters; at most \(maxRoleNameLength) keep every group name within auth_group.name's 150"
            )
        }
    }

    private static func checkCodename(_ codename: String, role: String?, source: String) throws(CatalogueError) {
        guard !codename.isEmpty, !codename.contains(where: \.isWhitespace) else {
            throw CatalogueError(source: source, role: role, codename: codename, message: "a codename is empty or contains white space")
        }
        try refuseNUL(codename, what: "the codename", role: role, codename: nil, source: source)
        guard length(codename) <= maxCodenameLength else {
            throw CatalogueError(
                source: source, role: role, codename: String(String.UnicodeScalarView(codename.unicodeScalars.prefix(40))) + "…",
                message: "the codename has \(length(codename)) characters (code points, as PostgreSQL counts them); "
                    + "auth_permission.codename holds at most \(maxCodenameLength)"
            )
        }
    }

    /// A length as PostgreSQL counts it for `varchar(n)` in a UTF-8 database: code points (Unicode scalars), not
    /// Swift's grapheme clusters (`e` + U+0301 is one Character and two code points).
    static func length(_ text: String) -> Int { text.unicodeScalars.count }

    /// libpq sends text up to its first NUL, and PostgreSQL text cannot hold one: such a value would be stored cut
    /// short, or not at all.
    static func refuseNUL(_ text: String, what: String, role: String?, codename: String?, source: String) throws(CatalogueError) {
        guard text.utf8.contains(0) else { return }
        throw CatalogueError(
            source: source, role: role, codename: codename.map { $0.replacing("\u{0}", with: "\\u0000") },
            message: "\(what) contains a NUL character (\\u0000); PostgreSQL text cannot hold it"
        )
    }

    public func role(named name: String) -> Role? { roles.first { $0.name == name } }

    /// How many (role, permission) pairs the catalogue grants per project.
    public var pairCount: Int { roles.reduce(0) { $0 + $1.permissions.count } }
}

/// A catalogue that cannot be used, with where the problem is.
public struct CatalogueError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The file (or "the role catalogue" for one built in code).
    public var source: String
    /// Where in the file, when the problem is in its text (1-based; the column in Unicode scalars).
    public var line: Int?
    public var column: Int?
    public var role: String?
    public var codename: String?
    public var message: String

    public init(source: String, line: Int? = nil, column: Int? = nil, role: String? = nil, codename: String? = nil, message: String) {
        self.source = source
        self.line = line
        self.column = column
        self.role = role
        self.codename = codename
        self.message = message
    }

    public var description: String {
        var place = source
        if let line, let column { place += ":\(line):\(column)" }
        if let role { place += ": role '\(role)'" }
        if let codename { place += ": permission '\(codename)'" }
        return "\(place): error: \(message)"
    }
}
