"""Runs the tests of the Django project that owns its schema, ending with a plain `N passed, N failed` line.

Started by ../run inside its virtual environment, in a process of its own (a settings module per process).
"""

import os
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ["DJANGO_SETTINGS_MODULE"] = "owned_project.settings"

import django  # noqa: E402

django.setup()


def main(names):
    loader = unittest.defaultTestLoader
    if names:
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(str(HERE / "owned_tests"), pattern="test_*.py", top_level_dir=str(HERE))
    started = time.monotonic()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    problems = [test for test, _ in result.failures + result.errors] + list(result.unexpectedSuccesses)
    failed = len(problems)
    failed_tests = sum(1 for test in problems if isinstance(test, unittest.TestCase))
    passed = result.testsRun - failed_tests - len(result.skipped)
    print(f"DjangoOwned tests took {time.monotonic() - started:.1f}s")
    print(f"DjangoOwned: {passed} passed, {failed} failed, {len(result.skipped)} skipped")
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
