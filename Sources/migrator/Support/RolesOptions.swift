import ArgumentParser
import MigrationEngine
import RoleSync

/// `--roles`, on every command that syncs or reports roles.
struct RolesOptions: ParsableArguments {
    @Option(
        name: .customLong("roles"),
        help: ArgumentHelp("A JSON role catalogue replacing the built-in one (env: MIGRATOR_ROLES).", valueName: "file")
    )
    var rolesFile: String?

    var resolvedRolesFile: String? { rolesFile ?? GlobalOptions.environment["MIGRATOR_ROLES"].flatMap { $0.isEmpty ? nil : $0 } }

    /// The catalogue, or the documented exit for a bad file after saying what is wrong with it.
    func catalogue(json: Bool) throws -> RoleCatalogue {
        guard let path = resolvedRolesFile else { return RoleCatalogue.reference }
        do {
            return try RoleCatalogue.load(path: path)
        } catch {
            throw Output.fail(MigrationError(code: .invalidInput, message: error.description), json: json).exitCode
        }
    }
}

extension RolesOptions {
    /// Every migration's state and the role version, for `status` and `verify`; a failure exits as documented.
    func readStatus(_ global: GlobalOptions, json: Bool) throws -> StatusReport {
        let logger = try global.makeLogger()
        let migrator = Migrator(
            connection: global.connectionConfig, options: MigratorOptions(migrationsPath: global.resolvedMigrations),
            hooks: [RoleSyncHook(catalogue: try catalogue(json: json))], logger: logger
        )
        do {
            return try migrator.status()
        } catch {
            throw Output.fail(error, json: json).exitCode
        }
    }
}

/// Reads a yes/no environment variable; nil when unset.
func environmentFlag(_ name: String) throws -> Bool? {
    guard let text = GlobalOptions.environment[name]?.lowercased(), !text.isEmpty else { return nil }
    if ["1", "true", "yes", "on"].contains(text) { return true }
    if ["0", "false", "no", "off"].contains(text) { return false }
    throw ValidationError("\(name) must be 1/true/yes/on or 0/false/no/off; got '\(text)'")
}
