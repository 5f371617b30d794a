"""The error types that reach users. Each carries a one-line reason; the CLI maps them to exit codes."""


def one_line(text: object) -> str:
    """`text` on one printable line: control and format characters (a newline or a terminal escape in
    a hostile file or member name) are shown escaped, as Python writes them (`\\n`, `\\x1b`)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in s)


class RealjudgeError(Exception):
    """Base class: anything realjudge raises on purpose."""

    exit_code = 2

    def __str__(self) -> str:
        return one_line(super().__str__())


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


class LimitExceeded(SourceError):
    """An archive refused because it is over one of the `ArchiveLimits` (members, bytes, depth)."""


class ExportError(RealjudgeError):
    """A model export that could not be made or failed its check against torch: exit code 3."""

    exit_code = 3
