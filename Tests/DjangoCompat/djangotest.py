"""What both Django projects of these tests share: the database settings, a database per test class, the password
check and the test runner. Each project runs in a process of its own (one settings module per process); both put
this folder on sys.path.
"""

import os
import secrets
import sys
import time
import unittest

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_CONNINFO = os.environ["MIGRATOR_TEST_DATABASE_URL"]
# No output of migrator may carry the password: every run is checked for it, as the Swift end-to-end runs are.
PASSWORD = conninfo_to_dict(ADMIN_CONNINFO).get("password") or ""

_STANDARD = {"dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT"}


def database_settings():
    """Django's DATABASES["default"] for MIGRATOR_TEST_DATABASE_URL (a URL or key=value string)."""
    parts = conninfo_to_dict(ADMIN_CONNINFO)
    return {
        "ENGINE": "django.db.backends.postgresql",
        **{key: str(parts[name]) for name, key in _STANDARD.items() if name in parts},
        # Anything else of the connection string (sslmode, options, ...) goes to psycopg as it is.
        "OPTIONS": {name: value for name, value in parts.items() if name not in _STANDARD},
        "CONN_MAX_AGE": 0,
    }


def conninfo(dbname):
    """The admin connection string with another database name."""
    return make_conninfo(ADMIN_CONNINFO, dbname=dbname)


def check_no_password(text, what):
    if PASSWORD and PASSWORD in text:
        raise AssertionError(f"{what} printed the database password\n" + text.replace(PASSWORD, "********"))


def create_database(prefix, label):
    name = f"{prefix}_{label}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(sql.Identifier(name)))
    return name


def drop_database(name):
    from django.db import connections

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
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections

    connections.close_all()
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name
    ContentType.objects.clear_cache()


def run_tests(label, project_folder, tests_folder, names):
    """Runs the named tests, or every test_*.py in `tests_folder`; ends with `LABEL: N passed, N failed, N skipped`."""
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromNames(names) if names else loader.discover(
        str(tests_folder), pattern="test_*.py", top_level_dir=str(project_folder)
    )
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    problems = [test for test, _ in result.failures + result.errors] + list(result.unexpectedSuccesses)
    failed = len(problems)
    # A failing setUpClass is reported as an error of its own, not as one of the tests run.
    failed_tests = sum(1 for test in problems if isinstance(test, unittest.TestCase))
    passed = result.testsRun - failed_tests - len(result.skipped)
    print(f"{label} tests took {time.monotonic() - started:.1f}s")
    print(f"{label}: {passed} passed, {failed} failed, {len(result.skipped)} skipped")
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


class DatabaseTestCase(unittest.TestCase):
    """Each test class gets a database of its own, named after `database_prefix` and `database_label`, filled once
    by `populate` and dropped after the class, also when `populate` fails."""

    maxDiff = None
    database_prefix = None
    database_label = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db = create_database(cls.database_prefix, cls.database_label)
        try:
            cls.prepare_database()
            cls.populate()
        except BaseException:
            drop_database(cls.db)
            raise

    @classmethod
    def tearDownClass(cls):
        drop_database(cls.db)
        super().tearDownClass()

    @classmethod
    def prepare_database(cls):
        """What every class of a project does to its new database before `populate`; nothing by default."""

    @classmethod
    def populate(cls):
        raise NotImplementedError(f"{cls.__name__} must say how its database is filled")
