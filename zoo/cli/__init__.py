"""The ``zoo`` command. Each subcommand lives in its own module with ``add_parser`` and ``run``.

User errors (:class:`zoo.errors.ZooError`) print one line, ``zoo: error: ...``, and exit with their code
(2 unless stated); they never print a traceback.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import sys
import warnings

from zoo.errors import ZooError, file_system_error
from zoo.text import one_line

#: subcommand -> module in zoo.cli
COMMANDS = {
    "train": "zoo.cli.train",
    "list": "zoo.cli.listing",
    "plugins": "zoo.cli.plugins",
    "colorize": "zoo.cli.colorize",
    "export": "zoo.cli.export",
    "eval": "zoo.cli.eval",
    "leaderboard": "zoo.cli.leaderboard",
    "plot": "zoo.cli.plot",
    "demo": "zoo.cli.demo",
    "data": "zoo.cli.data",
}


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"zoo: warning: {one_line(message)}", file=sys.stderr if file is None else file)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors (a bad flag value, an unknown flag, a missing argument) are one escaped
    ``zoo: error:`` line with exit code 2, like every other user error, instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"zoo: error: {one_line(message)} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from zoo import __version__

    parser = _Parser(prog="zoo", allow_abbrev=False, description="A plugin-style model zoo for GAN image colorization.")
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    # allow_abbrev=False: a typo such as --step must be an error, not silently read as --steps
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=functools.partial(_Parser, allow_abbrev=False))
    for name, module in COMMANDS.items():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _one_line_warning
    # fastai decorates functions with torch.jit.script at import; newer torch deprecates that. Not the user's concern.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (its one line is printed) or --help / --version: their exit code
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.run(args) or 0)
    except ZooError as exc:
        print(f"zoo: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zoo list | head`
        return 0
    except OSError as exc:  # a full disk or an unwritable path where no command expected one: still one line
        print(f"zoo: error: {one_line(file_system_error(exc))}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())
