"""The no-op migrate benchmark (started by scripts/bench-noop, which says what it measures)."""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

NAME = "bench-noop"
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--binary", required=True)
parser.add_argument("--psql", required=True, help="psql on the PATH (for information)")
parser.add_argument("--psql-bare", required=True, help="$(pg_config --bindir)/psql, the floor")
parser.add_argument("--prefix", required=True)
parser.add_argument("--work", required=True)
parser.add_argument("--commit", default="unknown")
parser.add_argument("--database", required=True, help="the database with Migrations/ applied")
parser.add_argument("--runs", type=int, default=31)
parser.add_argument("--limit", type=float, default=1.5)
args = parser.parse_args()

server = benchlib.Server(args.psql_bare, args.prefix, args.work, NAME)
report = benchlib.Report(NAME)
url = server.url(args.database)
env = dict(os.environ, DATABASE_URL=url)
commands = {
    "migrate": [args.binary, "migrate", "--migrations", "Migrations", "--log-level", "warning"],
    "psql": [args.psql_bare, url, "-X", "-q", "-c", "select 1"],
    "psql-path": [args.psql, url, "-X", "-q", "-c", "select 1"],
    "help": [args.binary, "--help"],
    "psql-version": [args.psql_bare, "--version"],
}
labels = {
    "migrate": "migrator migrate (no-op, Migrations/)",
    "psql": "psql -X -q -c 'select 1' (bare binary)",
    "psql-path": f"{args.psql} -X -q -c 'select 1'",
    "help": "migrator --help",
    "psql-version": "psql --version (bare binary)",
}


def once(name, rss=False):
    return benchlib.run(commands[name], env=env, name=NAME, work=args.work, rss=rss)


for name in commands:  # warm-up, not counted
    once(name)
times = {name: [] for name in commands}
order = list(commands)
for i in range(args.runs):  # timed without a wrapper
    for name in (order if i % 2 == 0 else reversed(order)):
        times[name].append(once(name).wall_ms)
rss = {name: [once(name, rss=True).max_rss_kib] for name in commands}  # one more run each, for its peak memory

median = {name: statistics.median(t) for name, t in times.items()}
print(f"{'wall time (ms)':<46}{'median':>9}{'mean':>9}{'min':>9}{'max':>9}{'max RSS':>12}")
for name, label in labels.items():
    t = times[name]
    print(f"{label:<46}{median[name]:9.1f}{statistics.mean(t):9.1f}{min(t):9.1f}{max(t):9.1f}{benchlib.kib(max(rss[name])):>12}")
print(f"(max RSS: one extra run of each, by {benchlib.RSS_TOOL})")
print()
report.ratio("no-op migrate", median["migrate"], median["psql"], args.limit, "no-op migrate / bare psql, median wall")
print(f"   no-op migrate / {args.psql} (for information): {median['migrate'] / median['psql-path']:.2f}x")
print(f"   start-up: migrator --help {median['help']:.1f} ms, bare psql --version {median['psql-version']:.1f} ms "
      f"({median['help'] / median['psql-version']:.2f}x, for information)")
sys.exit(report.summary())
