"""The one exception type the CLI turns into a clear one-line error instead of a traceback, and the helper
that keeps any exception's message to one line."""


class WorkloadError(Exception):
    """A failure the user can act on: bad input, missing data, a corrupt or tampered artefact."""


def first_line(exc: BaseException) -> str:
    """The first line of `exc`'s message (surrounding whitespace stripped), or its type name if it has none:
    for messages that must stay one line (a log line, a `/health` reason, an API error)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
