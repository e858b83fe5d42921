"""Databases, Django's own migrate, the migrator binary and a running sidecar for the owned-schema tests.

Each test class gets a database of its own (CREATE DATABASE on MIGRATOR_TEST_DATABASE_URL, dropped afterwards;
DJANGO_COMPAT_KEEP_DATABASES=1 keeps it), whose every table Django's `migrate` creates. migrator is run from an empty
folder with no --migrations, so the tests prove it needs no migrations folder. Connection strings are never printed,
and every output of migrator is checked for the password.
"""

import io
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import psycopg
from django.core.management import CommandError, call_command

import djangotest
from main.models import CATALOGUE

REPOSITORY = Path(__file__).resolve().parents[4]
BINARY = os.environ.get("MIGRATOR_BINARY") or str(REPOSITORY / ".build" / "debug" / "migrator")
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
    """Every table, view, sequence, index, type, function and trigger in schema public, by name (a function with
    its argument types, a trigger with its table): what `manage.py migrate` made, to compare before and after."""
    return {
        *(f"relation({kind}) {name}" for kind, name in query(
            dbname, "SELECT relkind::text, relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )),
        *(f"type {name}" for (name,) in query(
            dbname, "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typrelid = 0"
        )),
        *(f"function {name}" for (name,) in query(
            dbname, "SELECT oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        )),
        *(f"trigger {name} on {table}" for name, table in query(
            dbname, "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal"
        )),
    }


def is_migrator_trigger(item):
    """Whether an item of public_objects is one of the triggers migrator puts on the app's tables: migrator_% on the
    project table, and migrator_group_deleted on auth_group."""
    return bool(re.fullmatch(r"trigger migrator_\S+ on main_project", item)) or item == "trigger migrator_group_deleted on auth_group"


def schema_exists(dbname, name):
    return query(dbname, "SELECT to_regnamespace(%s) IS NOT NULL", (name,))[0][0]


def mentions_id(value, project_id):
    """Whether a JSON value holds the id: as a number (not a boolean), or as a string token (e.g. a group name
    `4_…` or "4")."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == project_id
    if isinstance(value, str):
        return re.search(rf"(?<![0-9]){project_id}(?![0-9])", value) is not None
    if isinstance(value, dict):
        return any(mentions_id(item, project_id) for item in value.values())
    if isinstance(value, list):
        return any(mentions_id(item, project_id) for item in value)
    return False


def parse_json_report(completed, arguments):
    """stdout of a `--json` run as JSON; fails with migrator's output when it is not JSON."""
    try:
        return json.loads(completed.stdout)
    except ValueError as error:
        raise AssertionError(
            f"`migrator {' '.join(arguments)}` did not print JSON on stdout ({error})\n"
            f"--- stdout\n{completed.stdout}--- stderr\n{completed.stderr}"
        ) from None


def create_database(label):
    return djangotest.create_database("djowned", label)


def django_migrate():
    """Django's own `manage.py migrate`: every table of this project, and its post_migrate permissions."""
    call_command("migrate", interactive=False, verbosity=0)


def django_checks():
    """What a team runs in CI: nothing unapplied (`migrate --check`), no model change without a migration
    (`makemigrations --check --dry-run`), no system check problem (`check`). migrate --check and makemigrations --check
    end with SystemExit(1) when they find something; each failure names its command and shows its output."""
    commands = [
        ("migrate --check", ("migrate",), {"check": True}),
        ("makemigrations --check --dry-run", ("makemigrations",), {"check": True, "dry_run": True}),
        ("check --fail-level WARNING", ("check",), {"fail_level": "WARNING"}),
    ]
    for label, arguments, options in commands:
        output = io.StringIO()
        try:
            with redirect_stdout(output), redirect_stderr(output):
                call_command(*arguments, verbosity=1, stdout=output, stderr=output, **options)
        except (SystemExit, CommandError) as error:
            raise AssertionError(f"`manage.py {label}` failed after migrator ran ({error!r})\n{output.getvalue()}") from None


class Sidecar:
    """`migrator serve --no-migrate` on a free port, from an empty folder; stopped with SIGTERM.

    Both of its outputs are read all along (a full pipe would stall it), kept for failure messages and checked for
    the password when it stops.
    """

    def __init__(self, dbname, *arguments):
        self.folder = tempfile.TemporaryDirectory()
        self.process = subprocess.Popen(
            [BINARY, "serve", "--no-migrate", "--http-address", "127.0.0.1:0", *arguments],
            env=environment(dbname), cwd=self.folder.name, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr = []
        self.stdout = []
        self.port = None
        self.returncode = None
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=lambda: self.stdout.extend(self.process.stdout), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + 20
        while self.port is None and time.monotonic() < deadline and self.process.poll() is None:
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise AssertionError("serve did not report its HTTP port\n" + self.transcript())

    def _read(self):
        for line in self.process.stderr:
            self.stderr.append(line)
            match = re.search(r"http\.port\D{0,3}(\d+)", line)
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
        """SIGTERM, then its exit code (SIGKILL after 15 s: then the code is -9). Once; later calls return the code."""
        if self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
            self.stderr.append("(test: serve did not stop within 15 s of SIGTERM and was killed)\n")
        for reader in self._readers:
            reader.join(timeout=5)
        self.folder.cleanup()
        check_no_password("".join(self.stdout + self.stderr), "`migrator serve`")
        return self.returncode

    def transcript(self):
        text = "--- serve stdout\n" + "".join(self.stdout) + "--- serve stderr\n" + "".join(self.stderr)
        return text.replace(PASSWORD, "********") if PASSWORD else text


def wait_for(condition, timeout):
    """Polls every 20 ms; the time it took, or None when the deadline passed."""
    started = time.monotonic()
    seen = seen_at(condition, timeout)
    return None if seen is None else seen - started


def seen_at(condition, timeout):
    """Polls every 20 ms; the time.monotonic() at which a poll saw the condition true, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


class OwnedTestCase(djangotest.DatabaseTestCase):
    """A database of the class's own, whose every table Django's migrate makes before `populate` fills it."""

    database_prefix = "djowned"

    @classmethod
    def prepare_database(cls):
        use_database(cls.db)
        django_migrate()
