"""A second process for work that overlaps the caller's: the quality gate runs there
(Evidently's import, then its reports) while `start` reads and stages the input."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any


@contextlib.contextmanager
def background_process() -> Iterator[Executor]:
    """An executor of one forked process, for work that overlaps the caller's (the gate).

    Forked, it inherits what this process imported and costs no new interpreter; where
    processes cannot be forked, the work runs in this process when it is submitted.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        yield InProcess()
        return
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


class InProcess(Executor):
    """An executor that runs each submitted call at once, in this process."""

    def submit(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future
