/// What "in step with the catalogue" means, written once: the rows the catalogue wants for every project (its groups'
/// names, their group permissions, their object permissions on the project) and how existing rows are held against
/// them. The sync's statements diff against these fragments and the drift query compares against the same ones, so a
/// project the drift query calls out of step is exactly one a sync changes, and a synced project is never drift.
///
/// - A project has one group per role of the catalogue, linked in `project_role_group`, named by the template
///   (``groupName(project:role:)``). A linked group whose name differs is renamed, unless the name is not free
///   (``nameFree(_:linked:)``): then it is left as it is and reported, and is not drift, since no sync can change that.
/// - A linked group's rows in a permission table are ours when ``PermissionTable`` says so (our content type, and for
///   object permissions the group's own project). Its role's (role, permission) pairs from ``catalogue`` are the rows
///   it should have; ``rowState(_:named:scope:)`` counts the valid ones per group and collects the others (a role that
///   left the catalogue grants nothing, so all its rows are extra). A group is in step with a table when it
///   is not ``lacking(_:expected:)`` and has no ``extra(_:)``.
///
/// Values are bound through the statement's ``StatementParameters`` when a fragment first needs them (each once).
struct DesiredRows {
    let sql: SyncSQL
    let parameters: StatementParameters
    /// The content type of projects, as an integer expression (a parameter, or a subquery of the statement); nil in
    /// a statement that only names groups.
    let projectContentType: String?

    private var contentType: String {
        guard let projectContentType else { preconditionFailure("a statement reads permissions without a content type") }
        return projectContentType
    }

    /// The catalogue's role names, `text[]`.
    var roles: String {
        parameters.once("roles") { parameters.texts(sql.catalogue.roles.map(\.name)) }
    }

    /// The catalogue's (role, codename) pairs, as two `text[]` of the same length.
    private var pairs: (roles: String, codenames: String) {
        let pairs = sql.catalogue.roles.flatMap { role in role.permissions.map { (role.name, $0) } }
        return (
            parameters.once("pair roles") { parameters.texts(pairs.map(\.0)) },
            parameters.once("pair codenames") { parameters.texts(pairs.map(\.1)) }
        )
    }

    /// For a sync of some projects: `AND alias.group_id = ANY (…their groups…)`, so that the rows of those groups are
    /// read through the table's `group_id` index (one index scan of an array, not a join: the sync's plans have nested
    /// loops off) instead of hashing the whole table, which made every batch of new projects cost as much as the
    /// table is large. Nothing for a sync of every project.
    func groupsInScope(_ alias: String, _ projects: String?) -> String {
        guard let projects else { return "" }
        return "AND \(alias).group_id = ANY (ARRAY(SELECT l.group_id FROM \(sql.links) l WHERE l.project_id = ANY(\(projects))))"
    }

    /// `column = ANY(X)` for a sync of the projects X (a `bigint[]` placeholder), `true` for a sync of every project.
    func inScope(_ column: String, _ projects: String?) -> String {
        guard let projects else { return "true" }
        return "\(column) = ANY(\(projects))"
    }

    /// For a sync of some projects, `AND column = ANY (ARRAY(keys))`: the same rows the statement's join or
    /// subquery would find, named up front so that a large table (`auth_group`, the links, the project table) is read
    /// through its index on `column` for the batch's few keys instead of hashed whole; with nested loops off, every
    /// join of a batch's rows to a large table otherwise reads all of it, and a batch cost as much as the tables
    /// are large (the daemon's import of 100,000 projects crawled past 20,000). Nothing for a sync of every project,
    /// whose statements read the whole tables anyway. `keys` is a query of one column.
    func only(_ column: String, in keys: String, scope projects: String?) -> String {
        guard projects != nil else { return "" }
        return "AND \(column) = ANY (ARRAY(\(keys)))"
    }

    // MARK: Group names

    /// The template's literal parts, then the longest name `auth_group.name` holds (NULL: no limit).
    private var literals: [String] {
        sql.template.literals.enumerated().map { index, literal in
            parameters.once("literal \(index)") { parameters.text(literal) }
        }
    }

    private var maxGroupName: String {
        parameters.once("max group name") { parameters.integer(sql.maxGroupName) }
    }

    /// The name the group of project `project` (an alias of the project table) for `role` (an expression) should have.
    func groupName(project: String, role: String) -> String {
        "(" + sql.template.sql(id: "\(project).\(sql.id)", name: "\(project).\(sql.name)", role: role, literals: literals) + ")"
    }

    /// Whether a name fits `auth_group.name`.
    func fits(_ expression: String) -> String {
        "(\(maxGroupName) IS NULL OR char_length(\(expression)) <= \(maxGroupName))"
    }

    /// Whether a group can be given the name `wanted`: it fits, and no other group has it. For a linked group
    /// (`linked`, a rename) any group with the name is in the way; for a (project, role) without a group, only a linked
    /// one is, since an unlinked group of exactly that name is adopted. `candidates`, a query of the names the
    /// statement may want, limits a sync of some projects (`scope`) to the groups with those names (``only(_:in:scope:)``).
    func nameFree(_ wanted: String, linked: Bool, candidates: String, scope projects: String?) -> String {
        let named = only("g.name", in: candidates, scope: projects)
        let holders = linked
            ? "SELECT g.name FROM auth_group g WHERE true \(named)"
            : """
            SELECT g.name FROM auth_group g WHERE g.id IN (
                SELECT l.group_id FROM \(sql.links) l
                WHERE true \(only("l.group_id", in: "SELECT g.id FROM auth_group g WHERE true \(named)", scope: projects))
            ) \(named)
            """
        return "(\(fits(wanted)) AND \(wanted) NOT IN (\(holders)))"
    }

    /// Why a name that is not free cannot be had: 'taken' or 'too_long'.
    func nameProblem(_ wanted: String) -> String {
        "CASE WHEN \(fits(wanted)) THEN 'taken' ELSE 'too_long' END"
    }

    /// CTE `linked(group_id, project_id, role, name)`: every linked group of an existing project in scope, with the
    /// name it should have. Links of roles that left the catalogue are included: their groups follow renames too.
    func linkedCTE(scope projects: String?) -> String {
        """
        linked AS (
            SELECT l.group_id, l.project_id, l.role, \(groupName(project: "p", role: "l.role")) AS name
            FROM \(sql.links) l JOIN \(sql.projectTable) p ON p.\(sql.id) = l.project_id
            WHERE \(inScope("l.project_id", projects)) AND \(inScope("p.\(sql.id)", projects))
        )
        """
    }

    /// CTE `unlinked(project_id, role)`: the (project, role) pairs in scope that have no group yet. A hashed EXCEPT
    /// reads the links (in scope: of those projects, through the links' key) completely before a statement that uses
    /// it appends to them.
    func unlinkedCTE(scope projects: String?) -> String {
        """
        unlinked AS (
            SELECT p.\(sql.id)::bigint AS project_id, r.role
            FROM \(sql.projectTable) p CROSS JOIN unnest(\(roles)) AS r(role)
            WHERE \(inScope("p.\(sql.id)", projects))
            EXCEPT
            SELECT project_id, role FROM \(sql.links) WHERE \(inScope("project_id", projects))
        )
        """
    }

    // MARK: Permissions

    /// CTE `catalogue(role, permission_id)`: the permissions each role grants, as `auth_permission` rows of our content
    /// type (a codename without its row is missing, which only the permissions statement of a sync creates).
    var catalogueCTE: String {
        """
        catalogue AS (
            SELECT w.role, ap.id AS permission_id
            FROM unnest(\(pairs.roles), \(pairs.codenames)) AS w(role, codename)
            JOIN auth_permission ap ON ap.content_type_id = \(contentType) AND ap.codename = w.codename
        )
        """
    }

    /// CTE `expected(role, n)`: how many rows each role's groups should have in each permission table.
    static let expectedCTE = "expected AS (SELECT role, count(*) AS n FROM catalogue GROUP BY role)"

    /// The rows a group should have in each permission table: its role's pairs, joined to groups aliased `group` (a
    /// relation with `group_id` and `role`) as `c.permission_id`.
    static func desiredPermissions(of group: String) -> String {
        "JOIN catalogue c ON c.role = \(group).role"
    }

    /// CTE `name(group_id, valid, extra)`: one pass over `table` that classifies every row of ours against the
    /// catalogue (a hash of its pairs): how many of a linked group's rows its role grants, and the ids of those it
    /// does not (NULL when there are none). A group without rows has no line.
    func rowState(_ table: PermissionTable, named name: String, scope projects: String?) -> String {
        """
        \(name) AS (
            SELECT x.group_id, count(c.permission_id) AS valid,
                   array_agg(x.id) FILTER (WHERE c.permission_id IS NULL) AS extra
            FROM \(table.name) x
            JOIN \(sql.links) s ON s.group_id = x.group_id
            LEFT JOIN catalogue c ON c.role = s.role AND c.permission_id = x.permission_id AND \(table.valid(contentType: contentType))
            WHERE \(inScope("s.project_id", projects)) \(table.rowCondition(contentType: contentType))
              \(groupsInScope("x", projects))
              \(table.permissionCondition(contentType: contentType))
            GROUP BY x.group_id
        )
        """
    }

    // MARK: Locks

    /// CTEs `locked_projects(project_id)` and `locked_groups(group_id)`: the guard of every statement that writes rows
    /// for linked groups. `candidates` names a relation with `project_id` and `group_id` (NULL for a group the statement
    /// creates itself): the rows it means to write for. The statement then writes only for groups in `locked_groups`
    /// (or, creating groups, projects in `locked_projects`), so every row it writes refers to a project and a group that
    /// exist and cannot be deleted until the sync commits, whatever the statement's snapshot saw.
    ///
    /// The lock order, the same in every statement of the sync and in `delete_role_groups` (the app's project delete):
    /// 1. the project row (`FOR KEY SHARE`, in id order, `SKIP LOCKED`): a project being deleted holds `FOR UPDATE` on
    ///    its row, so the sync skips it instead of waiting (it is gone at commit, or reported and left to the next
    ///    sync); `FOR KEY SHARE` does not conflict with the app's updates of non-key columns (a rename) or its foreign
    ///    key checks, only with deletes, which then wait for the sync;
    /// 2. the project's groups (`FOR KEY SHARE` here, in id order; `FOR UPDATE` for a rename, which is the last write
    ///    of a sync, so that the app's foreign-key checks on a renamed group (a membership added) wait from the rename to
    ///    the commit only);
    /// 3. the rows that reference the groups (links, group and object permissions, memberships).
    /// A group is locked only while its project is, so the app's delete (project, then groups, then rows) and the sync
    /// never hold each other's next lock.
    ///
    /// `migrator_skipped_projects` collects the candidates whose project could not be locked (being deleted, or deleted
    /// after the statement's snapshot); the sync reports those that still exist at its end.
    ///
    /// In a sync of some projects (`scope`), the project and group rows are found through their keys
    /// (``only(_:in:scope:)``).
    func lockCTEs(_ candidates: String, scope projects: String?) -> String {
        """
        locked_projects AS MATERIALIZED (
            SELECT p.\(sql.id)::bigint AS project_id FROM \(sql.projectTable) p
            WHERE p.\(sql.id) IN (SELECT project_id FROM \(candidates))
              \(only("p.\(sql.id)", in: "SELECT project_id FROM \(candidates)", scope: projects))
            ORDER BY p.\(sql.id)
            FOR KEY SHARE OF p SKIP LOCKED
        ), skipped AS (
            INSERT INTO migrator_skipped_projects (project_id)
            SELECT project_id FROM \(candidates) EXCEPT SELECT project_id FROM locked_projects
            ON CONFLICT DO NOTHING
        ), locked_groups AS MATERIALIZED (
            SELECT g.id AS group_id FROM auth_group g
            WHERE g.id IN (SELECT c.group_id FROM \(candidates) c WHERE c.project_id IN (SELECT project_id FROM locked_projects))
              \(only("g.id", in: "SELECT c.group_id FROM \(candidates) c WHERE c.project_id IN (SELECT project_id FROM locked_projects)", scope: projects))
            ORDER BY g.id
            FOR KEY SHARE OF g
        )
        """
    }

    /// A group (its ``rowState(_:named:scope:)`` line `state`, its role's ``expectedCTE`` line `expected`, either
    /// possibly absent) lacks some of the rows its role grants.
    static func lacking(_ state: String, expected: String) -> String {
        "coalesce(\(state).valid, 0) < coalesce(\(expected).n, 0)"
    }

    /// A group has rows its role does not grant.
    static func extra(_ state: String) -> String {
        "\(state).extra IS NOT NULL"
    }
}

/// The two tables of grants the sync keeps, and which of their rows are its own.
enum PermissionTable {
    /// `auth_group_permissions`: a group's global permissions.
    case group
    /// `guardian_groupobjectpermission`: a group's permissions on its project.
    case object

    var name: String {
        switch self {
        case .group: "auth_group_permissions"
        case .object: "guardian_groupobjectpermission"
        }
    }

    var insertColumns: String {
        switch self {
        case .group: "group_id, permission_id"
        case .object: "object_pk, content_type_id, group_id, permission_id"
        }
    }

    /// The values inserted, from a relation with `want_group`, `want_permission` and `object_pk`.
    func insertValues(contentType: String) -> String {
        switch self {
        case .group: "want_group, want_permission"
        case .object: "object_pk, \(contentType), want_group, want_permission"
        }
    }

    /// What makes a row `x` of a group linked as `s` ours, on the row itself: only a group's permissions on its own
    /// project are ours; a grant on another object was made by someone else. Guardian stores the content type on the
    /// row (and assign_perm checks it matches the permission's). A row of our group on the project's `object_pk` that
    /// names one of the project content type's permissions is ours too whatever content type it names: guardian's
    /// unique key (group, permission, object_pk) has no content type, so that row holds the place of the row the
    /// catalogue wants, and it is an extra (``valid(contentType:)``) that the sync replaces. Empty, or `AND …`.
    func rowCondition(contentType: String) -> String {
        switch self {
        case .group: ""
        case .object:
            """
            AND x.object_pk = s.project_id::text
            AND (x.content_type_id = \(contentType)
                 OR x.permission_id IN (SELECT id FROM auth_permission WHERE content_type_id = \(contentType)))
            """
        }
    }

    /// Whether a row of ours can be one the catalogue wants (its permission aside): an object permission must name
    /// the project content type.
    func valid(contentType: String) -> String {
        switch self {
        case .group: "true"
        case .object: "x.content_type_id = \(contentType)"
        }
    }

    /// What makes a row `x` ours through its permission: a global permission of another content type is not. Not
    /// needed where the row's permission comes from ``DesiredRows/catalogueCTE`` already. Empty, or `AND …`.
    func permissionCondition(contentType: String) -> String {
        switch self {
        case .group: "AND x.permission_id IN (SELECT id FROM auth_permission WHERE content_type_id = \(contentType))"
        case .object: ""
        }
    }
}
