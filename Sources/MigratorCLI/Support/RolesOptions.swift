import ArgumentParser
import MigrationEngine
import RoleSync

/// `--roles`, on every command that syncs or reports roles.
public struct RolesOptions: ParsableArguments {
    public init() {}

    @Option(
        name: .customLong("roles"),
        help: ArgumentHelp("A JSON role catalogue replacing the built-in one (env: MIGRATOR_ROLES).", valueName: "file")
    )
    var rolesFile: String?

    @Option(
        name: .customLong("project-table"),
        help: ArgumentHelp("The project table, `table` or `schema.table` (env: MIGRATOR_PROJECT_TABLE; default main_project, or \"target\" in the roles file).", valueName: "table")
    )
    var projectTable: String?

    @Option(
        name: .customLong("project-id-column"),
        help: ArgumentHelp("The project table's integer id column (env: MIGRATOR_PROJECT_ID_COLUMN; default id).", valueName: "column")
    )
    var projectIDColumn: String?

    @Option(
        name: .customLong("project-name-column"),
        help: ArgumentHelp("The project table's text name column (env: MIGRATOR_PROJECT_NAME_COLUMN; default name).", valueName: "column")
    )
    var projectNameColumn: String?

    @Option(
        name: .customLong("content-type"),
        help: ArgumentHelp("The project model's content type, app_label.model (env: MIGRATOR_CONTENT_TYPE; default main.project).", valueName: "app.model")
    )
    var contentType: String?

    @Option(
        name: .customLong("group-name"),
        help: ArgumentHelp("Template of a project's group name with {id}, {name} and {role} (env: MIGRATOR_GROUP_NAME; default {id}_{name}_{role}).", valueName: "template")
    )
    var groupName: String?

    var resolvedRolesFile: String? { rolesFile ?? GlobalOptions.environment["MIGRATOR_ROLES"].flatMap { $0.isEmpty ? nil : $0 } }

    /// An option, else its variable (an empty one counts as unset).
    private func value(_ option: String?, _ env: String) -> String? {
        option ?? GlobalOptions.environment[env].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The catalogue (the file's, or the built-in one) with the target options applied over the file's "target",
    /// or the documented exit for bad input after saying what is wrong with it.
    public func catalogue(json: Bool) throws -> RoleCatalogue {
        do {
            var catalogue = try resolvedRolesFile.map { path throws(CatalogueError) in try RoleCatalogue.load(path: path) }
                ?? RoleCatalogue.reference
            let base = catalogue.target
            let table = value(projectTable, "MIGRATOR_PROJECT_TABLE")
            let id = value(projectIDColumn, "MIGRATOR_PROJECT_ID_COLUMN")
            let name = value(projectNameColumn, "MIGRATOR_PROJECT_NAME_COLUMN")
            let type = value(contentType, "MIGRATOR_CONTENT_TYPE")
            let template = value(groupName, "MIGRATOR_GROUP_NAME")
            guard table != nil || id != nil || name != nil || type != nil || template != nil else { return catalogue }
            let parsedType = try type.map { text throws(CatalogueError) in
                try RoleTarget.parseContentType(text, source: "--content-type (MIGRATOR_CONTENT_TYPE)")
            } ?? (appLabel: base.appLabel, model: base.model)
            let parsedTemplate = try template.map { text throws(CatalogueError) in
                try GroupNameTemplate(text, source: "--group-name (MIGRATOR_GROUP_NAME)")
            } ?? base.groupName
            catalogue.target = try RoleTarget(
                projectTable: table ?? base.projectTable, idColumn: id ?? base.idColumn, nameColumn: name ?? base.nameColumn,
                appLabel: parsedType.appLabel, model: parsedType.model, groupName: parsedTemplate,
                source: "the target options (--project-table, --project-id-column, --project-name-column)"
            )
            return catalogue
        } catch {
            throw Output.fail(MigrationError(code: .invalidInput, message: error.description), json: json).exitCode
        }
    }
}

extension RolesOptions {
    /// Every migration's state and the role version, for `status` and `verify`; a failure exits as documented.
    func readStatus(_ global: GlobalOptions, json: Bool) throws -> StatusReport {
        let logger = try global.makeLogger()
        var options = MigratorOptions(migrationsPath: global.optionalMigrations)
        options.schema = try global.resolvedSchema
        let migrator = Migrator(
            connection: global.connectionConfig, options: options,
            hooks: [RoleSyncHook(catalogue: try catalogue(json: json))], logger: logger
        )
        do {
            return try migrator.status()
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
    }
}

extension RolesOptions {
    /// `status` and `verify` over a fleet.
    func fleetStatus(_ fleetRun: FleetRun, _ global: GlobalOptions, verify: Bool, json: Bool) throws -> Never {
        let logger = try global.makeLogger(redacting: fleetRun.redactor)
        var options = MigratorOptions(migrationsPath: global.optionalMigrations)
        options.schema = try global.resolvedSchema
        try FleetJobs.status(
            fleetRun, options: options, hooks: [RoleSyncHook(catalogue: try catalogue(json: json))],
            allowSessionPooler: try global.resolvedAllowSessionPooler, verify: verify, logger: logger
        )
    }
}

/// Reads a yes/no environment variable; nil when unset.
public func environmentFlag(_ name: String) throws -> Bool? {
    guard let text = GlobalOptions.environment[name]?.lowercased(), !text.isEmpty else { return nil }
    if ["1", "true", "yes", "on"].contains(text) { return true }
    if ["0", "false", "no", "off"].contains(text) { return false }
    throw ValidationError("\(name) must be 1/true/yes/on or 0/false/no/off; got '\(text)'")
}
