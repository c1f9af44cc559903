"""Which steps of a flow run on machines other than the one that starts the run.

`--with batch`, `--with kubernetes` and a step's own `@batch` or `@kubernetes` send
its tasks to AWS Batch or Kubernetes; a file on this machine (a SQLite capture store,
say) is then out of their reach. Metaflow attaches `--with` decorators to every step
before flow mutators run, so `common.pipeline` reads them here, in the process that
launches the run, before any task starts or any job is submitted. The schedulers'
`create` commands attach theirs after that: what they start is refused in its first
task, where their own decorators are attached to every step.
Only the standard library: every task imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Metaflow's decorators that run a step's tasks elsewhere: the compute ones, and those
# the schedulers give every task they start (Argo Workflows runs them on Kubernetes,
# Step Functions on AWS Batch, Airflow on Kubernetes).
REMOTE_DECORATORS = (
    "batch", "kubernetes",
    "argo_workflows_internal", "step_functions_internal", "airflow_internal",
)  # fmt: skip


def remote_steps(steps: Iterable[tuple[str, Any]], using: str) -> list[str]:
    """The names, sorted, of the steps decorated with `using` (a decorator's name) that
    run elsewhere; `steps` as Metaflow's `MutableFlow.steps` gives them."""
    return sorted(
        name
        for name, step in steps
        if step.has_decorator(using)
        and any(step.has_decorator(remote) for remote in REMOTE_DECORATORS)
    )
