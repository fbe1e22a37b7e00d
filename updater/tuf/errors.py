# Exceptions of the device TUF client: two roots, mirroring python-tuf's
# tuf.api.exceptions so that behaviour can be compared one to one.
#
#   RepositoryError  - the data is bad: signatures, versions, expiry, hashes,
#                      format. Retrying the same mirror will not help.
#   DownloadError    - the transport failed: connection, HTTP status, too much
#                      data, too slow. Carries the HTTP status when there is one.
#
# Nothing here subclasses OSError, so a caller can tell a flash write failure
# (OSError) from a network failure (DownloadError).


class RepositoryError(Exception):
    """Bad repository data (root of all verification failures)."""


class FormatError(RepositoryError):
    """Metadata is not valid JSON or does not have the TUF structure."""


class UnsignedMetadataError(RepositoryError):
    """Signature threshold not reached (bad, missing or duplicate signatures)."""


# python-tuf spells the concept both ways; keep both names usable.
BadSignatureError = UnsignedMetadataError


class BadVersionNumberError(RepositoryError):
    """Version is not the expected one (rollback, wrong root sequence, mismatch
    with the version listed by timestamp/snapshot)."""


class EqualVersionNumberError(BadVersionNumberError):
    """The new metadata has the same version as the trusted one (not fatal for
    timestamp: the trusted one is kept)."""


class ExpiredMetadataError(RepositoryError):
    """Metadata expired against the reference time (freeze attack)."""


class LengthOrHashMismatchError(RepositoryError):
    """Length or hash differs from the one the delegating metadata lists."""


class RoleNotFoundError(RepositoryError):
    """A role the workflow needs is not listed (e.g. snapshot lacks
    targets.json, a delegated role was not found in snapshot)."""


class DownloadError(Exception):
    """Transport failure (root of all fetch failures).

    `status` is the HTTP status code when the failure was an HTTP answer,
    else None."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class DownloadHTTPError(DownloadError):
    """The server answered with a non-success HTTP status (404, 500, ...)."""


class DownloadLengthMismatchError(DownloadError):
    """The server sent more than the allowed length (endless data) or less
    than announced."""


DownloadLengthMismatch = DownloadLengthMismatchError


class SlowRetrievalError(DownloadError):
    """The server is too slow: a read stalled past the read timeout, or the
    average speed fell below the minimum after the grace period."""


class TooManyRedirectsError(DownloadError):
    """Redirect chain longer than the configured bound."""
