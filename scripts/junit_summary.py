"""Summarise the JUnit reports of one test run: a line per part, then the whole run.

Usage: python scripts/junit_summary.py REPORT.xml ...  (the part is the file's name)
The last line reads 'total: N passed, N failed, N skipped'; exit 1 when nothing ran.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def counts(report: Path) -> dict[str, int]:
    """passed / failed (failures and errors) / skipped of one pytest JUnit report."""
    root = ElementTree.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {"tests": 0, "failed": 0, "skipped": 0}
    for suite in suites:
        total["tests"] += int(suite.get("tests", 0))
        total["failed"] += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        total["skipped"] += int(suite.get("skipped", 0))
    return {"passed": total["tests"] - total["failed"] - total["skipped"], "failed": total["failed"],
            "skipped": total["skipped"]}


def line(figures: dict[str, int]) -> str:
    return f"{figures['passed']} passed, {figures['failed']} failed, {figures['skipped']} skipped"


def main(paths: list[str]) -> int:
    whole = {"passed": 0, "failed": 0, "skipped": 0}
    for path in map(Path, paths):
        if not path.is_file():
            continue
        part = counts(path)
        print(f"{path.stem:>32}  {line(part)}")
        for key in whole:
            whole[key] += part[key]
    print(f"total: {line(whole)}")
    return 0 if whole["passed"] + whole["failed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
