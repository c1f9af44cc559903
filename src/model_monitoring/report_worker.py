"""The monitoring reports in processes of their own, so that Evidently's cost overlaps.

Importing Evidently costs seconds and so does loading the data to report on (MLflow's
import, the reference's download, the captured rows). `ReportWorker` forks a process
at once that imports Evidently (the part the reports use, `import_evidently`) while
its caller loads the data, then runs the reports it is sent (`parallel_reports`: two
at a time, one of them in a forked child). Where processes cannot be forked, or
without rows, the reports run in the caller's process, as `run_reports` does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

from model_monitoring.evidently_import import import_evidently
from model_monitoring.reports import REPORTS, Report, build_report, run_reports

if TYPE_CHECKING:
    import pandas as pd

    from common.data import DatasetSchema
    from common.settings import MonitoringSettings

# The reports split between the worker and one forked child, about even in time.
CHILD_REPORTS = ("summary",)


class ReportError(RuntimeError):
    """The reports failed in their process; the message holds that process's traceback."""


def parallel_reports(
    reference: pd.DataFrame,
    current: pd.DataFrame | None,
    schema: DatasetSchema,
    settings: MonitoringSettings,
) -> dict[str, Report]:
    """`run_reports`, with `CHILD_REPORTS` computed meanwhile by a forked process.

    Plotly builds the figures, a second or more per report on one core; the process
    that asked waits, so its core is free. Without rows, or without fork, as
    `run_reports`.
    """
    if current is None or len(current) == 0 or not hasattr(os, "fork"):
        return run_reports(reference, current, schema, settings)
    import gc

    request = (reference, current, schema, settings)
    gc.freeze()  # the child's collections would otherwise copy every page it shares
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child leaves by os._exit)
        _answer_as_child(readable, writable, request)
    os.close(writable)
    try:
        mine = {name: build_report(name, *request) for name in REPORTS if name not in CHILD_REPORTS}
    finally:
        with os.fdopen(readable, "rb") as pipe:
            answer = pipe.read()
        _, exit_status = os.waitpid(child, 0)
        gc.unfreeze()
    theirs = _child_reports(answer, exit_status)
    return {name: {**mine, **theirs}[name] for name in REPORTS}


def _answer_as_child(readable: int, writable: int, request: tuple) -> NoReturn:
    """In the forked child: build `CHILD_REPORTS`, send them (or the traceback) up the
    pipe, and leave without running the parent's exit handlers."""
    status = 1
    try:
        os.close(readable)
        try:
            built = {name: build_report(name, *request) for name in CHILD_REPORTS}
            answer: tuple[str, Any] = ("ok", built)
        except BaseException:
            answer = ("error", traceback.format_exc())
        with os.fdopen(writable, "wb") as pipe:
            pickle.dump(answer, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        status = 0
    finally:
        os._exit(status)


def _child_reports(answer: bytes, exit_status: int) -> dict[str, Report]:
    """The reports the child sent as `answer`; ReportError if it sent none, or a failure."""
    if not answer:
        raise ReportError(
            f"The process computing the {', '.join(CHILD_REPORTS)} report ended without an "
            f"answer (wait status {exit_status}); rerun, and check memory if it recurs."
        )
    status, payload = pickle.loads(answer)
    if status != "ok":
        raise ReportError(f"The Evidently reports failed:\n{payload}")
    return payload


def _serve_reports(connection: Any) -> None:
    """In the report process: import Evidently at once, then run the reports asked for."""
    try:
        try:
            import_evidently()  # seconds: the reason this process exists
            failure = None
        except Exception:
            failure = f"Importing Evidently failed:\n{traceback.format_exc()}"
        request = connection.recv()
        if request is None:
            return
        try:
            if failure is not None:
                raise ReportError(failure)
            answer = ("ok", parallel_reports(*request))
        except ReportError as error:
            answer = ("error", str(error))
        except Exception:
            answer = ("error", f"The Evidently reports failed:\n{traceback.format_exc()}")
        connection.send(answer)
    except (EOFError, OSError):
        pass  # The caller closed the pipe: nothing to report on.
    finally:
        connection.close()


class ReportWorker:
    """`run_reports` in a forked process that starts importing Evidently at once.

    Started before the data is loaded, the worker imports on the other core meanwhile,
    and it ends without Python's slow exit. Between `submit` and `result` the caller is
    free to do other work. Where processes cannot be forked, or without rows, the
    reports run in the caller's process. Use as a context manager: the process is
    always stopped.
    """

    def __init__(self) -> None:
        self._process: Any = None
        self._request: tuple | None = None
        self._sent = self._answered = False
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_reports, args=(child,), name="evidently-reports", daemon=True
        )
        self._process.start()
        child.close()

    def submit(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame | None,
        schema: DatasetSchema,
        settings: MonitoringSettings,
    ) -> None:
        """Ask for the reports of `run_reports` on these rows; `result` returns them."""
        if self._request is not None:
            raise ReportError("A report worker serves one request: start another one.")
        self._request = (reference, current, schema, settings)
        if self._process is None or current is None or len(current) == 0:
            return  # `result` computes them here
        self._sent = True
        with contextlib.suppress(OSError):  # the worker is gone: `result` says so
            self._connection.send(self._request)

    def result(self) -> dict[str, Report]:
        """The reports asked for with `submit`."""
        if self._request is None:
            raise ReportError("Nothing was submitted to the report worker.")
        if not self._sent:
            return run_reports(*self._request)
        try:
            status, payload = self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            raise ReportError(
                f"The report process ended without an answer (exit code "
                f"{self._process.exitcode}); rerun, and check memory if it recurs."
            ) from None
        self._answered = True
        if status != "ok":
            raise ReportError(payload)
        return payload

    def run(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame | None,
        schema: DatasetSchema,
        settings: MonitoringSettings,
    ) -> dict[str, Report]:
        """The reports of `run_reports`, computed by the worker when there is data."""
        self.submit(reference, current, schema, settings)
        return self.result()

    def close(self) -> None:
        """Stop the process: at once if it has not answered, else once it has ended."""
        if self._process is None:
            return
        self._connection.close()
        if not self._answered:
            self._process.terminate()  # importing or reporting for nobody
        self._process.join()  # having answered, it ends by itself
        self._process = None

    def __enter__(self) -> ReportWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
