"""Imports of the toolkits with a message that names the package and the command that installs it,
and the one line per process that says which loss trains the model."""
from __future__ import annotations

import logging
import os
import sys

#: toolkit -> (top-level module, pip package, install command)
TOOLKITS = {
    "nemo": ("nemo", "nemo_toolkit[asr]",
             "pip install 'nemo_toolkit[asr]'   (the tested version: nemo_toolkit[asr]==3.0.0)"),
    "espnet": ("espnet2", "espnet",
               "pip install --no-deps espnet==202511, then its run-time dependencies "
               "(README.md, 'Install beside your toolkit'; a plain `pip install espnet` may replace your torch)"),
}


def missing_message(toolkit: str, needed_by: str) -> str:
    module, package, command = TOOLKITS[toolkit]
    return (f"{needed_by} needs {toolkit} (Python package '{package}', module '{module}'), which is not "
            f"installed for {sys.executable}. Install it with: {command}")


def require(toolkit: str, needed_by: str) -> None:
    """Raise ``ModuleNotFoundError`` with :func:`missing_message` if the toolkit cannot be imported."""
    import importlib

    module = TOOLKITS[toolkit][0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise  # the toolkit is there but one of its own dependencies is missing: its message says which
        raise ModuleNotFoundError(missing_message(toolkit, needed_by), name=module) from None


def require_for_entry_point(toolkit: str, module: str, is_main: bool) -> None:
    """:func:`require` at the top of an entry-point module: run as ``python -m module``, a missing toolkit
    ends the program with the message (no traceback); imported, it raises ``ModuleNotFoundError``."""
    try:
        require(toolkit, f"python -m {module}")
    except ModuleNotFoundError as exc:
        if is_main:
            raise SystemExit(f"error: {exc}") from None
        raise


def run_espnet_program(name: str, cmd=None) -> None:
    """``main(cmd)`` of ESPnet's program ``espnet2.bin.<name>``."""
    import importlib

    importlib.import_module(f"espnet2.bin.{name}").main(cmd=cmd)


_logger = logging.getLogger("samplewise_rnnt")


def announce(message: str) -> None:
    """Log one INFO line in this process, visible whatever the toolkit did to logging.

    The line goes through the ``samplewise_rnnt`` logger: to the root logger's handlers where a program
    configured them (hydra, ESPnet's trainer, also on ranks whose root level is ERROR), else to stderr."""
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.INFO)
    if not _logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[samplewise_rnnt] %(message)s"))
        _logger.addHandler(handler)
    _logger.info(message)


def process_tag(training_step: bool = False) -> str:
    """``rank R/W pid P`` for the per-process lines: the rank from torch.distributed where it runs, else
    from the launcher's environment (RANK, WORLD_SIZE). Without either, a training step runs in a single
    process (``rank 0/1``), while a model being built may still become a rank of a later distributed
    start-up (Lightning starts it after the model is built): then only the pid is given."""
    pid = os.getpid()
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return f"rank {dist.get_rank()}/{dist.get_world_size()} pid {pid}"
    except Exception:
        pass
    if "WORLD_SIZE" in os.environ:
        rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
        return f"rank {rank}/{os.environ['WORLD_SIZE']} pid {pid}"
    return f"rank 0/1 pid {pid}" if training_step else f"pid {pid}"
