"""zoo list: every registered component with its options (defaults, bounds, descriptions)."""
from __future__ import annotations

import argparse
import json

from zoo.component import KIND_TITLES, KINDS
from zoo.registry import describe_options, get_registry


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list registered components and their options")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--kind", choices=list(KINDS), help="only this kind of component")
    p.set_defaults(run=run)


def catalogue(kind: str | None = None) -> dict[str, list[dict]]:
    registry = get_registry()
    out = {}
    for k in KINDS:
        if kind and k != kind:
            continue
        out[k] = [{
            "name": c.qualified_name if c.name in registry.clashes[k] else c.name,
            "qualified_name": c.qualified_name,
            "contract": c.contract,
            "plugin": c.plugin.name,
            "module": c.plugin.module,
            "distribution": c.plugin.distribution,
            "version": c.plugin.version,
            "doc": (c.options_model.__doc__ or "").strip().splitlines()[0] if c.options_model.__doc__ else "",
            "options": describe_options(c.options_model),
        } for c in registry.all(k)]
    return out


def _bounds(b: dict) -> str:
    sym = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    return ", ".join(f"{sym[k]} {v}" for k, v in b.items())


def run(args: argparse.Namespace) -> int:
    data = catalogue(args.kind)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from zoo.text import one_line

    def say(line: str) -> None:  # providers and option descriptions come from plugins: shown escaped
        print(one_line(line))

    for kind, comps in data.items():
        say(f"{KIND_TITLES[kind]}:")
        for c in comps:
            provider = f"{c['distribution']} {c['version']}" if c["distribution"] else c["module"]
            clash = "  [name clash: use the package:name form]" if ":" in c["name"] else ""
            say(f"  {c['name']}  ({provider}){clash}")
            for o in c["options"]:
                bounds = _bounds(o["bounds"])
                say(f"      {o['name']}: {o['type']} = {json.dumps(o['default'])}"
                    f"{'  [' + bounds + ']' if bounds else ''}  {o['description']}")
        print()
    return 0
