"""Every exception allen-mirror raises on purpose, in one tree, so callers catch by meaning.

    AllenMirrorError
    ├── UsageError                 bad ids, options, config or manifest URL (exit 2)
    │   └── UnknownDataSetError    an id the API does not know
    ├── LockedError                another run holds the output directory (exit 3)
    ├── NoAlignmentError           the image or data set has no alignment to map with (exit 1)
    ├── CorruptFileError           a mirrored file differs from its manifest row (exit 1)
    ├── RemoteError                the API did not give us what we asked for
    │   ├── TransportError         connect failure, reset, timeout, cut body   (retryable)
    │   ├── HTTPStatusError        a non-2xx answer                            (by status)
    │   ├── ContentError           wrong type, HTML outage page, bad JSON/JPEG (retryable)
    │   ├── QueryError             RMA answered success:false                  (permanent)
    │   └── TooLargeError          a body past its size cap                    (permanent)
    ├── StorageError               the store refused one file (a directory in its way)
    │   └── DiskFullError          full or read-only: every file would fail (stops the run)
    │       └── BucketError        the bucket refused or cannot be reached (stops the run)
    └── ManifestError              the manifest database failed or is unusable

This module imports nothing from the package; library exceptions are translated into these
at the boundary that raised them, with ``raise ... from exc``.
"""

from __future__ import annotations

from os import PathLike


class AllenMirrorError(Exception):
    """Base of every error allen-mirror raises deliberately."""


class UsageError(AllenMirrorError):
    """Something the user typed or configured is wrong; they can fix it and run again."""


class UnknownDataSetError(UsageError):
    """The API returned no record for a requested id."""


class LockedError(AllenMirrorError):
    """Another allen-mirror run holds the output directory."""


class NoAlignmentError(AllenMirrorError):
    """The record has no (complete) alignment: refuse to give coordinates rather than invent them.

    Not a UsageError: the id is fine, the data is missing (exit 1).
    """


class CorruptFileError(AllenMirrorError):
    """A mirrored file no longer matches what the manifest recorded (exit 1).

    The fix is on the mirror's side: ``verify --repair`` fetches it again.
    """

    def __init__(self, path: PathLike[str] | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}; run 'allen-mirror verify --repair' to fetch it again")
        self.path = path


class RemoteError(AllenMirrorError):
    """The API answered with something we cannot accept."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class TransportError(RemoteError):
    """The connection failed, stalled or was cut before a complete answer arrived."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        unresolved: bool = False,
        reason: str = "connection",
    ) -> None:
        super().__init__(message, url=url)
        self.unresolved = unresolved  # the host name did not resolve (DNS)
        self.reason = reason  # a short word for metrics: timeout, disconnected, dns, ...


class HTTPStatusError(RemoteError):
    """The server answered with a status other than 200."""

    def __init__(
        self, status: int, *, url: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"HTTP {status}", url=url)
        self.status = status
        self.retry_after = retry_after


class ContentError(RemoteError):
    """A 200 answer whose body is not what the service promises (HTML outage page, bad JPEG)."""


class QueryError(RemoteError):
    """RMA rejected the query (success:false); asking again will not help."""


class TooLargeError(RemoteError):
    """A body (an RMA page, a download) grew past its cap: asking again would only repeat it."""


class StorageError(AllenMirrorError):
    """Writing one file to the output failed; retrying the download will not help."""


class DiskFullError(StorageError):
    """The output cannot take any file (full, over quota, read-only): the run stops."""


class BucketError(DiskFullError):
    """Object storage refuses every write (bucket gone, access revoked, endpoint down): the run
    stops instead of failing each item alike."""


class ManifestError(AllenMirrorError):
    """The manifest database cannot be opened, migrated or written."""


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def first_error(exc: BaseException) -> BaseException:
    """Task groups wrap errors in groups; the one that mattered is ours, else the first."""
    while isinstance(exc, BaseExceptionGroup):
        exc = next(
            (e for e in exc.exceptions if isinstance(e, AllenMirrorError)), exc.exceptions[0]
        )
    return exc


def exit_code_for(exc: BaseException) -> int:
    """The one place errors become exit codes (the CLI and the run reports both ask here)."""
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, LockedError):
        return EXIT_LOCKED
    return EXIT_FAILED
