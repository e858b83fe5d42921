import MigrationEngine
import Postgres

/// The statements of a sync. Each is set-based: its cost grows with rows, never its number with projects.
///
/// Every value, project names and the group name template's text included, arrives as a parameter. What is spliced
/// are identifiers: migrator's own schema (checked by ``OwnSchema``) and the project table and its columns as the
/// server itself printed them (``ResolvedTarget``). A project filter of NULL means every project.
///
/// Statements that compute group names take the template's literal parts and the longest name `auth_group.name`
/// holds after their own parameters: ``nameParameters``, numbered from ``NameParameters/first``.
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
    let projects: String
    let id: String
    let name: String
    let template: GroupNameTemplate
    let maxGroupName: Int?
    let deleteGroupsFunction: String

    init(schema: OwnSchema, target: ResolvedTarget) {
        deleteGroupsFunction = schema.qualified("delete_role_groups")
        links = schema.qualified("project_role_group")
        versions = schema.qualified("role_version")
        projects = target.tableSQL
        id = target.idSQL
        name = target.nameSQL
        template = target.target.groupName
        maxGroupName = target.maxGroupName
    }

    /// The template's literal parts, then the longest group name (NULL: no limit): the parameters that follow a
    /// statement's own when it computes group names.
    var nameParameters: [(any PostgresBindable)?] { template.literals.map { $0 } + [maxGroupName] }

    /// The name of a project's group for a role: `project` is an alias of the project table, `role` an
    /// expression; the template's literals are parameters from `first`.
    private func groupName(_ project: String, _ role: String, first: Int) -> String {
        "(" + template.sql(id: "\(project).\(id)", name: "\(project).\(name)", role: role, firstParameter: first) + ")"
    }

    /// Whether a name fits `auth_group.name`: the parameter after the literals.
    private func fits(_ expression: String, first: Int) -> String {
        let parameter = "$\(first + template.literals.count)::integer"
        return "(\(parameter) IS NULL OR char_length(\(expression)) <= \(parameter))"
    }

    static func latestVersion(_ versions: String) -> String {
        "SELECT version, catalogue::text AS catalogue FROM \(versions) ORDER BY id DESC LIMIT 1"
    }

    var latestVersion: String { Self.latestVersion(versions) }

    /// Groups created or adopted in this transaction: they get the complete set of their role's permissions even
    /// in an incremental sync.
    static let prepare = """
        CREATE TEMPORARY TABLE migrator_fresh_groups (group_id integer PRIMARY KEY, created boolean NOT NULL)
            ON COMMIT DROP;
        SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true),
               set_config('enable_nestloop', 'off', true), set_config('enable_mergejoin', 'off', true)
        """

    /// The content type of projects, created when a database has none yet.
    /// $1 app label, $2 model.
    static let contentType = """
        WITH existing AS (
            SELECT id FROM django_content_type WHERE app_label = $1 AND model = $2
        ), inserted AS (
            INSERT INTO django_content_type (app_label, model)
            SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM existing)
            ON CONFLICT (app_label, model) DO NOTHING
            RETURNING id
        )
        SELECT id FROM existing UNION ALL SELECT id FROM inserted
        """

    /// $1 content type, $2 codenames, $3 display names. Inserts missing permissions and corrects changed names;
    /// an unchanged row is not rewritten (the WHERE on DO UPDATE).
    static let permissions = """
        WITH upserted AS (
            INSERT INTO auth_permission (name, content_type_id, codename)
            SELECT w.name, $1::integer, w.codename FROM unnest($2::text[], $3::text[]) AS w(codename, name)
            ON CONFLICT (content_type_id, codename) DO UPDATE SET name = EXCLUDED.name
                WHERE auth_permission.name IS DISTINCT FROM EXCLUDED.name
            RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS renamed FROM upserted
        """

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

    /// $1 project filter, then ``nameParameters``. A renamed project's groups follow its name. A name already taken
    /// by another group, or too long for `auth_group.name`, is left as it is, and the group is reported (see
    /// `blockedRows`).
    var renameGroups: String {
        """
        WITH expected AS (
            SELECT l.group_id, l.project_id, l.role, \(groupName("p", "l.role", first: 2)) AS name
            FROM \(links) l JOIN \(projects) p ON p.\(id) = l.project_id
            WHERE ($1::bigint[] IS NULL OR l.project_id = ANY($1::bigint[]))
        ), renamed AS (
            UPDATE auth_group g SET name = e.name
            FROM expected e
            WHERE g.id = e.group_id AND g.name <> e.name AND \(fits("e.name", first: 2))
              AND e.name NOT IN (SELECT name FROM auth_group)
            RETURNING e.role
        ), blocked AS (
            SELECT e.role, e.project_id, g.name AS current_name, e.name AS wanted,
                   CASE WHEN \(fits("e.name", first: 2)) THEN 'taken' ELSE 'too_long' END AS reason
            FROM expected e JOIN auth_group g ON g.id = e.group_id
            WHERE g.name <> e.name AND (NOT \(fits("e.name", first: 2)) OR e.name IN (SELECT name FROM auth_group))
        )
        SELECT role, count(*) AS n, \(Self.countColumns)
        FROM renamed GROUP BY role
        UNION ALL
        \(Self.blockedRows)
        """
    }

    /// (project, role) pairs in scope that have no group yet. A hashed EXCEPT reads the links completely before the
    /// statements that use it append to them.
    private var unlinked: String {
        """
        unlinked AS (
            SELECT p.\(id)::bigint AS project_id, r.role
            FROM \(projects) p CROSS JOIN unnest($1::text[]) AS r(role)
            WHERE ($2::bigint[] IS NULL OR p.\(id) = ANY($2::bigint[]))
            EXCEPT
            SELECT project_id, role FROM \(links)
        )
        """
    }

    /// $1 roles, $2 project filter, then ``nameParameters``. A group that already has exactly the expected name and
    /// no link (a database the Django app filled) is linked instead of duplicated.
    var adoptGroups: String {
        """
        WITH \(unlinked), adopted AS (
            INSERT INTO \(links) (project_id, role, group_id)
            SELECT u.project_id, u.role, g.id
            FROM unlinked u
            JOIN \(projects) p ON p.\(id) = u.project_id
            JOIN auth_group g ON g.name = \(groupName("p", "u.role", first: 3))
            WHERE g.id NOT IN (SELECT group_id FROM \(links)) AND \(fits("g.name", first: 3))
            ON CONFLICT DO NOTHING
            RETURNING role, group_id
        ), fresh AS (
            INSERT INTO migrator_fresh_groups (group_id, created) SELECT group_id, false FROM adopted ON CONFLICT DO NOTHING
        )
        SELECT role, count(*) AS n FROM adopted GROUP BY role
        """
    }

    /// $1 roles, $2 project filter, then ``nameParameters``. Creates and links the groups projects lack.
    var createGroups: String {
        """
        WITH \(unlinked), missing AS (
            SELECT u.project_id, u.role, n.name, \(fits("n.name", first: 3)) AS fits
            FROM unlinked u JOIN \(projects) p ON p.\(id) = u.project_id
            CROSS JOIN LATERAL (SELECT \(groupName("p", "u.role", first: 3)) AS name) n
        ), created AS (
            INSERT INTO auth_group (name) SELECT name FROM missing WHERE fits ORDER BY name
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
            SELECT m.role, m.project_id, NULL::text AS current_name, m.name AS wanted, 'taken' AS reason
            FROM missing m WHERE m.fits AND m.name IN (SELECT name FROM auth_group)
            UNION ALL
            SELECT m.role, m.project_id, NULL::text, m.name, 'too_long' FROM missing m WHERE NOT m.fits
        )
        SELECT role, count(*) AS n, \(Self.countColumns)
        FROM linked GROUP BY role
        UNION ALL
        \(Self.blockedRows)
        """
    }

    /// Links whose project no longer exists (deleted while no trigger was there, as during the upgrade from an
    /// earlier release): their groups go, as the delete trigger would have removed them. Answers how many.
    var removeOrphans: String {
        """
        SELECT \(deleteGroupsFunction)(ARRAY(
            SELECT l.group_id FROM \(links) l
            WHERE NOT EXISTS (SELECT 1 FROM \(projects) p WHERE p.\(id) = l.project_id)
        )) AS n
        """
    }


    /// The catalogue's (role, permission id) pairs: $1 content type, $2/$3 the (role, codename) pairs.
    private static let catalogue = """
        catalogue AS (
            SELECT w.role, ap.id AS permission_id
            FROM unnest($2::text[], $3::text[]) AS w(role, codename)
            JOIN auth_permission ap ON ap.content_type_id = $1::integer AND ap.codename = w.codename
        )
        """

    /// The (group, permission) pairs the catalogue wants, within the sync's universe:
    /// - $5 true (full): every pair of every group in scope;
    /// - $5 false (incremental): every pair of the groups created or adopted in this transaction, and, for the other
    ///   groups, the pairs among those that changed since the stored catalogue ($6, $7).
    /// $1 content type, $2/$3 the catalogue's (role, codename) pairs, $4 project filter. Each branch is guarded by
    /// the constant $5, so the planner drops the branches of the other mode before running anything.
    private var wanted: String {
        """
        \(Self.catalogue), changed AS (
            SELECT c.role, ap.id AS permission_id
            FROM unnest($6::text[], $7::text[]) AS c(role, codename)
            JOIN auth_permission ap ON ap.content_type_id = $1::integer AND ap.codename = c.codename
        ), scoped AS (
            SELECT l.group_id, l.project_id, l.project_id::text AS object_pk, l.role, coalesce(f.created, false) AS created
            FROM \(links) l LEFT JOIN migrator_fresh_groups f ON f.group_id = l.group_id
            WHERE ($4::bigint[] IS NULL OR l.project_id = ANY($4::bigint[]))
        ), fresh AS (
            SELECT l.group_id, l.project_id, l.role
            FROM migrator_fresh_groups f JOIN \(links) l ON l.group_id = f.group_id
            WHERE ($4::bigint[] IS NULL OR l.project_id = ANY($4::bigint[]))
        ), settled AS (
            SELECT s.* FROM scoped s WHERE s.group_id NOT IN (SELECT group_id FROM migrator_fresh_groups)
        ), wanted AS (
            SELECT s.group_id, c.permission_id
            FROM scoped s JOIN catalogue c ON c.role = s.role
            WHERE $5::boolean
            UNION ALL
            SELECT s.group_id, c.permission_id
            FROM fresh s JOIN catalogue c ON c.role = s.role
            WHERE NOT $5::boolean
            UNION ALL
            SELECT s.group_id, d.permission_id
            FROM changed d JOIN catalogue c ON c.role = d.role AND c.permission_id = d.permission_id
            JOIN settled s ON s.role = d.role
            WHERE NOT $5::boolean
        )
        """
    }

    /// Which existing rows fall in the same universe: for a full sync, every row of our content type; for an
    /// incremental one, the fresh groups' rows and the rows of changed pairs (found through the permission index).
    /// The full branch joins the link table itself rather than the `scoped` CTE: the planner cannot estimate a CTE
    /// and would hash the large side.
    private func existing(_ table: String, objectCondition: String, permissionCondition: String) -> String {
        """
        existing AS (
            SELECT x.id, x.group_id, x.permission_id
            FROM \(table) x JOIN \(links) s ON s.group_id = x.group_id
            WHERE $5::boolean \(objectCondition)
              AND ($4::bigint[] IS NULL OR s.project_id = ANY($4::bigint[]))
              \(permissionCondition)
            UNION ALL
            SELECT x.id, x.group_id, x.permission_id
            FROM fresh s JOIN \(table) x ON x.group_id = s.group_id
            WHERE NOT $5::boolean \(objectCondition)
              \(permissionCondition)
            UNION ALL
            SELECT x.id, x.group_id, x.permission_id
            FROM \(table) x JOIN settled s ON s.group_id = x.group_id
            JOIN changed d ON d.permission_id = x.permission_id AND d.role = s.role
            WHERE NOT $5::boolean \(objectCondition)
              AND x.permission_id = ANY (ARRAY(SELECT permission_id FROM changed))
        )
        """
    }

    /// One hash full join finds both what to add and what to remove, so each table is read once. Rows are inserted
    /// in index order: in the hash join's order every index insertion lands on a random page, which doubles the time.
    /// The joined rows carry only the keys; role and project are looked up for the (usually few) differences. Rows of
    /// groups created in this transaction cannot exist elsewhere, so they are inserted without ON CONFLICT (which costs half
    /// again as much); the others keep it, so that an application writing the same row cannot fail the sync. The
    /// counts per role come from the difference itself rather than from RETURNING, which would hold every row.
    private func diff(
        _ table: String, insertColumns: String, insertValues: String, objectCondition: String, permissionCondition: String
    ) -> String {
        """
        WITH \(wanted), \(existing(table, objectCondition: objectCondition, permissionCondition: permissionCondition)), difference AS (
            SELECT w.group_id AS want_group, w.permission_id AS want_permission, e.id AS existing_id,
                   coalesce(w.group_id, e.group_id) AS group_id
            FROM wanted w FULL JOIN existing e ON e.group_id = w.group_id AND e.permission_id = w.permission_id
            WHERE w.group_id IS NULL OR e.id IS NULL
        ), resolved AS (
            SELECT d.want_group, d.want_permission, d.existing_id, s.role, s.object_pk, s.created
            FROM difference d JOIN scoped s ON s.group_id = d.group_id
        ), inserted_for_new_groups AS (
            INSERT INTO \(table) (\(insertColumns))
            SELECT \(insertValues) FROM resolved WHERE existing_id IS NULL AND created
            ORDER BY want_group, want_permission
        ), inserted AS (
            INSERT INTO \(table) (\(insertColumns))
            SELECT \(insertValues) FROM resolved WHERE existing_id IS NULL AND NOT created
            ORDER BY want_group, want_permission
            ON CONFLICT DO NOTHING
        ), removed AS (
            DELETE FROM \(table) x
            WHERE x.id = ANY (ARRAY(SELECT existing_id FROM difference WHERE want_group IS NULL))
        )
        SELECT role, count(*) FILTER (WHERE existing_id IS NULL) AS added,
               count(*) FILTER (WHERE want_group IS NULL) AS removed
        FROM resolved GROUP BY role
        """
    }

    /// A full sync's comparison, cheaper than the full join when most groups are already right: one pass over the
    /// table classifies every row of our groups against the catalogue (a hash of 82 pairs) and counts the valid ones
    /// per group; only groups with fewer valid rows than their role grants are compared row by row. $1 content type,
    /// $2/$3 the catalogue's pairs, $4 project filter.
    private func fullDiff(
        _ table: String, insertColumns: String, insertValues: String, objectCondition: String, permissionCondition: String
    ) -> String {
        """
        WITH \(Self.catalogue), expected AS (
            SELECT role, count(*) AS n FROM catalogue GROUP BY role
        ), per_group AS (
            SELECT x.group_id, count(c.permission_id) AS valid,
                   array_agg(x.id) FILTER (WHERE c.permission_id IS NULL) AS extra
            FROM \(table) x
            JOIN \(links) s ON s.group_id = x.group_id
            LEFT JOIN catalogue c ON c.role = s.role AND c.permission_id = x.permission_id
            WHERE ($4::bigint[] IS NULL OR s.project_id = ANY($4::bigint[])) \(objectCondition) \(permissionCondition)
            GROUP BY x.group_id
        ), incomplete AS (
            SELECT s.group_id, s.project_id, s.role, coalesce(f.created, false) AS created
            FROM \(links) s
            JOIN expected e ON e.role = s.role
            LEFT JOIN per_group p ON p.group_id = s.group_id
            LEFT JOIN migrator_fresh_groups f ON f.group_id = s.group_id
            WHERE ($4::bigint[] IS NULL OR s.project_id = ANY($4::bigint[])) AND coalesce(p.valid, 0) < e.n
        ), missing AS (
            SELECT s.group_id AS want_group, c.permission_id AS want_permission, s.project_id::text AS object_pk,
                   s.role, s.created
            FROM incomplete s JOIN catalogue c ON c.role = s.role
            WHERE NOT EXISTS (
                SELECT 1 FROM \(table) x
                WHERE x.group_id = s.group_id AND x.permission_id = c.permission_id \(objectCondition)
            )
        ), inserted_for_new_groups AS (
            INSERT INTO \(table) (\(insertColumns))
            SELECT \(insertValues) FROM missing WHERE created
            ORDER BY want_group, want_permission
        ), inserted AS (
            INSERT INTO \(table) (\(insertColumns))
            SELECT \(insertValues) FROM missing WHERE NOT created
            ORDER BY want_group, want_permission
            ON CONFLICT DO NOTHING
        ), removed AS (
            DELETE FROM \(table) x
            WHERE x.id = ANY (ARRAY(SELECT unnest(extra) FROM per_group WHERE extra IS NOT NULL))
        ), counted AS (
            SELECT role, count(*) AS added, 0::bigint AS removed FROM missing GROUP BY role
            UNION ALL
            SELECT s.role, 0, sum(cardinality(p.extra))
            FROM per_group p JOIN \(links) s ON s.group_id = p.group_id
            WHERE p.extra IS NOT NULL
            GROUP BY s.role
        )
        SELECT role, sum(added)::bigint AS added, sum(removed)::bigint AS removed FROM counted GROUP BY role
        """
    }

    var groupPermissionsFull: String { fullDiff(
        "auth_group_permissions", insertColumns: "group_id, permission_id",
        insertValues: "want_group, want_permission", objectCondition: "",
        permissionCondition: "AND x.permission_id IN (SELECT id FROM auth_permission WHERE content_type_id = $1::integer)"
    ) }

    var objectPermissionsFull: String { fullDiff(
        "guardian_groupobjectpermission", insertColumns: "object_pk, content_type_id, group_id, permission_id",
        insertValues: "object_pk, $1::integer, want_group, want_permission",
        objectCondition: "AND x.content_type_id = $1::integer AND x.object_pk = s.project_id::text",
        permissionCondition: ""
    ) }

    var groupPermissions: String { diff(
        "auth_group_permissions", insertColumns: "group_id, permission_id",
        insertValues: "want_group, want_permission", objectCondition: "",
        permissionCondition: "AND x.permission_id IN (SELECT id FROM auth_permission WHERE content_type_id = $1::integer)"
    ) }

    /// Only a group's permissions on its own project are ours; a grant on another object was made by someone else.
    var objectPermissions: String { diff(
        "guardian_groupobjectpermission", insertColumns: "object_pk, content_type_id, group_id, permission_id",
        insertValues: "object_pk, $1::integer, want_group, want_permission",
        objectCondition: "AND x.content_type_id = $1::integer AND x.object_pk = s.project_id::text",
        // guardian stores the content type on the row (and assign_perm checks it matches the permission's).
        permissionCondition: ""
    ) }

    /// $1 roles. Roles no longer in the catalogue, with their remaining groups.
    var retiredRoles: String {
        "SELECT role, count(*) AS n FROM \(links) WHERE role <> ALL($1::text[]) GROUP BY role"
    }

    var recordVersion: String {
        """
        INSERT INTO \(versions)
            (version, catalogue, projects, groups_created, groups_renamed, permissions_added, permissions_removed,
             duration_ms, forced, groups_name_taken, groups_name_too_long)
        VALUES ($1, $2::jsonb, (SELECT count(*) FROM \(projects)), $3, $4, $5, $6, $7, $8, $9, $10)
        """
    }

    static let sessionSettings = """
        SELECT set_config('work_mem', '256MB', false), set_config('jit', 'off', false),
               set_config('enable_nestloop', 'off', false), set_config('enable_mergejoin', 'off', false)
        """

    /// $1 roles, $2/$3 the catalogue's (role, codename) pairs, $4 the number of distinct codenames, $5/$6 the
    /// content type's app label and model, then ``nameParameters``. The projects whose rows a per-project sync
    /// would change, found with the full sync's per-group counting: one pass over each permission table, hashed.
    /// Groups of roles no longer in the catalogue count as drifted while they still hold permissions (a sync removes
    /// them). A group whose name another group holds, or whose name is too long, is not drift (no sync can fix it)
    /// but is counted in `groups_name_taken` / `groups_name_too_long`, so that a daemon does not sync it again on
    /// every reconcile.
    var drift: String {
        """
        WITH ct AS (
            SELECT id FROM django_content_type WHERE app_label = $5 AND model = $6
        ), catalogue AS (
            SELECT w.role, ap.id AS permission_id
            FROM unnest($2::text[], $3::text[]) AS w(role, codename)
            JOIN auth_permission ap ON ap.content_type_id = (SELECT id FROM ct) AND ap.codename = w.codename
        ), expected AS (
            SELECT role, count(*) AS n FROM catalogue GROUP BY role
        ), unlinked AS (
            SELECT u.project_id, u.role, \(groupName("p", "u.role", first: 7)) AS wanted
            FROM (
                SELECT p.\(id)::bigint AS project_id, r.role FROM \(projects) p CROSS JOIN unnest($1::text[]) AS r(role)
                EXCEPT
                SELECT project_id, role FROM \(links)
            ) u JOIN \(projects) p ON p.\(id) = u.project_id
        ), misnamed AS (
            SELECT l.project_id, l.role, w.wanted
            FROM \(links) l JOIN \(projects) p ON p.\(id) = l.project_id JOIN auth_group g ON g.id = l.group_id
            CROSS JOIN LATERAL (SELECT \(groupName("p", "l.role", first: 7)) AS wanted) w
            WHERE g.name <> w.wanted
        ), blocked AS (
            -- What a sync cannot fix: the name is another group's (an unlinked group of that name would be adopted),
            -- or it does not fit auth_group.name.
            SELECT u.project_id, u.role, 'taken' AS reason FROM unlinked u JOIN auth_group g ON g.name = u.wanted
            WHERE g.id IN (SELECT group_id FROM \(links))
            UNION ALL
            SELECT m.project_id, m.role, 'taken' FROM misnamed m JOIN auth_group g ON g.name = m.wanted
            UNION ALL
            SELECT u.project_id, u.role, 'too_long' FROM unlinked u WHERE NOT \(fits("u.wanted", first: 7))
            UNION ALL
            SELECT m.project_id, m.role, 'too_long' FROM misnamed m WHERE NOT \(fits("m.wanted", first: 7))
        ), group_rows AS (
            SELECT x.group_id, count(c.permission_id) AS valid, count(*) - count(c.permission_id) AS extra
            FROM auth_group_permissions x
            JOIN \(links) s ON s.group_id = x.group_id
            LEFT JOIN catalogue c ON c.role = s.role AND c.permission_id = x.permission_id
            WHERE x.permission_id IN (SELECT id FROM auth_permission WHERE content_type_id = (SELECT id FROM ct))
            GROUP BY x.group_id
        ), object_rows AS (
            SELECT x.group_id, count(c.permission_id) AS valid, count(*) - count(c.permission_id) AS extra
            FROM guardian_groupobjectpermission x
            JOIN \(links) s ON s.group_id = x.group_id
            LEFT JOIN catalogue c ON c.role = s.role AND c.permission_id = x.permission_id
            WHERE x.content_type_id = (SELECT id FROM ct) AND x.object_pk = s.project_id::text
            GROUP BY x.group_id
        ), short AS (
            SELECT s.project_id
            FROM \(links) s
            JOIN \(projects) p ON p.\(id) = s.project_id
            LEFT JOIN expected e ON e.role = s.role
            LEFT JOIN group_rows gr ON gr.group_id = s.group_id
            LEFT JOIN object_rows orow ON orow.group_id = s.group_id
            WHERE coalesce(gr.valid, 0) < coalesce(e.n, 0) OR coalesce(gr.extra, 0) > 0
               OR coalesce(orow.valid, 0) < coalesce(e.n, 0) OR coalesce(orow.extra, 0) > 0
        )
        SELECT array(
                   SELECT project_id FROM (
                       SELECT project_id, role FROM unlinked UNION SELECT project_id, role FROM misnamed
                       EXCEPT SELECT project_id, role FROM blocked
                   ) fixable
                   UNION SELECT project_id FROM short ORDER BY 1
               )::text AS projects,
               (SELECT count(*) FROM blocked WHERE reason = 'taken') AS groups_name_taken,
               (SELECT count(*) FROM blocked WHERE reason = 'too_long') AS groups_name_too_long,
               (SELECT count(*) FROM \(links) l
                WHERE NOT EXISTS (SELECT 1 FROM \(projects) p WHERE p.\(id) = l.project_id)) AS orphaned_links,
               (SELECT count(DISTINCT permission_id) FROM catalogue) < $4::integer AS permissions_missing
        """
    }

    /// Parses a bigint[] in PostgreSQL's text form, `{1,2,3}`.
    static func parseBigintArray(_ text: String) -> [Int64] {
        text.dropFirst().dropLast().split(separator: ",").compactMap { Int64($0) }
    }

    var projectCount: String {
        "SELECT count(*) AS n FROM \(projects) WHERE ($1::bigint[] IS NULL OR \(id) = ANY($1::bigint[]))"
    }
}
