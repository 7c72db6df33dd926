"""User-facing errors: the CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations


class BenchmarkError(Exception):
    """A problem the user can fix (bad input, bad config, missing data); never a bug."""

    exit_code = 2


class DataError(BenchmarkError):
    """Bad or missing input data; names the file (and line, when known)."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line


class ConfigError(BenchmarkError):
    """A suite file, --set override or method config that does not validate."""


class MissingRequirementError(BenchmarkError):
    """A method needs an input (text, image, ...) the dataset does not have; the run is skipped."""


def did_you_mean(name: str, known: list[str] | tuple[str, ...] | set[str]) -> str:
    """' (did you mean 'x'?)' for a close match among ``known``, else ''."""
    import difflib

    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
