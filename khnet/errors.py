"""The errors khnet raises for bad user input or an unusable environment. Imports nothing from khnet.

Every subclass carries a one-line message that names the bad value and says how to fix it; the CLI
prints exactly that line (no traceback unless ``--debug`` or ``KHNET_DEBUG=1``) and exits with 2 for a
``UsageError`` (a value or a combination of options that cannot work, whatever the machine holds) and with 1
for any other ``KhnetError`` (missing or corrupt files and data, a device that is not there at run time).
"""

__all__ = [
    "ArchError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataUsageError",
    "ExportError",
    "ExportFormatError",
    "GroundTruthError",
    "KhnetError",
    "TrainingDiverged",
    "UsageError",
    "require_choice",
]


class KhnetError(Exception):
    """Base class of all user-facing khnet errors (exit status 1 on the command line)."""


class UsageError(KhnetError):
    """A value out of its range, an unknown name or options that contradict each other (exit status 2)."""


class ArchError(UsageError, ValueError):
    """A malformed architecture string, op name or index."""


class DataError(KhnetError):
    """A dataset that cannot be found, read or used."""


class DataUsageError(DataError, UsageError):
    """An unknown dataset name or split, or a data setting out of range."""


class GroundTruthError(KhnetError):
    """A benchmark query that cannot be answered (unknown dataset, split or schedule; missing file)."""


class CheckpointError(KhnetError):
    """A missing, corrupt or mismatched supernet, checkpoint or zoo file."""


class ConfigError(UsageError, ValueError):
    """An invalid configuration value."""


class ExportError(KhnetError):
    """A network that cannot be written or read in the requested format."""


class ExportFormatError(ExportError, UsageError):
    """An output name whose suffix khnet cannot write (or that contradicts the options given)."""


class TrainingDiverged(KhnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def require_choice(kind: str, value: object, choices, error: type[UsageError] = UsageError, extra: str = "") -> None:
    """Raise ``error`` ("unknown KIND 'value'; choose one of: a, b[, EXTRA]") unless ``value`` is in ``choices``."""
    if value not in choices:
        raise error(f"unknown {kind} {value!r}; choose one of: {', '.join(map(str, choices))}{extra}")
