"""haul_client: a Python client of haul's API (standard library only).

    from haul_client import Client, JobSpec, Task, Range

    c = Client()                       # $HAUL_SERVER, $HAUL_API_TOKEN
    job_id = c.submit(JobSpec("hello", tasks=[Task("t-{i}", ["echo", "{i}"], foreach=Range(0, 10))]))
    job = c.wait(job_id)
"""

from .client import DEFAULT_SERVER, Client, spec_bytes
from .errors import (
    Aborted,
    AlreadyExists,
    Canceled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    HaulError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from .models import (
    AddTasksResult,
    Attempt,
    Blocker,
    Job,
    RetryResult,
    TaskCounts,
    TaskDetail,
    WhoAmI,
    WhyResult,
)
from .models import Task as TaskInfo
from .spec import JobSpec, Notify, Range, Task, Tier, Values, duration, tasks_fragment

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AddTasksResult",
    "AlreadyExists",
    "Attempt",
    "Blocker",
    "Canceled",
    "Client",
    "DEFAULT_SERVER",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "HaulError",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobSpec",
    "NotFound",
    "Notify",
    "OutOfRange",
    "PermissionDenied",
    "Range",
    "ResourceExhausted",
    "RetryResult",
    "Task",
    "TaskCounts",
    "TaskDetail",
    "TaskInfo",
    "Tier",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "Values",
    "WhoAmI",
    "WhyResult",
    "duration",
    "spec_bytes",
    "tasks_fragment",
]
