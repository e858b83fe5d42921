import ArgumentParser
import Foundation
import MigratorTestSupport
import Testing
import Yams
@testable import MigratorCLI
@testable import migrator_serve
#if canImport(Glibc)
import Glibc
#endif

/// The Dockerfile, docker-compose.yml and .dockerignore, read as Docker and Compose would read them (no Docker engine
/// is needed): the order of start-up a user relies on, the credentials, and every migrator command line in them, which
/// must be one the CLI accepts.
@Suite("container files: Dockerfile, docker-compose.yml, .dockerignore")
struct ContainerFilesTests {
    @Test("docker-compose.yml: db, migrate, daemon and app, in the right order, with credentials from variables")
    func composeServices() throws {
        let compose = try ComposeDocument.load()
        #expect(compose.tree["version"] == nil, "the top-level `version:` key is obsolete in the Compose specification")
        #expect(compose.unsetWithoutDefault.isEmpty, "variables without a default: \(compose.unsetWithoutDefault); `docker compose up` must work with none set")
        let services = compose.services
        for name in ["db", "migrate", "daemon", "app"] {
            #expect(services[name] != nil, "no service \(name); services: \(services.keys.sorted())")
        }
        let db = try #require(services["db"])
        let migrate = try #require(services["migrate"])
        let daemon = try #require(services["daemon"])
        let app = try #require(services["app"])

        // db: PostgreSQL with a volume and a healthcheck for the services that wait for it.
        #expect(ContainerFiles.scalar(db["image"])?.hasPrefix("postgres:") == true)
        #expect((db["volumes"] as? [Any])?.isEmpty == false, "the database has no volume")
        let dbEnvironment = ContainerFiles.environment(db)
        let dbCheck = try #require(ContainerFiles.healthcheckCommand(db), "db has no healthcheck, so service_healthy can never hold")
        #expect(dbCheck.first == "pg_isready", "db healthcheck: \(dbCheck)")
        #expect(ContainerFiles.value(after: "-U", in: dbCheck) == dbEnvironment["POSTGRES_USER"], "db healthcheck: \(dbCheck)")
        #expect(ContainerFiles.value(after: "-d", in: dbCheck) == dbEnvironment["POSTGRES_DB"], "db healthcheck: \(dbCheck)")

        // The order: migrate after db is healthy; daemon and app only after migrate exited 0.
        #expect(ContainerFiles.dependencies(migrate)["db"] == "service_healthy")
        #expect(ContainerFiles.scalar(migrate["restart"]) == "no", "a one-shot migrate must not be restarted")
        #expect(ContainerFiles.dependencies(daemon)["db"] == "service_healthy")
        #expect(ContainerFiles.dependencies(app)["migrate"] == "service_completed_successfully")
        #expect(ContainerFiles.dependencies(app)["db"] == "service_healthy")
        #expect(ContainerFiles.words(migrate["command"])?.first == "migrate")
        #expect(ContainerFiles.words(daemon["command"])?.first == "serve")
        #expect(ContainerFiles.migratorServices(compose).sorted() == ["daemon", "migrate"], "migrate and daemon must run the image built here")

        // daemon: readiness through `migrator probe /readyz`, and the HTTP port published.
        let daemonCheck = try #require(ContainerFiles.healthcheckCommand(daemon), "daemon has no healthcheck")
        #expect(daemonCheck.first.map(ContainerFiles.isMigratorBinary) == true, "daemon healthcheck: \(daemonCheck)")
        #expect(daemonCheck.dropFirst().first == "probe", "daemon healthcheck: \(daemonCheck)")
        #expect(daemonCheck.contains("/readyz"), "daemon healthcheck: \(daemonCheck)")
        let imageEnvironment = try DockerfileDocument.load().stages.last?.environment ?? [:]
        let address = try #require(ContainerFiles.environment(daemon)["MIGRATOR_HTTP_ADDRESS"] ?? imageEnvironment["MIGRATOR_HTTP_ADDRESS"])
        let listening = try #require(address.split(separator: ":").last)
        let ports = (daemon["ports"] as? [Any])?.compactMap(ContainerFiles.scalar) ?? []
        #expect(ports.contains { $0.split(separator: "/").first?.split(separator: ":").last == listening }, "daemon ports \(ports); it listens on \(address)")

        // Credentials: variables with defaults, the same ones in the db service and in every DATABASE_URL.
        #expect(compose.raw.contains("${POSTGRES_PASSWORD:-"))
        let urls = services.compactMapValues { ContainerFiles.environment($0)["DATABASE_URL"] }
        #expect(Set(urls.keys).isSuperset(of: ["migrate", "daemon", "app"]), "services with a DATABASE_URL: \(urls.keys.sorted())")
        for (service, url) in urls.sorted(by: { $0.key < $1.key }) {
            let components = try #require(URLComponents(string: url), "\(service): DATABASE_URL is not a URL: \(url)")
            #expect(components.host == "db" && (components.port ?? 5432) == 5432, "\(service): \(url)")
            #expect(components.user == dbEnvironment["POSTGRES_USER"], "\(service): the user differs from db's")
            #expect(components.password == dbEnvironment["POSTGRES_PASSWORD"], "\(service): the password differs from db's")
            #expect(components.path == "/" + (dbEnvironment["POSTGRES_DB"] ?? ""), "\(service): the database differs from db's")
        }
        // Overriding the variables changes db and every DATABASE_URL alike: nothing is a literal.
        let chosen = ["POSTGRES_USER": "chosen-user", "POSTGRES_PASSWORD": "chosen-password-7f3", "POSTGRES_DB": "chosen-db"]
        let overridden = try ComposeDocument.load(environment: chosen)
        #expect(ContainerFiles.environment(overridden.services["db"] ?? [:]) == chosen)
        for (service, url) in overridden.services.compactMapValues({ ContainerFiles.environment($0)["DATABASE_URL"] }) {
            let components = URLComponents(string: url)
            #expect(components?.user == chosen["POSTGRES_USER"], "\(service): DATABASE_URL does not follow POSTGRES_USER")
            #expect(components?.password == chosen["POSTGRES_PASSWORD"], "\(service): DATABASE_URL has a literal password")
            #expect(components?.path == "/" + chosen["POSTGRES_DB"]!, "\(service): DATABASE_URL does not follow POSTGRES_DB")
        }
    }

    @Test("every migrator command line in docker-compose.yml is one the CLI accepts")
    func composeCommandLines() throws {
        // The checker can fail: wrong lines are rejected, by the parser and by the commands' validate().
        #expect(ContainerFiles.rejection(of: ["serve", "--no-such-flag"]) != nil)
        #expect(ContainerFiles.rejection(of: ["migrat"]) != nil)
        #expect(ContainerFiles.rejection(of: []) != nil, "`migrator` alone only prints the help")
        #expect(ContainerFiles.rejection(of: ["migrate", "--lock-timeout", "soon"]) != nil)
        #expect(ContainerFiles.rejection(of: ["probe", "readyz"]) != nil)
        #expect(ContainerFiles.rejection(of: ["migrate"]) == nil)
        // ... and the extraction finds lines written as strings and as lists, under any entrypoint spelling.
        let sample = try ComposeDocument(text: """
            services:
              runner:
                build: .
                command: serve --no-such-flag
                healthcheck:
                  test: ["CMD", "/usr/local/bin/migrator", "probe", "--no-such-option"]
              shell:
                build: { context: . }
                entrypoint: /usr/local/bin/migrator
                command: [status, "--json"]
              other:
                image: postgres:17
                healthcheck: { test: ["CMD-SHELL", "pg_isready"] }
            """)
        let sampleLines = ContainerFiles.migratorLines(in: sample, defaultCommand: ["serve"])
        #expect(sampleLines.problems.isEmpty, "\(sampleLines.problems)")
        #expect(sampleLines.lines.map(\.arguments) == [["serve", "--no-such-flag"], ["probe", "--no-such-option"], ["status", "--json"]])
        #expect(sampleLines.lines.map { ContainerFiles.rejection(of: $0.arguments) != nil } == [true, true, false])

        let compose = try ComposeDocument.load()
        let dockerfile = try DockerfileDocument.load()
        let found = ContainerFiles.migratorLines(in: compose, defaultCommand: dockerfile.defaultArguments)
        #expect(found.problems.isEmpty, "\(found.problems)")
        let subcommands = Set(found.lines.compactMap(\.arguments.first))
        #expect(subcommands.isSuperset(of: ["migrate", "serve", "probe"]), "found: \(found.lines.map(\.description))")
        for line in found.lines {
            let rejection = ContainerFiles.rejection(of: line.arguments)
            #expect(rejection == nil, "\(line) is rejected:\n\(rejection ?? "")")
        }
    }

    @Test("Dockerfile: a toolchain stage builds, a slim non-root runtime runs migrator serve with a probe healthcheck")
    func dockerfile() throws {
        let file = try DockerfileDocument.load()
        try #require(file.stages.count >= 2, "a multi-stage build: the toolchain must not ship")
        let runtime = file.stages[file.stages.count - 1]
        let recipe = "scripts/build-release"
        let builders = file.stages.dropLast().filter { stage in stage.runCommands.contains { $0.contains(recipe) } }
        let build = try #require(builders.last, "no stage runs \(recipe), the one place that says how the binary is built")

        // The build: a Swift toolchain image, libpq headers, the recipe copied in from the context and run, and the
        // recipe a release build of the migrator product with the static Swift runtime (as scripts/run builds it too).
        #expect(build.base.contains("swift"), "build stage base: \(build.base)")
        #expect(build.aptPackages.contains("libpq-dev"), "build stage packages: \(build.aptPackages)")
        #expect(build.copies.contains { $0.from == nil && $0.sources.map(ContainerFiles.clean).contains(recipe) }, "the build stage does not copy \(recipe)")
        #expect(!build.commands.contains { $0.hasPrefix("swift build") }, "the build stage runs `swift build` itself instead of \(recipe)")
        let recipeBuild = try #require(
            try ContainerFiles.text(recipe).components(separatedBy: "\n").first { $0.hasPrefix("swift build") && $0.contains("--product migrator") },
            "\(recipe) has no `swift build ... --product migrator` line"
        )
        let recipeFlags = try #require(
            try ContainerFiles.text(recipe).components(separatedBy: "\n").first { $0.hasPrefix("flags=(") },
            "\(recipe) has no flags=(...) line"
        )
        #expect(recipeBuild.contains("\"${flags[@]}\""), "\(recipe): \(recipeBuild) does not use the flags")
        let serveBuild = try ContainerFiles.text(recipe).components(separatedBy: "\n").first { $0.hasPrefix("swift build") && $0.contains("--product migrator-serve") }
        #expect(serveBuild?.contains("\"${flags[@]}\"") == true, "\(recipe) does not build migrator-serve with the same flags")
        for part in ["-c release", "--static-swift-stdlib"] {
            #expect(recipeFlags.contains(part), "\(recipe): \(recipeFlags) lacks \(part)")
        }
        let run = try ContainerFiles.text("scripts/run")
        #expect(run.contains("$(scripts/build-release"), "scripts/run does not build through \(recipe), so users of it get another binary")
        #expect(!run.contains("swift build"), "scripts/run runs `swift build` itself instead of \(recipe)")

        // The runtime: slim, the same Debian release as the toolchain (glibc, libpq), libpq5 and nothing to build with.
        #expect(!runtime.base.contains("swift"), "the runtime stage is based on the toolchain: \(runtime.base)")
        #expect(runtime.base.contains("slim"), "runtime base: \(runtime.base)")
        if let release = build.base.split(separator: "-").last, ["bookworm", "bullseye", "trixie", "jammy", "noble"].contains(String(release)) {
            #expect(runtime.base.contains(release), "built on \(build.base), run on \(runtime.base)")
        }
        #expect(runtime.aptPackages.contains("libpq5"), "runtime packages: \(runtime.aptPackages)")
        #expect(!runtime.aptPackages.contains("libpq-dev"), "runtime packages: \(runtime.aptPackages)")
        for stage in file.stages {
            for run in stage.runCommands where run.contains("apt-get install") {
                #expect(run.contains("rm -rf /var/lib/apt/lists"), "apt lists left in a layer: \(run)")
            }
        }

        // The migrations are in the image, where MIGRATOR_MIGRATIONS points.
        let environment = runtime.environment
        let migrationsCopy = try #require(runtime.copies.first { $0.from == nil && $0.sources.contains { ContainerFiles.clean($0) == "Migrations" } }, "Migrations/ is not copied")
        #expect(environment["MIGRATOR_MIGRATIONS"].map(ContainerFiles.clean) == ContainerFiles.clean(migrationsCopy.destination))

        // Not root.
        let user = try #require(runtime.last("USER")?.arguments, "no USER: the image runs as root")
        let account = user.split(separator: ":").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
        #expect(!["", "root", "0"].contains(account), "USER \(user)")

        // The entrypoint is the binary the build stage made, in exec form (PID 1 gets SIGTERM).
        let entrypointInstruction = try #require(runtime.last("ENTRYPOINT"))
        let entrypoint = try #require(DockerfileDocument.execForm(entrypointInstruction.arguments), "ENTRYPOINT is not an exec-form JSON array: \(entrypointInstruction.arguments)")
        let binary = try #require(entrypoint.first)
        #expect(ContainerFiles.isMigratorBinary(binary), "ENTRYPOINT \(entrypoint)")
        let binaryCopy = runtime.copies.first { $0.from != nil && ContainerFiles.clean($0.destination) == binary }
        #expect(binaryCopy.map { copy in file.stages.contains { $0.name == copy.from } } == true, "\(binary) is not copied from a build stage")
        // `migrator serve` execs migrator-serve from the same folder: it must be there, from the same build.
        let serveCopy = runtime.copies.first { $0.from != nil && ContainerFiles.clean($0.destination) == binary + "-serve" }
        #expect(serveCopy.map { copy in file.stages.contains { $0.name == copy.from } } == true, "\(binary)-serve is not copied beside \(binary) from a build stage")

        // The default command and the healthcheck are lines the CLI accepts.
        let cmdInstruction = try #require(runtime.last("CMD"))
        let cmd = try #require(DockerfileDocument.execForm(cmdInstruction.arguments), "CMD is not an exec-form JSON array")
        let defaultArguments = Array(entrypoint.dropFirst()) + cmd
        #expect(defaultArguments.first == "serve", "the image's default is the daemon; got \(defaultArguments)")
        let defaultRejection = ContainerFiles.rejection(of: defaultArguments)
        #expect(defaultRejection == nil, "ENTRYPOINT+CMD migrator \(defaultArguments) is rejected:\n\(defaultRejection ?? "")")

        let healthcheck = try #require(runtime.last("HEALTHCHECK"), "no HEALTHCHECK")
        let probe = try #require(DockerfileDocument.healthcheckCommand(healthcheck.arguments), "HEALTHCHECK is not `CMD [exec form]`: \(healthcheck.arguments)")
        #expect(probe.first.map(ContainerFiles.isMigratorBinary) == true, "HEALTHCHECK \(probe)")
        #expect(probe.dropFirst().first == "probe" && probe.contains("/readyz"), "HEALTHCHECK \(probe)")
        let probeRejection = ContainerFiles.rejection(of: Array(probe.dropFirst()))
        #expect(probeRejection == nil, "HEALTHCHECK \(probe) is rejected:\n\(probeRejection ?? "")")

        // The port the daemon listens on is the one exposed.
        let address = try #require(environment["MIGRATOR_HTTP_ADDRESS"], "MIGRATOR_HTTP_ADDRESS is not set: the daemon would listen on its default")
        let port = try #require(address.split(separator: ":").last.map(String.init))
        let exposed = runtime.all("EXPOSE").flatMap { ContainerFiles.shellWords($0.arguments) }.map { $0.split(separator: "/").first.map(String.init) ?? $0 }
        #expect(exposed.contains(port), "EXPOSE \(exposed), listening on \(address)")
    }

    @Test("every MIGRATOR_ variable the container files set is one the CLI reads, with a value it accepts")
    func environmentVariables() throws {
        // The check can fail: an unknown name, a bad value.
        #expect(!ContainerFiles.settingProblems("MIGRATOR_NO_SUCH_SETTING", "1").isEmpty)
        #expect(!ContainerFiles.settingProblems("MIGRATOR_HTTP_ADDRESS", "no address").isEmpty)
        #expect(!ContainerFiles.settingProblems("MIGRATOR_LOG_FORMAT", "xml").isEmpty)

        let dockerfile = try DockerfileDocument.load()
        let compose = try ComposeDocument.load()
        var settings: [(origin: String, name: String, value: String)] = []
        for (name, value) in dockerfile.stages.last?.environment ?? [:] {
            settings.append(("Dockerfile ENV", name, value))
        }
        for service in ContainerFiles.migratorServices(compose) {
            for (name, value) in ContainerFiles.environment(compose.services[service] ?? [:]) {
                settings.append(("service \(service)", name, value))
            }
        }
        let migratorSettings = settings.filter { $0.name.hasPrefix("MIGRATOR_") }
        #expect(Set(migratorSettings.map(\.name)).isSuperset(of: ["MIGRATOR_MIGRATIONS", "MIGRATOR_HTTP_ADDRESS", "MIGRATOR_LOG_FORMAT"]))
        for setting in migratorSettings {
            let problems = ContainerFiles.settingProblems(setting.name, setting.value)
            #expect(problems.isEmpty, "\(setting.origin): \(problems.joined(separator: "\n"))")
        }
    }

    @Test("the build context: what the build copies is there and not ignored; build output and .git stay out")
    func buildContext() throws {
        let ignore = try DockerIgnoreRules(text: ContainerFiles.text(".dockerignore"))
        for path in [".build", ".build/debug/migrator", ".build-release", ".git", ".git/HEAD"] {
            #expect(ignore.excludes(path), "\(path) is sent to the Docker daemon")
        }
        #expect(!ignore.excludes("Sources/migrator/MigratorCommand.swift"))

        let file = try DockerfileDocument.load()
        let root = RepositoryPaths.root
        var copiedFromContext: Set<String> = []
        for stage in file.stages {
            for copy in stage.copies where copy.from == nil {
                for source in copy.sources.map(ContainerFiles.clean) {
                    copiedFromContext.insert(source)
                    if source.contains(where: { "*?[".contains($0) }) {
                        // A pattern may match nothing (Package.resolved* is optional), but what it matches must be sent.
                        let matches = try FileManager.default.contentsOfDirectory(atPath: root.path).filter { fnmatch(source, $0, 0) == 0 }
                        for match in matches { #expect(!ignore.excludes(match), "COPY \(source) matches \(match), but .dockerignore excludes it") }
                        continue
                    }
                    #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent(source).path), "COPY \(source): no such file")
                    #expect(!ignore.excludes(source), "COPY \(source), but .dockerignore excludes it")
                }
            }
        }
        // SwiftPM loads the whole manifest even to build one product, and refuses one whose target folders are missing.
        for needed in ["Package.swift", "Sources", "Tests"] where FileManager.default.fileExists(atPath: root.appendingPathComponent(needed).path) {
            #expect(copiedFromContext.contains(needed), "the build does not copy \(needed), which the manifest needs")
        }
    }

    @Test("the Dockerfile and compose readers of this suite: continuations, comments, directives, interpolation")
    func readers() throws {
        let file = try DockerfileDocument(text: """
            # syntax=docker/dockerfile:1
            # escape=\\

            # a comment, not a directive=no
            ARG BASE=debian:bookworm-slim
            FROM ${BASE} AS runtime
            RUN apt-get update \\
            # a comment inside a continuation
                && apt-get install -y --no-install-recommends libpq5 \\

                && rm -rf /var/lib/apt/lists/*
            ENV A=1 B="two words"
            HEALTHCHECK --interval=5s CMD ["migrator", "probe"]
            """)
        #expect(file.directives == ["syntax": "docker/dockerfile:1", "escape": "\\"])
        #expect(file.stages.map(\.base) == ["debian:bookworm-slim"])
        #expect(file.stages.first?.instructions.map(\.keyword) == ["RUN", "ENV", "HEALTHCHECK"])
        #expect(file.stages.first?.aptPackages == ["libpq5"])
        #expect(file.stages.first?.environment == ["A": "1", "B": "two words"])
        #expect(file.stages.first?.last("HEALTHCHECK").flatMap { DockerfileDocument.healthcheckCommand($0.arguments) } == ["migrator", "probe"])

        var interpolator = ComposeInterpolator(environment: ["SET": "value", "EMPTY": ""])
        #expect(try interpolator.interpolate("a${SET}b $$SET ${UNSET:-d1} ${EMPTY:-d2} ${EMPTY-d3} ${UNSET:-${SET}} $SET") == "avalueb $SET d1 d2  value value")
        #expect(interpolator.unsetWithoutDefault.isEmpty)
        _ = try interpolator.interpolate("${UNSET}")
        #expect(interpolator.unsetWithoutDefault == ["UNSET"])
        #expect(throws: (any Error).self) { try interpolator.interpolate("${UNSET:?required}") }
        #expect(throws: (any Error).self) { try interpolator.interpolate("${UNCLOSED") }
    }
}

// MARK: - Compose

/// docker-compose.yml as Compose reads it: YAML with anchors and merge keys resolved, then `${VAR:-default}`
/// interpolation in every string value.
struct ComposeDocument {
    let raw: String
    let tree: [String: Any]
    let unsetWithoutDefault: [String]

    init(text: String, environment: [String: String] = [:]) throws {
        raw = text
        guard let loaded = try Yams.load(yaml: text) else { throw ContainerFileError("the YAML is empty") }
        var interpolator = ComposeInterpolator(environment: environment)
        guard let tree = try interpolator.interpolateTree(ContainerFiles.normalize(loaded)) as? [String: Any] else {
            throw ContainerFileError("the YAML is not a mapping")
        }
        self.tree = tree
        unsetWithoutDefault = interpolator.unsetWithoutDefault
    }

    /// With `environment` standing for the shell's: none set by default, so that the file's defaults apply.
    static func load(environment: [String: String] = [:]) throws -> ComposeDocument {
        try ComposeDocument(text: ContainerFiles.text("docker-compose.yml"), environment: environment)
    }

    var services: [String: [String: Any]] {
        (tree["services"] as? [String: Any] ?? [:]).compactMapValues { $0 as? [String: Any] }
    }
}

/// Compose's variable syntax: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
/// `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}`, nested in defaults too.
struct ComposeInterpolator {
    var environment: [String: String]
    private(set) var unsetWithoutDefault: [String] = []

    init(environment: [String: String] = [:]) {
        self.environment = environment
    }

    mutating func interpolate(_ text: String) throws -> String {
        let characters = Array(text)
        var index = 0
        let result = try expand(characters, &index, insideBraces: false)
        guard index == characters.count else { throw ContainerFileError("unexpected } in \(text)") }
        return result
    }

    mutating func interpolateTree(_ node: Any) throws -> Any {
        if let text = node as? String { return try interpolate(text) }
        if let mapping = node as? [String: Any] {
            var result: [String: Any] = [:]
            for (key, value) in mapping { result[key] = try interpolateTree(value) }
            return result
        }
        if let sequence = node as? [Any] {
            var result: [Any] = []
            for value in sequence { result.append(try interpolateTree(value)) }
            return result
        }
        return node
    }

    private mutating func expand(_ s: [Character], _ i: inout Int, insideBraces: Bool) throws -> String {
        var out = ""
        while i < s.count {
            let c = s[i]
            if insideBraces && c == "}" { return out }
            guard c == "$", i + 1 < s.count else {
                out.append(c)
                i += 1
                continue
            }
            let next = s[i + 1]
            if next == "$" {
                out.append("$")
                i += 2
            } else if next == "{" {
                i += 2
                let name = Self.name(s, &i)
                guard !name.isEmpty else { throw ContainerFileError("invalid interpolation in \(String(s))") }
                if i < s.count && s[i] == "}" {
                    i += 1
                    out += value(name)
                    continue
                }
                var operation = ""
                if i < s.count && s[i] == ":" {
                    operation = ":"
                    i += 1
                }
                guard i < s.count, "-?+".contains(s[i]) else { throw ContainerFileError("invalid interpolation of \(name) in \(String(s))") }
                operation.append(s[i])
                i += 1
                let word = try expand(s, &i, insideBraces: true)
                guard i < s.count, s[i] == "}" else { throw ContainerFileError("unterminated ${\(name) in \(String(s))") }
                i += 1
                out += try apply(operation, name, word)
            } else if next == "_" || next.isLetter {
                i += 1
                out += value(Self.name(s, &i))
            } else {
                out.append(c)
                i += 1
            }
        }
        if insideBraces { throw ContainerFileError("unterminated ${ in \(String(s))") }
        return out
    }

    private static func name(_ s: [Character], _ i: inout Int) -> String {
        var name = ""
        while i < s.count, s[i] == "_" || (s[i].isASCII && (s[i].isLetter || s[i].isNumber)) {
            name.append(s[i])
            i += 1
        }
        return name
    }

    private mutating func value(_ name: String) -> String {
        if let value = environment[name] { return value }
        unsetWithoutDefault.append(name)
        return ""
    }

    private func apply(_ operation: String, _ name: String, _ word: String) throws -> String {
        let value = environment[name]
        let nonEmpty = value.map { !$0.isEmpty } ?? false
        switch operation {
        case ":-": return nonEmpty ? value! : word
        case "-": return value ?? word
        case ":?", "?":
            guard operation == "?" ? value != nil : nonEmpty else { throw ContainerFileError("required variable \(name) is missing: \(word)") }
            return value!
        case ":+": return nonEmpty ? word : ""
        default: return value != nil ? word : ""
        }
    }
}

// MARK: - Dockerfile

/// A Dockerfile's instructions: parser directives, comments and line continuations handled as BuildKit does (heredocs
/// are not supported), stages split at FROM, global ARG defaults substituted in FROM.
struct DockerfileDocument {
    struct Instruction {
        var keyword: String
        var arguments: String
        var line: Int
    }

    struct Copy {
        var from: String?
        var sources: [String]
        var destination: String
    }

    struct Stage {
        var base: String
        var name: String?
        var instructions: [Instruction] = []

        func all(_ keyword: String) -> [Instruction] { instructions.filter { $0.keyword == keyword } }
        func last(_ keyword: String) -> Instruction? { all(keyword).last }
        var runCommands: [String] { all("RUN").map(\.arguments) }

        /// ENV in order, later values winning.
        var environment: [String: String] {
            var result: [String: String] = [:]
            for instruction in all("ENV") {
                let words = ContainerFiles.shellWords(instruction.arguments)
                if let first = words.first, !first.contains("=") {
                    result[first] = words.dropFirst().joined(separator: " ")  // the legacy `ENV KEY value` form
                    continue
                }
                for word in words {
                    let parts = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
                }
            }
            return result
        }

        /// The RUNs' commands, split at `&&`, `||` and `;`.
        var commands: [String] {
            runCommands.flatMap { run in
                run.replacingOccurrences(of: "||", with: "&&").replacingOccurrences(of: ";", with: "&&").components(separatedBy: "&&")
                    .map { $0.trimmingCharacters(in: .whitespaces) }
            }
        }

        /// What `apt-get install` installs in this stage's RUNs.
        var aptPackages: [String] {
            var packages: [String] = []
            for command in commands {
                let words = ContainerFiles.shellWords(command)
                guard let apt = words.firstIndex(where: { $0 == "apt-get" || $0 == "apt" }),
                      let install = words[apt...].firstIndex(of: "install") else { continue }
                packages += words[(install + 1)...].filter { !$0.hasPrefix("-") }
            }
            return packages
        }

        var copies: [Copy] {
            all("COPY").compactMap { instruction in
                var words = DockerfileDocument.execForm(instruction.arguments) ?? ContainerFiles.shellWords(instruction.arguments)
                var from: String?
                while let flag = words.first, flag.hasPrefix("--") {
                    if flag.hasPrefix("--from=") { from = String(flag.dropFirst("--from=".count)) }
                    words.removeFirst()
                }
                guard words.count >= 2, let destination = words.last else { return nil }
                return Copy(from: from, sources: Array(words.dropLast()), destination: destination)
            }
        }
    }

    var directives: [String: String] = [:]
    var globalArguments: [String: String] = [:]
    var stages: [Stage] = []

    static func load() throws -> DockerfileDocument {
        try DockerfileDocument(text: ContainerFiles.text("Dockerfile"))
    }

    init(text: String) throws {
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n").components(separatedBy: "\n")
        var escape: Character = "\\"
        var directivesAllowed = true
        var instructions: [Instruction] = []
        var i = 0
        while i < lines.count {
            let trimmed = lines[i].trimmingCharacters(in: .whitespaces)
            if directivesAllowed, let (key, value) = Self.directive(trimmed), directives[key] == nil {
                directives[key] = value
                if key == "escape", let character = value.first { escape = character }
                i += 1
                continue
            }
            directivesAllowed = false
            if trimmed.isEmpty || trimmed.hasPrefix("#") {
                i += 1
                continue
            }
            let start = i + 1
            var logical = ""
            var current = lines[i]
            while true {
                let line = current.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
                i += 1
                guard line.last == escape else {
                    logical += line
                    break
                }
                logical += line.dropLast()
                // Comment and empty lines inside a continuation are dropped.
                while i < lines.count, lines[i].trimmingCharacters(in: .whitespaces).isEmpty || lines[i].trimmingCharacters(in: .whitespaces).hasPrefix("#") {
                    i += 1
                }
                guard i < lines.count else { break }
                current = lines[i]
            }
            let body = logical.trimmingCharacters(in: .whitespaces)
            let keyword = String(body.prefix { !$0.isWhitespace }).uppercased()
            let arguments = String(body.dropFirst(keyword.count)).trimmingCharacters(in: .whitespaces)
            instructions.append(Instruction(keyword: keyword, arguments: arguments, line: start))
        }

        for instruction in instructions {
            if instruction.keyword == "FROM" {
                var words = ContainerFiles.shellWords(instruction.arguments).filter { !$0.hasPrefix("--") }
                guard !words.isEmpty else { throw ContainerFileError("line \(instruction.line): FROM without an image") }
                var interpolator = ComposeInterpolator(environment: globalArguments)
                let base = try interpolator.interpolate(words.removeFirst())
                let name = words.count == 2 && words[0].uppercased() == "AS" ? words[1] : nil
                stages.append(Stage(base: base, name: name))
            } else if stages.isEmpty {
                guard instruction.keyword == "ARG" else { throw ContainerFileError("line \(instruction.line): \(instruction.keyword) before FROM") }
                for word in ContainerFiles.shellWords(instruction.arguments) {
                    let parts = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    globalArguments[String(parts[0])] = parts.count == 2 ? String(parts[1]) : nil
                }
            } else {
                stages[stages.count - 1].instructions.append(instruction)
            }
        }
    }

    /// `# key=value` at the top of the file.
    private static func directive(_ line: String) -> (String, String)? {
        guard line.hasPrefix("#") else { return nil }
        let body = line.dropFirst().trimmingCharacters(in: .whitespaces)
        let parts = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let key = parts[0].trimmingCharacters(in: .whitespaces).lowercased()
        guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else { return nil }
        return (key, parts[1].trimmingCharacters(in: .whitespaces))
    }

    /// The JSON array of an exec-form instruction; nil for the shell form (Docker too runs invalid JSON as a shell line).
    static func execForm(_ arguments: String) -> [String]? {
        let trimmed = arguments.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("[") else { return nil }
        return try? JSONDecoder().decode([String].self, from: Data(trimmed.utf8))
    }

    /// `HEALTHCHECK [--option=value]… CMD [exec form]`: the command, or nil for NONE or the shell form.
    static func healthcheckCommand(_ arguments: String) -> [String]? {
        var rest = Substring(arguments.trimmingCharacters(in: .whitespaces))
        while rest.hasPrefix("--") {
            rest = rest.drop { !$0.isWhitespace }.drop { $0.isWhitespace }
        }
        guard rest.uppercased().hasPrefix("CMD") else { return nil }
        return execForm(String(rest.dropFirst(3)))
    }

    /// ENTRYPOINT (without the binary) + CMD of the last stage: what `docker run IMAGE` runs.
    var defaultArguments: [String]? {
        guard let runtime = stages.last,
              let cmd = runtime.last("CMD").flatMap({ Self.execForm($0.arguments) }) else { return nil }
        let entrypoint = runtime.last("ENTRYPOINT").flatMap { Self.execForm($0.arguments) } ?? []
        return Array(entrypoint.dropFirst()) + cmd
    }
}

// MARK: - .dockerignore

/// .dockerignore as BuildKit applies it: Go path patterns, `!` exceptions, the last matching line wins, and a path is
/// excluded when it or one of its parent folders matches.
struct DockerIgnoreRules {
    var patterns: [(pattern: String, exception: Bool)] = []

    init(text: String) {
        for line in text.components(separatedBy: "\n") {
            var pattern = line.trimmingCharacters(in: .whitespaces)
            guard !pattern.isEmpty, !pattern.hasPrefix("#") else { continue }
            let exception = pattern.hasPrefix("!")
            if exception { pattern.removeFirst() }
            // Patterns are relative to the context root, with or without a leading `/`.
            while pattern.hasPrefix("/") { pattern.removeFirst() }
            patterns.append((ContainerFiles.clean(pattern), exception))
        }
    }

    func excludes(_ path: String) -> Bool {
        let components = ContainerFiles.clean(path).split(separator: "/")
        let prefixes = components.indices.map { components[...$0].joined(separator: "/") }
        var excluded = false
        for (pattern, exception) in patterns where prefixes.contains(where: { Self.matches(pattern, $0) }) {
            excluded = !exception
        }
        return excluded
    }

    private static func matches(_ pattern: String, _ path: String) -> Bool {
        // `*` stops at `/` (FNM_PATHNAME) as in Go's filepath.Match; `**` crosses folders.
        fnmatch(pattern, path, pattern.contains("**") ? 0 : FNM_PATHNAME) == 0
    }
}

// MARK: - Shared helpers

struct ContainerFileError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A migrator command line found in a container file.
struct MigratorLine: CustomStringConvertible {
    var origin: String
    var arguments: [String]
    var description: String { "\(origin): migrator \(arguments.joined(separator: " "))" }
}

enum ContainerFiles {
    static func text(_ name: String) throws -> String {
        try String(contentsOf: RepositoryPaths.root.appendingPathComponent(name), encoding: .utf8)
    }

    /// Nil when the CLI accepts the line (parsing and every command's validate()); otherwise its message.
    static func rejection(of arguments: [String]) -> String? {
        do {
            // `migrator serve …` is `migrator-serve …`: its own command checks the line.
            if arguments.first == "serve" {
                _ = try ServeCommand.parseAsRoot(Array(arguments.dropFirst()))
                return nil
            }
            let command = try MigratorCommand.parseAsRoot(arguments)
            if command is MigratorCommand { return "no subcommand: `migrator` alone only prints the help" }
            return nil
        } catch {
            let message = arguments.first == "serve" ? ServeCommand.fullMessage(for: error) : MigratorCommand.fullMessage(for: error)
            return message.isEmpty ? String(describing: error) : message
        }
    }

    static func isMigratorBinary(_ word: String) -> Bool {
        word == "migrator" || word.hasSuffix("/migrator")
    }

    /// Yams' mappings have AnyHashable keys; Compose's keys are strings.
    static func normalize(_ node: Any) -> Any {
        if let mapping = node as? [AnyHashable: Any] {
            var result: [String: Any] = [:]
            for (key, value) in mapping { result[(key.base as? String) ?? "\(key.base)"] = normalize(value) }
            return result
        }
        if let sequence = node as? [Any] { return sequence.map(normalize) }
        return node
    }

    static func scalar(_ value: Any?) -> String? {
        switch value {
        case let text as String: text
        case let flag as Bool: flag ? "true" : "false"
        case let number as Int: String(number)
        case let number as Double: String(number)
        case is NSNull: ""
        default: nil
        }
    }

    /// `command`/`entrypoint`: a list, or a string split into words.
    static func words(_ value: Any?) -> [String]? {
        if let text = value as? String { return shellWords(text) }
        if let list = value as? [Any] { return list.compactMap(scalar) }
        return nil
    }

    /// Words split at unquoted whitespace, quotes removed, `\` escaping the next character.
    static func shellWords(_ text: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for c in text {
            if escaped {
                current.append(c)
                escaped = false
            } else if c == "\\" && quote != "'" {
                escaped = true
                inWord = true
            } else if let open = quote {
                if c == open { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
                inWord = true
            } else if c.isWhitespace {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    /// A path without a leading `./` or a trailing `/`.
    static func clean(_ path: String) -> String {
        var path = path
        while path.hasPrefix("./") { path.removeFirst(2) }
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }

    static func value(after flag: String, in words: [String]) -> String? {
        guard let index = words.firstIndex(of: flag), index + 1 < words.count else { return nil }
        return words[index + 1]
    }

    static func environment(_ service: [String: Any]) -> [String: String] {
        if let mapping = service["environment"] as? [String: Any] {
            return mapping.compactMapValues { scalar($0) }
        }
        var result: [String: String] = [:]
        for item in (service["environment"] as? [Any] ?? []).compactMap(scalar) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            result[String(parts[0])] = parts.count == 2 ? String(parts[1]) : ""
        }
        return result
    }

    /// depends_on, short or long form: service → condition.
    static func dependencies(_ service: [String: Any]) -> [String: String] {
        if let list = service["depends_on"] as? [Any] {
            return Dictionary(list.compactMap(scalar).map { ($0, "service_started") }, uniquingKeysWith: { first, _ in first })
        }
        return (service["depends_on"] as? [String: Any] ?? [:]).mapValues {
            scalar(($0 as? [String: Any])?["condition"]) ?? "service_started"
        }
    }

    /// The healthcheck's command: `["CMD", …]` → its words, `CMD-SHELL` or a string → the line split into words; nil
    /// when there is none, it is disabled, or it is `NONE`.
    static func healthcheckCommand(_ service: [String: Any]) -> [String]? {
        guard let healthcheck = service["healthcheck"] as? [String: Any] else { return nil }
        if healthcheck["disable"] as? Bool == true { return nil }
        if let line = healthcheck["test"] as? String { return shellWords(line) }
        guard let test = (healthcheck["test"] as? [Any])?.compactMap(scalar), let kind = test.first else { return nil }
        switch kind {
        case "CMD": return Array(test.dropFirst())
        case "CMD-SHELL": return shellWords(test.dropFirst().joined(separator: " "))
        default: return nil
        }
    }

    /// The services that run the image built from this folder: built from `.` with the default Dockerfile, or using
    /// the image such a service is tagged with.
    static func migratorServices(_ compose: ComposeDocument) -> [String] {
        let services = compose.services
        func builtHere(_ service: [String: Any]) -> Bool {
            let context: String?
            var dockerfile = "Dockerfile"
            switch service["build"] {
            case let text as String: context = text
            case let build as [String: Any]:
                context = scalar(build["context"]) ?? "."
                dockerfile = scalar(build["dockerfile"]) ?? dockerfile
            default: context = nil
            }
            guard let context else { return false }
            return ["", "."].contains(clean(context)) && clean(dockerfile) == "Dockerfile"
        }
        let images = Set(services.values.filter(builtHere).compactMap { scalar($0["image"]) })
        return services.filter { builtHere($0.value) || scalar($0.value["image"]).map(images.contains) == true }.keys.sorted()
    }

    /// Every migrator command line: the arguments of each service running the migrator image (entrypoint without
    /// the binary, then command, or the image's CMD when there is none), and every healthcheck that runs migrator.
    static func migratorLines(in compose: ComposeDocument, defaultCommand: [String]?) -> (lines: [MigratorLine], problems: [String]) {
        var lines: [MigratorLine] = []
        var problems: [String] = []
        let migratorServices = Set(Self.migratorServices(compose))
        for (name, service) in compose.services.sorted(by: { $0.key < $1.key }) {
            if migratorServices.contains(name) {
                let command = words(service["command"])
                if let entrypoint = words(service["entrypoint"]) {
                    if let binary = entrypoint.first, isMigratorBinary(binary) {
                        // An entrypoint set in Compose also drops the image's CMD.
                        lines.append(MigratorLine(origin: "service \(name)", arguments: Array(entrypoint.dropFirst()) + (command ?? [])))
                    } else {
                        problems.append("service \(name): the entrypoint \(entrypoint) is not migrator, so its command line cannot be checked")
                    }
                } else if let arguments = command ?? defaultCommand {
                    lines.append(MigratorLine(origin: "service \(name)", arguments: arguments))
                } else {
                    problems.append("service \(name): no command and the image has no CMD")
                }
            }
            if let check = healthcheckCommand(service), let binary = check.first, isMigratorBinary(binary) {
                lines.append(MigratorLine(origin: "service \(name) healthcheck", arguments: Array(check.dropFirst())))
            }
        }
        return (lines, problems)
    }

    /// What is wrong with setting `name=value` in a container: no command reads it (no option's help names it as
    /// `env: NAME`), or a command that reads it rejects the value given as its option.
    static func settingProblems(_ name: String, _ value: String) -> [String] {
        var problems: [String] = []
        var readers = 0
        for subcommand in MigratorCommand.configuration.subcommands {
            let commandName = subcommand._commandName
            // A command that needs arguments of its own (`new NAME`) cannot be run with the option alone.
            let runsAlone = rejection(of: [commandName]) == nil
            let help = subcommand == ServeForwarder.self
                ? ServeCommand.helpMessage(columns: 10_000) : MigratorCommand.helpMessage(for: subcommand, columns: 10_000)
            for entry in optionEntries(help) where mentions(entry.help, variable: name) {
                readers += 1
                guard runsAlone else { continue }
                var arguments = [commandName]
                if entry.takesValue {
                    arguments += [entry.option, value]
                } else {
                    switch value.lowercased() {
                    case "1", "true", "yes", "on": arguments.append(entry.option)
                    case "0", "false", "no", "off", "": break
                    default:
                        problems.append("\(name)=\(value): \(commandName) \(entry.option) is a flag; the value must be 1/true/yes/on or 0/false/no/off")
                        continue
                    }
                }
                if let rejection = rejection(of: arguments) {
                    problems.append("\(name)=\(value) is rejected as `migrator \(arguments.joined(separator: " "))`: \(rejection)")
                }
            }
        }
        if readers == 0 { problems.append("no migrator command reads \(name): no option's help says `env: \(name)`") }
        return problems
    }

    /// The entries of a help screen's sections (indented by two spaces), each with its help text, which continues on
    /// deeper-indented lines; options are those whose label starts with `-`.
    private static func optionEntries(_ help: String) -> [(option: String, takesValue: Bool, help: String)] {
        var entries: [(option: String, takesValue: Bool, help: String)] = []
        for line in help.components(separatedBy: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            let indent = line.prefix { $0 == " " }.count
            if trimmed.isEmpty || indent == 0 {
                entries.append(("", false, ""))  // a section header ends the entry before it
            } else if indent == 2 {
                let words = trimmed.split(whereSeparator: \.isWhitespace).map(String.init)
                let label = words.firstIndex { $0.hasPrefix("--") }
                let option = label.map { words[$0].trimmingCharacters(in: CharacterSet(charactersIn: ",")) } ?? ""
                let takesValue = label.map { $0 + 1 < words.count && words[$0 + 1].hasPrefix("<") } ?? false
                entries.append((trimmed.hasPrefix("-") ? option : "", takesValue, trimmed))
            } else if !entries.isEmpty {
                entries[entries.count - 1].help += " " + trimmed
            }
        }
        return entries.filter { !$0.option.isEmpty }
    }

    private static func mentions(_ help: String, variable: String) -> Bool {
        var searchRange = help.startIndex..<help.endIndex
        while let found = help.range(of: "env: \(variable)", range: searchRange) {
            let next = help[found.upperBound...].first
            if next.map({ !($0 == "_" || $0.isLetter || $0.isNumber) }) ?? true { return true }
            searchRange = found.upperBound..<help.endIndex
        }
        return false
    }
}
