/// The statements of a sync. Each is set-based: its cost grows with rows, never its number with projects.
///
/// Every value, project names included, arrives as a parameter. A project filter of NULL means every project;
/// `$everyGroup = false` limits the "complete set" parts to groups created or adopted in this transaction (the
/// temporary table), which is what makes an incremental sync write only what changed.
enum SyncSQL {
    static let latestVersion = """
        SELECT version, catalogue::text AS catalogue FROM role_schema_version ORDER BY id DESC LIMIT 1
        """

    static let freshGroupsTable = """
        CREATE TEMPORARY TABLE migrator_fresh_groups (group_id integer PRIMARY KEY) ON COMMIT DROP
        """

    /// The content type of projects, created when a database has none yet.
    static let contentType = """
        WITH existing AS (
            SELECT id FROM django_content_type WHERE app_label = 'main' AND model = 'project'
        ), inserted AS (
            INSERT INTO django_content_type (app_label, model)
            SELECT 'main', 'project' WHERE NOT EXISTS (SELECT 1 FROM existing)
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

    /// $1 project filter. A renamed project's groups follow its name; a name already taken by another group is left.
    static let renameGroups = """
        WITH expected AS (
            SELECT l.group_id, l.role, p.id::text || '_' || p.name || '_' || l.role AS name
            FROM project_role_group l JOIN main_project p ON p.id = l.project_id
            WHERE ($1::bigint[] IS NULL OR l.project_id = ANY($1::bigint[]))
        ), renamed AS (
            UPDATE auth_group g SET name = e.name
            FROM expected e
            WHERE g.id = e.group_id AND g.name <> e.name
              AND NOT EXISTS (SELECT 1 FROM auth_group taken WHERE taken.name = e.name)
            RETURNING e.role
        )
        SELECT role, count(*) AS n FROM renamed GROUP BY role
        """

    /// $1 roles, $2 project filter. A group that already has exactly the expected name and no link (a database the
    /// Django app filled) is linked instead of duplicated.
    static let adoptGroups = """
        WITH adopted AS (
            INSERT INTO project_role_group (project_id, role, group_id)
            SELECT p.id, r.role, g.id
            FROM main_project p
            CROSS JOIN unnest($1::text[]) AS r(role)
            JOIN auth_group g ON g.name = p.id::text || '_' || p.name || '_' || r.role
            WHERE ($2::bigint[] IS NULL OR p.id = ANY($2::bigint[]))
              AND NOT EXISTS (SELECT 1 FROM project_role_group l WHERE l.project_id = p.id AND l.role = r.role)
              AND NOT EXISTS (SELECT 1 FROM project_role_group l WHERE l.group_id = g.id)
            ON CONFLICT DO NOTHING
            RETURNING role, group_id
        ), fresh AS (
            INSERT INTO migrator_fresh_groups (group_id) SELECT group_id FROM adopted ON CONFLICT DO NOTHING
        )
        SELECT role, count(*) AS n FROM adopted GROUP BY role
        """

    /// $1 roles, $2 project filter. Creates and links the groups projects lack.
    static let createGroups = """
        WITH missing AS (
            SELECT p.id AS project_id, r.role, p.id::text || '_' || p.name || '_' || r.role AS name
            FROM main_project p
            CROSS JOIN unnest($1::text[]) AS r(role)
            WHERE ($2::bigint[] IS NULL OR p.id = ANY($2::bigint[]))
              AND NOT EXISTS (SELECT 1 FROM project_role_group l WHERE l.project_id = p.id AND l.role = r.role)
        ), created AS (
            INSERT INTO auth_group (name) SELECT name FROM missing ORDER BY name
            ON CONFLICT (name) DO NOTHING
            RETURNING id, name
        ), linked AS (
            INSERT INTO project_role_group (project_id, role, group_id)
            SELECT m.project_id, m.role, c.id FROM missing m JOIN created c ON c.name = m.name
            RETURNING role, group_id
        ), fresh AS (
            INSERT INTO migrator_fresh_groups (group_id) SELECT group_id FROM linked
        )
        SELECT role, count(*) AS n FROM linked GROUP BY role
        """

    /// The (group, permission, project) triples wanted: every catalogue pair ($2 roles, $3 codenames) for groups in
    /// scope (all when $5 is true, else only fresh ones), plus the pairs added since the stored catalogue ($6, $7) for
    /// every group. $1 content type, $4 project filter.
    private static let wanted = """
        wanted AS (
            SELECT l.role, l.group_id, l.project_id, ap.id AS permission_id
            FROM project_role_group l
            JOIN unnest($2::text[], $3::text[]) AS w(role, codename) ON w.role = l.role
            JOIN auth_permission ap ON ap.content_type_id = $1::integer AND ap.codename = w.codename
            WHERE ($4::bigint[] IS NULL OR l.project_id = ANY($4::bigint[]))
              AND ($5::boolean OR l.group_id IN (SELECT group_id FROM migrator_fresh_groups))
            UNION ALL
            SELECT l.role, l.group_id, l.project_id, ap.id
            FROM project_role_group l
            JOIN unnest($6::text[], $7::text[]) AS w(role, codename) ON w.role = l.role
            JOIN auth_permission ap ON ap.content_type_id = $1::integer AND ap.codename = w.codename
            WHERE ($4::bigint[] IS NULL OR l.project_id = ANY($4::bigint[]))
        )
        """

    static let addGroupPermissions = """
        WITH \(wanted), inserted AS (
            INSERT INTO auth_group_permissions (group_id, permission_id)
            SELECT w.group_id, w.permission_id FROM wanted w
            WHERE NOT EXISTS (
                SELECT 1 FROM auth_group_permissions x WHERE x.group_id = w.group_id AND x.permission_id = w.permission_id
            )
            ON CONFLICT (group_id, permission_id) DO NOTHING
            RETURNING group_id
        )
        SELECT l.role, count(*) AS n FROM inserted i JOIN project_role_group l ON l.group_id = i.group_id GROUP BY l.role
        """

    static let addObjectPermissions = """
        WITH \(wanted), inserted AS (
            INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id)
            SELECT w.project_id::text, $1::integer, w.group_id, w.permission_id FROM wanted w
            WHERE NOT EXISTS (
                SELECT 1 FROM guardian_groupobjectpermission x
                WHERE x.group_id = w.group_id AND x.permission_id = w.permission_id AND x.object_pk = w.project_id::text
            )
            ON CONFLICT (group_id, permission_id, object_pk) DO NOTHING
            RETURNING group_id
        )
        SELECT l.role, count(*) AS n FROM inserted i JOIN project_role_group l ON l.group_id = i.group_id GROUP BY l.role
        """

    /// Rows of our groups, for permissions of our content type, that the catalogue ($2, $3) does not grant. In scope:
    /// every group when $5 is true; else fresh groups and the pairs removed since the stored catalogue ($6, $7).
    private static let unwantedCondition = """
        ($4::bigint[] IS NULL OR l.project_id = ANY($4::bigint[]))
          AND NOT EXISTS (
              SELECT 1 FROM unnest($2::text[], $3::text[]) AS w(role, codename)
              WHERE w.role = l.role AND w.codename = ap.codename
          )
          AND ($5::boolean
               OR l.group_id IN (SELECT group_id FROM migrator_fresh_groups)
               OR EXISTS (
                   SELECT 1 FROM unnest($6::text[], $7::text[]) AS r(role, codename)
                   WHERE r.role = l.role AND r.codename = ap.codename
               ))
        """

    static let removeGroupPermissions = """
        WITH removed AS (
            DELETE FROM auth_group_permissions x
            USING project_role_group l, auth_permission ap
            WHERE x.group_id = l.group_id AND ap.id = x.permission_id AND ap.content_type_id = $1::integer
              AND \(unwantedCondition)
            RETURNING l.role
        )
        SELECT role, count(*) AS n FROM removed GROUP BY role
        """

    /// Only the group's permissions on its own project are ours; a grant on another object was made by someone else.
    static let removeObjectPermissions = """
        WITH removed AS (
            DELETE FROM guardian_groupobjectpermission x
            USING project_role_group l, auth_permission ap
            WHERE x.group_id = l.group_id AND x.content_type_id = $1::integer AND x.object_pk = l.project_id::text
              AND ap.id = x.permission_id AND ap.content_type_id = $1::integer
              AND \(unwantedCondition)
            RETURNING l.role
        )
        SELECT role, count(*) AS n FROM removed GROUP BY role
        """

    /// $1 roles. Roles no longer in the catalogue, with their remaining groups.
    static let retiredRoles = """
        SELECT role, count(*) AS n FROM project_role_group WHERE role <> ALL($1::text[]) GROUP BY role
        """

    static let recordVersion = """
        INSERT INTO role_schema_version
            (version, catalogue, projects, groups_created, groups_renamed, permissions_added, permissions_removed,
             duration_ms, forced)
        VALUES ($1, $2::jsonb, (SELECT count(*) FROM main_project), $3, $4, $5, $6, $7, $8)
        """

    static let projectCount = "SELECT count(*) AS n FROM main_project WHERE ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))"
}
