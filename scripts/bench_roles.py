"""The role sync benchmark (started by scripts/bench-roles, which says what it measures)."""

import argparse
import copy
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import ms, kib, quote, median  # noqa: E402

NAME = "bench-roles"
WRITE_LIMIT = 1.3      # writes dominate: migrator within 1.3x of psql writing exactly the rows that change
READ_LIMIT = 1.3       # the no-op reconcile: within 1.3x of one statement that reads the same rows and compares them

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--binary", required=True)
parser.add_argument("--psql", required=True)
parser.add_argument("--prefix", required=True)
parser.add_argument("--work", required=True)
parser.add_argument("--commit", default="unknown")
parser.add_argument("--catalogue", required=True, help="the reference role catalogue (JSON)")
parser.add_argument("--sizes", default="100,1000,10000", help="project counts, comma-separated")
parser.add_argument("--runs", type=int, default=1, help="timed runs of each side per scenario at sizes above 1,000")
parser.add_argument("--small-runs", type=int, default=3, help="timed runs of each side per scenario at 1,000 projects and fewer")
parser.add_argument("--timeout", type=int, default=300, help="seconds before a timed command is stopped")
parser.add_argument("--reference-python", default="", help="the Django reference's venv python (empty: skipped)")
parser.add_argument("--reference-sizes", default="100,1000", help="sizes at which the Django reference and the emulation run")
parser.add_argument("--charts", default="", help="folder for the SVG charts and figures (empty: none)")
parser.add_argument("--header", default="", help="the run's header lines, kept with the figures")
args = parser.parse_args()

server = benchlib.Server(args.psql, args.prefix, args.work, NAME)
report = benchlib.Report(NAME)
sizes = [int(s) for s in args.sizes.split(",") if s]
reference_sizes = {int(s) for s in args.reference_sizes.split(",") if s}


# --- catalogues -----------------------------------------------------------------------------------------------------
catalogue = json.load(open(args.catalogue))
full_json = os.path.join(args.work, "full.json")
minus1_json = os.path.join(args.work, "minus1.json")
plus1_json = os.path.join(args.work, "plus1.json")
json.dump(catalogue, open(full_json, "w"), indent=1)
lacking = copy.deepcopy(catalogue)
dropped = []  # (role, codename): every role lacks its last permission
for role in lacking["roles"]:
    dropped.append((role["name"], role["permissions"][-1]))
    role["permissions"] = role["permissions"][:-1]
json.dump(lacking, open(minus1_json, "w"), indent=1)
more = copy.deepcopy(catalogue)
first_role = more["roles"][0]  # one role gains the first declared permission it lacks
extra = next(p["codename"] for p in more["project_permissions"] if p["codename"] not in first_role["permissions"])
first_role["permissions"].append(extra)
added = [(first_role["name"], extra)]
json.dump(more, open(plus1_json, "w"), indent=1)

roles = sorted(r["name"] for r in catalogue["roles"])
pairs = sorted((r["name"], c) for r in catalogue["roles"] for c in r["permissions"])
declared = {p["codename"]: p["name"] for p in catalogue["project_permissions"]}
for _, codename in pairs:
    declared.setdefault(codename, "Can " + codename.replace("_", " "))  # migrator's default for an undeclared one
print(f"catalogue:   {os.path.relpath(args.catalogue)}: {len(roles)} roles, {len(pairs)} (role, permission) pairs per project; "
      f"resync: every role lacks its last permission ({', '.join(f'{r}-{c}' for r, c in dropped)}), then the full "
      f"catalogue; one added: {added[0][0]}+{added[0][1]}")
print(f"setup:       sizes {', '.join(f'{s:,}' for s in sizes)} projects; {args.small_runs} timed runs of each side up to 1,000 "
      f"projects, {args.runs} above (the Django reference and the emulation: 1), medians; every side on its "
      f"own copy (CREATE DATABASE ... TEMPLATE, then VACUUM ANALYZE) of the same template; timeout {args.timeout} s; "
      f"wall time and max RSS ({benchlib.RSS_TOOL}) of each process")
print()

# --- SQL of the floors ------------------------------------------------------------------------------------------------
CT = "(SELECT id FROM django_content_type WHERE app_label = 'main' AND model = 'project')"
role_values = ", ".join(f"({quote(r)})" for r in roles)


def pair_values(some):
    return ", ".join(f"({quote(r)}, {quote(c)})" for r, c in some)


def grant_sql(some):
    """psql writing exactly the group and object permissions of the given (role, codename) pairs for every project
    (it knows the answer: nothing else is missing), in one transaction."""
    granted = (f"FROM migrator.project_role_group l JOIN (VALUES {pair_values(some)}) AS w(role, codename) ON w.role = l.role "
               f"JOIN auth_permission ap ON ap.codename = w.codename AND ap.content_type_id = {CT}")
    return ("\\timing on\nBEGIN;\n"
            f"INSERT INTO auth_group_permissions (group_id, permission_id) SELECT l.group_id, ap.id {granted};\n"
            "INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id) "
            f"SELECT l.project_id::text, ap.content_type_id, l.group_id, ap.id {granted};\n"
            "COMMIT;\n")


def first_sync_sql():
    """A plain INSERT ... SELECT of every row a first sync writes, in one transaction."""
    out = ["CREATE SCHEMA IF NOT EXISTS migrator;",
           # the databases are migrated with --skip-roles, so migrator's link table is made here, as migrator makes it
           "CREATE TABLE IF NOT EXISTS migrator.project_role_group (project_id bigint NOT NULL, role varchar(150) NOT NULL, "
           "group_id integer NOT NULL REFERENCES auth_group (id) ON DELETE CASCADE, PRIMARY KEY (project_id, role), UNIQUE (group_id));",
           "\\timing on", "BEGIN;",
           "INSERT INTO auth_permission (name, content_type_id, codename) SELECT v.name, ct.id, v.codename FROM (VALUES "
           + ", ".join(f"({quote(c)}, {quote(n)})" for c, n in sorted(declared.items()))
           + ") AS v(codename, name) CROSS JOIN django_content_type ct WHERE ct.app_label = 'main' AND ct.model = 'project';",
           f"INSERT INTO auth_group (name) SELECT p.id::text || '_' || p.name || '_' || r.role FROM main_project p CROSS JOIN (VALUES {role_values}) AS r(role);",
           f"INSERT INTO migrator.project_role_group (project_id, role, group_id) SELECT p.id, r.role, g.id FROM main_project p "
           f"CROSS JOIN (VALUES {role_values}) AS r(role) JOIN auth_group g ON g.name = p.id::text || '_' || p.name || '_' || r.role;"]
    granted = (f"FROM migrator.project_role_group l JOIN (VALUES {pair_values(pairs)}) AS w(role, codename) ON w.role = l.role "
               f"JOIN auth_permission ap ON ap.codename = w.codename AND ap.content_type_id = {CT}")
    out.append(f"INSERT INTO auth_group_permissions (group_id, permission_id) SELECT l.group_id, ap.id {granted};")
    out.append("INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id) "
               f"SELECT l.project_id::text, ap.content_type_id, l.group_id, ap.id {granted};")
    out.append("COMMIT;")
    return "\n".join(out) + "\n"


# The no-op floor: one statement that reads the rows a reconcile must read (every project with its links and groups, the
# linked groups' group permissions and object permissions) and counts them. It does not compare them with the
# catalogue, so it is a lower bound on any reconcile that reads them.
NOOP_SQL = """\\timing on
SELECT (SELECT count(*) FROM main_project p JOIN migrator.project_role_group l ON l.project_id = p.id
          JOIN auth_group g ON g.id = l.group_id AND g.name = p.id::text || '_' || p.name || '_' || l.role)
     + (SELECT count(*) FROM auth_group_permissions gp JOIN migrator.project_role_group l ON l.group_id = gp.group_id)
     + (SELECT count(*) FROM guardian_groupobjectpermission o JOIN migrator.project_role_group l
          ON l.group_id = o.group_id AND o.object_pk = l.project_id::text) AS rows_read;
"""

# For information beside it: one statement that also compares what it reads with the desired rows, both ways
# (EXCEPT ALL of the desired rows and the stored ones, for each table); it counts the differences (0 here).
NOOP_COMPARE_SQL = f"""\\timing on
WITH want AS (
  SELECT l.project_id, l.group_id, ap.id AS permission_id
  FROM main_project p
  JOIN migrator.project_role_group l ON l.project_id = p.id
  JOIN auth_group g ON g.id = l.group_id AND g.name = p.id::text || '_' || p.name || '_' || l.role
  JOIN (VALUES {pair_values(pairs)}) AS w(role, codename) ON w.role = l.role
  JOIN auth_permission ap ON ap.codename = w.codename AND ap.content_type_id = {CT}
), linked AS (SELECT group_id, project_id FROM migrator.project_role_group)
SELECT (SELECT count(*) FROM ((SELECT group_id, permission_id FROM want)
          EXCEPT ALL (SELECT gp.group_id, gp.permission_id FROM auth_group_permissions gp JOIN linked USING (group_id))) d)
     + (SELECT count(*) FROM ((SELECT gp.group_id, gp.permission_id FROM auth_group_permissions gp JOIN linked USING (group_id))
          EXCEPT ALL (SELECT group_id, permission_id FROM want)) d)
     + (SELECT count(*) FROM ((SELECT project_id::text, group_id, permission_id FROM want)
          EXCEPT ALL (SELECT o.object_pk, o.group_id, o.permission_id FROM guardian_groupobjectpermission o JOIN linked USING (group_id))) d)
     + (SELECT count(*) FROM ((SELECT o.object_pk, o.group_id, o.permission_id FROM guardian_groupobjectpermission o JOIN linked USING (group_id))
          EXCEPT ALL (SELECT project_id::text, group_id, permission_id FROM want)) d) AS differences;
"""
NOOP_COMPARE_FILE = os.path.join(args.work, "noop-compare.sql")
with open(NOOP_COMPARE_FILE, "w") as f:
    f.write(NOOP_COMPARE_SQL)

FIRST_SQL = os.path.join(args.work, "first-sync-floor.sql")
RESYNC_SQL = os.path.join(args.work, "resync-floor.sql")
ADDED_SQL = os.path.join(args.work, "one-added-floor.sql")
NOOP_FILE = os.path.join(args.work, "noop-floor.sql")
for path, text in ((FIRST_SQL, first_sync_sql()), (RESYNC_SQL, grant_sql(dropped)), (ADDED_SQL, grant_sql(added)),
                   (NOOP_FILE, NOOP_SQL)):
    with open(path, "w") as f:
        f.write(text)

# --- commands -------------------------------------------------------------------------------------------------------


def env_for(db):
    return dict(os.environ, DATABASE_URL=server.url(db))


def migrator(db, *cmd, timeout=None):
    r = benchlib.run([args.binary, *cmd, "--log-level", "warning"], env=env_for(db), timeout=timeout or args.timeout,
                     name=NAME, work=args.work)
    return r


def psql_file(db, path, timeout=None):
    """psql -f on db: the process's wall time; the statements' \\timing sum is Run.server_ms."""
    r = benchlib.run([args.psql, server.url(db), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path], timeout=timeout or args.timeout,
                     name=NAME, work=args.work)
    r.server_ms = sum(float(x) for x in re.findall(r"^Time: ([0-9.]+) ms", r.stdout, re.M))
    return r


def totals(rep):
    keys = ["groupsCreated", "groupsAdopted", "groupsRenamed", "groupPermissionsAdded", "groupPermissionsRemoved",
            "objectPermissionsAdded", "objectPermissionsRemoved"]
    return {k: sum(role.get(k, 0) for role in rep.get("roles", {}).values()) for k in keys}


def rows_text(t):
    return (f"groups +{t['groupsCreated']}; group permissions +{t['groupPermissionsAdded']} -{t['groupPermissionsRemoved']}; "
            f"object permissions +{t['objectPermissionsAdded']} -{t['objectPermissionsRemoved']}")


def slowest(rep, n=3):
    phases = sorted(rep.get("phases", []), key=lambda p: -float(p["durationMs"]))[:n]
    return ", ".join(f"{p['name']} {ms(p['durationMs'])}" for p in phases)


def digest(db):
    return server.value(db, "select (select md5(coalesce(string_agg(group_id || ':' || permission_id, ',' order by group_id, "
                            "permission_id), '')) from auth_group_permissions) || '/' || (select md5(coalesce(string_agg(object_pk "
                            "|| ':' || content_type_id || ':' || group_id || ':' || permission_id, ',' order by group_id, "
                            "permission_id, object_pk), '')) from guardian_groupobjectpermission)")


def counts(db):
    return server.value(db, "select (select count(*) from auth_group) || ' groups, ' || (select count(*) from "
                            "auth_group_permissions) || ' group permissions, ' || (select count(*) from "
                            "guardian_groupobjectpermission) || ' object permissions'")


class Side:
    """The timed runs of one side of a scenario at one size."""

    def __init__(self, label):
        self.label, self.walls, self.rss, self.notes, self.stopped = label, [], [], [], None

    def add(self, r, note=""):
        if r.stopped:
            self.stopped = r.stopped
            return False
        self.walls.append(r.wall_ms)
        self.rss.append(r.max_rss_kib)
        if note:
            self.notes.append(note)
        return True

    @property
    def wall(self):
        return median(self.walls)

    @property
    def max_rss(self):
        return max(self.rss) if self.rss else None

    def line(self):
        if self.stopped and not self.walls:
            return f"      {self.label}: {self.stopped}"
        return (f"      {self.label}: wall {ms(self.wall)} {benchlib.values_text(self.walls) if len(self.walls) > 1 else ''}"
                f"; max RSS {kib(self.max_rss)}" + (f"; {self.notes[-1]}" if self.notes else ""))


def keep(scenario, side, n):
    report.keep(scenario, side.label_short, n, side.wall, side.max_rss)


# --- the runs -------------------------------------------------------------------------------------------------------

TITLES = {
    "first-sync": "first sync (`update-roles`) vs a plain INSERT ... SELECT of the same rows in one transaction",
    "resync": "resync: synced with every role lacking one permission, then the whole `migrate --roles full.json` process, "
              "vs psql inserting exactly the missing rows (2 per role per project) in one transaction",
    "one-added": "one permission added to one role (`update-roles --no-force --roles plus1.json`) vs psql inserting exactly "
                 "those rows (1 group and 1 object permission per project) in one transaction",
    "noop": "no-op full reconcile (`update-roles --force`), 0 rows to write, vs one statement that reads the same rows "
            "(projects with their links and groups, the linked groups' group and object permissions) and counts them "
            "(no comparison with the catalogue: a lower bound)",
}


def scenario_print(key, n, sides, limit, note=""):
    m, floor = sides[0], sides[1]
    print(f"   {key} at {n:,} projects" + (f" ({note})" if note else ""))
    for side in sides:
        print(side.line())
    r = report.ratio(f"{key} {n:,}", m.wall, floor.wall, limit, f"{m.label} / {floor.label}, wall")
    for side in sides[2:]:
        if side.wall and m.wall:
            print(f"      {side.label} / migrator: {side.wall / m.wall:,.1f}x (for information, not judged)")
    return r


def reference_emulation(db, path):
    """The reference app's 26 statements per project (5 group SELECTs, 1 permission SELECT, per group DELETE + INSERT of
    its group permissions and DELETE + INSERT of its object permissions, each its own transaction), written from the
    ids of db (its clones share them)."""
    group_ids = {}
    for line in server.psql_run(db, "-c", "select id || '|' || name from auth_group").splitlines():
        gid, name = line.split("|", 1)
        group_ids[name] = int(gid)
    content_type = int(server.value(db, f"select {CT}"))
    permission_ids = {}
    for line in server.psql_run(db, "-c", f"select id || '|' || codename from auth_permission where content_type_id = {content_type}").splitlines():
        pid, codename = line.split("|", 1)
        permission_ids[codename] = int(pid)
    by_role = {r["name"]: [permission_ids[c] for c in r["permissions"]] for r in catalogue["roles"]}
    codename_list = ", ".join(quote(c) for c in sorted({c for _, c in pairs}))
    statements = 0
    with open(path, "w") as out:
        for line in server.psql_run(db, "-c", "select id || '|' || name from main_project order by id").splitlines():
            pid, name = line.split("|", 1)
            names = {role: f"{pid}_{name}_{role}" for role in roles}
            for role in roles:
                out.write(f"SELECT id, name FROM auth_group WHERE name = {quote(names[role])};\n")
            out.write(f"SELECT id, codename FROM auth_permission WHERE content_type_id = {content_type} AND codename IN ({codename_list});\n")
            statements += len(roles) + 1
            for role in roles:
                gid = group_ids[names[role]]
                out.write(f"DELETE FROM auth_group_permissions WHERE group_id = {gid};\n")
                out.write("INSERT INTO auth_group_permissions (group_id, permission_id) VALUES "
                          + ", ".join(f"({gid}, {p})" for p in by_role[role]) + ";\n")
                out.write(f"DELETE FROM guardian_groupobjectpermission WHERE group_id = {gid} AND content_type_id = {content_type} "
                          f"AND object_pk = {quote(pid)};\n")
                out.write("INSERT INTO guardian_groupobjectpermission (object_pk, content_type_id, group_id, permission_id) VALUES "
                          + ", ".join(f"({quote(pid)}, {content_type}, {gid}, {p})" for p in by_role[role]) + ";\n")
                statements += 4
    return statements


def django_reference(db, command, timeout):
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "..", "Tests", "DjangoReference", "reference.py")
    env = dict(env_for(db), REFERENCE_CATALOGUE=args.catalogue, PYTHONDONTWRITEBYTECODE="1")
    return benchlib.run([args.reference_python, script, command], env=env, timeout=timeout, name=NAME, work=args.work)


print("== scenarios ==")
for key in ("first-sync", "resync", "one-added", "noop"):
    print(f"{key}: {TITLES[key]}")
print()

for n in sizes:
    runs = args.small_runs if n <= 1000 else args.runs
    report.progress(f"{n:,} projects: template...")
    base = server.db(f"base_{n}")
    server.create(base)
    migrator(base, "migrate", "--migrations", "Migrations", "--skip-roles")
    server.psql_run(base, "-c", f"INSERT INTO main_project (name) SELECT 'project ' || g FROM generate_series(1, {n}) g")
    server.vacuum_analyze(base)
    print(f"== {n:,} projects ==")

    # first sync -------------------------------------------------------------------------------------------------
    m, f = Side("migrator update-roles"), Side("plain INSERT ... SELECT (psql -f)")
    m.label_short, f.label_short = "migrator", "floor"
    synced = None
    for i in range(runs):
        report.progress(f"{n:,}: first sync, run {i + 1}/{runs}")
        for side in ((m, f) if i % 2 == 0 else (f, m)):
            db = server.clone(base, server.db(f"fs_{n}_{'m' if side is m else 'f'}{i}"))
            server.checkpoint()
            if side is m:
                r = migrator(db, "update-roles", "--roles", full_json, "--json")
                if m.add(r, "" if r.stopped else f"durationMs {ms(r.json()['durationMs'])}, {r.json()['roundTrips']} round trips; "
                         f"rows: {rows_text(totals(r.json()))}"):
                    if synced is None:
                        synced = db
                        continue
            else:
                r = psql_file(db, FIRST_SQL)
                f.add(r, "" if r.stopped else f"statements (\\timing sum) {ms(r.server_ms)}; {counts(db)}")
            server.drop(db)
    scenario_print("first-sync", n, [m, f], WRITE_LIMIT)
    keep("first-sync", m, n)
    keep("first-sync", f, n)
    if synced is None:
        print(f"   (no first sync finished at {n:,} projects: the later scenarios at this size are skipped)")
        server.drop(base)
        continue
    server.vacuum_analyze(synced)

    # resync -----------------------------------------------------------------------------------------------------
    report.progress(f"{n:,}: resync template (synced with the catalogue that lacks one permission per role)...")
    minus = server.clone(base, server.db(f"minus_{n}"))
    migrator(minus, "update-roles", "--roles", minus1_json, "--json")
    server.vacuum_analyze(minus)
    server.drop(base)
    m, f = Side("migrator migrate"), Side("psql inserting the missing rows")
    m.label_short, f.label_short = "migrator", "floor"
    sides = [m, f]
    with_reference = n in reference_sizes
    dj = em = None
    if with_reference:
        em = Side("psql emulation of the reference (26 statements per project)")
        em.label_short = "reference emulation (psql)"
        sides.append(em)
        emulation_sql = os.path.join(args.work, f"emulation-{n}.sql")
        statements = reference_emulation(minus, emulation_sql)
        if args.reference_python:
            dj = Side("Django reference (Tests/DjangoReference)")
            dj.label_short = "reference (Django + guardian)"
            sides.append(dj)
    digests = {}
    for i in range(runs):
        report.progress(f"{n:,}: resync, run {i + 1}/{runs}")
        order = sides if i % 2 == 0 else list(reversed(sides))
        for side in order:
            if i > 0 and side in (em, dj):
                continue  # the references: one run each (not judged; the Django one takes a minute at 1,000 projects)
            db = server.clone(minus, server.db(f"rs_{n}_{sides.index(side)}{i}"))
            server.checkpoint()
            if side is m:
                r = migrator(db, "migrate", "--migrations", "Migrations", "--roles", full_json, "--json")
                note = ""
                if not r.stopped:
                    rep = r.json()
                    if rep["applied"]:
                        sys.exit(f"{NAME}: the timed migrate applied migrations; only the roles should change")
                    d = next(h for h in rep["hooks"] if h["name"] == "role-sync")["details"]
                    note = (f"role sync {d['mode']}, durationMs {ms(d['durationMs'])}, {rep['roundTrips']} round trips in the "
                            f"process; rows: group permissions +{d['groupPermissionsAdded']} -{d['groupPermissionsRemoved']}, "
                            f"object permissions +{d['objectPermissionsAdded']} -{d['objectPermissionsRemoved']}")
                side.add(r, note)
            elif side is f:
                r = psql_file(db, RESYNC_SQL)
                side.add(r, "" if r.stopped else f"statements (\\timing sum) {ms(r.server_ms)}")
            elif side is em:
                r = benchlib.run([args.psql, server.url(db), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", emulation_sql],
                                 timeout=args.timeout, name=NAME, work=args.work)
                side.add(r, f"{statements:,} statements, each its own transaction")
            else:
                r = django_reference(db, "resync", args.timeout)
                side.add(r, "" if r.stopped else r.stdout.strip().splitlines()[-1])
            if i == 0 and not r.stopped:
                digests[side.label_short] = digest(db)
            server.drop(db)
    same = {label: d == digests.get("migrator") for label, d in digests.items() if label != "migrator"}
    scenario_print("resync", n, sides, WRITE_LIMIT,
                   "end state identical to migrator's: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    for side in sides:
        keep("resync", side, n)
    if not all(same.values()):
        report.check(f"resync {n:,} end state", False, "every side ends in the same rows")
    server.drop(minus)

    # one permission added ---------------------------------------------------------------------------------------
    m, f = Side("migrator update-roles --no-force"), Side("psql inserting the added rows")
    m.label_short, f.label_short = "migrator", "floor"
    digests = {}
    for i in range(runs):
        report.progress(f"{n:,}: one permission added, run {i + 1}/{runs}")
        for side in ((m, f) if i % 2 == 0 else (f, m)):
            db = server.clone(synced, server.db(f"oa_{n}_{'m' if side is m else 'f'}{i}"))
            server.checkpoint()
            if side is m:
                r = migrator(db, "update-roles", "--no-force", "--roles", plus1_json, "--json")
                note = ""
                if not r.stopped:
                    t = totals(r.json())
                    note = (f"mode {r.json()['mode']}, durationMs {ms(r.json()['durationMs'])}, {r.json()['roundTrips']} round trips; "
                            f"rows: {rows_text(t)}; slowest phases: {slowest(r.json())}")
                    expected = dict.fromkeys(t, 0)
                    expected.update(groupPermissionsAdded=n, objectPermissionsAdded=n)
                    if i == 0:
                        report.check(f"one-added {n:,} rows", t == expected, f"rows written: exactly {n:,} + {n:,}")
                m.add(r, note)
            else:
                r = psql_file(db, ADDED_SQL)
                f.add(r, "" if r.stopped else f"statements (\\timing sum) {ms(r.server_ms)}")
            if i == 0 and not r.stopped:
                digests[side.label_short] = digest(db)
            server.drop(db)
    scenario_print("one-added", n, [m, f], WRITE_LIMIT,
                   f"end state identical: {'yes' if digests.get('migrator') == digests.get('floor') else 'NO'}")
    keep("one-added", m, n)
    keep("one-added", f, n)

    # no-op reconcile --------------------------------------------------------------------------------------------
    m, f = Side("migrator update-roles --force"), Side("one reading statement (psql -f)")
    m.label_short, f.label_short = "migrator", "floor"
    db = server.clone(synced, server.db(f"noop_{n}"))
    for i in range(runs):
        report.progress(f"{n:,}: no-op reconcile, run {i + 1}/{runs}")
        for side in ((m, f) if i % 2 == 0 else (f, m)):
            server.checkpoint()
            if side is m:
                r = migrator(db, "update-roles", "--force", "--roles", full_json, "--json")
                note = ""
                if not r.stopped:
                    rep = r.json()
                    written = sum(totals(rep).values()) + rep["permissionsCreated"] + rep["permissionsRenamed"]
                    note = (f"mode {rep['mode']}, durationMs {ms(rep['durationMs'])}, {rep['roundTrips']} round trips, {written} rows "
                            f"written; slowest phases: {slowest(rep)}")
                    if i == 0:
                        report.check(f"noop {n:,} rows", written == 0, f"rows written {written} (target 0)")
                m.add(r, note)
            else:
                r = psql_file(db, NOOP_FILE)
                found = re.search(r"^\s*(\d+)\s*$", r.stdout, re.M)
                rows_read = int(found.group(1)) if found else 0
                f.add(r, "" if r.stopped else f"statement {ms(r.server_ms)}, {rows_read:,} rows read")
    c = Side("one comparing statement (psql -f, EXCEPT ALL both ways; for information)")
    c.label_short = "comparing statement"
    r = psql_file(db, NOOP_COMPARE_FILE)
    found = re.search(r"^\s*(\d+)\s*$", r.stdout, re.M)
    c.add(r, "" if r.stopped else f"statement {ms(r.server_ms)}, {found.group(1) if found else '?'} differences found")
    server.drop(db)
    scenario_print("noop", n, [m, f, c], READ_LIMIT)
    keep("noop", m, n)
    keep("noop", f, n)
    keep("noop", c, n)
    server.drop(synced)
    print()

# --- charts ---------------------------------------------------------------------------------------------------------
if args.charts:
    header = [line for line in args.header.splitlines() if line]
    report.save(os.path.join(args.charts, "bench-roles.json"), header)
    date_line = next((line.split(":", 1)[1].strip() for line in header if line.startswith("date:")), "")
    load_line = next((line.split("load average", 1)[1].strip() for line in header if "load average" in line), "")
    sub = f"scripts/bench-roles, {date_line}, commit {args.commit}, nproc {os.cpu_count()}, load {load_line}"
    names = {"first-sync": "First sync", "resync": "Resync (every role lacked one permission)",
             "one-added": "One permission added to one role", "noop": "No-op full reconcile"}
    for key, title in names.items():
        benchlib.svg_chart(os.path.join(args.charts, f"roles-{key}.svg"), f"{title}: wall time", sub,
                           benchlib.series_of(report.figures, key), "projects", "ms (log)")
    rss = []
    for key in names:
        for name, data in benchlib.series_of(report.figures, key, "rss"):
            if name == "migrator":
                rss.append((f"migrator {key}", {x: v / 1024 for x, v in data.items()}))
    benchlib.svg_chart(os.path.join(args.charts, "roles-max-rss.svg"), "migrator's max RSS", sub, rss, "projects", "MiB (log)")
    print(f"charts: {', '.join(sorted(p for p in os.listdir(args.charts) if p.startswith('roles-')))} in {args.charts}")

sys.exit(report.summary())
