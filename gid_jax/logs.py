"""Library messages that are noise in this project, dropped at the logger that emits them.

Each rule names the library file and the exact message it drops, so that every other warning
or error still shows; a hook also drops the "Event loop is closed" tracebacks TensorStore prints
after a failed checkpoint read or write, and a warnings filter the never-awaited write coroutines
that a failed save leaves behind. `quiet_libraries()` installs all three; it is idempotent, so
every entry point (`gid`, `quickstart`, `train_stages`, the checkpoint code) just calls it.
"""

from __future__ import annotations

import logging
import sys
import warnings

# (logger, emitting file, text of the message): each dropped message, with why.
_RULES = (
    # We ask for read_only managers to restore weights; Orbax warns that we did.
    ("absl", "/orbax/checkpoint/", "Given directory is read only"),
    ("absl", "/orbax/checkpoint/", "CheckpointManagerOptions.read_only=True"),
    # A failed async save, logged with its traceback by each of Orbax's background threads; the
    # main thread raises the same error at the next save or wait (one line from `gid`).
    ("absl", "/orbax/checkpoint/", "_SignalingThread.run() raised an exception"),
    ("absl", "/orbax/checkpoint/", "Commit callback in background save thread"),
    ("absl", "/orbax/checkpoint/", "Save Finalize thread (%s) failed"),
    ("absl", "/orbax/checkpoint/", "Checkpointer failed: one or more items may not be finalized"),
    # TFDS's own Tensor decoder reads its deprecated `FeatureConnector.dtype` for every tensor
    # stored with an encoding (the zlib/bytes tensors of `gid prepare`'s datasets).
    ("absl", "/tensorflow_datasets/core/features/", "`FeatureConnector.dtype` is deprecated"),
    ("absl", "/tensorflow_datasets/core/features/", "`TensorInfo.dtype` is deprecated"),
    # Beam's optional BigQuery client, imported with TFDS; nothing here uses BigQuery.
    ("root", "/apache_beam/io/gcp/", "apitools not found"),
)


class _Drop(logging.Filter):
    """Drops the records that `rules` name (a logger filter: no handler ever sees them)."""

    def __init__(self, rules):
        super().__init__()
        self.rules = rules

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        return not any(where in path and text in str(record.msg) for where, text in self.rules)


_installed = False


def _is_orphaned_callback(unraisable) -> bool:
    """TensorStore finishing a read/write after Orbax closed the event loop that waited for it:
    a failed restore or save abandons its other operations, each then prints this traceback."""
    exc = unraisable.exc_value
    if not (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"):
        return False
    tb = unraisable.exc_traceback
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
            return True
        tb = tb.tb_next
    return False


def quiet_libraries() -> None:
    """Installs this module's log filters and its unraisable-exception hook (once)."""
    global _installed
    if not _installed:
        from absl import logging as absl_logging  # creates the 'absl' logger with absl's class

        absl_logging.get_absl_logger()
        for name in {logger for logger, _, _ in _RULES}:
            rules = [(where, text) for logger, where, text in _RULES if logger == name]
            logging.getLogger(None if name == "root" else name).addFilter(_Drop(rules))
        # A save that fails (a full disk) abandons its other array-fragment writes; Python warns
        # at exit that each of their coroutines was never awaited, after `gid`'s one error line.
        warnings.filterwarnings("ignore", message=r"coroutine '.*write_fragment' was never awaited",
                                category=RuntimeWarning)
        _installed = True
    if not getattr(sys.unraisablehook, "_gid_quiet", False):
        previous = sys.unraisablehook

        def hook(unraisable):
            if not _is_orphaned_callback(unraisable):
                previous(unraisable)

        hook._gid_quiet = True
        sys.unraisablehook = hook
