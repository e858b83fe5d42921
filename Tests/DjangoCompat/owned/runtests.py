"""Runs the tests of the Django project that owns its schema, ending with a plain `N passed, N failed` line.

Started by ../run inside its virtual environment, in a process of its own (a settings module per process).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # djangotest, shared with the other project
os.environ["DJANGO_SETTINGS_MODULE"] = "owned_project.settings"

import django  # noqa: E402

django.setup()


def main(names):
    from djangotest import run_tests

    return run_tests("DjangoOwned", HERE, HERE / "owned_tests", names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
