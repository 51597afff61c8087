"""Data: tasks and readers, tokenisation, bucketed batching, task mixtures, the built-in suite."""

from jaxtl.data.catalogue import get_task, task_names
from jaxtl.data.tasks import BadRows, DataError, Example, Loaded, Task, register

__all__ = [
    "BadRows",
    "DataError",
    "Example",
    "Loaded",
    "Task",
    "get_task",
    "register",
    "task_names",
]
