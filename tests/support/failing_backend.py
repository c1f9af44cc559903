"""A Local backend whose first `save` of a run fails after storing: a chunk task that
dies once, after capturing, as a remote worker may (`--with retry` then runs it again).

Pipelines load it with `--backend support.failing_backend.FailingOnceLocal` when
`tests/` is on PYTHONPATH. The fault is the test's, not the pipeline's: nothing in
src/ knows of it. `$FAIL_ONCE_MARKER` names a file the failing attempt creates
(atomically: of tasks saving at once, exactly one fails); once it exists, every
`save` succeeds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backends.local import Local

MARKER_VARIABLE = "FAIL_ONCE_MARKER"
FAULT = "fault injected by the test: this attempt fails after capturing its rows"


class FailingOnceLocal(Local):
    def save(self, model_input: Any, model_output: Any, source: str = "online") -> None:
        super().save(model_input, model_output, source)
        try:
            Path(os.environ[MARKER_VARIABLE]).open("x").close()
        except FileExistsError:
            return
        raise RuntimeError(FAULT)
