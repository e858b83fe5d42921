"""Databases, the migrator binary and the catalogue for the compatibility tests.

Each test class gets a database of its own (CREATE DATABASE on MIGRATOR_TEST_DATABASE_URL, dropped at the end; keep
it with DJANGO_COMPAT_KEEP_DATABASES=1), migrates it with the real binary and points Django's connection at it.
Connection strings are never printed: they may hold a password.
"""

import os
import subprocess
from pathlib import Path

import psycopg

import djangotest
from main.models import CATALOGUE

REPOSITORY = Path(__file__).resolve().parents[3]
ADMIN_CONNINFO = djangotest.ADMIN_CONNINFO
BINARY = os.environ.get("MIGRATOR_BINARY") or str(REPOSITORY / ".build" / "debug" / "migrator")
MIGRATIONS = os.environ.get("MIGRATOR_MIGRATIONS") or str(REPOSITORY / "Migrations")
PASSWORD = djangotest.PASSWORD
conninfo, drop_database, use_database = djangotest.conninfo, djangotest.drop_database, djangotest.use_database

# The default catalogue (the reference app's): roles → codenames, and every codename it declares or a role uses.
ROLES = {role["name"]: frozenset(role["permissions"]) for role in CATALOGUE["roles"]}
ALL_CODENAMES = frozenset(p["codename"] for p in CATALOGUE["project_permissions"]).union(*ROLES.values())
# Codenames every role grants (view_project among them): "which projects can this user see".
COMMON_CODENAMES = frozenset.intersection(*ROLES.values())


def create_database(label):
    return djangotest.create_database("djcompat", label)


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


class CompatTestCase(djangotest.DatabaseTestCase):
    """A database of the class's own (see djangotest.DatabaseTestCase), filled by `populate`."""

    database_prefix = "djcompat"

    def assertSetEqualExplained(self, actual, expected, what):
        actual, expected = set(actual), set(expected)
        if actual != expected:
            self.fail(f"{what}: {describe_difference(actual, expected)}")

    def assertNoMismatches(self, mismatches, what):
        if mismatches:
            shown = "\n  ".join(mismatches[:40])
            more = f"\n  … and {len(mismatches) - 40} more" if len(mismatches) > 40 else ""
            self.fail(f"{what}: {len(mismatches)} mismatches\n  {shown}{more}")
