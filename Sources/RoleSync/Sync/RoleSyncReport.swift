/// What a sync changed (or, in a dry run, would change), per role and in total.
public struct RoleSyncReport: Sendable, Codable, Equatable {
    public enum Mode: String, Sendable, Codable {
        /// The stored version equals the catalogue's: nothing was done.
        case unchanged
        /// Only the (role, permission) pairs that changed since the stored catalogue were written.
        case incremental
        /// The complete set difference for every project (no usable stored catalogue, or forced).
        case full
        /// The complete set difference for the given projects only; the version is not recorded.
        case projects
        /// Nothing was done: this catalogue was superseded by a newer one (``CatalogueStanding``, then
        /// ``RoleSyncReport/supersededBy`` names it), or, for the daemon's syncs of a few projects, the stored version is
        /// not this catalogue's (``RoleSynchronizer/Options/onlyIfCurrent``).
        case superseded
    }

    public struct RoleChanges: Sendable, Codable, Equatable {
        public var groupsCreated = 0
        public var groupsAdopted = 0
        public var groupsRenamed = 0
        public var groupPermissionsAdded = 0
        public var groupPermissionsRemoved = 0
        public var objectPermissionsAdded = 0
        public var objectPermissionsRemoved = 0

        public init() {}

        public var isEmpty: Bool { self == RoleChanges() }

        public var rowsWritten: Int {
            groupsCreated * 2 + groupsAdopted + groupsRenamed + groupPermissionsAdded + groupPermissionsRemoved
                + objectPermissionsAdded + objectPermissionsRemoved
        }
    }

    /// A group that cannot have its name: another group has it (auth_group.name is unique; a project renamed to a
    /// name whose groups someone else made, for instance), or it is longer than auth_group.name holds (a project
    /// name of 255 characters). It keeps its current name, or is not created; the rest of the sync goes on.
    public struct BlockedGroup: Sendable, Codable, Equatable {
        public var projectID: Int64
        public var role: String
        /// Nil when the group could not be created.
        public var currentName: String?
        public var wantedName: String

        public init(projectID: Int64, role: String, currentName: String?, wantedName: String) {
            self.projectID = projectID
            self.role = role
            self.currentName = currentName
            self.wantedName = wantedName
        }

        public var description: String {
            "project \(projectID) role \(role): "
                + (currentName.map { "group '\($0)' cannot be renamed" } ?? "no group can be created")
                + " to '\(wantedName)', a name another group has"
        }

        /// For a name that does not fit: the name is cut in the text, its length given.
        public var tooLongDescription: String {
            "project \(projectID) role \(role): the name would have \(wantedName.unicodeScalars.count) characters ('"
                + String(wantedName.unicodeScalars.prefix(40).map(Character.init)) + "…')"
        }
    }

    public struct Phase: Sendable, Codable, Equatable {
        public var name: String
        public var rows: Int
        public var durationMs: Double
    }

    public var mode: Mode
    public var dryRun: Bool
    /// The catalogue's version (SHA-256 of its canonical form).
    public var version: String
    /// The version stored before this sync, if any.
    public var previousVersion: String?
    /// The newer version recorded after this catalogue's, when this catalogue was superseded (see
    /// ``CatalogueStanding``); nil otherwise.
    public var supersededBy: String?
    /// Whether this sync wrote a `role_schema_version` row.
    public var recordedVersion: Bool
    public var projects: Int
    public var permissionsCreated = 0
    public var permissionsRenamed = 0
    /// Keyed by role name; roles without changes are left out.
    public var roles: [String: RoleChanges] = [:]
    /// Roles that left the catalogue, with how many groups they still have (kept, without permissions).
    public var retiredRoles: [String: Int] = [:]
    /// Groups left under their old name or not created because another group has the name (the first 100 of each
    /// kind). Their permissions are still brought in step.
    public var blockedGroups: [BlockedGroup] = []
    /// How many groups have a name another group has (``blockedGroups`` lists the first 100).
    public var blockedGroupsTotal = 0
    /// Groups whose name is longer than auth_group.name holds: left out (not created, or not renamed), the first 100.
    public var tooLongGroups: [BlockedGroup] = []
    public var tooLongGroupsTotal = 0
    /// Groups of projects that no longer exist (deleted while no trigger was installed), removed by this sync.
    public var groupsOfDeletedProjectsRemoved = 0
    /// Projects whose row another transaction held `FOR UPDATE` (a delete that had not committed, `SELECT … FOR
    /// UPDATE`) when the sync reached them, and that still existed at its end: left as they were; drift finds them and
    /// the next sync (or `serve`'s reconcile) brings them in step.
    public var lockedProjects: [Int64] = []
    public var phases: [Phase] = []
    public var durationMs: Double = 0
    public var roundTrips = 0

    public var totals: RoleChanges {
        roles.values.reduce(into: RoleChanges()) { total, role in
            total.groupsCreated += role.groupsCreated
            total.groupsAdopted += role.groupsAdopted
            total.groupsRenamed += role.groupsRenamed
            total.groupPermissionsAdded += role.groupPermissionsAdded
            total.groupPermissionsRemoved += role.groupPermissionsRemoved
            total.objectPermissionsAdded += role.objectPermissionsAdded
            total.objectPermissionsRemoved += role.objectPermissionsRemoved
        }
    }

    /// One line for the migrate summary.
    public var summary: String {
        let short = version.prefix(12)
        if mode == .unchanged { return "role catalogue unchanged (version \(short)); nothing to do" }
        if mode == .superseded, let newer = supersededBy {
            return "skipped: this role catalogue (\(short)) was superseded by \(newer.prefix(12)), synced after it; "
                + "its rows are left as they are (`migrator update-roles` with this catalogue rolls back to it)"
        }
        if mode == .superseded {
            return "nothing synced: the stored role version \((previousVersion ?? "none").prefix(12)) is not this catalogue's (\(short))"
        }
        let t = totals
        var text = dryRun ? "would sync" : "synced"
        text += " \(projects) projects to role version \(short) (\(mode.rawValue)): "
        text += "\(t.groupsCreated) groups created, \(t.groupsAdopted) adopted, \(t.groupsRenamed) renamed; "
        text += "group permissions +\(t.groupPermissionsAdded) -\(t.groupPermissionsRemoved); "
        text += "object permissions +\(t.objectPermissionsAdded) -\(t.objectPermissionsRemoved)"
        if permissionsCreated + permissionsRenamed > 0 {
            text += "; permissions created \(permissionsCreated), renamed \(permissionsRenamed)"
        }
        if !retiredRoles.isEmpty {
            text += "; roles no longer in the catalogue keep their groups without permissions: "
                + retiredRoles.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value) groups)" }.joined(separator: ", ")
        }
        if groupsOfDeletedProjectsRemoved > 0 {
            text += "; \(groupsOfDeletedProjectsRemoved) groups of deleted projects removed"
        }
        if !blockedGroups.isEmpty {
            text += "; \(blockedGroupsTotal) group name(s) taken by another group, left as they are ("
                + blockedGroups.prefix(3).map(\.description).joined(separator: "; ")
                + (blockedGroupsTotal > 3 ? "; …" : "") + "): rename or delete the other group, then sync again"
        }
        if !tooLongGroups.isEmpty {
            text += "; \(tooLongGroupsTotal) group name(s) too long for auth_group.name, those groups left out ("
                + tooLongGroups.prefix(3).map(\.tooLongDescription).joined(separator: "; ")
                + (tooLongGroupsTotal > 3 ? "; …" : "") + "): shorten the project names or the group name template"
        }
        if mode == .projects { text += "; the role version is not recorded by a per-project sync" }
        return text
    }
}
