"""Runs the Django compatibility tests (unittest, verbose) and ends with a plain `N passed, N failed` line.

Started by ./run inside its virtual environment; arguments are test names (e.g. compat_tests.test_reverse).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compat_project.settings")

import django  # noqa: E402

django.setup()


def main(names):
    from djangotest import run_tests

    return run_tests("DjangoCompat", HERE, HERE / "compat_tests", names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
