"""Databases, the migrator binary and the catalogue for the compatibility tests.

Each test class gets a database of its own (CREATE DATABASE on MIGRATOR_TEST_DATABASE_URL, dropped at the end; keep
it with DJANGO_COMPAT_KEEP_DATABASES=1), migrates it with the real binary and points Django's connection at it.
Connection strings are never printed: they may hold a password.
"""

import os
import secrets
import subprocess
import unittest
from pathlib import Path

import psycopg
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from main.models import CATALOGUE

REPOSITORY = Path(__file__).resolve().parents[3]
ADMIN_CONNINFO = os.environ["MIGRATOR_TEST_DATABASE_URL"]
BINARY = os.environ.get("MIGRATOR_BINARY") or str(REPOSITORY / ".build" / "debug" / "migrator")
MIGRATIONS = os.environ.get("MIGRATOR_MIGRATIONS") or str(REPOSITORY / "Migrations")
# No output of migrator may carry the password: every run here is checked for it, as the Swift end-to-end runs are.
PASSWORD = conninfo_to_dict(ADMIN_CONNINFO).get("password") or ""

# The default catalogue (the reference app's): roles → codenames, and every codename it declares or a role uses.
ROLES = {role["name"]: frozenset(role["permissions"]) for role in CATALOGUE["roles"]}
ALL_CODENAMES = frozenset(p["codename"] for p in CATALOGUE["project_permissions"]).union(*ROLES.values())
# Codenames every role grants (view_project among them): "which projects can this user see".
COMMON_CODENAMES = frozenset.intersection(*ROLES.values())


def conninfo(dbname):
    """The admin connection string with another database name."""
    return make_conninfo(ADMIN_CONNINFO, dbname=dbname)


def create_database(label):
    name = f"djcompat_{label}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(name)))
    return name


def drop_database(name):
    connections.close_all()
    if os.environ.get("DJANGO_COMPAT_KEEP_DATABASES") == "1":
        print(f"\nkept database {name}")
        return
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
        if admin.info.server_version >= 130000:  # WITH (FORCE) ends sessions a failed test left behind
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        else:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def use_database(name):
    """Points Django's default connection at `name`; content type ids differ between databases, so its cache goes."""
    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name
    ContentType.objects.clear_cache()


def run_migrator(dbname, *arguments, command="migrate"):
    """Runs the real binary against `dbname`; fails the calling test with migrator's own output when it fails."""
    # MIGRATOR_* settings of the caller (MIGRATOR_ROLES, MIGRATOR_SKIP_ROLES, ...) would change what is tested.
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MIGRATOR_")}
    environment["DATABASE_URL"] = conninfo(dbname)
    args = [BINARY, command, "--migrations", MIGRATIONS, *arguments]
    completed = subprocess.run(args, env=environment, capture_output=True, text=True, timeout=300)
    output = f"--- stdout\n{completed.stdout}--- stderr\n{completed.stderr}"
    if PASSWORD and PASSWORD in output:
        raise AssertionError(
            f"`migrator {command} {' '.join(arguments)}` printed the database password\n" + output.replace(PASSWORD, "********")
        )
    if completed.returncode != 0:
        raise AssertionError(f"`migrator {command} {' '.join(arguments)}` exited {completed.returncode}\n{output}")
    return completed


def query(dbname, statement, parameters=()):
    """Rows of one statement, read with psycopg directly (not through Django), for snapshots of the raw tables."""
    with psycopg.connect(conninfo(dbname)) as connection:
        return connection.execute(statement, parameters).fetchall()


def tables(dbname):
    return {row[0] for row in query(dbname, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def describe_difference(actual, expected):
    actual, expected = set(actual), set(expected)
    return f"missing {sorted(expected - actual, key=repr)}, unexpected {sorted(actual - expected, key=repr)}"


class CompatTestCase(unittest.TestCase):
    """Each test class gets a database of its own, named after `database_label`, made and filled once by
    `populate` and dropped after the class, also when `populate` fails."""

    maxDiff = None
    database_label = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = create_database(cls.database_label)
        try:
            cls.populate()
        except BaseException:
            drop_database(cls.db)
            raise

    @classmethod
    def tearDownClass(cls):
        drop_database(cls.db)
        super().tearDownClass()

    @classmethod
    def populate(cls):
        raise NotImplementedError(f"{cls.__name__} must say how its database is filled")

    def assertSetEqualExplained(self, actual, expected, what):
        actual, expected = set(actual), set(expected)
        if actual != expected:
            self.fail(f"{what}: {describe_difference(actual, expected)}")

    def assertNoMismatches(self, mismatches, what):
        if mismatches:
            shown = "\n  ".join(mismatches[:40])
            more = f"\n  … and {len(mismatches) - 40} more" if len(mismatches) > 40 else ""
            self.fail(f"{what}: {len(mismatches)} mismatches\n  {shown}{more}")
