"""setup_logger: console and file logging in which every line names the process rank.

Rank 0 logs INFO and above to stdout and everything (DEBUG) to ``<output>/log.txt``. Other ranks log only WARNING and
above, to stderr, and write no file: in a distributed run only rank 0 writes files, yet a failure on rank 3 is still
visible and says it came from rank 3.
"""

import logging
import os
import sys
from typing import Optional

_HANDLER_MARK = "_det_dcn_handler"

_COLORS = {logging.WARNING: "\x1b[33m", logging.ERROR: "\x1b[31m", logging.CRITICAL: "\x1b[31;1m"}
_RESET = "\x1b[0m"


class _ColorfulFormatter(logging.Formatter):
    """Prefixes WARNING / ERROR lines with a coloured level tag (terminal output only)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        color = _COLORS.get(record.levelno)
        return f"{color}{text}{_RESET}" if color else text


def _line_format(rank: int) -> str:
    return f"[%(asctime)s rank{rank}] %(name)s %(levelname)s: %(message)s"


def setup_logger(
    output: Optional[str] = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "det_dcn",
) -> logging.Logger:
    """Configure (or reconfigure) the logger ``name`` for this process.

    Args:
        output: a directory (the log goes to ``output/log.txt``) or a file path ending in ".txt" / ".log";
            None: console only. Only rank 0 writes it.
        distributed_rank: this process's global rank; it appears in every line.
        color: colour WARNING / ERROR lines when the console is a terminal.
        name: logger to configure; "det_dcn" covers every module of the package.

    Calling it again replaces the handlers it added before (tests and notebooks set up several runs in one
    process), so lines are never duplicated and old log files are closed.
    """
    if distributed_rank < 0:
        raise ValueError(f"setup_logger: distributed_rank must be >= 0, got {distributed_rank}")
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    fmt = _line_format(distributed_rank)
    datefmt = "%m/%d %H:%M:%S"
    stream = sys.stdout if distributed_rank == 0 else sys.stderr
    console = logging.StreamHandler(stream)
    console.setLevel(logging.INFO if distributed_rank == 0 else logging.WARNING)
    use_color = color and hasattr(stream, "isatty") and stream.isatty()
    console.setFormatter((_ColorfulFormatter if use_color else logging.Formatter)(fmt, datefmt=datefmt))
    setattr(console, _HANDLER_MARK, True)
    logger.addHandler(console)

    if output is not None and distributed_rank == 0:
        filename = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
        parent = os.path.dirname(filename)
        if parent:
            os.makedirs(parent, exist_ok=True)
        file_handler = logging.FileHandler(filename, mode="a", encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
        setattr(file_handler, _HANDLER_MARK, True)
        logger.addHandler(file_handler)
    return logger
