-- NOTIFY migrator_projects with the project id when a project is created, renamed or deleted.

CREATE FUNCTION main_project_notify_migrator() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('migrator_projects', OLD.id::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('migrator_projects', NEW.id::text);
    RETURN NEW;
END;
$$;

CREATE TRIGGER main_project_notify_insert
    AFTER INSERT ON main_project
    FOR EACH ROW
    EXECUTE FUNCTION main_project_notify_migrator();

CREATE TRIGGER main_project_notify_rename
    AFTER UPDATE OF name ON main_project
    FOR EACH ROW
    WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION main_project_notify_migrator();

CREATE TRIGGER main_project_notify_delete
    AFTER DELETE ON main_project
    FOR EACH ROW
    EXECUTE FUNCTION main_project_notify_migrator();
