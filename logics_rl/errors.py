"""The library's error base: an error whose type tells the user what went wrong.

Raised inside a worker, such an error reaches the driver as itself (not wrapped in a generic
worker error), with ``rank``, ``method`` and ``worker_traceback`` attached, so the driver can
catch ``WeightSyncError`` or ``DataError`` by type. Pure Python: the plugin kit imports it.
"""

from __future__ import annotations


class LogicsRLError(Exception):
    """Base of the errors the library raises on purpose (bad config, bad data, a failed check)."""


class TrainingError(LogicsRLError, RuntimeError):
    """The run cannot continue (no usable batch, a non-finite update, ...)."""


class ClusterResourcesError(LogicsRLError, RuntimeError):
    """The Ray cluster does not have (or cannot free) the resources the run asks for."""


class CheckpointError(LogicsRLError):
    """A checkpoint cannot be written or read: names the checkpoint and the file."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file does not match the manifest written with it (or is not data)."""

    def __init__(self, checkpoint: str, file: str, reason: str):
        self.checkpoint, self.file, self.reason = checkpoint, file, reason
        super().__init__(checkpoint, file, reason)

    def __str__(self) -> str:
        return f"checkpoint {self.checkpoint}: {self.file}: {self.reason}"

    def __reduce__(self):
        return (CheckpointCorruptError, (self.checkpoint, self.file, self.reason))


class DiskFullError(CheckpointError):
    """Not enough free space to write a checkpoint."""
