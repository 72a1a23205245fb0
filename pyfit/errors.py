"""The exceptions pyfit raises, so callers can catch pyfit's refusals by type."""

from __future__ import annotations


class InputError(ValueError):
    """Data or settings that pyfit refuses before it changes any state."""


class UnknownNameError(KeyError):
    """A registry lookup of a name that nothing is registered under."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class PluginError(RuntimeError):
    """A plugin failed to load while PYFIT_STRICT_PLUGINS=1 asks for failures to be errors."""


class DataError(InputError):
    """A data file pyfit cannot use; the message names the file, and the row and column where it can."""


class CheckpointError(InputError):
    """A file that is not a readable pyfit checkpoint (truncated, foreign, or from an unknown format)."""


class DistributedError(RuntimeError):
    """A data-parallel fit whose ranks stopped working together: one died, hung or failed on its own."""
