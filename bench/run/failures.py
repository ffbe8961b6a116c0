"""Why a measurement failed, as a code a failed row carries (``reason_code``), decided from the exception's type
where it was raised: the report picks the next step from the code, never from the words of the message."""

from __future__ import annotations

import re

TIMEOUT = "timeout"  # no answer within --timeout
KILLED = "killed"  # the process was killed by a signal (SIGKILL: usually the kernel, out of memory)
OUT_OF_MEMORY = "out_of_memory"  # the library said so (torch.cuda.OutOfMemoryError, MemoryError)
MISSING_DEPENDENCY = "missing_dependency"  # a backend, or the hardware it needs, is not here
BAD_INPUT = "bad_input"  # the recipe does not fit this model or data (an InputError)
CRASHED = "crashed"  # the process exited without answering
ERROR = "error"  # any other exception


def failure_code(exc: BaseException) -> str:
    """The code of an exception raised while building or measuring a variant."""
    from data.errors import InputError, MissingDependencyError

    if isinstance(exc, MissingDependencyError | ImportError):
        return MISSING_DEPENDENCY
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return OUT_OF_MEMORY
    if isinstance(exc, InputError):
        return BAD_INPUT
    return ERROR


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def failure_text(exc: BaseException) -> str:
    """``Type: first line`` of an exception, without the colour codes some libraries put in their messages (they
    would show as ``[96m`` in the leaderboard and explanations.md)."""
    message = _TERMINAL_CODES.sub("", str(exc)).strip()
    return f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"[:500]
