#!/usr/bin/env python3
"""Advisory check of the dependency tree (run by scripts/test.sh).

Every package in Cargo.lock is checked against the security advisories
of the RustSec database (https://rustsec.org). CI cannot reach that
database (it lives on GitHub), so the check reads a snapshot kept in the
repository, `scripts/advisories.json`: for every advisory, its id, the
package, its kind and the version ranges that are patched or unaffected
(no advisory text). Refresh it from a checkout of the database with

    git clone https://github.com/rustsec/advisory-db /tmp/advisory-db
    python3 scripts/check_advisories.py --refresh /tmp/advisory-db

A locked version matching none of an advisory's patched or unaffected
ranges is affected. A vulnerability or an unsound API fails the check;
an unmaintained crate or a notice is printed as a warning (as
cargo-audit does). A finding that has been looked at and does not apply
goes into IGNORED below with the reason.

Exit status: 0 clean (warnings allowed), 1 an affected package.
"""

import json
import os
import re
import subprocess
import sys
import tomllib

SNAPSHOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "advisories.json")

# Advisory id -> why it does not apply to Swarmer.
IGNORED = {}

# Kinds that fail the check; the others (unmaintained, notice) warn.
FAILING = {"vulnerability", "unsound"}


def parse_version(text):
    """A semver version as a sortable tuple: (major, minor, patch, pre),
    where a release sorts after every pre-release of the same numbers."""
    text = text.strip().split("+", 1)[0]
    core, _, pre = text.partition("-")
    numbers = [int(n) for n in core.split(".")]
    while len(numbers) < 3:
        numbers.append(0)
    if not pre:
        return (*numbers[:3], (1,))
    ids = []
    for part in pre.split("."):
        # Numeric identifiers sort before alphanumeric ones.
        ids.append((0, int(part), "") if part.isdigit() else (1, 0, part))
    return (*numbers[:3], (0, tuple(ids)))


def caret_upper(numbers):
    """The exclusive upper bound of `^numbers` (Cargo's default)."""
    major, minor, patch = (numbers + [0, 0, 0])[:3]
    given = len(numbers)
    if major > 0 or given == 1:
        return (major + 1, 0, 0, (0, ()))
    if minor > 0 or given == 2:
        return (0, minor + 1, 0, (0, ()))
    return (0, 0, patch + 1, (0, ()))


COMPARATOR = re.compile(r"^\s*(>=|<=|>|<|=|\^|~)?\s*([0-9][0-9A-Za-z.+-]*)\s*$")


def matches_one(version, comparator):
    m = COMPARATOR.match(comparator)
    if not m:
        raise ValueError(f"unreadable version requirement {comparator!r}")
    op, bound_text = m.group(1) or "^", m.group(2)
    bound = parse_version(bound_text)
    numbers = [int(n) for n in bound_text.split("-", 1)[0].split("+", 1)[0].split(".")]
    if op == ">=":
        return version >= bound
    if op == ">":
        return version > bound
    if op == "<=":
        return version <= bound
    if op == "<":
        return version < bound
    if op == "=":
        return version == bound
    if op == "~":
        major, minor = (numbers + [0, 0])[:2]
        upper = (major + 1, 0, 0, (0, ())) if len(numbers) == 1 else (major, minor + 1, 0, (0, ()))
        return bound <= version < upper
    return bound <= version < caret_upper(numbers)


def matches(version, requirement):
    """A requirement is comparators joined by commas, all of which must hold."""
    return all(matches_one(version, part) for part in requirement.split(","))


def affected(version_text, advisory):
    version = parse_version(version_text)
    for requirement in advisory["patched"] + advisory["unaffected"]:
        if matches(version, requirement):
            return False
    return True


def refresh(database):
    """Write the snapshot from a checkout of rustsec/advisory-db."""
    advisories = []
    crates = os.path.join(database, "crates")
    for root, _, files in os.walk(crates):
        for name in sorted(files):
            if not name.endswith(".md"):
                continue
            text = open(os.path.join(root, name), encoding="utf-8").read()
            m = re.search(r"```toml\n(.*?)\n```", text, re.S)
            if not m:
                raise SystemExit(f"{name}: no TOML front matter")
            data = tomllib.loads(m.group(1))
            head, versions = data["advisory"], data.get("versions", {})
            if head.get("withdrawn"):
                continue
            advisories.append(
                {
                    "id": head["id"],
                    "package": head["package"],
                    "kind": head.get("informational", "vulnerability"),
                    "patched": versions.get("patched", []),
                    "unaffected": versions.get("unaffected", []),
                }
            )
    advisories.sort(key=lambda a: (a["package"], a["id"]))
    commit = subprocess.run(
        ["git", "-C", database, "log", "-1", "--format=%H %cs"], capture_output=True, text=True
    ).stdout.split()
    snapshot = {
        "source": "https://github.com/rustsec/advisory-db (CC0-1.0), version ranges only",
        "commit": commit[0] if commit else "unknown",
        "date": commit[1] if len(commit) > 1 else "unknown",
        "advisories": advisories,
    }
    with open(SNAPSHOT, "w", encoding="utf-8") as out:
        json.dump(snapshot, out, indent=0, separators=(",", ":"))
        out.write("\n")
    print(f"{len(advisories)} advisories from {snapshot['commit'][:12]} ({snapshot['date']}) -> {SNAPSHOT}")


def check(lockfile):
    snapshot = json.load(open(SNAPSHOT, encoding="utf-8"))
    by_package = {}
    for advisory in snapshot["advisories"]:
        by_package.setdefault(advisory["package"], []).append(advisory)
    lock = tomllib.load(open(lockfile, "rb"))
    failures, warnings = [], []
    for package in lock.get("package", []):
        # Only crates from a registry: the workspace's own are not published.
        if "source" not in package:
            continue
        for advisory in by_package.get(package["name"], []):
            if advisory["id"] in IGNORED or not affected(package["version"], advisory):
                continue
            line = (
                f"{package['name']} {package['version']}: {advisory['id']} ({advisory['kind']}), "
                f"fixed in {', '.join(advisory['patched']) or 'no release'}; "
                f"https://rustsec.org/advisories/{advisory['id']}"
            )
            (failures if advisory["kind"] in FAILING else warnings).append(line)
    for line in warnings:
        print(f"advisory warning: {line}")
    for line in failures:
        print(f"advisory: {line}")
    total = len(lock.get("package", []))
    print(
        f"advisories: {total} packages checked against {len(snapshot['advisories'])} advisories "
        f"(RustSec snapshot {snapshot['date']}): {len(failures)} affected, {len(warnings)} warnings"
    )
    return 1 if failures else 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["--refresh"] and len(args) == 2:
        refresh(args[1])
        return 0
    if args[:1] == ["--self-test"]:
        return self_test()
    if args:
        print(__doc__)
        return 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return check(os.path.join(root, "Cargo.lock"))


def self_test():
    """The range logic, on the forms the database uses."""
    cases = [
        ("0.9.1", ">= 0.9.1", True),
        ("0.9.0", ">= 0.9.1", False),
        ("0.8.9", "^0.8.5", True),
        ("0.9.0", "^0.8.5", False),
        ("1.4.0", "^1.2", True),
        ("2.0.0", "^1.2", False),
        ("0.0.4", "^0.0.3", False),
        ("0.1.7", "< 0.2.0, >= 0.1.5", True),
        ("0.2.0", "< 0.2.0, >= 0.1.5", False),
        ("1.0.0-alpha.2", ">= 1.0.0-alpha.10", False),
        ("1.0.0-alpha.11", ">= 1.0.0-alpha.10", True),
        ("1.0.0", ">= 1.0.0-rc.1", True),
        ("1.0.0-rc.1", ">= 1.0.0", False),
        ("1.3.9", "~1.3.2", True),
        ("1.4.0", "~1.3.2", False),
        ("3.0.0", "= 3.0.0", True),
    ]
    bad = [(v, r, want) for v, r, want in cases if matches(parse_version(v), r) != want]
    for v, r, want in bad:
        print(f"self-test: {v} matches {r!r} should be {want}")
    print(f"self-test: {len(cases) - len(bad)}/{len(cases)} cases right")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
