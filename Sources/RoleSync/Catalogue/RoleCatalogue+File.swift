import FoundationEssentials
import SystemSupport

extension RoleCatalogue {
    /// The largest `--roles` file read; a catalogue of thousands of roles is far smaller.
    public static let maxFileSize = 4 << 20

    /// Reads a catalogue from a JSON file shaped like the reference one:
    /// `{"project_permissions": [{"codename": …, "name": …}], "roles": [{"name": …, "permissions": [codename, …]}]}`
    /// (`source` is allowed and ignored). Unknown keys are refused, so a misspelt key never drops a role silently.
    /// - Throws: ``CatalogueError`` naming the file, and the role and codename at fault.
    public static func load(path: String) throws(CatalogueError) -> RoleCatalogue {
        switch FileSystem.kind(path) {
        case .file: break
        case .directory: throw CatalogueError(source: path, message: "this is a folder, not a roles file; check --roles (MIGRATOR_ROLES)")
        case .other: throw CatalogueError(source: path, message: "this is not a regular file (a FIFO, socket or device); --roles (MIGRATOR_ROLES) takes a JSON file")
        case .missing: throw CatalogueError(source: path, message: "the roles file cannot be read (\(FileSystem.lastError())); check the path given to --roles (MIGRATOR_ROLES)")
        }
        guard let bytes = FileSystem.readFile(path, maxBytes: maxFileSize) else {
            if FileSystem.lastErrorWasTooLarge {
                throw CatalogueError(source: path, message: "the roles file is larger than \(maxFileSize) bytes; at most \(maxFileSize) are read")
            }
            throw CatalogueError(
                source: path,
                message: "the roles file cannot be read (\(FileSystem.lastError())); check the path given to --roles (MIGRATOR_ROLES)"
            )
        }
        return try parse(Data(bytes), source: path)
    }

    public static func parse(_ data: Data, source: String) throws(CatalogueError) -> RoleCatalogue {
        let object: Any
        do {
            object = try JSONDecoder().decode(JSONValue.self, from: data).plain
        } catch {
            throw CatalogueError(source: source, message: "the file is not valid JSON (\(JSONValue.describe(error)))")
        }
        guard let top = object as? [String: Any] else {
            throw CatalogueError(source: source, message: "the top level must be an object with \"roles\" and \"project_permissions\"")
        }
        let knownTop: Set<String> = ["source", "project_permissions", "roles", "target"]
        if let unknown = top.keys.filter({ !knownTop.contains($0) }).sorted().first {
            throw CatalogueError(source: source, message: "unknown key \"\(unknown)\"; the keys are \"roles\", \"project_permissions\", \"target\" and \"source\"")
        }
        var permissions: [(String, String)] = []
        if let raw = top["project_permissions"] {
            guard let list = raw as? [Any] else {
                throw CatalogueError(source: source, message: "\"project_permissions\" must be a list of {\"codename\", \"name\"} objects")
            }
            for (index, item) in list.enumerated() {
                guard let entry = item as? [String: Any], let codename = entry["codename"] as? String, let name = entry["name"] as? String,
                      Set(entry.keys).isSubset(of: ["codename", "name"]) else {
                    throw CatalogueError(
                        source: source,
                        message: "project_permissions[\(index)] must be {\"codename\": string, \"name\": string} and nothing else"
                    )
                }
                permissions.append((codename, name))
            }
        }
        guard let rawRoles = top["roles"] as? [Any] else {
            throw CatalogueError(source: source, message: "\"roles\" is missing or not a list of {\"name\", \"permissions\"} objects")
        }
        var roles: [(String, [String])] = []
        for (index, item) in rawRoles.enumerated() {
            guard let entry = item as? [String: Any], let name = entry["name"] as? String else {
                throw CatalogueError(source: source, message: "roles[\(index)] must be an object with a string \"name\"")
            }
            if let unknown = entry.keys.filter({ $0 != "name" && $0 != "permissions" }).sorted().first {
                throw CatalogueError(source: source, role: name, message: "unknown key \"\(unknown)\"; a role has \"name\" and \"permissions\"")
            }
            guard let codenames = entry["permissions"] as? [Any], codenames.allSatisfy({ $0 is String }) else {
                throw CatalogueError(source: source, role: name, message: "\"permissions\" must be a list of codename strings")
            }
            roles.append((name, codenames.compactMap { $0 as? String }))
        }
        var catalogue = try RoleCatalogue(permissions: permissions, roles: roles, source: source)
        if let raw = top["target"] {
            catalogue.target = try parseTarget(raw, source: source)
        }
        return catalogue
    }

    /// `"target": {"project_table", "id_column", "name_column", "content_type": "app_label.model", "group_name"}`,
    /// every key optional (the reference app's value), nothing else allowed.
    static func parseTarget(_ raw: Any, source: String) throws(CatalogueError) -> RoleTarget {
        let keys = ["project_table", "id_column", "name_column", "content_type", "group_name"]
        guard let entry = raw as? [String: Any] else {
            throw CatalogueError(source: source, message: "\"target\" must be an object with any of the keys \(keys.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
        if let unknown = entry.keys.filter({ !keys.contains($0) }).sorted().first {
            throw CatalogueError(source: source, message: "unknown key \"\(unknown)\" in \"target\"; its keys are \(keys.map { "\"\($0)\"" }.joined(separator: ", "))")
        }
        var values: [String: String] = [:]
        for key in keys {
            guard let value = entry[key] else { continue }
            guard let text = value as? String else {
                throw CatalogueError(source: source, message: "target.\(key) must be a string")
            }
            values[key] = text
        }
        let reference = RoleTarget.reference
        let contentType = try values["content_type"].map { text throws(CatalogueError) in
            try RoleTarget.parseContentType(text, source: source + ": target.content_type")
        } ?? (appLabel: reference.appLabel, model: reference.model)
        let template = try values["group_name"].map { text throws(CatalogueError) in
            try GroupNameTemplate(text, source: source + ": target.group_name")
        } ?? reference.groupName
        return try RoleTarget(
            projectTable: values["project_table"] ?? reference.projectTable,
            idColumn: values["id_column"] ?? reference.idColumn, nameColumn: values["name_column"] ?? reference.nameColumn,
            appLabel: contentType.appLabel, model: contentType.model, groupName: template, source: source + ": target"
        )
    }
}

/// Any JSON value, decoded without JSONSerialization (which needs full Foundation).
enum JSONValue: Decodable {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// As dictionaries, arrays, strings, numbers and NSNull-free optionals, for the shape checks.
    var plain: Any {
        switch self {
        case .object(let value): value.mapValues(\.plain)
        case .array(let value): value.map(\.plain)
        case .string(let value): value
        case .number(let value): value
        case .bool(let value): value
        case .null: Optional<Any>.none as Any
        }
    }

    static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        switch decoding {
        case .dataCorrupted(let context):
            let underlying = context.underlyingError.map { " \($0)" } ?? ""
            return context.debugDescription + underlying
        default:
            return "\(decoding)"
        }
    }
}
