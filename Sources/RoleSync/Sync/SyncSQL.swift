import MigrationEngine
import Postgres

/// The statements of a sync, each a ``SyncStatement`` made by one function from named arguments. Each is set-based:
/// its cost grows with rows, never its number with projects.
///
/// Every value, project names and the group name template's text included, arrives as a parameter. What is spliced
/// are identifiers: migrator's own schema (checked by ``OwnSchema``) and the project table and its columns as the
/// server itself printed them (``ResolvedTarget``). A project filter of NULL means every project. What the catalogue
/// wants, and when a group is in step with it, is defined once, in ``DesiredRows``, for the sync and the drift query.
///
/// Plans are kept linear whatever the statistics say (a table analysed while empty invites nested loops that
/// re-read what the same statement appends): sets are compared with hashed EXCEPT, NOT IN over a hashed subplan and
/// hash full joins, and the transaction runs with `enable_nestloop` and `enable_mergejoin` off (a merge join here
/// walks a whole table through an index in random order), a `work_mem` that holds them, and no JIT.
struct SyncSQL {
    /// `migrator.project_role_group`, `migrator.role_version`, as SQL.
    let links: String
    let versions: String
    /// The project table and its columns, as SQL.
    let projectTable: String
    let id: String
    let name: String
    let template: GroupNameTemplate
    let maxGroupName: Int?
    let deleteGroupsFunction: String
    let catalogue: RoleCatalogue

    init(schema: OwnSchema, target: ResolvedTarget, catalogue: RoleCatalogue) {
        deleteGroupsFunction = schema.qualified("delete_role_groups")
        links = schema.qualified("project_role_group")
        versions = schema.qualified("role_version")
        projectTable = target.tableSQL
        id = target.idSQL
        name = target.nameSQL
        template = target.target.groupName
        maxGroupName = target.maxGroupName
        self.catalogue = catalogue
    }

    /// The catalogue's rows for a statement that binds through `parameters`; `contentType` is needed by the fragments
    /// that read permissions.
    private func desiredRows(_ parameters: StatementParameters, contentType: String? = nil) -> DesiredRows {
        DesiredRows(sql: self, parameters: parameters, projectContentType: contentType)
    }

    /// The newest row of a version table (`migrator.role_version`, or an earlier release's).
    static func latestVersion(_ versions: String) -> SyncStatement {
        SyncStatement("latest role version", reads: versions) { _ in
            "SELECT version, catalogue::text AS catalogue FROM \(versions) ORDER BY id DESC LIMIT 1"
        }
    }

    /// What the last sync that recorded a version left out.
    static func storedLeftOut(_ versions: String) -> SyncStatement {
        SyncStatement("groups left out", reads: versions) { _ in
            "SELECT groups_name_taken, groups_name_too_long FROM \(versions) ORDER BY id DESC LIMIT 1"
        }
    }

    /// How many groups are linked, whatever their project.
    static func linkCount(_ links: String) -> SyncStatement {
        SyncStatement("link count", reads: links) { _ in "SELECT count(*) AS n FROM \(links)" }
    }

    /// Groups created or adopted in this transaction: they get the complete set of their role's permissions even
    /// in an incremental sync.
    static let prepare = """
        CREATE TEMPORARY TABLE migrator_fresh_groups (group_id integer PRIMARY KEY, created boolean NOT NULL)
            ON COMMIT DROP;
        CREATE TEMPORARY TABLE migrator_skipped_projects (project_id bigint PRIMARY KEY) ON COMMIT DROP;
        SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true),
               set_config('enable_nestloop', 'off', true), set_config('enable_mergejoin', 'off', true)
        """

    static let sessionSettings = """
        SELECT set_config('work_mem', '256MB', false), set_config('jit', 'off', false),
               set_config('enable_nestloop', 'off', false), set_config('enable_mergejoin', 'off', false)
        """

    /// The content type of projects, created when a database has none yet. Answers `id`.
    static func contentType(appLabel: String, model: String) -> SyncStatement {
        SyncStatement("content type") { p in
            let label = p.text(appLabel)
            let modelName = p.text(model)
            return """
                WITH existing AS (
                    SELECT id FROM django_content_type WHERE app_label = \(label) AND model = \(modelName)
                ), inserted AS (
                    INSERT INTO django_content_type (app_label, model)
                    SELECT \(label), \(modelName) WHERE NOT EXISTS (SELECT 1 FROM existing)
                    ON CONFLICT (app_label, model) DO NOTHING
                    RETURNING id
                )
                SELECT id FROM existing UNION ALL SELECT id FROM inserted
                """
        }
    }

    /// Inserts missing permissions and corrects changed names; an unchanged row is not rewritten (the WHERE on DO
    /// UPDATE). Answers `created`, `renamed`.
    static func permissions(contentType: Int, _ permissions: [RoleCatalogue.Permission]) -> SyncStatement {
        SyncStatement("permissions") { p in
            let ct = p.integer(contentType)
            let codenames = p.texts(permissions.map(\.codename))
            let names = p.texts(permissions.map(\.name))
            return """
                WITH upserted AS (
                    INSERT INTO auth_permission (name, content_type_id, codename)
                    SELECT w.name, \(ct), w.codename FROM unnest(\(codenames), \(names)) AS w(codename, name)
                    ON CONFLICT (content_type_id, codename) DO UPDATE SET name = EXCLUDED.name
                        WHERE auth_permission.name IS DISTINCT FROM EXCLUDED.name
                    RETURNING (xmax = 0) AS inserted
                )
                SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS renamed FROM upserted
                """
        }
    }

    /// Rows, from a CTE `blocked`, for groups that cannot get their name: another group has it (`reason` 'taken')
    /// or it is longer than `auth_group.name` holds ('too_long'). Columns `role`, `project_id`, `current_name` (null:
    /// the group could not be created), `wanted`, `reason`; `n` is 0. The first 100 of each reason, in project order.
    private static let blockedRows = """
        SELECT role, 0::bigint AS n, project_id, current_name, wanted, reason, total
        FROM (SELECT *, count(*) OVER () AS total FROM blocked WHERE reason = 'taken' ORDER BY project_id, role LIMIT 100) b
        UNION ALL
        SELECT role, 0::bigint AS n, project_id, current_name, wanted, reason, total
        FROM (SELECT *, count(*) OVER () AS total FROM blocked WHERE reason = 'too_long' ORDER BY project_id, role LIMIT 100) b
        """

    /// The per-role counts' columns, aligned with ``blockedRows`` (`total`: how many there are of that reason).
    private static let countColumns = "NULL::bigint AS project_id, NULL::text AS current_name, NULL::text AS wanted, NULL::text AS reason, NULL::bigint AS total"

    /// A renamed project's groups follow its name. A name that is not free (``DesiredRows/nameFree(_:linked:)``) is
    /// left as it is, and the group is reported (see `blockedRows`). Answers per role `n`, then the blocked rows.
    ///
    /// The last write of a sync: renaming a unique column takes `FOR UPDATE` on the group, which the app's foreign-key
    /// checks on it (a membership added) wait for until the sync commits. The project is locked first
    /// (``DesiredRows/lockCTEs(_:scope:)``); the UPDATE itself locks the group and skips one deleted meanwhile.
    func renameGroups(projects: [Int64]?) -> SyncStatement {
        SyncStatement("rename groups") { p in
            let desired = desiredRows(p)
            let scope = projects.map { p.bigints($0) }
            let free = desired.nameFree("e.name", linked: true, candidates: "SELECT name FROM linked", scope: scope)
            let groups = desired.only("g.id", in: "SELECT group_id FROM linked", scope: scope)
            return """
                WITH \(desired.linkedCTE(scope: scope)), candidates AS (
                    SELECT e.project_id, NULL::integer AS group_id
                    FROM linked e JOIN auth_group g ON g.id = e.group_id
                    WHERE g.name <> e.name AND \(free) \(groups)
                ), \(desired.lockCTEs("candidates", scope: scope)), renamed AS (
                    UPDATE auth_group g SET name = e.name
                    FROM linked e JOIN locked_projects lp ON lp.project_id = e.project_id
                    WHERE g.id = e.group_id AND g.name <> e.name AND \(free) \(groups)
                    RETURNING e.role
                ), blocked AS (
                    SELECT e.role, e.project_id, g.name AS current_name, e.name AS wanted, \(desired.nameProblem("e.name")) AS reason
                    FROM linked e JOIN auth_group g ON g.id = e.group_id
                    WHERE g.name <> e.name AND NOT \(free) \(groups)
                )
                SELECT role, count(*) AS n, \(Self.countColumns)
                FROM renamed GROUP BY role
                UNION ALL
                \(Self.blockedRows)
                """
        }
    }

    /// A group that already has exactly the expected name and no link (a database the Django app filled) is linked
    /// instead of duplicated. Answers per role `n`.
    func adoptGroups(projects: [Int64]?) -> SyncStatement {
        SyncStatement("adopt groups") { p in
            let desired = desiredRows(p)
            let scope = projects.map { p.bigints($0) }
            let named = desired.only("g.name", in: "SELECT name FROM wanted", scope: scope)
            return """
                WITH \(desired.unlinkedCTE(scope: scope)), wanted AS (
                    SELECT u.project_id, u.role, \(desired.groupName(project: "p", role: "u.role")) AS name
                    FROM unlinked u JOIN \(projectTable) p ON p.\(id) = u.project_id
                    WHERE \(desired.inScope("p.\(id)", scope))
                ), candidates AS (
                    SELECT w.project_id, w.role, g.id AS group_id
                    FROM wanted w JOIN auth_group g ON g.name = w.name
                    WHERE g.id NOT IN (
                        SELECT l.group_id FROM \(links) l
                        WHERE true \(desired.only("l.group_id", in: "SELECT g.id FROM auth_group g WHERE true \(named)", scope: scope))
                    ) AND \(desired.fits("g.name")) \(named)
                ), \(desired.lockCTEs("candidates", scope: scope)), adopted AS (
                    INSERT INTO \(links) (project_id, role, group_id)
                    SELECT c.project_id, c.role, c.group_id FROM candidates c
                    WHERE c.group_id IN (SELECT group_id FROM locked_groups)
                    ON CONFLICT DO NOTHING
                    RETURNING role, group_id
                ), fresh AS (
                    INSERT INTO migrator_fresh_groups (group_id, created) SELECT group_id, false FROM adopted ON CONFLICT DO NOTHING
                )
                SELECT role, count(*) AS n FROM adopted GROUP BY role
                """
        }
    }

    /// Creates and links the groups projects lack, where the name is free. Answers per role `n`, then the blocked rows.
    func createGroups(projects: [Int64]?) -> SyncStatement {
        SyncStatement("create groups") { p in
            let desired = desiredRows(p)
            let scope = projects.map { p.bigints($0) }
            let free = desired.nameFree("w.name", linked: false, candidates: "SELECT name FROM wanted", scope: scope)
            return """
                WITH \(desired.unlinkedCTE(scope: scope)), wanted AS (
                    SELECT u.project_id, u.role, n.name
                    FROM unlinked u JOIN \(projectTable) p ON p.\(id) = u.project_id
                    CROSS JOIN LATERAL (SELECT \(desired.groupName(project: "p", role: "u.role")) AS name) n
                    WHERE \(desired.inScope("p.\(id)", scope))
                ), missing AS (
                    SELECT w.project_id, w.role, w.name, \(free) AS free FROM wanted w
                ), candidates AS (
                    SELECT project_id, NULL::integer AS group_id FROM missing WHERE free
                ), \(desired.lockCTEs("candidates", scope: scope)), created AS (
                    -- Only for projects locked: one deleted after the snapshot gets no groups (nor links it would keep).
                    INSERT INTO auth_group (name)
                    SELECT name FROM missing WHERE free AND project_id IN (SELECT project_id FROM locked_projects) ORDER BY name
                    ON CONFLICT (name) DO NOTHING
                    RETURNING id, name
                ), linked AS (
                    INSERT INTO \(links) (project_id, role, group_id)
                    SELECT m.project_id, m.role, c.id FROM missing m JOIN created c ON c.name = m.name
                    ORDER BY m.project_id, m.role
                    RETURNING role, group_id
                ), fresh AS (
                    INSERT INTO migrator_fresh_groups (group_id, created) SELECT group_id, true FROM linked
                ), blocked AS (
                    -- Adoption ran first, so a group that has the wanted name already is linked to another project or role
                    -- (names can be ambiguous: project "a_Member" with role "Admin", project "a" with role "Member_Admin").
                    SELECT m.role, m.project_id, NULL::text AS current_name, m.name AS wanted, \(desired.nameProblem("m.name")) AS reason
                    FROM missing m WHERE NOT m.free
                )
                SELECT role, count(*) AS n, \(Self.countColumns)
                FROM linked GROUP BY role
                UNION ALL
                \(Self.blockedRows)
                """
        }
    }

    /// Links whose project no longer exists (deleted while no trigger was there, as during the upgrade from an
    /// earlier release): their groups go, as the delete trigger would have removed them. Answers how many, `n`.
    func removeOrphans() -> SyncStatement {
        SyncStatement("remove groups of deleted projects") { _ in
            """
            SELECT \(deleteGroupsFunction)(ARRAY(
                SELECT l.group_id FROM \(links) l
                WHERE NOT EXISTS (SELECT 1 FROM \(projectTable) p WHERE p.\(id) = l.project_id)
            )) AS n
            """
        }
    }

    /// The phase a permission table's statement runs in.
    private static func phase(_ table: PermissionTable) -> String {
        switch table {
        case .group: "group permissions"
        case .object: "object permissions"
        }
    }

    /// Whether each permission table is in step already, for a full sync of every project: one pass over each table
    /// classifies the rows of our groups exactly as ``DesiredRows/rowState(_:named:scope:)`` does, but counts them
    /// for all groups at once instead of per group (no aggregate over tens of thousands of groups). A table is in
    /// step when none of those rows is extra and the valid ones are as many as the linked groups' roles grant: the
    /// unique keys of both tables ((group, permission), and guardian's (group, permission, object_pk) with object_pk
    /// the group's project) let a group hold each of its role's rows once at most, so the totals match only when
    /// every group has all of them, as the per-group comparison also relies on. Answers `group_in_step`,
    /// `object_in_step`.
    func permissionsInStep(contentType: Int) -> SyncStatement {
        SyncStatement("check the permissions") { p in
            let ct = p.integer(contentType)
            let desired = desiredRows(p, contentType: ct)
            func tally(_ table: PermissionTable) -> String {
                """
                SELECT count(c.permission_id) AS valid, count(*) FILTER (WHERE c.permission_id IS NULL) AS extra
                    FROM \(table.name) x
                    JOIN \(links) s ON s.group_id = x.group_id
                    LEFT JOIN catalogue c ON c.role = s.role AND c.permission_id = x.permission_id AND \(table.valid(contentType: ct))
                    WHERE true \(table.rowCondition(contentType: ct)) \(table.permissionCondition(contentType: ct))
                """
            }
            return """
                WITH \(desired.catalogueCTE), \(DesiredRows.expectedCTE), wanted AS (
                    SELECT coalesce(sum(e.n), 0) AS n FROM \(links) s JOIN expected e ON e.role = s.role
                ), group_rows AS (
                    \(tally(.group))
                ), object_rows AS (
                    \(tally(.object))
                )
                SELECT g.extra = 0 AND g.valid = w.n AS group_in_step, o.extra = 0 AND o.valid = w.n AS object_in_step
                FROM wanted w, group_rows g, object_rows o
                """
        }
    }

    /// A full sync's comparison of one permission table, cheaper than a full join when most groups are already
    /// right: one pass over the table classifies every row of our groups against the catalogue and counts the valid
    /// ones per group (``DesiredRows/rowState(_:named:scope:)``); only groups that lack rows are compared row by row.
    /// Rows are inserted in index order: in a hash join's order every index insertion lands on a random page, which
    /// doubles the time. Rows of groups created in this transaction cannot exist elsewhere, so they are always
    /// inserted without ON CONFLICT (which costs half again as much). The others are inserted with
    /// `ON CONFLICT DO NOTHING` when `guarded`: the sync first runs the statement without it, in a savepoint, and
    /// runs it again guarded only when an application wrote one of the same rows meanwhile (a unique violation),
    /// so that such a write cannot fail the sync (``RoleSynchronizer``'s `syncPermissions`). Answers per role
    /// `added`, `removed`.
    func permissionsFull(_ table: PermissionTable, contentType: Int, projects: [Int64]?, guarded: Bool) -> SyncStatement {
        SyncStatement(Self.phase(table)) { p in
            let ct = p.integer(contentType)
            let desired = desiredRows(p, contentType: ct)
            let scope = projects.map { p.bigints($0) }
            let insert = "INSERT INTO \(table.name) (\(table.insertColumns)) SELECT \(table.insertValues(contentType: ct))"
            return """
                WITH \(desired.catalogueCTE), \(DesiredRows.expectedCTE),
                \(desired.rowState(table, named: "per_group", scope: scope)), incomplete AS (
                    SELECT s.group_id, s.project_id, s.role, coalesce(f.created, false) AS created
                    FROM \(links) s
                    JOIN expected e ON e.role = s.role
                    LEFT JOIN per_group p ON p.group_id = s.group_id
                    LEFT JOIN migrator_fresh_groups f ON f.group_id = s.group_id
                    WHERE \(desired.inScope("s.project_id", scope)) AND \(DesiredRows.lacking("p", expected: "e"))
                ), missing AS (
                    SELECT s.group_id AS want_group, c.permission_id AS want_permission, s.project_id::text AS object_pk,
                           s.role, s.created
                    FROM incomplete s \(DesiredRows.desiredPermissions(of: "s"))
                    WHERE NOT EXISTS (
                        SELECT 1 FROM \(table.name) x
                        WHERE x.group_id = s.group_id AND x.permission_id = c.permission_id \(table.rowCondition(contentType: ct))
                          AND \(table.valid(contentType: ct)) \(desired.groupsInScope("x", scope))
                    )
                ), extra_rows AS (
                    SELECT p.group_id, unnest(p.extra) AS id FROM per_group p WHERE \(DesiredRows.extra("p"))
                ), candidates AS (
                    SELECT s.project_id, s.group_id FROM \(links) s
                    WHERE s.group_id IN (SELECT want_group FROM missing UNION ALL SELECT group_id FROM extra_rows)
                      AND \(desired.inScope("s.project_id", scope))
                ), \(desired.lockCTEs("candidates", scope: scope)), removed AS (
                    DELETE FROM \(table.name) x
                    WHERE x.id = ANY (ARRAY(SELECT id FROM extra_rows WHERE group_id IN (SELECT group_id FROM locked_groups)))
                    RETURNING x.group_id
                ), removed_first AS (
                    -- Read before any insert: an extra row may hold the unique key (group, permission, object_pk) of a
                    -- row to insert (a foreign content type's row), so the deletes must be done when the inserts run.
                    SELECT count(*) AS n FROM removed
                ), inserted_for_new_groups AS (
                    \(insert) FROM missing
                    WHERE created AND want_group IN (SELECT group_id FROM locked_groups) AND (SELECT n FROM removed_first) >= 0
                    ORDER BY want_group, want_permission
                    RETURNING group_id
                ), inserted AS (
                    \(insert) FROM missing
                    WHERE NOT created AND want_group IN (SELECT group_id FROM locked_groups) AND (SELECT n FROM removed_first) >= 0
                    ORDER BY want_group, want_permission
                    \(guarded ? "ON CONFLICT DO NOTHING" : "")
                    RETURNING group_id
                ), \(Self.addedAndRemovedByRole(roles: "(SELECT group_id, role FROM \(links) WHERE \(desired.inScope("project_id", scope)))"))
                """
        }
    }

    /// An incremental sync's comparison of one permission table: the groups created or adopted in this transaction
    /// get every row of their role; the other groups, already in step with the stored catalogue, are compared only on
    /// the (role, permission) pairs that changed since (`changed`, added and removed alike), found through the
    /// permission index. One hash full join finds both what to add and what to remove, so the table is read once.
    /// Each side carries its group's project and role from the one read of the links it was found by, so nothing
    /// is joined back to the links afterwards (a materialized copy of every link, hashed again for the differences,
    /// was a third of this statement at 10,000 projects). An incremental sync is never limited to projects (a
    /// per-project sync is a full one). Inserts as ``permissionsFull(_:contentType:projects:guarded:)`` does.
    /// Answers per role `added`, `removed`.
    func permissionsIncremental(_ table: PermissionTable, contentType: Int, changed: [CatalogueDiff.Pair], guarded: Bool) -> SyncStatement {
        SyncStatement(Self.phase(table)) { p in
            let ct = p.integer(contentType)
            let desired = desiredRows(p, contentType: ct)
            let changedRoles = p.texts(changed.map(\.role))
            let changedCodenames = p.texts(changed.map(\.codename))
            let rowCondition = table.rowCondition(contentType: ct)
            let insert = "INSERT INTO \(table.name) (\(table.insertColumns)) SELECT \(table.insertValues(contentType: ct))"
            return """
                WITH \(desired.catalogueCTE), changed AS (
                    SELECT c.role, ap.id AS permission_id
                    FROM unnest(\(changedRoles), \(changedCodenames)) AS c(role, codename)
                    JOIN auth_permission ap ON ap.content_type_id = \(ct) AND ap.codename = c.codename
                ), fresh AS (
                    SELECT l.group_id, l.project_id, l.role
                    FROM migrator_fresh_groups f JOIN \(links) l ON l.group_id = f.group_id
                ), wanted AS (
                    SELECT s.group_id, s.project_id, s.role, c.permission_id, true AS created
                    FROM fresh s \(DesiredRows.desiredPermissions(of: "s"))
                    UNION ALL
                    SELECT s.group_id, s.project_id, s.role, d.permission_id, false
                    FROM changed d JOIN \(links) s ON s.role = d.role \(DesiredRows.desiredPermissions(of: "s"))
                        AND c.permission_id = d.permission_id
                    WHERE s.group_id NOT IN (SELECT group_id FROM migrator_fresh_groups)
                ), existing AS (
                    SELECT x.id, x.group_id, x.permission_id, \(table.valid(contentType: ct)) AS valid, s.project_id, s.role
                    FROM fresh s JOIN \(table.name) x ON x.group_id = s.group_id
                    WHERE true \(rowCondition) \(table.permissionCondition(contentType: ct))
                    UNION ALL
                    SELECT x.id, x.group_id, x.permission_id, \(table.valid(contentType: ct)), s.project_id, s.role
                    FROM \(table.name) x JOIN \(links) s ON s.group_id = x.group_id
                    JOIN changed d ON d.permission_id = x.permission_id AND d.role = s.role
                    WHERE s.group_id NOT IN (SELECT group_id FROM migrator_fresh_groups) \(rowCondition)
                      AND x.permission_id = ANY (ARRAY(SELECT permission_id FROM changed))
                ), resolved AS (
                    SELECT w.group_id AS want_group, w.permission_id AS want_permission, e.id AS existing_id,
                           coalesce(w.group_id, e.group_id) AS group_id, coalesce(w.project_id, e.project_id) AS project_id,
                           coalesce(w.project_id, e.project_id)::text AS object_pk, coalesce(w.role, e.role) AS role,
                           coalesce(w.created, false) AS created
                    FROM wanted w FULL JOIN existing e
                        ON e.group_id = w.group_id AND e.permission_id = w.permission_id AND e.valid
                    WHERE w.group_id IS NULL OR e.id IS NULL
                ), \(desired.lockCTEs("resolved", scope: nil)), removed AS (
                    DELETE FROM \(table.name) x
                    WHERE x.id = ANY (ARRAY(
                        SELECT existing_id FROM resolved WHERE want_group IS NULL AND group_id IN (SELECT group_id FROM locked_groups)
                    ))
                    RETURNING x.group_id
                ), removed_first AS (
                    -- See permissionsFull: the deletes are done before the inserts run.
                    SELECT count(*) AS n FROM removed
                ), inserted_for_new_groups AS (
                    \(insert) FROM resolved
                    WHERE existing_id IS NULL AND created AND group_id IN (SELECT group_id FROM locked_groups)
                      AND (SELECT n FROM removed_first) >= 0
                    ORDER BY want_group, want_permission
                    RETURNING group_id
                ), inserted AS (
                    \(insert) FROM resolved
                    WHERE existing_id IS NULL AND NOT created AND group_id IN (SELECT group_id FROM locked_groups)
                      AND (SELECT n FROM removed_first) >= 0
                    ORDER BY want_group, want_permission
                    \(guarded ? "ON CONFLICT DO NOTHING" : "")
                    RETURNING group_id
                ), \(Self.addedAndRemovedByRole(roles: "(SELECT DISTINCT group_id, role FROM resolved)"))
                """
        }
    }

    /// Projects a statement skipped because another transaction held their row (``DesiredRows/lockCTEs(_:scope:)``) and that
    /// still exist: the sync reports them. `ids`, a bigint[] as text.
    func skippedProjects() -> SyncStatement {
        SyncStatement("skipped projects") { _ in
            """
            SELECT array(
                SELECT p.\(id)::bigint FROM \(projectTable) p
                WHERE p.\(id) IN (SELECT project_id FROM migrator_skipped_projects) ORDER BY 1
            )::text AS ids
            """
        }
    }

    /// How many (project, role) pairs in scope have no group: after the first pass, those it had to leave out, and
    /// those of projects created since it read them. Answers `n`.
    func unlinkedCount(projects: [Int64]?) -> SyncStatement {
        SyncStatement("look for projects created meanwhile") { p in
            "WITH \(desiredRows(p).unlinkedCTE(scope: projects.map { p.bigints($0) })) SELECT count(*) AS n FROM unlinked"
        }
    }

    /// An incremental sync's first look, in one pass over the links with the project ids hashed: `unlinked`, a count
    /// that is 0 exactly when every project has a link for every role of the catalogue (when `unlinkedCTE` is empty:
    /// links are unique per (project, role), so the links of existing projects and catalogue roles number projects ×
    /// roles only when none is missing; duplicate or NULL project ids only make it larger), and `orphaned`, how many
    /// links have no project (what ``removeOrphans()`` would remove the groups of). When `unlinked` is 0, adoption
    /// and creation have nothing to do in this snapshot; a project created after it is left to the catch-up pass, as
    /// one created after those statements' own snapshots always was.
    func unlinkedAndOrphanedCounts() -> SyncStatement {
        SyncStatement("look for projects without groups and links without projects") { p in
            let roles = desiredRows(p).roles
            return """
                WITH link_state AS (
                    SELECT l.role, l.project_id IN (SELECT p.\(id)::bigint FROM \(projectTable) p) AS project_exists
                    FROM \(links) l
                )
                SELECT (SELECT count(*) FROM \(projectTable)) * cardinality(\(roles))
                           - count(*) FILTER (WHERE project_exists AND role = ANY(\(roles))) AS unlinked,
                       count(*) FILTER (WHERE project_exists IS NOT TRUE) AS orphaned
                FROM link_state
                """
        }
    }

    /// An incremental sync's look after its first pass, where ``renameGroups(projects:)`` and ``unlinkedCount(projects:)``
    /// ran: `misnamed`, how many linked groups of existing projects have another name than the template gives (the
    /// only groups the rename statement renames or reports), and `unlinked`, 0 exactly when no (project, role) pair
    /// lacks a group (as in ``unlinkedAndOrphanedCounts()``). The links are read and the names made once for both.
    func misnamedAndUnlinkedCounts() -> SyncStatement {
        SyncStatement("look for renamed projects and projects created meanwhile") { p in
            let desired = desiredRows(p)
            return """
                WITH \(desired.linkedCTE(scope: nil))
                SELECT (SELECT count(*) FROM linked e JOIN auth_group g ON g.id = e.group_id WHERE g.name <> e.name) AS misnamed,
                       (SELECT count(*) FROM \(projectTable)) * cardinality(\(desired.roles))
                           - (SELECT count(*) FROM linked WHERE role = ANY(\(desired.roles))) AS unlinked
                """
        }
    }

    /// Before the catch-up pass (groups for projects created meanwhile, and for names a rename freed): the groups of
    /// the first pass have their rows already.
    static let forgetFreshGroups = SyncStatement("forget fresh groups") { _ in "DELETE FROM migrator_fresh_groups" }

    /// Roles no longer in the catalogue, with their remaining groups (in a sync of some projects, those projects'):
    /// `role`, `n`.
    func retiredRoles(projects: [Int64]?) -> SyncStatement {
        SyncStatement("retired roles") { p in
            let inScope = desiredRows(p).inScope("project_id", projects.map { p.bigints($0) })
            return "SELECT role, count(*) AS n FROM \(links) WHERE role <> ALL(\(p.texts(catalogue.roles.map(\.name)))) AND \(inScope) GROUP BY role"
        }
    }

    /// The projects in scope: `n`.
    func projectCount(projects: [Int64]?) -> SyncStatement {
        SyncStatement("project count") { p in
            "SELECT count(*) AS n FROM \(projectTable) WHERE \(desiredRows(p).inScope(id, projects.map { p.bigints($0) }))"
        }
    }

    /// The version row of a sync, in the same transaction as its rows.
    func recordVersion(
        version: String, canonicalJSON: String, totals: RoleSyncReport.RoleChanges, durationMs: Double, forced: Bool,
        groupsNameTaken: Int, groupsNameTooLong: Int
    ) -> SyncStatement {
        SyncStatement("record version") { p in
            """
            INSERT INTO \(versions)
                (version, catalogue, projects, groups_created, groups_renamed, permissions_added, permissions_removed,
                 duration_ms, forced, groups_name_taken, groups_name_too_long)
            VALUES (\(p.text(version)), \(p.jsonb(canonicalJSON)), (SELECT count(*) FROM \(projectTable)),
                    \(p.integer(totals.groupsCreated)), \(p.integer(totals.groupsRenamed)),
                    \(p.integer(totals.groupPermissionsAdded + totals.objectPermissionsAdded)),
                    \(p.integer(totals.groupPermissionsRemoved + totals.objectPermissionsRemoved)),
                    \(p.double(durationMs)), \(p.boolean(forced)), \(p.integer(groupsNameTaken)), \(p.integer(groupsNameTooLong)))
            """
        }
    }

    /// The next chunk of the drift query: the ids of the first `size` projects after `after` (nil: from the first),
    /// in order. Answers `ids` (a bigint[], NULL when there are none).
    func driftChunk(after: Int64?, size: Int) -> SyncStatement {
        SyncStatement("drift chunk") { p in
            """
            SELECT array_agg(c.id ORDER BY c.id)::text AS ids
            FROM (SELECT p.\(id)::bigint AS id FROM \(projectTable) p WHERE \(after.map { "p.\(id) > \(p.bigint($0))" } ?? "true")
                  ORDER BY p.\(id) LIMIT \(p.integer(size))) c
            """
        }
    }

    /// The projects whose rows a sync would change, compared with ``DesiredRows`` as the sync compares, among the
    /// projects `ids` (a chunk of ``driftChunk(after:size:)``). Groups of roles no longer in the catalogue count as
    /// drifted while they still hold permissions (a sync removes them). A group whose name is not free is not drift
    /// (no sync can fix it) but is counted in `groups_name_taken` / `groups_name_too_long`, so that a daemon does not
    /// sync it again on every reconcile. Answers `projects` (a bigint[]), those counts, `orphaned_links` and
    /// `permissions_missing`.
    ///
    /// The chunk's ids are bound as an array (the scope of ``DesiredRows/only(_:in:scope:)``), so each table is read
    /// through its index for the chunk's keys, and the planner knows how many: one statement costs as much as the
    /// chunk is large, not as the tables are, and holds its `ACCESS SHARE` locks for that long only. A plain
    /// `ALTER TABLE` of the app's waits for one chunk at most (at 100,000 projects, one statement over all of them
    /// read for 14 s). Links whose project is gone are counted by their `project_id` in the chunk's range: above
    /// `after` (nil: no lower end) up to `through` (nil: no upper end, for the last chunk); the projects in that range
    /// are those of `ids`, unless created or deleted since, which the next reconcile sees.
    func drift(appLabel: String, model: String, ids: [Int64], after: Int64?, through: Int64?) -> SyncStatement {
        SyncStatement("drift") { p in
            let label = p.text(appLabel)
            let modelName = p.text(model)
            let desired = desiredRows(p, contentType: "(SELECT id FROM ct)")
            let codenames = Set(catalogue.roles.flatMap(\.permissions)).count
            let scope = p.bigints(ids)
            let range = [after.map { "l.project_id > \(p.bigint($0))" }, through.map { "l.project_id <= \(p.bigint($0))" }]
                .compactMap { $0 }.joined(separator: " AND ")
            return """
                WITH ct AS (
                    SELECT id FROM django_content_type WHERE app_label = \(label) AND model = \(modelName)
                ), \(desired.catalogueCTE), \(DesiredRows.expectedCTE),
                \(desired.unlinkedCTE(scope: scope)), unlinked_wanted AS (
                    SELECT u.project_id, u.role, \(desired.groupName(project: "p", role: "u.role")) AS wanted
                    FROM unlinked u JOIN \(projectTable) p ON p.\(id) = u.project_id
                    WHERE \(desired.inScope("p.\(id)", scope))
                ), unlinked_named AS (
                    SELECT n.project_id, n.role, n.wanted,
                           \(desired.nameFree("n.wanted", linked: false, candidates: "SELECT wanted FROM unlinked_wanted", scope: scope)) AS free
                    FROM unlinked_wanted n
                ), \(desired.linkedCTE(scope: scope)), misnamed_wanted AS (
                    SELECT l.project_id, l.role, l.name AS wanted
                    FROM linked l JOIN auth_group g ON g.id = l.group_id
                    WHERE g.name <> l.name \(desired.only("g.id", in: "SELECT group_id FROM linked", scope: scope))
                ), misnamed AS (
                    SELECT m.project_id, m.role, m.wanted,
                           \(desired.nameFree("m.wanted", linked: true, candidates: "SELECT wanted FROM misnamed_wanted", scope: scope)) AS free
                    FROM misnamed_wanted m
                ), blocked AS (
                    SELECT project_id, role, \(desired.nameProblem("wanted")) AS reason FROM unlinked_named WHERE NOT free
                    UNION ALL
                    SELECT project_id, role, \(desired.nameProblem("wanted")) FROM misnamed WHERE NOT free
                ), \(desired.rowState(.group, named: "group_rows", scope: scope)),
                \(desired.rowState(.object, named: "object_rows", scope: scope)), short AS (
                    SELECT s.project_id
                    FROM \(links) s
                    JOIN \(projectTable) p ON p.\(id) = s.project_id
                    LEFT JOIN expected e ON e.role = s.role
                    LEFT JOIN group_rows gr ON gr.group_id = s.group_id
                    LEFT JOIN object_rows orow ON orow.group_id = s.group_id
                    WHERE \(desired.inScope("s.project_id", scope)) AND \(desired.inScope("p.\(id)", scope))
                      AND (\(DesiredRows.lacking("gr", expected: "e")) OR \(DesiredRows.extra("gr"))
                           OR \(DesiredRows.lacking("orow", expected: "e")) OR \(DesiredRows.extra("orow")))
                )
                SELECT array(
                           SELECT project_id FROM unlinked_named WHERE free
                           UNION SELECT project_id FROM misnamed WHERE free
                           UNION SELECT project_id FROM short ORDER BY 1
                       )::text AS projects,
                       (SELECT count(*) FROM blocked WHERE reason = 'taken') AS groups_name_taken,
                       (SELECT count(*) FROM blocked WHERE reason = 'too_long') AS groups_name_too_long,
                       (SELECT count(*) FROM \(links) l
                        WHERE \(range.isEmpty ? "true" : range)
                          AND NOT EXISTS (SELECT 1 FROM \(projectTable) p
                                          WHERE p.\(id) = l.project_id AND \(desired.inScope("p.\(id)", scope)))) AS orphaned_links,
                       (SELECT count(DISTINCT permission_id) FROM catalogue) < \(p.integer(codenames)) AS permissions_missing
                """
        }
    }
}

extension SyncSQL {
    /// The end of both permission statements: the rows each one inserted (for new groups and for existing ones) and
    /// removed, counted per role through `roles` (a relation with `group_id` and `role`).
    static func addedAndRemovedByRole(roles: String) -> String {
        """
        counted AS (
                    SELECT group_id, 1 AS added, 0 AS removed FROM inserted_for_new_groups
                    UNION ALL SELECT group_id, 1, 0 FROM inserted
                    UNION ALL SELECT group_id, 0, 1 FROM removed
                )
                SELECT s.role, sum(c.added)::bigint AS added, sum(c.removed)::bigint AS removed
                FROM counted c JOIN \(roles) s ON s.group_id = c.group_id GROUP BY s.role
        """
    }
}
