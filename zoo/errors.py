"""User-facing errors.

Anything a user can cause (a bad spec value, an unknown component, a broken image folder, a corrupt
checkpoint) raises a ``ZooError``. The CLI prints its message as one line and exits with code 2; it never
shows a traceback for these.
"""


class ZooError(Exception):
    """An error caused by user input; its message says what is wrong and what to do."""

    exit_code = 2


class UnknownComponent(ZooError):
    """No registered component has the requested name."""


class DuplicateComponent(ZooError):
    """Two plugins registered the same component name."""


class SpecError(ZooError):
    """A training spec or config file is invalid."""


class DataError(ZooError):
    """A data source is missing, empty or unusable."""


class CheckpointError(ZooError):
    """A file given as a checkpoint is missing, corrupt or not a zoo checkpoint."""


class PluginError(ZooError):
    """A plugin misbehaves (wrong output shape, broken builder)."""


class TrainingStopped(ZooError):
    """Training stopped early (signal, non-finite loss, out of memory); the message says which checkpoint holds
    the run and how to continue. ``exit_code``: 130 (Ctrl-C), 143 (SIGTERM), 3 (a fault of the run)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


def file_system_error(exc: OSError) -> ZooError:
    """A file-system failure no command foresaw (a full disk, a read-only folder, a file where a folder goes,
    standard output on a full disk) as the one-line user error the CLI prints."""
    from zoo.text import shown

    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return ZooError(f"a file operation failed: {reason}; check the output paths, their permissions and the free "
                        f"disk space")
    return ZooError(f"cannot write or read {shown(exc.filename)}: {reason}; check the path, its permissions and the "
                    f"free disk space")
