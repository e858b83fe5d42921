"""Runs the Django compatibility tests (unittest, verbose) and ends with a plain `N passed, N failed` line.

Started by ./run inside its virtual environment; arguments are test names (e.g. compat_tests.test_reverse).
"""

import os
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "compat_project.settings")

import django  # noqa: E402

django.setup()


def main(names):
    loader = unittest.defaultTestLoader
    if names:
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(str(HERE / "compat_tests"), pattern="test_*.py", top_level_dir=str(HERE))
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    problems = [test for test, _ in result.failures + result.errors] + list(result.unexpectedSuccesses)
    failed = len(problems)
    # A failing setUpClass is reported as an error of its own, not as one of the tests run.
    failed_tests = sum(1 for test in problems if isinstance(test, unittest.TestCase))
    passed = result.testsRun - failed_tests - len(result.skipped)
    print(f"DjangoCompat tests took {time.monotonic() - started:.1f}s")
    print(f"DjangoCompat: {passed} passed, {failed} failed, {len(result.skipped)} skipped")
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
