-- migrator's link from (project, role) to the auth_group that holds that role; deleting a project deletes its groups.

CREATE TABLE project_role_group (
    project_id bigint NOT NULL REFERENCES main_project (id) ON DELETE CASCADE,
    role varchar(150) NOT NULL,
    group_id integer NOT NULL REFERENCES auth_group (id) ON DELETE CASCADE,
    PRIMARY KEY (project_id, role),
    UNIQUE (group_id)
);

-- Django's FKs to auth_group have no ON DELETE action, so the rows that point at
-- a project's groups are removed first, then the groups themselves (which
-- cascades to the project_role_group rows). BEFORE DELETE so the links are still
-- there to be read; runs once per deleted project row.
CREATE FUNCTION project_role_group_delete_groups() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    gids integer[];
BEGIN
    SELECT array_agg(group_id) INTO gids
    FROM project_role_group
    WHERE project_id = OLD.id;

    IF gids IS NOT NULL THEN
        DELETE FROM auth_group_permissions WHERE group_id = ANY (gids);
        DELETE FROM guardian_groupobjectpermission WHERE group_id = ANY (gids);
        DELETE FROM users_user_groups WHERE group_id = ANY (gids);
        DELETE FROM auth_group WHERE id = ANY (gids);
    END IF;

    RETURN OLD;
END;
$$;

CREATE TRIGGER main_project_delete_role_groups
    BEFORE DELETE ON main_project
    FOR EACH ROW
    EXECUTE FUNCTION project_role_group_delete_groups();
