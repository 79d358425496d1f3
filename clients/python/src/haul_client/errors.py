"""Errors of haul's API: one class per Connect error code."""

from __future__ import annotations

from typing import Dict, Type


class HaulError(Exception):
    """An error the server answered (or a failure to reach it).

    code is the Connect code ("not_found", "permission_denied", ...),
    message the server's message.
    """

    code: str = "unknown"

    def __init__(self, code: str, message: str) -> None:
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


class Canceled(HaulError):
    pass


class Unknown(HaulError):
    pass


class InvalidArgument(HaulError):
    pass


class DeadlineExceeded(HaulError, TimeoutError):
    pass


class NotFound(HaulError):
    pass


class AlreadyExists(HaulError):
    pass


class PermissionDenied(HaulError):
    pass


class ResourceExhausted(HaulError):
    pass


class FailedPrecondition(HaulError):
    pass


class Aborted(HaulError):
    pass


class OutOfRange(HaulError):
    pass


class Unimplemented(HaulError):
    pass


class Internal(HaulError):
    pass


class Unavailable(HaulError):
    pass


class DataLoss(HaulError):
    pass


class Unauthenticated(HaulError):
    pass


ERRORS: Dict[str, Type[HaulError]] = {
    "canceled": Canceled,
    "unknown": Unknown,
    "invalid_argument": InvalidArgument,
    "deadline_exceeded": DeadlineExceeded,
    "not_found": NotFound,
    "already_exists": AlreadyExists,
    "permission_denied": PermissionDenied,
    "resource_exhausted": ResourceExhausted,
    "failed_precondition": FailedPrecondition,
    "aborted": Aborted,
    "out_of_range": OutOfRange,
    "unimplemented": Unimplemented,
    "internal": Internal,
    "unavailable": Unavailable,
    "data_loss": DataLoss,
    "unauthenticated": Unauthenticated,
}

# The code a Connect server means by an HTTP status when the body says
# nothing (a proxy's answer, say): the Connect protocol's table.
HTTP_CODES: Dict[int, str] = {
    400: "internal",
    401: "unauthenticated",
    403: "permission_denied",
    404: "unimplemented",
    408: "deadline_exceeded",
    409: "aborted",
    412: "failed_precondition",
    413: "resource_exhausted",
    415: "internal",
    429: "unavailable",
    431: "resource_exhausted",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}


def error(code: str, message: str) -> HaulError:
    """The HaulError subclass for a Connect code."""
    return ERRORS.get(code, HaulError)(code, message)
