"""Config files of a training spec: YAML, TOML or JSON, read as plain data into a dict (:func:`read_config`).

A layer of :func:`zoo.spec.build_spec` (preset < config file < flags < ``--set``). Every problem is one
:class:`~zoo.errors.SpecError` line naming the file: a missing or unreadable file, malformed text (with its
line for YAML), a YAML tag (never run: plain data only), a key given twice, a document that is not a mapping.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import SpecError
from zoo.text import one_line, shown


class _PlainYamlLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (plain data only: never a Python object) that also refuses a key given
    twice in one mapping, which YAML forbids but PyYAML would silently resolve to the later value."""


def _construct_unique_mapping(loader: _PlainYamlLoader, node: yaml.MappingNode, deep: bool = False):
    seen = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_PlainYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)
_YAML_TAG = re.compile(r"could not determine a constructor for the tag '(?:tag:yaml\.org,2002:)?([^']*)'")


def _unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {shown(key)}")
        out[key] = value
    return out


#: formats by file suffix; a path without one of these that is not a regular file is sniffed (see read_config)
CONFIG_FORMATS = {".yaml": "YAML", ".yml": "YAML", ".toml": "TOML", ".json": "JSON"}
_TOML_START = re.compile(r"^\s*(\[[^\]]+\]|[A-Za-z0-9_.\"'-]+\s*=)")


def _sniff_format(text: str) -> str:
    """The format of a config read from a pipe or device: JSON if it starts with '{', TOML if its first
    meaningful line is a [table] or key = value, else YAML (an empty text is an empty YAML document)."""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("{"):
            return "JSON"
        return "TOML" if _TOML_START.match(line) and not line.rstrip().endswith(":") else "YAML"
    return "YAML"


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a dict; one-line SpecError on any problem.

    The format comes from the suffix (.yaml/.yml, .toml, .json). Any readable file-like path works: a path that
    is not a regular file and has none of these suffixes (a pipe such as bash's ``<(...)`` = ``/dev/fd/63``,
    ``/dev/stdin``) is read once and its format sniffed (JSON if it starts with ``{``, TOML if its first line is
    a ``[table]`` or ``key = value``, else YAML). An empty file, ``/dev/null`` included, is an empty config: a
    layer that changes nothing. YAML is read as plain data (tags such as ``!!python/object`` are refused,
    nothing is ever run) and a key given twice in one mapping is an error in every format.
    """
    path = Path(path)
    name = shown(path)
    if path.is_dir():
        raise SpecError(f"config file {name} is a folder: give a .yaml, .toml or .json file")
    if not path.exists():
        why = "is a broken link" if path.is_symlink() else "does not exist"
        raise SpecError(f"config file {name} {why}")
    suffix = path.suffix.lower()
    fmt = CONFIG_FORMATS.get(suffix)
    if fmt is None and path.is_file():
        raise SpecError(f"config file {name}: unknown format {shown(suffix)}; use .yaml, .yml, .toml or .json")
    try:
        with open(path, "rb") as f:  # once: a pipe cannot be read twice
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"config file {name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                        f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise SpecError(f"cannot read config file {name}: {one_line(exc.strerror or exc)}") from None
    if fmt is None:
        fmt = _sniff_format(text)
    try:
        if fmt == "YAML":
            data = yaml.load(text, Loader=_PlainYamlLoader)  # noqa: S506 - a SafeLoader subclass
        elif fmt == "TOML":
            data = tomllib.loads(text)
        else:
            data = json.loads(text, object_pairs_hook=_unique_json_object)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        tag = _YAML_TAG.search(problem)
        if tag:
            raise SpecError(f"config file {name}{where}: refused YAML tag '!!{one_line(tag.group(1))}': a config "
                            f"holds plain data only (zoo never builds Python objects from YAML)") from None
        raise SpecError(f"config file {name}{where}: malformed YAML: {one_line(problem)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"config file {name}: malformed TOML: {one_line(exc)}") from None
    except ValueError as exc:  # json.JSONDecodeError, or a duplicate key found by _unique_json_object
        raise SpecError(f"config file {name}: malformed JSON: {one_line(exc)}") from None
    except RecursionError:
        raise SpecError(f"config file {name}: nested too deeply to be a spec") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"config file {name} must hold a mapping of spec keys, not {type(data).__name__}")
    return data


__all__ = ["CONFIG_FORMATS", "read_config"]
