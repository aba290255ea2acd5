"""Exceptions that end in one clear sentence naming the fix.

Every error that a user can cause (missing data, wrong checksum, unknown backbone,
missing weights, wrong shapes) is raised as a subclass of :class:`EmlibError`.
The command-line interface prints the message alone (no traceback) and exits
with status 2; library callers can catch :class:`EmlibError` as one family.
"""

from __future__ import annotations

__all__ = [
    "EmlibError",
    "ConfigError",
    "DataError",
    "ChecksumError",
    "WeightsError",
    "ShapeError",
    "StorageError",
    "short_reason",
]


class EmlibError(Exception):
    """Base class of every user-facing emlib error; ``str(err)`` is one sentence.

    ``cli_message``, when given, is the same sentence in the words of the command line (``--weights
    NAME=FILE`` where Python says ``weights={...}``); ``emlib`` prints it instead.

    Examples
    --------
    >>> err = ConfigError("pass weights={'a': 'f'}", cli_message="give --weights a=f")
    >>> str(err), err.cli_message
    ("pass weights={'a': 'f'}", 'give --weights a=f')
    """

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli_message


class ConfigError(EmlibError, ValueError):
    """An argument or configuration value is not allowed (unknown name, bad size, ...)."""


class DataError(EmlibError, FileNotFoundError):
    """Data is missing, in the wrong layout, or cannot be decoded."""


class ChecksumError(DataError):
    """A downloaded or local file does not have the expected SHA-256."""


class WeightsError(EmlibError, FileNotFoundError):
    """Pretrained weights could not be found or loaded.

    ``why`` is the sentence without the fix it ends with (a page or a build that gives its own fix,
    in its reader's words, quotes it); it defaults to the whole message.
    """

    def __init__(self, *args: object, why: str | None = None, cli_message: str | None = None) -> None:
        super().__init__(*args, cli_message=cli_message)
        self.why = why if why is not None else (str(args[0]) if args else "")


class ShapeError(EmlibError, ValueError):
    """Arrays have shapes that do not fit together."""


class StorageError(EmlibError, OSError):
    """A file could not be written for lack of room (a full disk, a quota, a file-size limit); the old file is kept."""


def short_reason(err: BaseException | None, *, limit: int = 160) -> str:
    r"""``Type: first line`` of an exception, cut to ``limit`` characters: the reason quoted inside a sentence.

    Examples
    --------
    >>> short_reason(ValueError("bad header\nmore detail"))
    'ValueError: bad header'
    >>> short_reason(OSError("x" * 200), limit=20)
    'OSError: xxxxxxxx...'
    """
    lines = str(err if err is not None else "").strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
