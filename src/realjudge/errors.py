"""The error types that reach users. Each carries a one-line reason; the CLI maps them to exit codes."""


class RealjudgeError(Exception):
    """Base class: anything realjudge raises on purpose."""

    exit_code = 2


class DecodeError(RealjudgeError):
    """An image could not be read. `str(err)` is one line naming the file and the reason."""

    exit_code = 1

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class UsageError(RealjudgeError):
    """Bad arguments, missing paths, unknown models, corrupt bundles: exit code 2."""


class SourceError(UsageError):
    """A data source whose layout is not recognised or whose content is unusable."""
