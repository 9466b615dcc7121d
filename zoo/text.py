"""Showing text that comes from outside (file names, config keys, plugin names) safely in one line.

A file may be named ``\\x1b[2J\\x1b[Hx.jpg`` (it would clear the terminal), hold a newline (it would break the
"one line per error" rule) or bytes that are not UTF-8 (Python keeps them as lone surrogates, which cannot be
printed at all). :func:`shown` is how every name from outside appears in a message; :func:`one_line` is the
last guard the CLI applies to every error and warning line it prints.
"""
from __future__ import annotations

import os


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by os.fsdecode (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every non-printable character (control characters, ESC, newlines, lone surrogates from
    undecodable bytes, other invisible code points) written as a backslash escape; printable text, accents and
    other scripts included, is kept."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def shown(value: object) -> str:
    """A name from outside as it appears in a message: quoted, with non-printable characters escaped.

    Paths and bytes are decoded the way the OS gave them (``os.fsdecode``), so an undecodable byte shows as
    ``\\xe9`` rather than breaking the print.
    """
    if isinstance(value, (bytes, os.PathLike)):
        value = os.fsdecode(value)
    body = escape(str(value).replace("\\", "\\\\"))  # a literal backslash is doubled: escapes stay unambiguous
    if "'" in body and '"' not in body:
        return f'"{body}"'
    return "'" + body.replace("'", "\\'") + "'"


def for_file(text: str) -> str:
    """``text`` as it can be written into a UTF-8 file (a Markdown or HTML board, a report): every undecodable byte
    of a name (a lone surrogate from os.fsdecode) written as ``\\xe9``, the rest kept as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(_escape_char(ch) if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def one_line(text: str) -> str:
    """A whole message made safe for one terminal line: every non-printable character escaped."""
    return escape(str(text))


def log_line(msg: str) -> None:
    """Print one progress or log line to stderr, made safe by :func:`one_line` (a data or run name that is not UTF-8
    shows as ``\\xe9``, as in errors). While a tqdm progress bar is drawn, the bars are cleared, the line printed
    on its own and the bars drawn again below it (tqdm's ``external_write_mode``), so a log line never lands on a
    bar's line; without a bar a leading newline (which would end one) is kept."""
    import sys

    body = msg.lstrip("\n")
    tqdm_std = sys.modules.get("tqdm.std")  # only when a caller drew a bar: logging never imports tqdm
    bar = getattr(tqdm_std, "tqdm", None)
    if bar is not None and getattr(bar, "_instances", None):
        with bar.external_write_mode(file=sys.stderr):
            print(one_line(body), file=sys.stderr, flush=True)
        return
    print(msg[: len(msg) - len(body)] + one_line(body), file=sys.stderr, flush=True)


def print_path(path) -> None:
    """Print a path zoo made on stdout as its own bytes (for scripts: ``RUN=$(zoo train ...)``): a name that is not
    UTF-8 cannot be printed as text under a UTF-8 locale."""
    import sys

    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream
        print(one_line(os.fsdecode(path)), flush=True)
        return
    buffer.write(os.fsencode(path) + b"\n")
    buffer.flush()


__all__ = ["escape", "for_file", "log_line", "one_line", "print_path", "shown"]
