import Foundation
import RoleSync
import Testing

@Suite("Role catalogue")
struct RoleCatalogueTests {
    static var fixture: Data {
        get throws {
            guard let url = Bundle.module.url(forResource: "Fixtures/antenna-roles", withExtension: "json") else {
                throw CocoaError(.fileNoSuchFile)
            }
            return try Data(contentsOf: url)
        }
    }

    @Test("the built-in catalogue is the reference app's")
    func referenceMatchesJSON() throws {
        let reference = RoleCatalogue.reference
        let fromFile = try RoleCatalogue.parse(try Self.fixture, source: "antenna-roles.json")
        #expect(reference == fromFile)
        #expect(reference.version == fromFile.version)
        let counts = Dictionary(uniqueKeysWithValues: reference.roles.map { ($0.name, $0.permissions.count) })
        #expect(counts == ["BasicMember": 6, "Researcher": 8, "Identifier": 9, "MLDataManager": 12, "ProjectManager": 47])
        #expect(reference.pairCount == 82)
        // 45 declared plus 5 used without a display name.
        #expect(reference.permissions.count == 50)
        let names = Dictionary(uniqueKeysWithValues: reference.permissions.map { ($0.codename, $0.name) })
        #expect(names["view_project"] == "Can view project")
        #expect(names["delete_project"] == "Can delete project")
        #expect(names["import_data"] == "Can import data")
        #expect(names["create_job"] == "Can create a job")
    }

    @Test("the version ignores declaration order and JSON formatting")
    func versionIsCanonical() throws {
        let a = try RoleCatalogue.parse(Data(#"{"project_permissions":[{"codename":"a","name":"A"},{"codename":"b","name":"B"}],"roles":[{"name":"X","permissions":["a","b"]},{"name":"Y","permissions":["b"]}]}"#.utf8), source: "a")
        let b = try RoleCatalogue.parse(Data("""
            {
              "roles": [ {"permissions": ["b"], "name": "Y"},
                         {"name": "X", "permissions": ["b", "a"]} ],
              "source": "anything",
              "project_permissions": [ {"name": "B", "codename": "b"}, {"codename": "a", "name": "A"} ]
            }
            """.utf8), source: "b")
        #expect(a.version == b.version)
        #expect(a.version.count == 64 && a.version.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(a.canonicalJSON.hasPrefix(#"{"format":"migrator.roles/1","permissions":[{"codename":"a","name":"A"}"#))
    }

    @Test("the version changes with any role name, membership or display name")
    func versionChanges() throws {
        let base = try RoleCatalogue(permissions: [("a", "A"), ("b", "B")], roles: [("X", ["a"]), ("Y", ["b"])])
        let variants = [
            try RoleCatalogue(permissions: [("a", "A"), ("b", "B")], roles: [("Z", ["a"]), ("Y", ["b"])]),
            try RoleCatalogue(permissions: [("a", "A"), ("b", "B")], roles: [("X", ["a", "b"]), ("Y", ["b"])]),
            try RoleCatalogue(permissions: [("a", "A"), ("b", "B")], roles: [("X", []), ("Y", ["b"])]),
            try RoleCatalogue(permissions: [("a", "A!"), ("b", "B")], roles: [("X", ["a"]), ("Y", ["b"])]),
            try RoleCatalogue(permissions: [("a", "A"), ("b", "B"), ("c", "C")], roles: [("X", ["a"]), ("Y", ["b"])]),
        ]
        for variant in variants { #expect(variant.version != base.version) }
        #expect(Set(variants.map(\.version)).count == variants.count)
    }

    @Test("a stored catalogue reads back equal, and the diff names what changed")
    func storedAndDiff() throws {
        let old = try RoleCatalogue(permissions: [("a", "A"), ("b", "B")], roles: [("X", ["a"]), ("Gone", ["b"])])
        #expect(RoleCatalogue.fromStored(old.canonicalJSON) == old)
        #expect(RoleCatalogue.fromStored(#"{"format":"other"}"#) == nil)
        let new = try RoleCatalogue(permissions: [("a", "A2"), ("b", "B")], roles: [("X", ["a", "b"]), ("New", ["a"])])
        let diff = CatalogueDiff(from: old, to: new)
        #expect(diff.addedPairs == [.init(role: "New", codename: "a"), .init(role: "X", codename: "b")])
        #expect(diff.removedPairs == [.init(role: "Gone", codename: "b")])
        #expect(diff.addedRoles == ["New"] && diff.removedRoles == ["Gone"])
        #expect(diff.changedPermissions == ["a"])
        #expect(CatalogueDiff(from: new, to: new).isEmpty)
    }

    struct BadFile: Sendable, CustomTestStringConvertible {
        var label: String
        var json: String
        var expected: String
        var testDescription: String { label }
    }

    static let badFiles: [BadFile] = [
        BadFile(label: "not JSON", json: #"{"roles": [}"#, expected: "roles.json:1:12: error: the file is not valid JSON: expected a value"),
        BadFile(label: "duplicate top-level key", json: "{\"roles\": [{\"name\": \"A\", \"permissions\": []}],\n \"roles\": [{\"name\": \"B\", \"permissions\": []}]}", expected: #"roles.json:2:2: error: duplicate key "roles" in the top-level object (first at 1:2)"#),
        BadFile(label: "duplicate key in a role", json: #"{"roles": [{"name": "A", "permissions": []}, {"name": "B", "permissions": ["x"], "name": "C"}]}"#, expected: #"roles.json:1:82: error: duplicate key "name" in roles[1] (first at 1:47)"#),
        BadFile(label: "duplicate key in a permission", json: #"{"project_permissions": [{"codename": "c", "name": "C", "codename": "d"}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: #"duplicate key "codename" in project_permissions[0]"#),
        BadFile(label: "duplicate key in the target", json: #"{"roles": [{"name": "A", "permissions": []}], "target": {"group_name": "{id}{role}", "group_name": "{role}{id}"}}"#, expected: #"duplicate key "group_name" in target"#),
        BadFile(label: "duplicate key deep in the ignored source", json: #"{"source": {"repo": {"url": "a", "url": "b"}}, "roles": [{"name": "A", "permissions": []}]}"#, expected: #"duplicate key "url" in source.repo"#),
        BadFile(label: "escaped NUL in a codename", json: #"{"roles": [{"name": "A", "permissions": ["view\u0000_project"]}]}"#, expected: #"roles.json:1:47: error: \u0000 (NUL) in a string; PostgreSQL text cannot hold it"#),
        BadFile(label: "escaped NUL in a display name", json: #"{"project_permissions": [{"codename": "c", "name": "Can\u0000 c"}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: #"roles.json:1:56: error: \u0000 (NUL)"#),
        BadFile(label: "raw NUL byte in a string", json: "{\"roles\": [{\"name\": \"A\", \"permissions\": [\"c\u{0}d\"]}]}", expected: "roles.json:1:44: error: the file is not valid JSON: a NUL byte in a string"),
        BadFile(label: "lone surrogate in a codename", json: #"{"roles": [{"name": "A", "permissions": ["c\uD800"]}]}"#, expected: #"roles.json:1:44: error: \uD800 is the first half of a surrogate pair without a second"#),
        BadFile(label: "codename of 99 characters and 101 code points", json: #"{"roles": [{"name": "A", "permissions": [""# + String(repeating: "c", count: 97) + #"e\u0301e\u0301"]}]}"#, expected: "error: the codename has 101 characters (code points, as PostgreSQL counts them); auth_permission.codename holds at most 100"),
        BadFile(label: "display name of 200 characters and 400 code points", json: #"{"project_permissions": [{"codename": "c", "name": ""# + String(repeating: #"e\u0301"#, count: 200) + #""}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: "permission 'c': error: the display name has 400 characters (code points, as PostgreSQL counts them)"),
        BadFile(label: "top level list", json: "[]", expected: "the top level must be an object"),
        BadFile(label: "no roles", json: #"{"project_permissions": []}"#, expected: #""roles" is missing"#),
        BadFile(label: "empty roles", json: #"{"roles": []}"#, expected: "declares no roles"),
        BadFile(label: "unknown top key", json: #"{"roles": [{"name": "A", "permissions": []}], "rolez": []}"#, expected: #"unknown key "rolez""#),
        BadFile(label: "unknown role key", json: #"{"roles": [{"name": "A", "permissions": [], "perms": []}]}"#, expected: #"role 'A': error: unknown key "perms""#),
        BadFile(label: "permissions not strings", json: #"{"roles": [{"name": "A", "permissions": [1]}]}"#, expected: "role 'A': error: \"permissions\" must be a list"),
        BadFile(label: "duplicate role", json: #"{"roles": [{"name": "A", "permissions": []}, {"name": "A", "permissions": []}]}"#, expected: "role 'A': error: the role is declared twice"),
        BadFile(label: "empty role name", json: #"{"roles": [{"name": "", "permissions": []}]}"#, expected: "a role name is empty"),
        BadFile(label: "non-identifier role", json: #"{"roles": [{"name": "Data Manager", "permissions": []}]}"#, expected: "role 'Data Manager': error: the role name is not an identifier"),
        BadFile(label: "role starting with digit", json: #"{"roles": [{"name": "1st", "permissions": []}]}"#, expected: "not an identifier"),
        BadFile(label: "long role", json: #"{"roles": [{"name": "\#(String(repeating: "R", count: 50))", "permissions": []}]}"#, expected: "the role name has 50 characters"),
        BadFile(label: "long codename", json: #"{"roles": [{"name": "A", "permissions": ["\#(String(repeating: "c", count: 101))"]}]}"#, expected: "role 'A': permission 'cccc"),
        BadFile(label: "long display name", json: #"{"project_permissions": [{"codename": "c", "name": "\#(String(repeating: "n", count: 256))"}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: "permission 'c': error: the display name has 256 characters"),
        BadFile(label: "codename listed twice", json: #"{"roles": [{"name": "A", "permissions": ["c", "c"]}]}"#, expected: "role 'A': permission 'c': error: the role lists this permission twice"),
        BadFile(label: "conflicting display names", json: #"{"project_permissions": [{"codename": "c", "name": "X"}, {"codename": "c", "name": "Y"}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: "declared twice"),
        BadFile(label: "permission entry shape", json: #"{"project_permissions": [{"codename": "c"}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: "project_permissions[0] must be"),
        BadFile(label: "permission entry with another key", json: #"{"project_permissions": [{"codename": "c", "name": "C", "label": "x"}], "roles": [{"name": "A", "permissions": ["c"]}]}"#, expected: "project_permissions[0] must be {\"codename\": string, \"name\": string} and nothing else"),
        BadFile(label: "project_permissions not a list", json: #"{"project_permissions": {}, "roles": [{"name": "A", "permissions": []}]}"#, expected: #"roles.json: error: "project_permissions" must be a list"#),
        BadFile(label: "roles not a list", json: #"{"roles": {"name": "A"}}"#, expected: #""roles" is missing or not a list"#),
        BadFile(label: "role entry null", json: #"{"roles": [{"name": "A", "permissions": []}, null]}"#, expected: #"roles.json: error: roles[1] must be an object with a string "name""#),
        BadFile(label: "role name not a string", json: #"{"roles": [{"name": 1, "permissions": []}]}"#, expected: "roles[0] must be an object"),
        BadFile(label: "role without permissions", json: #"{"roles": [{"name": "A"}]}"#, expected: "role 'A': error: \"permissions\" must be a list of codename strings"),
        BadFile(label: "target not an object", json: #"{"roles": [{"name": "A", "permissions": []}], "target": []}"#, expected: #""target" must be an object with any of the keys"#),
        BadFile(label: "unknown target key", json: #"{"roles": [{"name": "A", "permissions": []}], "target": {"table": "x"}}"#, expected: #"unknown key "table" in "target"; its keys are "project_table""#),
        BadFile(label: "target value not a string", json: #"{"roles": [{"name": "A", "permissions": []}], "target": {"id_column": 1}}"#, expected: "target.id_column must be a string"),
        BadFile(label: "bad target content type", json: #"{"roles": [{"name": "A", "permissions": []}], "target": {"content_type": "project"}}"#, expected: "target.content_type: error: the content type 'project' must be app_label.model"),
    ]

    @Test("a bad roles file is refused with the file, role and codename at fault", arguments: badFiles)
    func badFile(_ bad: BadFile) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("roles-\(UUID().uuidString)/roles.json")
        try FileManager.default.createDirectory(at: path.deletingLastPathComponent(), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: path.deletingLastPathComponent()) }
        try Data(bad.json.utf8).write(to: path)
        let error = #expect(throws: CatalogueError.self) { try RoleCatalogue.load(path: path.path) }
        #expect(error?.description.contains(bad.expected) == true, "\(error?.description ?? "no error")")
        #expect(error?.description.hasPrefix(path.path) == true)
    }

    /// PostgreSQL's varchar(n) counts code points in a UTF-8 database; Swift's `count` counts grapheme clusters, fewer
    /// when a letter carries combining marks. The limits count what the server counts, on both sides of the limit.
    @Test("length limits count code points, as PostgreSQL does, not Swift characters")
    func lengthsInCodePoints() throws {
        let combining = "e\u{301}"  // one Character, two code points
        #expect(combining.count == 1 && combining.unicodeScalars.count == 2)
        // 100 code points in 51 Characters: at the limit, accepted.
        let atLimit = String(repeating: combining, count: 49) + "cc"
        #expect(atLimit.count == 51 && atLimit.unicodeScalars.count == 100)
        #expect(try RoleCatalogue(permissions: [], roles: [("A", [atLimit])]).role(named: "A")?.permissions == [atLimit])
        // 101 code points in 52 Characters: past it, refused, though Swift counts only 52.
        let past = atLimit + "c"
        #expect(past.count == 52 && past.unicodeScalars.count == 101)
        let codename = #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [], roles: [("A", [past])]) }
        #expect(codename?.message.contains("the codename has 101 characters (code points") == true, "\(String(describing: codename))")
        // The display name: 255 code points pass, 256 in 128 Characters do not.
        let name255 = String(repeating: combining, count: 127) + "n"
        #expect(name255.unicodeScalars.count == 255)
        #expect(try RoleCatalogue(permissions: [("c", name255)], roles: [("A", ["c"])]).permissions.first?.name == name255)
        let name256 = String(repeating: combining, count: 128)
        #expect(name256.count == 128 && name256.unicodeScalars.count == 256)
        let display = #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [("c", name256)], roles: [("A", ["c"])]) }
        #expect(display?.message.contains("the display name has 256 characters (code points") == true)
        // The role name (which keeps every group name within auth_group.name) is ASCII only, so both counts agree;
        // a combining mark in it is refused as not an identifier, not measured.
        let role = #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [], roles: [("Lead" + "\u{301}", [])]) }
        #expect(role?.message.contains("not an identifier") == true)
        #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [], roles: [(String(repeating: "R", count: 50), [])]) }
        _ = try RoleCatalogue(permissions: [], roles: [(String(repeating: "R", count: 49), [])])
    }

    @Test("a NUL character in any catalogue value is refused, from a file and from code")
    func nulRefused() throws {
        let codename = #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [], roles: [("A", ["view\u{0}_project"])]) }
        #expect(codename?.description.contains("role 'A': error: the codename contains a NUL character") == true, "\(String(describing: codename))")
        let display = #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [("c", "Can\u{0} c")], roles: [("A", ["c"])]) }
        #expect(display?.description.contains("permission 'c': error: the display name contains a NUL character") == true)
        let role = #expect(throws: CatalogueError.self) { try RoleCatalogue(permissions: [], roles: [("A\u{0}B", [])]) }
        #expect(role?.message.contains("not an identifier") == true)
        let template = #expect(throws: CatalogueError.self) { try GroupNameTemplate("{id}\u{0}{role}") }
        #expect(template?.message.contains("contains a NUL character") == true)
        #expect(throws: CatalogueError.self) {
            try RoleTarget(
                projectTable: "main_project", idColumn: "id", nameColumn: "name", appLabel: "main\u{0}", model: "project",
                groupName: .reference
            )
        }
        #expect(throws: CatalogueError.self) {
            try RoleTarget(
                projectTable: "main\u{0}project", idColumn: "id", nameColumn: "name", appLabel: "main", model: "project",
                groupName: .reference
            )
        }
        // In a file every string is checked by the reader, keys and values alike, at the place of the escape.
        for json in [
            #"{"roles": [{"name": "A", "permissions": []}], "target": {"group_name": "{id}\u0000{role}"}}"#,
            #"{"roles": [{"name": "A", "permissions": []}], "source": {"k\u0000": 1}}"#,
        ] {
            let error = #expect(throws: CatalogueError.self) { try RoleCatalogue.parse(Data(json.utf8), source: "r.json") }
            #expect(error?.description.hasPrefix("r.json:1:") == true && error?.message.contains("NUL") == true, "\(String(describing: error))")
        }
    }

    @Test("a roles file with a target and any \"source\" reads back the target; the reference file keeps its version")
    func targetAndSource() throws {
        let catalogue = try RoleCatalogue.parse(Data(#"""
            {"source": {"repo": "x", "commit": 1}, "roles": [{"name": "A", "permissions": ["view_site"]}],
             "target": {"project_table": "app.workspaces", "content_type": "app.workspace", "group_name": "{role}-{id}"}}
            """#.utf8), source: "t.json")
        #expect(catalogue.target.projectTable == "app.workspaces" && catalogue.target.idColumn == "id")
        #expect(catalogue.target.appLabel == "app" && catalogue.target.model == "workspace")
        #expect(catalogue.target.groupName.text == "{role}-{id}")
        #expect(catalogue.canonicalJSON.hasSuffix(#","target":{"content_type":"app.workspace","group_name":"{role}-{id}","id_column":"id","name_column":"name","project_table":"app.workspaces"}}"#))
        // Read from the file as the reference, byte for byte the version the built-in catalogue has.
        #expect(try RoleCatalogue.parse(try Self.fixture, source: "antenna-roles.json").version == RoleCatalogue.reference.version)
    }

    @Test("a missing or huge roles file is refused")
    func unreadableFiles() throws {
        let missing = #expect(throws: CatalogueError.self) { try RoleCatalogue.load(path: "/nonexistent/roles.json") }
        #expect(missing?.description.contains("cannot be read") == true)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("huge-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: path) }
        try Data(count: RoleCatalogue.maxFileSize + 1).write(to: path)
        let huge = #expect(throws: CatalogueError.self) { try RoleCatalogue.load(path: path.path) }
        #expect(huge?.description.contains("at most") == true)
    }
}
