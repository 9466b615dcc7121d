"""zoo plugins: loaded plugins, where each comes from, and what it provides."""
from __future__ import annotations

import argparse
import json

from zoo.component import KINDS
from zoo.registry import get_registry


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="list loaded plugins and where each comes from")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    rows = []
    for info in registry.plugins:
        provides = [f"{kind}:{c.name}" for kind in KINDS for c in registry.all(kind)
                    if c.plugin.name == info.name and c.plugin.module == info.module]
        clashing = [f"{kind}:{c.qualified_name}" for kind in KINDS for c in registry.all(kind)
                    if c.name in registry.clashes[kind] and c.plugin is info]
        rows.append({"name": info.name, "module": info.module, "distribution": info.distribution,
                     "version": info.version, "status": info.error or "loaded", "provides": provides,
                     "clashes": clashing})
    clashes = [(kind, name) for kind in KINDS for name in sorted(registry.clashes[kind])]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from zoo.text import one_line

    def say(line: str) -> None:  # names, versions and messages come from installed packages: shown escaped
        print(one_line(line))

    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "(not from a distribution)"
        say(f"{r['name']}: {r['module']} from {dist} [{r['status']}]")
        if r["provides"]:
            say(f"    provides {', '.join(r['provides'])}")
    for kind, name in clashes:
        say(f"clash: {registry.clash_message(kind, name)}")
    return 0
