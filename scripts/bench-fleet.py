#!/usr/bin/env python3
"""The measuring half of scripts/bench-fleet (read that first); started by it through scripts/bench-lib.sh.

`bench-fleet.py --floor FILE PARALLEL` is the floor: open one libpq connection to each target of FILE, PARALLEL at
a time on threads (ctypes releases the GIL around each libpq call), with the parameters migrator's connections
carry; print the connect loop's milliseconds.
"""
import argparse, ctypes, ctypes.util, json, os, statistics, sys, threading, time
import urllib.parse

NAME = "bench-fleet"


def libpq():
    name = ctypes.util.find_library("pq") or "libpq.so.5"
    lib = ctypes.CDLL(name)
    lib.PQconnectdbParams.restype = ctypes.c_void_p
    lib.PQconnectdbParams.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
    lib.PQstatus.argtypes = [ctypes.c_void_p]
    lib.PQfinish.argtypes = [ctypes.c_void_p]
    lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
    lib.PQerrorMessage.restype = ctypes.c_char_p
    return lib


# What ConnectionConfig.parameters gives every migrator connection, then the target's own string (expand_dbname).
MIGRATOR_PARAMETERS = [
    ("fallback_application_name", "migrator"), ("connect_timeout", "10"), ("keepalives", "1"),
    ("keepalives_idle", "10"), ("keepalives_interval", "5"), ("keepalives_count", "3"),
]


def floor(path, parallel):
    lib = libpq()
    targets = [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]
    lock = threading.Lock()
    queue = list(reversed(targets))
    failures = []

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                target = queue.pop()
            pairs = MIGRATOR_PARAMETERS + [("dbname", target)]
            keys = (ctypes.c_char_p * (len(pairs) + 1))(*[k.encode() for k, _ in pairs], None)
            values = (ctypes.c_char_p * (len(pairs) + 1))(*[v.encode() for _, v in pairs], None)
            conn = lib.PQconnectdbParams(keys, values, 1)
            if lib.PQstatus(conn) != 0:
                with lock:
                    failures.append(lib.PQerrorMessage(conn).decode(errors="replace").strip())
            lib.PQfinish(conn)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    elapsed = (time.perf_counter() - start) * 1000
    if failures:
        sys.exit(f"{NAME} floor: {len(failures)} connections failed, e.g. {failures[0]}")
    print(f"{elapsed:.3f}")


def without_password(url):
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc: netloc = f"[{netloc}]"
    if parts.port: netloc += f":{parts.port}"
    if parts.username: netloc = urllib.parse.quote(parts.username) + "@" + netloc
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--floor", nargs=2, metavar=("FILE", "PARALLEL"))
    parser.add_argument("--binary")
    parser.add_argument("--psql")
    parser.add_argument("--prefix")
    parser.add_argument("--work")
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--sizes", default="100 1000")
    parser.add_argument("--limit", type=float, default=1.5)
    args = parser.parse_args()
    if args.floor:
        floor(args.floor[0], int(args.floor[1]))
        return

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import benchlib

    sizes = [int(n) for n in args.sizes.split()]
    server = benchlib.Server(args.psql, args.prefix, args.work, NAME)
    report = benchlib.Report(NAME)
    password = urllib.parse.unquote(urllib.parse.urlsplit(server.admin_url).password or "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("MIGRATOR_") and k != "DATABASE_URL"}
    if password:
        env["PGPASSWORD"] = password

    def run(command, rss=False, extra_env=None):
        return benchlib.run(command, env=dict(env, **(extra_env or {})), name=NAME, work=args.work, rss=rss, timeout=600)

    template = server.create(server.db("tpl"))
    setup = run([args.binary, "migrate", "--migrations", "Migrations", "--lint", "off", "--log-level", "warning"],
                extra_env={"DATABASE_URL": without_password(server.url(template))})
    if setup.stderr.strip():
        sys.exit(f"{NAME}: the template's migrate printed on standard error (the set-up must be quiet):\n{setup.stderr[-2000:]}")
    names = [server.db(str(i)) for i in range(max(sizes))]
    report.progress(f"creating {len(names)} databases from the template (Migrations/ applied, roles synced)...")
    script = os.path.join(args.work, "create.sql")
    with open(script, "w") as f:
        f.write("".join(f'CREATE DATABASE "{name}" TEMPLATE "{template}";\n' for name in names))
    server.psql_run(None, "-f", script)
    files = {}
    for size in sizes:
        files[size] = os.path.join(args.work, f"targets-{size}.txt")
        with open(files[size], "w") as out:
            out.write("".join(without_password(server.url(n)) + "\n" for n in names[:size]))
    migrate = {size: [args.binary, "migrate", "--migrations", "Migrations", "--targets", files[size],
                      "--parallel", str(args.parallel), "--log-level", "warning"] for size in sizes}
    floor_cmd = {size: [sys.executable, os.path.abspath(__file__), "--floor", files[size], str(args.parallel)] for size in sizes}

    print(f"setup:       {len(names)} databases made from one with Migrations/ applied (role hook on, built-in catalogue, "
          f"set-up migrate --lint off and silent); --parallel {args.parallel}; {args.runs} rounds, interleaved, after 1 warm-up each")
    print(f"floor:       Python ctypes on {ctypes.util.find_library('pq')}, {args.parallel} threads, PQconnectdbParams with "
          "migrator's parameters, then PQfinish; the password through PGPASSWORD for both")
    print(f"commands:    {os.path.basename(args.binary)} migrate --migrations Migrations --targets FILE --parallel {args.parallel} "
          f"--log-level warning  vs  python3 scripts/bench-fleet.py --floor FILE {args.parallel}")
    print()

    for size in sizes:  # warm-up, and a check that every target is up to date
        warm = run(migrate[size])
        if f"0 applied, {size} up to date, 0 failed" not in warm.stdout:
            sys.exit(f"{NAME}: the warm-up at {size} targets was not all up to date:\n{warm.stdout[-2000:]}")
        run(floor_cmd[size])
    times = {(kind, size): [] for kind in ("migrate", "floor", "floor-loop") for size in sizes}
    order = [(kind, size) for size in sizes for kind in ("migrate", "floor")]
    for round_ in range(args.runs):
        report.progress(f"round {round_ + 1} of {args.runs}")
        for kind, size in (order if round_ % 2 == 0 else list(reversed(order))):
            done = run(migrate[size] if kind == "migrate" else floor_cmd[size])
            times[(kind, size)].append(done.wall_ms)
            if kind == "floor":
                times[("floor-loop", size)].append(float(done.stdout.strip()))
    med = {key: statistics.median(value) for key, value in times.items()}
    print(f"{'wall time (ms), median of ' + str(args.runs):<52}" + "".join(f"{size:>10}" for size in sizes))
    for kind, label in (("migrate", "migrator migrate --targets (whole process)"), ("floor", "floor: connect to each (whole process)"),
                        ("floor-loop", "floor: connect to each (its connect loop only)")):
        print(f"{label:<52}" + "".join(f"{med[(kind, size)]:>10.0f}" for size in sizes))
    for size in sizes:
        print(f"all rounds at {size}: migrate {benchlib.values_text(times[('migrate', size)])}, floor {benchlib.values_text(times[('floor', size)])}")
    print()
    for size in sizes:
        # The verdict is against the floor's connect loop alone: starting Python and loading ctypes is no part of
        # "opening one connection to each", while migrator's own start-up is part of what a user waits for.
        report.ratio(f"time at {size}", med[("migrate", size)], med[("floor-loop", size)], args.limit,
                     f"{size} targets, migrate --targets (whole process) / the floor's connect loop")
        whole = med[("migrate", size)] / med[("floor", size)]
        print(f"      against the floor's whole process (with Python's start-up) {whole:.2f}x, for information; per target "
              f"{med[('migrate', size)] / size * args.parallel:.2f} ms vs {med[('floor-loop', size)] / size * args.parallel:.2f} ms of one worker "
              f"(wall time x parallel / targets)")
    print()

    rss = {}
    for size in sizes:
        mine = run(migrate[size], rss=True)
        theirs = run(floor_cmd[size], rss=True)
        rss[size] = mine.max_rss_kib
        split = run(migrate[size] + ["--json"])
        lines = [json.loads(line) for line in split.stdout.splitlines() if line.strip()]
        targets = [line for line in lines if "target" in line]
        connect = sum(t["connectMs"] for t in targets)
        total = sum(t["durationMs"] for t in targets)
        states = {}
        for t in targets: states[t["state"]] = states.get(t["state"], 0) + 1
        print(f"{size:>5} targets: max RSS migrator {benchlib.kib(mine.max_rss_kib)} (floor process {benchlib.kib(theirs.max_rss_kib)}, "
              f"by {benchlib.RSS_TOOL}); per target {total / len(targets):.2f} ms, of which connecting (connection + session set-up) "
              f"{connect / len(targets):.2f} ms ({100 * connect / total:.0f}%), the rest (the work) {(total - connect) / len(targets):.2f} ms; "
              f"states {states}")
    if len(sizes) >= 2 and all(rss.get(s) for s in sizes):
        small, big = min(sizes), max(sizes)
        per = (rss[big] - rss[small]) / (big - small)
        # A small record a target: the target (its connection string, label, identity) and its outcome; 16 KiB is
        # far above that and far below a kept report or log (which would grow with the fleet's migrations).
        report.check("memory", per <= 16, f"max RSS {benchlib.kib(rss[small])} at {small} targets, {benchlib.kib(rss[big])} at {big}: "
                     f"{per:.1f} KiB per extra target (target <= 16 KiB)")
    print()
    sys.exit(report.summary())


if __name__ == "__main__":
    main()
