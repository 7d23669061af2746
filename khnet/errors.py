"""The errors khnet raises for bad user input. Imports nothing from khnet.

Every subclass carries a one-line message that names the bad value and says how to fix it; the CLI
prints exactly that line (no traceback unless ``--debug`` or ``KHNET_DEBUG=1``).
"""

__all__ = ["ArchError", "DataError", "GroundTruthError", "KhnetError"]


class KhnetError(Exception):
    """Base class of all user-facing khnet errors."""


class ArchError(KhnetError, ValueError):
    """A malformed architecture string, op name or index."""


class DataError(KhnetError):
    """A dataset that cannot be found, read or used."""


class GroundTruthError(KhnetError):
    """A benchmark query that cannot be answered (unknown dataset, split or schedule; missing file)."""
