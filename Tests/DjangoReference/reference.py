"""The reference app's role sync, re-implemented from its description (../shared/DESIGN.md, "Why it exists") with
Django + django-guardian, so that the benchmarks time the algorithm itself, on the same server in the same run as
migrator, instead of quoting a figure from another machine.

    DATABASE_URL=... REFERENCE_CATALOGUE=roles.json python reference.py resync
    DATABASE_URL=... REFERENCE_CATALOGUE=roles.json python reference.py latency [--count N]

resync: what the reference fix runs after `migrate`: its role schema version (the first 16 hex digits of the MD5 of
the role classes sorted by name, each written `Name:codename,codename` with the codenames sorted, joined with `|`);
if the newest stored version row differs, then for every project: prefetch the auth_permission rows of all role
codenames for the project content type, bulk_create the missing ones (ignore_conflicts) and fetch them again; then
for each role Group.get_or_create(name="{id}_{name}_{Role}"), group.permissions.set(<the role's permissions>),
delete that group's GroupObjectPermission rows for the project and bulk_create one per codename; finally create a
version row (unique on the version). No transaction around it (the app runs in autocommit). Prints the projects, the
queries sent and the time in the process on its last line.

latency: what the reference app does for a new project: the same per-project sync in a post_save signal, so the
project's INSERT (Project.objects.create) returns once its groups and permissions exist; --count projects (default
5) are created one after another and the median time of a create is printed.

The role classes come from REFERENCE_CATALOGUE (migrator's JSON catalogue format: roles with name and permissions,
project_permissions with codename and name), the reference app's catalogue in the benchmarks.
"""

import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "DjangoCompat"))  # its apps: main (main.Project), users
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reference_project.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import Group, Permission  # noqa: E402
from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models.signals import post_save  # noqa: E402
from guardian.models import GroupObjectPermission  # noqa: E402
from main.models import Project  # noqa: E402

CATALOGUE = json.loads(Path(os.environ["REFERENCE_CATALOGUE"]).read_text(encoding="utf-8"))
ROLES = sorted(((r["name"], list(r["permissions"])) for r in CATALOGUE["roles"]), key=lambda r: r[0])
DECLARED = {p["codename"]: p["name"] for p in CATALOGUE["project_permissions"]}
CODENAMES = sorted({c for _, codenames in ROLES for c in codenames})
VERSION_TABLE = "reference_role_schema_version"


def schema_version():
    text = "|".join(f"{name}:{','.join(sorted(codenames))}" for name, codenames in ROLES)
    return hashlib.md5(text.encode()).hexdigest()[:16]


def sync_project(project, content_type):
    """The reference fix's per-project work (about 26 queries)."""
    permissions = {p.codename: p for p in Permission.objects.filter(content_type=content_type, codename__in=CODENAMES)}
    missing = [Permission(codename=c, name=DECLARED.get(c, "Can " + c.replace("_", " ")), content_type=content_type)
               for c in CODENAMES if c not in permissions]
    if missing:
        Permission.objects.bulk_create(missing, ignore_conflicts=True)
        permissions = {p.codename: p for p in Permission.objects.filter(content_type=content_type, codename__in=CODENAMES)}
    object_pk = str(project.pk)
    for name, codenames in ROLES:
        group, _ = Group.objects.get_or_create(name=f"{project.pk}_{project.name}_{name}")
        wanted = [permissions[c] for c in codenames]
        group.permissions.set(wanted)
        GroupObjectPermission.objects.filter(group=group, content_type=content_type, object_pk=object_pk).delete()
        GroupObjectPermission.objects.bulk_create(
            [GroupObjectPermission(group=group, permission=p, content_type=content_type, object_pk=object_pk) for p in wanted])


class QueryCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def resync():
    counter = QueryCounter()
    start = time.perf_counter()
    with connection.execute_wrapper(counter):
        with connection.cursor() as cursor:  # the version table (a model of the reference app's; created once)
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (id serial PRIMARY KEY, version varchar(16) NOT NULL UNIQUE, "
                           "created_at timestamptz NOT NULL DEFAULT now())")
            cursor.execute(f"SELECT version FROM {VERSION_TABLE} ORDER BY id DESC LIMIT 1")
            row = cursor.fetchone()
        version = schema_version()
        projects = 0
        if row is None or row[0] != version:
            content_type = ContentType.objects.get_for_model(Project)
            for project in Project.objects.all().order_by("pk"):
                sync_project(project, content_type)
                projects += 1
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)", [version])
    elapsed = (time.perf_counter() - start) * 1000
    print(f"reference resync: {projects} projects, {counter.count} queries ({counter.count / max(projects, 1):.1f} per project), "
          f"{elapsed:,.0f} ms in the process")


def latency(count):
    content_type = ContentType.objects.get_for_model(Project)

    def on_save(sender, instance, created, **kwargs):
        if created:
            sync_project(instance, content_type)

    post_save.connect(on_save, sender=Project, weak=False)
    Permission.objects.filter(content_type=content_type).count()  # warm the connection, as a running app has it
    times = []
    stamp = int(time.time())
    for i in range(count):
        start = time.perf_counter()
        Project.objects.create(name=f"reference {stamp} {i}")
        times.append((time.perf_counter() - start) * 1000)
    print(f"reference latency: {count} projects created with their roles (post_save), median {statistics.median(times):.1f} ms "
          f"[{', '.join(f'{t:.1f}' for t in times)}]")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "resync":
        resync()
    elif len(sys.argv) >= 2 and sys.argv[1] == "latency":
        latency(int(sys.argv[3]) if len(sys.argv) >= 4 and sys.argv[2] == "--count" else 5)
    else:
        sys.exit("usage: reference.py resync | latency [--count N]")
