"""The Django project's models (Django's own, guardian's, users.User, main.Project) against the schema migrator ships."""

import re

from django.apps import apps
from django.contrib.auth.management import _get_all_permissions, create_permissions
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from main.models import Project

from . import support
from .support import ALL_CODENAMES, CATALOGUE, CompatTestCase

# migrator keeps its own tables in its schema "migrator"; it adds none to public.
MIGRATOR_TABLES = frozenset()


def django_columns(model):
    """column → (type as PostgreSQL formats it, NOT NULL, identity) for the table Django expects of `model`."""
    columns = {}
    for field in model._meta.local_concrete_fields:
        db_type = field.db_type(connection)
        db_type = re.sub(r"^varchar\((\d+)\)$", r"character varying(\1)", db_type)
        identity = field.primary_key and field.get_internal_type() in ("AutoField", "BigAutoField", "SmallAutoField")
        columns[field.column] = (db_type, not field.null, identity)
    return columns


def table_columns(dbname, table):
    rows = support.query(
        dbname,
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity <> ''
        FROM pg_attribute a
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (table,),
    )
    return {name: (type_, notnull, identity) for name, type_, notnull, identity in rows}


class SchemaTests(CompatTestCase):
    database_label = "schema"

    @classmethod
    def populate(cls):
        support.run_migrator(cls.db)
        support.use_database(cls.db)

    def test_every_model_matches_its_migrated_table(self):
        """Every table Django reads (models and many-to-many link tables) exists with exactly the columns, types,
        NOT NULLs and identity ids that Django's own `migrate` would create with these settings (its migration
        state), and with exactly the columns the running app's models read and write."""
        runtime = {m._meta.db_table: m for m in apps.get_models(include_auto_created=True)}
        self.assertIn("users_user_groups", runtime)
        # The migration state: the models as `manage.py migrate` would build the tables. It differs from the
        # runtime models in one known place: auth's auto-created link tables get DEFAULT_AUTO_FIELD (bigint) ids
        # there, while the runtime model takes auth's AutoField; Django reads and writes either.
        state_models = MigrationLoader(None, ignore_no_migrations=True).project_state().apps.get_models(include_auto_created=True)
        as_migrated = {**runtime, **{m._meta.db_table: m for m in state_models}}
        mismatches = []
        existing = support.tables(self.db)
        for table, model in sorted(as_migrated.items()):
            if table not in existing:
                mismatches.append(f"{model._meta.label}: table {table} does not exist")
                continue
            expected, actual = django_columns(model), table_columns(self.db, table)
            for column in sorted(expected.keys() | actual.keys()):
                if expected.get(column) != actual.get(column):
                    mismatches.append(
                        f"{table}.{column}: Django's migrate creates (type, not null, identity) {expected.get(column)}, "
                        f"the database has {actual.get(column)}"
                    )
            read = {name: notnull for name, (_, notnull, _) in django_columns(runtime[table]).items()}
            have = {name: notnull for name, (_, notnull, _) in actual.items()}
            if read != have:
                mismatches.append(f"{table}: the runtime model's (column, not null) {read}, the table's {have}")
        for table in sorted(existing - as_migrated.keys() - MIGRATOR_TABLES):
            mismatches.append(f"{table}: a table migrator ships that no Django model reads")
        self.assertNoMismatches(mismatches, "models against migrated tables")

    def test_project_permission_rows_have_djangos_names(self):
        """One auth_permission row per catalogue codename for main.project, named as Django would name it."""
        ct = ContentType.objects.get_for_model(Project)
        self.assertEqual((ct.app_label, ct.model), ("main", "project"))
        rows = list(Permission.objects.filter(content_type=ct).values_list("codename", "name"))
        self.assertEqual(len(rows), len({codename for codename, _ in rows}), "duplicate codenames")
        self.assertSetEqualExplained({codename for codename, _ in rows}, ALL_CODENAMES, "main.project permissions")
        # Django's own names: Meta.permissions (the catalogue's project_permissions) and the default permissions
        # (add/change/delete/view_project) that the catalogue's roles use.
        django_names = dict(_get_all_permissions(Project._meta))
        self.assertSetEqualExplained(
            {(codename, name) for codename, name in rows if codename in django_names},
            {(codename, name) for codename, name in django_names.items() if codename in dict(rows)},
            "(codename, name) of the rows Django also defines",
        )
        declared = {p["codename"]: p["name"] for p in CATALOGUE["project_permissions"]}
        self.assertSetEqualExplained(
            {(c, n) for c, n in rows if c in declared}, declared.items(), "(codename, name) of the catalogue's declared permissions"
        )

    def test_djangos_post_migrate_permissions_coexist(self):
        """Django's post_migrate handler (create_permissions, as `manage.py migrate` runs it in the app) only adds rows
        next to migrator's, and migrator keeps the rows either made (update-roles afterwards). In a database of its
        own, so that the other tests see migrator's rows alone."""
        db = support.create_database("postmigrate")
        try:
            support.run_migrator(db)
            support.use_database(db)
            before = set(Permission.objects.values_list("id", "content_type__app_label", "codename", "name"))
            for app_config in apps.get_app_configs():
                create_permissions(app_config, verbosity=0)
            after_django = set(Permission.objects.values_list("id", "content_type__app_label", "codename", "name"))
            self.assertSetEqualExplained(before - after_django, set(), "rows Django's create_permissions changed")
            added = {(app, codename) for _, app, codename, _ in after_django - before}
            self.assertIn(("main", "add_project"), added)
            self.assertIn(("main", "change_project"), added)
            support.run_migrator(db, command="update-roles")
            after_migrator = set(Permission.objects.values_list("id", "content_type__app_label", "codename", "name"))
            self.assertSetEqualExplained(after_migrator, after_django, "permission rows after migrator update-roles")
        finally:
            support.use_database(self.db)
            support.drop_database(db)
