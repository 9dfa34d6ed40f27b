#!/usr/bin/env python3
"""Licence check of the dependency tree (run by scripts/test.sh).

Every package in Cargo.lock must be usable under a licence on the allow
list below: permissive licences compatible with Swarmer's own
"MIT OR Apache-2.0". A package's `license` field is an SPDX expression
(`A OR B`, `A AND B`, `A WITH exception`, parentheses; old crates write
`A/B` for OR); the check passes when the expression can be satisfied with
allowed licences only. A package without an SPDX expression fails the
check and must be looked at by hand (add it to REVIEWED with the reason).

Reads `cargo metadata --locked` (no network beyond the registry cargo
already uses), prints what fails, exits 1 if anything does.
"""

import json
import re
import subprocess
import sys

ALLOWED = {
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "Unlicense",
    "BSL-1.0",
    "CC0-1.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    # webpki-roots' data: Mozilla's root list, permissive data licence.
    "CDLA-Permissive-2.0",
}

# Packages whose licence is not an SPDX expression, checked by hand:
# name -> why it is acceptable.
REVIEWED = {}


def tokens(expression):
    # Old crates write "MIT/Apache-2.0" for "MIT OR Apache-2.0".
    text = expression.replace("/", " OR ").replace("(", " ( ").replace(")", " ) ")
    return text.split()


def satisfiable(expression):
    """True when `expression` can be met with ALLOWED licences only."""
    items = tokens(expression)
    position = 0

    def peek():
        return items[position] if position < len(items) else None

    def take():
        nonlocal position
        position += 1
        return items[position - 1]

    def primary():
        token = take()
        if token == "(":
            value = either()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expression!r}")
            return value
        if not re.fullmatch(r"[A-Za-z0-9.+-]+", token or ""):
            raise ValueError(f"unexpected {token!r} in {expression!r}")
        value = token.rstrip("+") in ALLOWED
        if peek() == "WITH":
            take()
            take()  # an exception only adds permissions (e.g. LLVM-exception)
        return value

    def both():
        value = primary()
        while peek() == "AND":
            take()
            value = primary() and value
        return value

    def either():
        value = both()
        while peek() == "OR":
            take()
            value = both() or value
        return value

    result = either()
    if position != len(items):
        raise ValueError(f"trailing {items[position:]} in {expression!r}")
    return result


def self_test():
    assert satisfiable("MIT OR Apache-2.0")
    assert satisfiable("MIT/Apache-2.0")
    assert satisfiable("(MIT OR Apache-2.0) AND Unicode-3.0")
    assert satisfiable("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT")
    assert satisfiable("MIT OR Apache-2.0 OR LGPL-2.1-or-later")
    assert not satisfiable("GPL-3.0-only")
    assert not satisfiable("MIT AND GPL-2.0-only")
    assert not satisfiable("(GPL-2.0-only OR LGPL-2.1-only) AND MIT")


def main():
    self_test()
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    problems = []
    for package in metadata["packages"]:
        name, version, licence = package["name"], package["version"], package.get("license")
        if licence is None:
            if name not in REVIEWED:
                problems.append(f"{name} {version}: no SPDX licence expression (license_file: {package.get('license_file')})")
            continue
        try:
            if not satisfiable(licence):
                problems.append(f"{name} {version}: {licence} is not on the allow list")
        except ValueError as error:
            problems.append(f"{name} {version}: {error}")
    for problem in problems:
        print(f"licence check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"licence check: {len(metadata['packages'])} packages, all under allowed licences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
