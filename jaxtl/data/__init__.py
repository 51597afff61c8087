"""Data: tasks and readers, tokenisation, bucketed batching, task mixtures, the built-in suite."""

from jaxtl.data.tasks import DataError, Example, Loaded, Task, get_task, register, task_names

__all__ = ["DataError", "Example", "Loaded", "Task", "get_task", "register", "task_names"]
