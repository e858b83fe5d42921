#!/usr/bin/env python3
"""The measuring half of scripts/bench-fleet (read that first), self-contained.

`bench-fleet.py --floor FILE PARALLEL` is the floor: open one libpq connection to each target of FILE, PARALLEL at
a time on threads (ctypes releases the GIL around each libpq call), with the parameters migrator's connections
carry; print the connect loop's milliseconds.
"""
import argparse, ctypes, ctypes.util, json, os, resource, statistics, subprocess, sys, tempfile, threading, time
import urllib.parse

# BENCH_SIZES="20 50" for a quick look while working; the figures are 100 and 1,000.
SIZES = tuple(int(n) for n in os.environ.get("BENCH_SIZES", "100 1000").split())
LIMIT = 1.5

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
        sys.exit(f"bench-fleet floor: {len(failures)} connections failed, e.g. {failures[0]}")
    print(f"{elapsed:.3f}")

def psql(admin, sql, database=None):
    """Runs SQL through the floor's own libpq (no psql binary needed); returns the first column of each row."""
    lib = libpq()
    lib.PQexec.restype = ctypes.c_void_p
    lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.PQresultStatus.argtypes = [ctypes.c_void_p]
    lib.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
    lib.PQresultErrorMessage.restype = ctypes.c_char_p
    lib.PQntuples.argtypes = [ctypes.c_void_p]
    lib.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.PQgetvalue.restype = ctypes.c_char_p
    lib.PQclear.argtypes = [ctypes.c_void_p]
    url = admin if database is None else with_database(admin, database)
    keys = (ctypes.c_char_p * 2)(b"dbname", None)
    values = (ctypes.c_char_p * 2)(url.encode(), None)
    conn = lib.PQconnectdbParams(keys, values, 1)
    if lib.PQstatus(conn) != 0:
        sys.exit("bench-fleet: cannot connect to the server: " + lib.PQerrorMessage(conn).decode(errors="replace"))
    result = lib.PQexec(conn, sql.encode())
    status = lib.PQresultStatus(result)
    if status not in (1, 2):  # PGRES_COMMAND_OK, PGRES_TUPLES_OK
        message = lib.PQresultErrorMessage(result).decode(errors="replace")
        lib.PQclear(result); lib.PQfinish(conn)
        sys.exit(f"bench-fleet: {sql.split()[0]} failed: {message}")
    rows = [lib.PQgetvalue(result, i, 0).decode() for i in range(lib.PQntuples(result))] if status == 2 else []
    lib.PQclear(result); lib.PQfinish(conn)
    return rows

def with_database(url, database):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))

def without_password(url):
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc: netloc = f"[{netloc}]"
    if parts.port: netloc += f":{parts.port}"
    if parts.username: netloc = urllib.parse.quote(parts.username) + "@" + netloc
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

def timed(command, env):
    """Wall time in ms and the child's standard output."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = child.communicate()
    elapsed = (time.perf_counter() - start) * 1000
    if child.returncode != 0:
        sys.stderr.write(err.decode(errors="replace")[-4000:])
        sys.exit(f"bench-fleet: {' '.join(command[:3])} … exited with status {child.returncode}")
    return elapsed, out.decode()

def rss_of(command, env):
    """Runs once more under its own wait4 to read ru_maxrss (KiB on Linux)."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        sys.exit(f"bench-fleet: {' '.join(command[:3])} … failed while measuring memory")
    return usage.ru_maxrss, out.decode()

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--floor", nargs=2, metavar=("FILE", "PARALLEL"))
    parser.add_argument("--binary")
    parser.add_argument("--server-kind", default="")
    parser.add_argument("--commit", default="unknown")
    args = parser.parse_args()
    if args.floor:
        floor(args.floor[0], int(args.floor[1]))
        return
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    parallel = int(os.environ.get("BENCH_PARALLEL", "4"))
    admin = os.environ["BENCH_ADMIN_URL"]
    password = urllib.parse.unquote(urllib.parse.urlsplit(admin).password or "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and not k.startswith("MIGRATOR_") and k != "DATABASE_URL"}
    if password: env["PGPASSWORD"] = password
    suffix = f"{os.getpid()}_{int(time.time())}"
    template = f"migrator_bench_fleet_{suffix}_tpl"
    names = [f"migrator_bench_fleet_{suffix}_{i}" for i in range(max(SIZES))]
    created = []
    work = tempfile.mkdtemp(prefix="migrator-bench-fleet.")
    try:
        psql(admin, f'CREATE DATABASE "{template}"'); created.append(template)
        subprocess.run([args.binary, "migrate", "--migrations", "Migrations", "--log-level", "warning"], check=True,
                       stdout=subprocess.DEVNULL, env=dict(env, DATABASE_URL=without_password(with_database(admin, template))))
        print(f"creating {len(names)} databases from {template} (Migrations/ applied, roles synced)...", file=sys.stderr)
        for name in names:
            psql(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'); created.append(name)
        files = {}
        for size in SIZES:
            files[size] = os.path.join(work, f"targets-{size}.txt")
            with open(files[size], "w") as out:
                out.write("".join(without_password(with_database(admin, n)) + "\n" for n in names[:size]))
        migrate = {size: [args.binary, "migrate", "--migrations", "Migrations", "--targets", files[size],
                          "--parallel", str(parallel), "--log-level", "warning"] for size in SIZES}
        floor_cmd = {size: [sys.executable, os.path.abspath(__file__), "--floor", files[size], str(parallel)] for size in SIZES}
        server_version = psql(admin, "SHOW server_version")[0]
        print("== migrator fleet benchmark: migrate --targets over up-to-date databases ==")
        print(f"date:        {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"machine:     {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
        print(f"server:      PostgreSQL {server_version}, {args.server_kind}, over TCP, password through PGPASSWORD (scram-sha-256 on the throwaway server)")
        print(f"migrator:    commit {args.commit}, {args.binary}")
        print(f"setup:       {len(names)} databases made from one with Migrations/ applied (role hook on, built-in catalogue); --parallel {parallel}; {runs} rounds, interleaved, after 1 warm-up each")
        print(f"floor:       Python ctypes on {ctypes.util.find_library('pq')}, {parallel} threads, PQconnectdbParams with migrator's parameters, then PQfinish")
        print()
        for size in SIZES:  # warm-up
            timed(migrate[size], env); timed(floor_cmd[size], env)
        times = {(kind, size): [] for kind in ("migrate", "floor", "floor-loop") for size in SIZES}
        order = [(kind, size) for size in SIZES for kind in ("migrate", "floor")]
        for round_ in range(runs):
            for kind, size in (order if round_ % 2 == 0 else list(reversed(order))):
                if kind == "migrate":
                    times[(kind, size)].append(timed(migrate[size], env)[0])
                else:
                    elapsed, out = timed(floor_cmd[size], env)
                    times[("floor", size)].append(elapsed)
                    times[("floor-loop", size)].append(float(out.strip()))
        failed = False
        print(f"{'wall time (ms), median of ' + str(runs):<52}" + "".join(f"{size:>10}" for size in SIZES))
        med = {key: statistics.median(value) for key, value in times.items()}
        for kind, label in (("migrate", "migrator migrate --targets (whole process)"), ("floor", "floor: connect to each (whole process)"),
                            ("floor-loop", "floor: connect to each (its connect loop only)")):
            print(f"{label:<52}" + "".join(f"{med[(kind, size)]:>10.0f}" for size in SIZES))
        print()
        for size in SIZES:
            ratio = med[("migrate", size)] / med[("floor", size)]
            strict = med[("migrate", size)] / med[("floor-loop", size)]
            verdict = "PASS" if ratio <= LIMIT else "FAIL"
            failed |= verdict == "FAIL"
            print(f"{size:>5} targets: migrate / floor = {ratio:.2f}x (target <= {LIMIT}x) {verdict};"
                  f" against the floor's connect loop alone {strict:.2f}x;"
                  f" per target {med[('migrate', size)] / size * parallel:.2f} ms vs {med[('floor', size)] / size * parallel:.2f} ms of one worker")
        print()
        for size in SIZES:
            rss, _ = rss_of(migrate[size], env)
            rss_floor, _ = rss_of(floor_cmd[size], env)
            _, out = timed(migrate[size] + ["--json"], env)
            lines = [json.loads(line) for line in out.splitlines() if line.strip()]
            targets = [line for line in lines if "target" in line]
            connect = sum(t["connectMs"] for t in targets)
            total = sum(t["durationMs"] for t in targets)
            states = {}
            for t in targets: states[t["state"]] = states.get(t["state"], 0) + 1
            print(f"{size:>5} targets: max RSS migrator {rss / 1024:.1f} MiB (floor process {rss_floor / 1024:.1f} MiB);"
                  f" per target {total / len(targets):.2f} ms, of which connecting (connection + set-up query)"
                  f" {connect / len(targets):.2f} ms ({100 * connect / total:.0f}%), the rest {(total - connect) / len(targets):.2f} ms; states {states}")
        print()
        print("FAIL" if failed else "PASS")
        sys.exit(1 if failed else 0)
    finally:
        for name in created:
            try:
                psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except SystemExit as error:
                print(f"bench-fleet: could not drop {name}: {error}", file=sys.stderr)
        for entry in os.listdir(work): os.remove(os.path.join(work, entry))
        os.rmdir(work)

if __name__ == "__main__":
    main()
