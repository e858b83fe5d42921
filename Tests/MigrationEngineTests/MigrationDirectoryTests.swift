import Foundation
@testable import MigrationEngine
import MigratorTestSupport
import Testing

@Suite("Migration files: names, encodings, directives")
struct MigrationDirectoryTests {
    struct NameCase: Sendable, CustomTestStringConvertible {
        var fileName: String
        var version: Int64?
        var name: String?
        var problem: String?
        var testDescription: String { fileName }
    }

    static let names: [NameCase] = [
        NameCase(fileName: "0001_init.sql", version: 1, name: "init"),
        NameCase(fileName: "1_init.sql", version: 1, name: "init"),
        NameCase(fileName: "20261125093000_add_sites.sql", version: 20_261_125_093_000, name: "add_sites"),
        NameCase(fileName: "0007_add_index_on_sites.v2.sql", version: 7, name: "add_index_on_sites.v2"),
        NameCase(fileName: "0003_zürich.sql", version: 3, name: "zürich"),
        NameCase(fileName: "init.sql", problem: "no '_'"),
        NameCase(fileName: "abc_init.sql", problem: "digits 0-9"),
        NameCase(fileName: "0000_zero.sql", problem: "positive"),
        NameCase(fileName: "-1_negative.sql", problem: "digits 0-9"),
        NameCase(fileName: "١٢_arabic_digits.sql", problem: "digits 0-9"),
        NameCase(fileName: "99999999999999999999_huge.sql", problem: "too large"),
        NameCase(fileName: "0004_.sql", problem: "description"),
        NameCase(fileName: "0005.sql", problem: "no '_'"),
    ]

    @Test("file names are parsed or refused with the reason", arguments: names)
    func parseNames(_ testCase: NameCase) {
        switch MigrationDirectory.parse(fileName: testCase.fileName) {
        case .success(let (version, name)):
            #expect(testCase.problem == nil, "accepted \(testCase.fileName)")
            #expect(version == testCase.version)
            #expect(name == testCase.name)
        case .failure(let problem):
            #expect(testCase.problem != nil, "refused \(testCase.fileName): \(problem.text)")
            if let expected = testCase.problem { #expect(problem.text.contains(expected), "\(problem.text)") }
        }
    }

    @Test("listing ignores other files, sorts by number, and reports every bad file at once")
    func listing() throws {
        let folder = try MigrationFolder()
        try folder.write("0010_ten.sql", "SELECT 10;")
        try folder.write("2_two.sql", "SELECT 2;")
        try folder.write("README.md", "not a migration")
        try folder.write(".0003_swap.sql", "hidden editor file")
        try folder.write("notes.sql.bak", "ignored")
        let entries = try MigrationDirectory(path: folder.path).entries()
        #expect(entries.map(\.version) == [2, 10])
        #expect(entries.map(\.displayPath) == [folder.path + "/2_two.sql", folder.path + "/0010_ten.sql"])

        try folder.write("1_a.sql", "SELECT 1;")
        try folder.write("0001_b.sql", "SELECT 1;")
        try folder.write("bad.sql", "")
        try FileManager.default.createDirectory(atPath: folder.path + "/0011_folder.sql", withIntermediateDirectories: false)
        let error = #expect(throws: MigrationError.self) { try MigrationDirectory(path: folder.path).entries() }
        #expect(error?.code == .invalidMigrationFile)
        #expect(error?.mentions("version 1 is also used by") == true)
        #expect(error?.diagnostics.contains { $0.location?.file.hasSuffix("/bad.sql") == true } == true)
        #expect(error?.reports(at: "0011_folder.sql", "this is a folder") == true)
        #expect(error?.mentions("expected NNNN_description.sql") == true)
    }

    @Test("a missing folder is a clear error")
    func missingFolder() {
        let error = #expect(throws: MigrationError.self) { try MigrationDirectory(path: "/nonexistent/Migrations").entries() }
        #expect(error?.mentions("the migrations folder does not exist") == true)
    }

    @Test("a symbolic link to a file is followed; a broken one is reported")
    func symlinks() throws {
        let folder = try MigrationFolder()
        let target = try folder.write("real.txt", "SELECT 1;")
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/0001_linked.sql", withDestinationPath: target)
        let entries = try MigrationDirectory(path: folder.path).entries()
        #expect(try entries.first?.load().content == "SELECT 1;")
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/0002_broken.sql", withDestinationPath: folder.path + "/nowhere")
        let error = #expect(throws: MigrationError.self) { try MigrationDirectory(path: folder.path).entries() }
        #expect(error?.reports(at: "0002_broken.sql", "the file cannot be read") == true)
    }

    @Test("a directive with more dashes counts; one after SQL or a /* */ comment is an error, not silently ignored")
    func directivePlacement() throws {
        let folder = try MigrationFolder()
        try folder.write("0001_dashes.sql", "--- migrator:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (id);\n")
        try folder.write("0002_block.sql", "/* header */\n-- migrator:no-transaction\nSELECT 1;\n")
        try folder.write("0003_late.sql", "SELECT 1;\n-- migrator:no-transaction\n")
        let entries = try MigrationDirectory(path: folder.path).entries()
        #expect(try entries[0].load().transactional == false)
        for (entry, line) in [(entries[1], 2), (entries[2], 2)] {
            let error = #expect(throws: MigrationError.self) { try entry.load() }
            #expect(error?.reports(at: "\(entry.fileName):\(line):1", "is not in the file's first comment lines") == true, "\(String(describing: error))")
        }
    }

    @Test("a NUL byte is refused where it is, before anything could be sent without what follows it")
    func nulByte() throws {
        let folder = try MigrationFolder()
        try folder.write("0001_nul.sql", "SELECT 1;\nSELECT 'a\u{0}b';\n")
        let entry = try #require(try MigrationDirectory(path: folder.path).entries().first)
        let error = #expect(throws: MigrationError.self) { try entry.load() }
        #expect(error?.code == .invalidMigrationFile)
        #expect(error?.reports(at: "0001_nul.sql:2:10", "NUL byte") == true, "\(String(describing: error))")
    }

    @Test("BOM and CRLF do not change the checksum; content changes do")
    func checksumNormalisation() throws {
        let folder = try MigrationFolder()
        try folder.write("0001_lf.sql", "CREATE TABLE a (id int);\nSELECT 1;\n")
        try folder.write("0002_crlf.sql", "CREATE TABLE a (id int);\r\nSELECT 1;\r\n")
        try folder.write("0003_bom.sql", bytes: [0xEF, 0xBB, 0xBF] + Array("CREATE TABLE a (id int);\r\nSELECT 1;\n".utf8))
        try folder.write("0004_other.sql", "CREATE TABLE a (id int);\nSELECT 2;\n")
        let files = try MigrationDirectory(path: folder.path).entries().map { try $0.load() }
        #expect(files[0].checksum == files[1].checksum)
        #expect(files[0].checksum == files[2].checksum)
        #expect(files[0].checksum != files[3].checksum)
        #expect(files[0].checksum.hasPrefix("sha256:") && files[0].checksum.count == 7 + 64)
        #expect(files[2].content == "CREATE TABLE a (id int);\nSELECT 1;\n")
    }

    @Test("a file that is not UTF-8 is refused with the line and column of the first bad byte")
    func invalidUTF8() throws {
        let folder = try MigrationFolder()
        try folder.write("0001_latin1.sql", bytes: Array("SELECT 1;\nSELECT 'caf".utf8) + [0xE9] + Array("';\n".utf8))
        let error = #expect(throws: MigrationError.self) { try MigrationDirectory(path: folder.path).entries().first?.load() }
        #expect(error?.code == .invalidMigrationFile)
        #expect(error?.reports(at: "0001_latin1.sql:2:12", "the file is not valid UTF-8") == true)
    }

    // Changed on purpose (issue 14, "text that becomes something else"): a directive after the first statement used to
    // be ignored, so the file ran in a transaction although it asked not to; it is now an error at its line.
    @Test("the no-transaction directive is read from the leading comments only (one after SQL is an error); a misspelt one is an error")
    func directives() throws {
        let folder = try MigrationFolder()
        try folder.write("0001_a.sql", "-- migrator:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);\n")
        try folder.write("0002_b.sql", "-- builds the index\n\n--   Migrator:No-Transaction  \nSELECT 1;\n")
        try folder.write("0003_c.sql", "SELECT 1;\n-- migrator:no-transaction\n")
        try folder.write("0004_d.sql", "-- a note that mentions migrator:no-transaction in passing\nSELECT 1;\n")
        let entries = try MigrationDirectory(path: folder.path).entries()
        let files = try [entries[0], entries[1], entries[3]].map { try $0.load() }
        #expect(files.map(\.transactional) == [false, false, true])
        let late = #expect(throws: MigrationError.self) { try entries[2].load() }
        #expect(late?.reports(at: "0003_c.sql:2:1", "is not in the file's first comment lines") == true)

        try folder.write("0005_typo.sql", "-- header\n-- migrator:no-transactions\nSELECT 1;\n")
        let entry = try MigrationDirectory(path: folder.path).entries().last!
        let error = #expect(throws: MigrationError.self) { try entry.load() }
        #expect(error?.reports(at: "0005_typo.sql:2:1", "unknown directive 'migrator:no-transactions'") == true)
    }
}

@Suite("Source positions")
struct SourceTextTests {
    @Test("offsets map to line and column in characters, and a line is given whole for the excerpt")
    func excerpt() {
        let source = SourceText("SELECT 'é';\n\tCREATE INDEX ON sites (name);\n")
        let offset = Array("SELECT 'é';\n\tCREATE INDEX ON ".unicodeScalars).count
        let (line, column) = source.location(ofOffset: offset)
        #expect(line == 2 && column == 18)
        #expect(source.line(2) == "\tCREATE INDEX ON sites (name);")
        #expect(source.location(ofOffset: 0) == (1, 1))
    }

    @Test("the caret goes to the object the message names")
    func mention() {
        #expect(MigrationSession.mention(in: "CREATE INDEX ON sites (name)", of: #"relation "sites" does not exist"#) == 16)
        #expect(MigrationSession.mention(in: "select * from my_sites, sites", of: #"relation "sites" does not exist"#) == 24)
        #expect(MigrationSession.mention(in: "SELECT 1", of: "no quotes here") == nil)
        #expect(MigrationSession.mention(in: "INSERT INTO public.t VALUES (1)", of: #"relation "public.t" does not exist"#) == 12)
    }
}
