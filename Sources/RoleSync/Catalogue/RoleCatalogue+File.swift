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
        // The strict reader first: what JSONDecoder would resolve silently (a duplicate key: the first wins, where
        // jq, Python and JavaScript keep the last) or take as something else is refused at its line and column.
        var bytes = [UInt8](data)
        do throws(StrictJSON.Error) {
            _ = try StrictJSON.parse(bytes)
        } catch {
            throw CatalogueError(source: source, line: error.line, column: error.column, message: error.isSyntax ? "the file is not valid JSON: \(error.message)" : error.message)
        }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        let file: CatalogueFile
        do {
            file = try JSONDecoder().decode(CatalogueFile.self, from: Data(bytes))
        } catch let problem as CatalogueFile.Problem {
            throw CatalogueError(source: source, role: problem.role, message: problem.message)
        } catch {
            // Every shape error is a Problem (the types below catch the decoder's own): this is the syntax.
            throw CatalogueError(source: source, message: "the file is not valid JSON (\(CatalogueFile.describe(error)))")
        }
        var catalogue = try RoleCatalogue(
            permissions: file.permissions.map { ($0.codename, $0.name) }, roles: file.roles.map { ($0.name, $0.permissions) },
            source: source
        )
        if let target = file.target {
            catalogue.target = try target.resolved(source: source)
        }
        return catalogue
    }
}

/// A roles file as JSON, decoded through `Decodable` with its keys checked: a key the format does not have is refused
/// (so a misspelt key never drops a role silently), and every shape error says where it is.
struct CatalogueFile: Decodable {
    /// What is wrong and, when it is in a role, which one; the file is added by ``RoleCatalogue/parse(_:source:)``.
    struct Problem: Error {
        var role: String?
        var message: String

        init(role: String? = nil, _ message: String) {
            self.role = role
            self.message = message
        }
    }

    /// Any key, so that the keys a file has can be compared with the ones the format knows.
    struct Key: CodingKey, Hashable {
        var stringValue: String
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// The first key (in byte order) of `container` that is not one of `known`, if any.
    static func unknownKey(_ container: KeyedDecodingContainer<Key>, known: [String]) -> String? {
        container.allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted().first
    }

    struct Permission: Decodable {
        var codename: String
        var name: String

        /// Thrown as a bare marker: the list that holds the entry knows its index and says what it must be.
        struct Shape: Error {}

        init(from decoder: any Decoder) throws {
            guard let container = try? decoder.container(keyedBy: Key.self),
                  Self.unknown(container) == nil,
                  let codename = try? container.decode(String.self, forKey: Key("codename")),
                  let name = try? container.decode(String.self, forKey: Key("name")) else { throw Shape() }
            self.codename = codename
            self.name = name
        }

        private static func unknown(_ container: KeyedDecodingContainer<Key>) -> String? {
            unknownKey(container, known: ["codename", "name"])
        }
    }

    struct Role: Decodable {
        var name: String
        var permissions: [String]

        /// Thrown when the entry is not an object with a string name, which the list that holds it reports.
        struct Shape: Error {}

        init(from decoder: any Decoder) throws {
            guard let container = try? decoder.container(keyedBy: Key.self),
                  let name = try? container.decode(String.self, forKey: Key("name")) else { throw Shape() }
            if let unknown = unknownKey(container, known: ["name", "permissions"]) {
                throw Problem(role: name, "unknown key \"\(unknown)\"; a role has \"name\" and \"permissions\"")
            }
            guard let permissions = try? container.decode([String].self, forKey: Key("permissions")) else {
                throw Problem(role: name, "\"permissions\" must be a list of codename strings")
            }
            self.name = name
            self.permissions = permissions
        }
    }

    /// `"target": {"project_table", "id_column", "name_column", "content_type": "app_label.model", "group_name"}`,
    /// every key optional (the reference app's value), nothing else allowed.
    struct Target: Decodable {
        static let keys = ["project_table", "id_column", "name_column", "content_type", "group_name"]
        static var keyList: String { keys.map { "\"\($0)\"" }.joined(separator: ", ") }
        var values: [String: String] = [:]

        init(from decoder: any Decoder) throws {
            let list = Self.keyList
            guard let container = try? decoder.container(keyedBy: Key.self) else {
                throw Problem("\"target\" must be an object with any of the keys \(list)")
            }
            if let unknown = unknownKey(container, known: Self.keys) {
                throw Problem("unknown key \"\(unknown)\" in \"target\"; its keys are \(list)")
            }
            for key in Self.keys where container.contains(Key(key)) {
                guard let text = try? container.decode(String.self, forKey: Key(key)) else {
                    throw Problem("target.\(key) must be a string")
                }
                values[key] = text
            }
        }

        /// Checked as a target; an absent key is the reference app's value.
        func resolved(source: String) throws(CatalogueError) -> RoleTarget {
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

    var permissions: [Permission] = []
    var roles: [Role] = []
    var target: Target?

    /// `source` is allowed, with any value, and ignored.
    init(from decoder: any Decoder) throws {
        guard let container = try? decoder.container(keyedBy: Key.self) else {
            throw Problem("the top level must be an object with \"roles\" and \"project_permissions\"")
        }
        if let unknown = Self.unknownKey(container, known: ["source", "project_permissions", "roles", "target"]) {
            throw Problem("unknown key \"\(unknown)\"; the keys are \"roles\", \"project_permissions\", \"target\" and \"source\"")
        }
        if container.contains(Key("project_permissions")) {
            guard var list = try? container.nestedUnkeyedContainer(forKey: Key("project_permissions")) else {
                throw Problem("\"project_permissions\" must be a list of {\"codename\", \"name\"} objects")
            }
            while !list.isAtEnd {
                let index = list.currentIndex
                do {
                    permissions.append(try list.decode(Permission.self))
                } catch {
                    throw Problem("project_permissions[\(index)] must be {\"codename\": string, \"name\": string} and nothing else")
                }
            }
        }
        guard var list = try? container.nestedUnkeyedContainer(forKey: Key("roles")) else {
            throw Problem("\"roles\" is missing or not a list of {\"name\", \"permissions\"} objects")
        }
        while !list.isAtEnd {
            let index = list.currentIndex
            do {
                roles.append(try list.decode(Role.self))
            } catch let problem as Problem {
                throw problem
            } catch {
                // Role.Shape, or the decoder's own error for a null entry.
                throw Problem("roles[\(index)] must be an object with a string \"name\"")
            }
        }
        if container.contains(Key("target")) {
            do {
                target = try container.decode(Target.self, forKey: Key("target"))
            } catch let problem as Problem {
                throw problem
            } catch {
                throw Problem("\"target\" must be an object with any of the keys \(Target.keyList)")
            }
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
