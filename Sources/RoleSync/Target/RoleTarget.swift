import MigrationEngine

/// Where the projects are and how their role groups are named: the app's side of the sync. The default is the
/// reference app's (`main_project` with `id` and `name`, content type `main.project`, groups `{id}_{name}_{role}`).
/// A target other than the default is part of the catalogue's version, so changing it (a new name template, say)
/// makes the next sync rename the groups.
public struct RoleTarget: Sendable, Equatable {
    /// `table` or `schema.table`, case-sensitive as written. Without a schema, the session's search_path finds it.
    public var projectTable: String
    public var idColumn: String
    public var nameColumn: String
    /// The project model's `django_content_type` row.
    public var appLabel: String
    public var model: String
    public var groupName: GroupNameTemplate

    public static let reference = RoleTarget(
        unchecked: "main_project", idColumn: "id", nameColumn: "name", appLabel: "main", model: "project",
        groupName: .reference
    )

    public var isReference: Bool { self == .reference }

    /// Checks every part; the message says which option or catalogue key is wrong and how.
    /// - Throws: ``CatalogueError`` (`source` names where the target came from).
    public init(
        projectTable: String, idColumn: String, nameColumn: String, appLabel: String, model: String,
        groupName: GroupNameTemplate, source: String = "the role target"
    ) throws(CatalogueError) {
        let parts = projectTable.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 1 || parts.count == 2 else {
            throw CatalogueError(source: source, message: "the project table '\(projectTable)' must be `table` or `schema.table`")
        }
        for part in parts {
            if let problem = SQLIdentifier.problem(part, what: "project table") {
                throw CatalogueError(source: source, message: "the project table '\(projectTable)': \(problem)")
            }
        }
        for (value, what) in [(idColumn, "project id column"), (nameColumn, "project name column")] {
            if let problem = SQLIdentifier.problem(value, what: what) {
                throw CatalogueError(source: source, message: "the \(what) '\(value)': \(problem)")
            }
        }
        guard idColumn != nameColumn else {
            throw CatalogueError(source: source, message: "the project id and name columns are both '\(idColumn)'; they must differ")
        }
        // django_content_type.app_label and .model are varchar(100).
        for (value, what) in [(appLabel, "content type's app label"), (model, "content type's model")] {
            guard !value.isEmpty, value.unicodeScalars.count <= 100 else {
                throw CatalogueError(source: source, message: "the \(what) must have 1 to 100 characters; got '\(value)'")
            }
            guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw CatalogueError(source: source, message: "the \(what) contains a control character")
            }
        }
        self.init(
            unchecked: projectTable, idColumn: idColumn, nameColumn: nameColumn, appLabel: appLabel, model: model,
            groupName: groupName
        )
    }

    private init(
        unchecked projectTable: String, idColumn: String, nameColumn: String, appLabel: String, model: String,
        groupName: GroupNameTemplate
    ) {
        self.projectTable = projectTable
        self.idColumn = idColumn
        self.nameColumn = nameColumn
        self.appLabel = appLabel
        self.model = model
        self.groupName = groupName
    }

    /// `app_label.model`, as Django writes a content type.
    public var contentType: String { appLabel + "." + model }

    /// The project table as SQL, each part double-quoted: `"main_project"`, `"app"."workspaces"`.
    var tableSQL: String {
        projectTable.split(separator: ".").map { SQLIdentifier.quote(String($0)) }.joined(separator: ".")
    }

    /// Parses `app_label.model`.
    public static func parseContentType(_ text: String, source: String) throws(CatalogueError) -> (appLabel: String, model: String) {
        guard let dot = text.firstIndex(of: "."), dot != text.startIndex, text.index(after: dot) != text.endIndex,
              !text[text.index(after: dot)...].contains(".") else {
            throw CatalogueError(source: source, message: "the content type '\(text)' must be app_label.model, e.g. main.project")
        }
        return (String(text[..<dot]), String(text[text.index(after: dot)...]))
    }
}

/// How a project's group for a role is named: text with the placeholders `{id}`, `{name}` and `{role}` (`{{` and
/// `}}` for literal braces). `{id}` and `{role}` are required, so that every (project, role) has a name of its own.
public struct GroupNameTemplate: Sendable, Equatable, CustomStringConvertible {
    public enum Part: Sendable, Equatable {
        case literal(String)
        case id
        case name
        case role
    }

    public let text: String
    public let parts: [Part]

    public static let reference = try! GroupNameTemplate("{id}_{name}_{role}")

    /// - Throws: ``CatalogueError`` for an unknown placeholder, an unmatched brace, or a missing `{id}` / `{role}`.
    public init(_ text: String, source: String = "the group name template") throws(CatalogueError) {
        guard !text.utf8.contains(0) else {
            throw CatalogueError(source: source, message: "the group name template contains a NUL character (\\u0000); PostgreSQL text cannot hold it")
        }
        var parts: [Part] = []
        var literal = ""
        var index = text.startIndex
        func flush() {
            if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
        }
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if character == "{", next < text.endIndex, text[next] == "{" {
                literal.append("{"); index = text.index(after: next); continue
            }
            if character == "}", next < text.endIndex, text[next] == "}" {
                literal.append("}"); index = text.index(after: next); continue
            }
            if character == "}" {
                throw CatalogueError(source: source, message: "the group name template '\(text)' has a '}' without '{' (write '}}' for a literal brace)")
            }
            if character == "{" {
                guard let close = text[next...].firstIndex(of: "}") else {
                    throw CatalogueError(source: source, message: "the group name template '\(text)' has a '{' without '}' (write '{{' for a literal brace)")
                }
                let placeholder = String(text[next..<close])
                flush()
                switch placeholder {
                case "id": parts.append(.id)
                case "name": parts.append(.name)
                case "role": parts.append(.role)
                default:
                    throw CatalogueError(
                        source: source,
                        message: "the group name template '\(text)' has an unknown placeholder {\(placeholder)}; the placeholders are {id}, {name} and {role}"
                    )
                }
                index = text.index(after: close)
                continue
            }
            literal.append(character)
            index = next
        }
        flush()
        guard parts.contains(.id), parts.contains(.role) else {
            throw CatalogueError(
                source: source,
                message: "the group name template '\(text)' must contain {id} and {role}, so that every project's group for every role has a name of its own"
            )
        }
        self.text = text
        self.parts = parts
    }

    public var description: String { text }

    /// The literal parts, in order: what ``sql(id:name:role:literals:)`` takes the placeholders of.
    var literals: [String] {
        parts.compactMap { if case .literal(let text) = $0 { text } else { nil } }
    }

    /// The name as an SQL expression. Literal text is never spliced: `literals` are the placeholders of the
    /// parameters bound to ``literals``, in their order.
    func sql(id: String, name: String, role: String, literals: [String]) -> String {
        precondition(literals.count == self.literals.count, "one placeholder per literal part of \(text)")
        var next = literals.makeIterator()
        return parts.map { part in
            switch part {
            case .literal: next.next()!
            case .id: "\(id)::text"
            case .name: "\(name)::text"
            case .role: "\(role)::text"
            }
        }.joined(separator: " || ")
    }

    /// The name a project's group gets, as the database computes it (for messages and tests).
    public func render(id: Int64, name: String, role: String) -> String {
        parts.map { part in
            switch part {
            case .literal(let text): text
            case .id: String(id)
            case .name: name
            case .role: role
            }
        }.joined()
    }
}
