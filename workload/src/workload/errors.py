"""The one exception type the CLI turns into a clear one-line error instead of a traceback."""


class WorkloadError(Exception):
    """A failure the user can act on: bad input, missing data, a corrupt or tampered artefact."""
