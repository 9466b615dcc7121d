"""Writing files without losing anything: atomic replacement, and the rule for what an output may replace.

Every file zoo writes goes through :func:`atomic_write` (a temporary file in the same folder, fsynced, then
renamed over the target), so a crash or a full disk never leaves a half-written file under a final name.

Every output path a user names goes through :func:`check_output_file` first. The rule: zoo replaces only a
regular file that the same command could have written (its suffix is one the command writes; an image must also
carry zoo's mark, :data:`IMAGE_MARK`, so a user's own photo of that name is kept). It never replaces
a folder, a FIFO, a device node, a socket or a symbolic link; and it refuses a zoo checkpoint or any path inside
a zoo run folder, existing or new (only ``zoo train`` writes there), unless the user passes ``--force``.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from zoo.errors import ZooError
from zoo.text import shown


class OutputRefused(ZooError):
    """An output path holds something zoo must not replace."""


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_file_mode() -> int:
    """The permissions ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


TMP_SUFFIX = ".tmp"


#: longest file-name part of a temporary file's prefix, in bytes: with mkstemp's 8 random characters and the
#: suffix, a temporary name stays within the usual 255-byte limit even for a target name of 255 bytes
_TMP_NAME_BYTES = 200


def temp_name_prefix(path: Path) -> str:
    """The prefix of :func:`atomic_write`'s temporary files for ``path`` (``.NAME.``, NAME cut to 200 bytes)."""
    name = os.fsencode(Path(path).name)[:_TMP_NAME_BYTES]
    return f".{os.fsdecode(name)}."


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)``, fsync the file, then rename it to ``path``; the temp file never lingers.

    The file gets the permissions a plain ``open(path, "w")`` would give (mkstemp's are private, 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp):  # the temp name means nothing to the user
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc
        raise
    finally:
        os.close(fd)  # drops the flock
    fsync_dir(path.parent)


def _open_temp(path: Path) -> tuple[int, str]:
    """The temporary file of ``path`` and a descriptor holding an exclusive ``flock`` on it while it is written.

    First choice is one fixed name per target (``.NAME.zoo.tmp``): the temporary file of a writer killed by
    SIGKILL (the kernel drops its lock) is taken over and renamed by the next write of the same file, so none
    lingers. Held by a live writer, or not a plain file of one link (a symbolic link, a hard link): a fresh
    random name (mkstemp) instead, which is never anything but zoo's own."""
    import fcntl

    fixed = path.parent / f"{temp_name_prefix(path)}zoo{TMP_SUFFIX}"
    try:
        fd = os.open(fixed, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        fd = None
    if fd is not None:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                raise BlockingIOError
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.stat(fixed, follow_symlinks=False)  # a writer that just finished renamed it to its target
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise BlockingIOError
            os.ftruncate(fd, 0)
            return fd, str(fixed)
        except OSError:
            os.close(fd)
    fd, tmp = tempfile.mkstemp(prefix=temp_name_prefix(path), suffix=TMP_SUFFIX, dir=path.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, tmp


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 text (a name's undecodable bytes shown as ``\\xe9``: see zoo.text.for_file)."""
    from zoo.text import for_file

    atomic_write(path, lambda tmp: Path(tmp).write_text(for_file(text), encoding="utf-8"))


def kind_of(st: os.stat_result) -> str:
    """'folder', 'FIFO', 'device node', 'socket' or 'file' for a stat result (of lstat: 'symbolic link')."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "file"


def inside_run_folder(path: Path) -> Path | None:
    """The zoo run folder that holds ``path`` (a folder with ``spec.json`` and ``checkpoints/``), if any."""
    here = Path(os.path.abspath(path)).parent
    for folder in (here, *here.parents):
        if (folder / "spec.json").is_file() and (folder / "checkpoints").is_dir():
            return folder
    return None


def is_zoo_checkpoint(path: Path) -> bool:
    """Whether a regular file is a zoo checkpoint (its safetensors header names the zoo format)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return False
            size = int.from_bytes(head, "little")
            if not 2 <= size <= 100_000_000:
                return False
            header = fh.read(min(size, 1_000_000))
    except OSError:
        return False
    return b'"zoo-checkpoint/' in header


#: the mark zoo writes into every image it makes (PNG ``Software`` text, JPEG comment): an existing image is
#: replaced only when it carries it, so a colorized ``a.jpg`` never overwrites the user's own ``a.png``
IMAGE_MARK = "zoo"


def image_mark_options(pil_format: str) -> dict:
    """Options of PIL's ``Image.save`` that write :data:`IMAGE_MARK` into a PNG or JPEG."""
    if pil_format.upper() == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", IMAGE_MARK)
        return {"pnginfo": info}
    if pil_format.upper() == "JPEG":
        return {"comment": IMAGE_MARK.encode()}
    return {}


def has_image_mark(path: str | os.PathLike) -> bool:
    """Whether an image file carries zoo's mark (its header is read, not its pixels)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mark = image.info.get("Software", image.info.get("comment", b""))
    except Exception:  # not an image PIL reads: not one zoo wrote
        return False
    mark = mark.decode("latin-1") if isinstance(mark, bytes) else str(mark)
    return mark == IMAGE_MARK or mark.startswith(IMAGE_MARK + " ")


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...], what: str, force: bool = False,
                      flag: str = "--out", made_by_zoo: Callable[[Path], bool] | None = None) -> Path:
    """Refuse an output path whose replacement could lose something; returns it as a Path.

    ``suffixes``: the file endings this command writes (lower case, with the dot); ``what``: what it writes, for
    the message (e.g. "an ONNX model"); ``made_by_zoo``: where zoo marks its files (images: :func:`has_image_mark`),
    whether an existing file carries the mark: one that does not is the user's and needs ``--force``. See the
    module docstring for the rule.
    """
    path = Path(path)
    run = None if force else inside_run_folder(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if run is not None:  # a new file there would be taken for the run's own (or replaced by its trainer)
            raise OutputRefused(f"{flag} {shown(path)} is inside the zoo run folder {shown(run)}, which only zoo "
                                f"train writes: write elsewhere, or pass --force") from None
        return path
    except OSError as exc:
        raise OutputRefused(f"{flag} {shown(path)} cannot be checked ({exc.strerror or exc}); choose another path")
    kind = kind_of(st)
    if kind != "file":
        raise OutputRefused(f"{flag} {shown(path)} is a {kind}, not a file zoo wrote: zoo never replaces it; "
                            f"give a new file name for {what}")
    if not force:
        if is_zoo_checkpoint(path):
            raise OutputRefused(f"{flag} {shown(path)} is a zoo checkpoint: it is not replaced; give another "
                                f"file name, or pass --force to replace it")
        if run is not None:
            raise OutputRefused(f"{flag} {shown(path)} is inside the zoo run folder {shown(run)}: it is not "
                                f"replaced; write elsewhere, or pass --force")
        if path.suffix.lower() not in suffixes:
            raise OutputRefused(f"{flag} {shown(path)} exists and is not {what} ({'/'.join(suffixes)}): it is not "
                                f"replaced; give a new file name, or pass --force")
        if made_by_zoo is not None and not made_by_zoo(path):
            raise OutputRefused(f"{flag} {shown(path)} exists and zoo did not write it (it has no zoo mark): it is "
                                f"not replaced; give a new file name, or pass --force")
    return path


def check_output_folder(path: str | os.PathLike, flag: str, what: str, force: bool | None = None) -> Path:
    """Refuse an output folder that is something else (a file, a FIFO...) or lies inside a zoo run folder (only
    ``zoo train`` writes there); ``what`` it will hold, for the message; ``force``: None where the command has no
    ``--force``, else whether it was given (then a run folder is allowed). A missing folder is fine (it is made)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputRefused(f"{flag} {shown(path)} cannot be used ({exc.strerror or exc}): choose another folder")
    if st is not None and kind_of(st) != "folder":
        raise OutputRefused(f"{flag} {shown(path)} is a {kind_of(st)}, not a folder: give a folder for {what} (it is "
                            f"created if missing)")
    run = None if force else inside_run_folder(Path(os.path.realpath(path)) / "x")
    if run is not None:
        raise OutputRefused(f"{flag} {shown(path)} is inside the zoo run folder {shown(run)}, which only zoo train "
                            f"writes: choose another folder" + ("" if force is None else ", or pass --force"))
    return path


__all__ = ["IMAGE_MARK", "OutputRefused", "atomic_write", "check_output_file", "check_output_folder", "default_file_mode", "fsync_dir",
           "has_image_mark", "image_mark_options", "inside_run_folder", "is_zoo_checkpoint", "kind_of",
           "temp_name_prefix", "write_text"]
