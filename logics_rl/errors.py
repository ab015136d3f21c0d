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
