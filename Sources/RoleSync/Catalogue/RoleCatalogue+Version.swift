import Crypto
import FoundationEssentials
import SystemSupport

extension RoleCatalogue {
    /// Names the serialisation, so a future change to it changes every version instead of colliding with one.
    public static let formatTag = "migrator.roles/1"

    /// The catalogue as canonical JSON: fixed key order, sorted roles and codenames, no white space, minimal string
    /// escapes. Declaration order and JSON formatting of the source cannot change it; any name, membership or display
    /// name does. It is also what `role_schema_version.catalogue` stores, so the next sync can diff against it.
    ///
    /// Written by hand on purpose, while the roles file is read with `Decodable`: the version is a hash of these bytes,
    /// and it must stay byte-for-byte the same across releases and Foundation versions, or every database would
    /// re-sync after an upgrade (and a stored version would no longer name its catalogue). JSONEncoder promises none
    /// of that: its key order (even with `.sortedKeys`, which sorts by its own rules), its escaping of `/` and of
    /// non-ASCII text, and its number formatting have changed between Foundation implementations.
    public var canonicalJSON: String {
        var text = "{\"format\":" + Self.quote(Self.formatTag) + ",\"permissions\":["
        text += permissions.map { "{\"codename\":" + Self.quote($0.codename) + ",\"name\":" + Self.quote($0.name) + "}" }
            .joined(separator: ",")
        text += "],\"roles\":["
        text += roles.map { role in
            "{\"name\":" + Self.quote(role.name) + ",\"permissions\":[" + role.permissions.map(Self.quote).joined(separator: ",") + "]}"
        }.joined(separator: ",")
        text += "]"
        // The default target is left out, so that the reference catalogue keeps the version earlier releases stored.
        if !target.isReference {
            text += ",\"target\":{\"content_type\":" + Self.quote(target.contentType)
                + ",\"group_name\":" + Self.quote(target.groupName.text)
                + ",\"id_column\":" + Self.quote(target.idColumn)
                + ",\"name_column\":" + Self.quote(target.nameColumn)
                + ",\"project_table\":" + Self.quote(target.projectTable) + "}"
        }
        return text + "}"
    }

    /// SHA-256 of ``canonicalJSON``, as 64 lowercase hex digits.
    public var version: String {
        TextFormat.hex(SHA256.hash(data: Array(canonicalJSON.utf8)))
    }

    static func quote(_ string: String) -> String { TextFormat.jsonQuoted(string) }

    /// Reads a catalogue stored by an earlier sync (the jsonb of `role_schema_version.catalogue`). Returns nil when it
    /// is not in this format, which makes the next sync a full reconcile.
    public static func fromStored(_ json: String) -> RoleCatalogue? {
        struct Stored: Decodable {
            struct Permission: Decodable { var codename: String; var name: String }
            struct Role: Decodable { var name: String; var permissions: [String] }
            struct Target: Decodable {
                var content_type: String
                var group_name: String
                var id_column: String
                var name_column: String
                var project_table: String
            }
            var format: String
            var permissions: [Permission]
            var roles: [Role]
            var target: Target?
        }
        guard let stored = try? JSONDecoder().decode(Stored.self, from: Data(json.utf8)), stored.format == formatTag else {
            return nil
        }
        guard var catalogue = try? RoleCatalogue(
            permissions: stored.permissions.map { ($0.codename, $0.name) },
            roles: stored.roles.map { ($0.name, $0.permissions) }
        ) else { return nil }
        if let target = stored.target {
            guard let contentType = try? RoleTarget.parseContentType(target.content_type, source: "stored"),
                  let template = try? GroupNameTemplate(target.group_name),
                  let parsed = try? RoleTarget(
                      projectTable: target.project_table, idColumn: target.id_column, nameColumn: target.name_column,
                      appLabel: contentType.appLabel, model: contentType.model, groupName: template
                  ) else { return nil }
            catalogue.target = parsed
        }
        return catalogue
    }
}

/// What changed between the catalogue of the last sync and the one declared now.
public struct CatalogueDiff: Sendable, Equatable {
    public struct Pair: Sendable, Hashable, Codable {
        public var role: String
        public var codename: String

        public init(role: String, codename: String) {
            self.role = role
            self.codename = codename
        }
    }

    public var addedPairs: [Pair]
    public var removedPairs: [Pair]
    public var addedRoles: [String]
    public var removedRoles: [String]
    /// Codenames whose display name changed, or that are new.
    public var changedPermissions: [String]

    public init(from old: RoleCatalogue, to new: RoleCatalogue) {
        func pairs(_ catalogue: RoleCatalogue) -> Set<Pair> {
            Set(catalogue.roles.flatMap { role in role.permissions.map { Pair(role: role.name, codename: $0) } })
        }
        let before = pairs(old)
        let after = pairs(new)
        let order: (Pair, Pair) -> Bool = { ($0.role, $0.codename) < ($1.role, $1.codename) }
        addedPairs = after.subtracting(before).sorted(by: order)
        removedPairs = before.subtracting(after).sorted(by: order)
        let oldRoles = Set(old.roles.map(\.name))
        let newRoles = Set(new.roles.map(\.name))
        addedRoles = newRoles.subtracting(oldRoles).sorted()
        removedRoles = oldRoles.subtracting(newRoles).sorted()
        let oldNames = Dictionary(uniqueKeysWithValues: old.permissions.map { ($0.codename, $0.name) })
        changedPermissions = new.permissions.filter { oldNames[$0.codename] != $0.name }.map(\.codename)
    }

    /// Roles whose groups gain or lose anything.
    public var touchedRoles: [String] {
        Set(addedPairs.map(\.role) + removedPairs.map(\.role) + addedRoles + removedRoles).sorted()
    }

    public var isEmpty: Bool {
        addedPairs.isEmpty && removedPairs.isEmpty && addedRoles.isEmpty && removedRoles.isEmpty && changedPermissions.isEmpty
    }
}
