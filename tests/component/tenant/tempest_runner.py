"""Run tempest tests by name inside the tempest venv; print a JSON summary on stdout.

Usage: python tempest_runner.py MODULE... [--exclude SUBSTRING...]
"""

from __future__ import annotations

import json
import sys
import unittest


def _flatten(suite: unittest.TestSuite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _flatten(item)
        else:
            yield item


def main(argv: list[str]) -> None:
    names, excludes = argv, []
    if "--exclude" in argv:
        cut = argv.index("--exclude")
        names, excludes = argv[:cut], argv[cut + 1 :]
    loaded = unittest.TestLoader().loadTestsFromNames(names)
    suite = unittest.TestSuite()
    for test in _flatten(loaded):
        if not any(e in test.id() for e in excludes):
            suite.addTest(test)
    result = unittest.TestResult()
    suite.run(result)
    for test, trace in result.failures + result.errors:
        sys.stderr.write(f"=== {test.id()}\n{trace[-2000:]}\n")
    summary = {
        "run": result.testsRun,
        "failed": [t.id() for t, _ in result.failures + result.errors],
        "skipped": [[t.id(), reason] for t, reason in result.skipped],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1:])
