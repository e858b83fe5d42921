"""Databases, Django's own migrate, the migrator binary and a running sidecar for the owned-schema tests.

Each test class gets a database of its own (CREATE DATABASE on MIGRATOR_TEST_DATABASE_URL, dropped afterwards;
DJANGO_COMPAT_KEEP_DATABASES=1 keeps it), whose every table Django's `migrate` creates. migrator is run from an empty
folder with no --migrations, so the tests prove it needs no migrations folder. Connection strings are never printed,
and every output of migrator is checked for the password.
"""

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg
from django.core.management import call_command

import djangotest
from main.models import CATALOGUE

BINARY = os.environ["MIGRATOR_BINARY"]
ROLES = {role["name"]: frozenset(role["permissions"]) for role in CATALOGUE["roles"]}
PASSWORD = djangotest.PASSWORD
conninfo, check_no_password = djangotest.conninfo, djangotest.check_no_password
drop_database, use_database = djangotest.drop_database, djangotest.use_database


def environment(dbname):
    """The caller's environment without MIGRATOR_* settings (they would change what is tested), and the database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIGRATOR_") and not key.startswith("PG")}
    env["DATABASE_URL"] = conninfo(dbname)
    return env


def run_migrator(dbname, *arguments, expect=0):
    """Runs the binary from an empty folder (no ./Migrations); fails with migrator's output on another exit code."""
    with tempfile.TemporaryDirectory() as empty:
        completed = subprocess.run(
            [BINARY, *arguments], env=environment(dbname), cwd=empty, capture_output=True, text=True, timeout=300
        )
    output = f"--- stdout\n{completed.stdout}--- stderr\n{completed.stderr}"
    check_no_password(output, f"`migrator {' '.join(arguments)}`")
    if completed.returncode != expect:
        raise AssertionError(f"`migrator {' '.join(arguments)}` exited {completed.returncode}, not {expect}\n{output}")
    return completed


def query(dbname, statement, parameters=()):
    with psycopg.connect(conninfo(dbname)) as connection:
        return connection.execute(statement, parameters).fetchall()


def public_objects(dbname):
    """Every table, view, sequence, index, function and trigger in schema public, by name."""
    return {
        *(f"{kind} {name}" for kind, name in query(
            dbname, "SELECT relkind::text, relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )),
        *(f"function {name}" for (name,) in query(dbname, "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")),
        *(f"trigger {name}" for (name,) in query(
            dbname, "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal"
        )),
    }


def create_database(label):
    return djangotest.create_database("djowned", label)


def django_migrate():
    """Django's own `manage.py migrate`: every table of this project, and its post_migrate permissions."""
    call_command("migrate", interactive=False, verbosity=0)


def django_checks():
    """What a team runs in CI: nothing unapplied, no model change without a migration, no system check error."""
    call_command("migrate", check=True, verbosity=0)
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)
    call_command("check", fail_level="WARNING", verbosity=0)


class Sidecar:
    """`migrator serve --no-migrate` on a free port, from an empty folder; stopped with SIGTERM."""

    def __init__(self, dbname, *arguments):
        self.folder = tempfile.TemporaryDirectory()
        self.process = subprocess.Popen(
            [BINARY, "serve", "--no-migrate", "--http-address", "127.0.0.1:0", *arguments],
            env=environment(dbname), cwd=self.folder.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr = []
        self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while self.port is None and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise AssertionError("serve did not report its HTTP port\n" + self.transcript())

    def _read(self):
        for line in self.process.stderr:
            self.stderr.append(line)
            match = re.search(r"http\.port=(\d+)", line)
            if match and self.port is None:
                self.port = int(match.group(1))

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_ready(self, timeout=30):
        return wait_for(lambda: self.get("/readyz")[0] == 200, timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        check_no_password(self.transcript(), "serve")
        self.folder.cleanup()
        return code

    def transcript(self):
        text = "--- serve stderr\n" + "".join(self.stderr)
        return text.replace(PASSWORD, "********") if PASSWORD else text


def wait_for(condition, timeout):
    """Polls every 20 ms; the time it took, or None when the deadline passed."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


class OwnedTestCase(djangotest.DatabaseTestCase):
    """A database of the class's own, whose every table Django's migrate makes before `populate` fills it."""

    database_prefix = "djowned"

    @classmethod
    def prepare_database(cls):
        use_database(cls.db)
        django_migrate()
