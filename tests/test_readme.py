"""README.md as a newcomer follows it, and the links of every page of the repository.

The walkthrough test runs the README's ```bash blocks in order, top to bottom, in a
fresh copy of the repository with an environment of its own (support/readme.py says
what is skipped and what differs from a newcomer's run: the port, fewer epochs and
folds). It fails naming the block that failed, with its output. The README's
`uv run just demo` is left to tests/test_demo.py, which runs the same script with the
same arguments and checks its conclusions (no alert on normal traffic, the drift alert
naming the shifted column, where to look): one demo run per suite, not two.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.paths import REPO_ROOT
from support.ports import free_port
from support.readme import (
    README,
    BlockRun,
    broken_links,
    copy_repository,
    fenced_blocks,
    newcomer_environment,
    on_port,
    readme_commands,
    run_block,
)

PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "bench" / "README.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_page_links_resolve_inside_the_repository(page: Path) -> None:
    assert broken_links(page) == [], f"{page.relative_to(REPO_ROOT)}: broken links"


def test_readme_links_every_docs_page() -> None:
    readme = README.read_text()
    unlinked = [
        page.name
        for page in sorted((REPO_ROOT / "docs").glob("*.md"))
        if f"(docs/{page.name})" not in readme
    ]
    assert unlinked == [], "docs pages the README does not link"


def test_readme_stays_a_walkthrough() -> None:
    """The README is the page a newcomer reads first: short, and mostly commands to run."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
    assert len(readme_commands()) >= 8


def test_readme_block_convention_is_followed() -> None:
    """Every fenced block says its language, and a skip marker sits on a bash block."""
    blocks = fenced_blocks(README.read_text())
    assert all(block.language for block in blocks), [b.line for b in blocks if not b.language]
    assert all(block.language == "bash" for block in blocks if block.skipped)


@dataclass
class Walkthrough:
    runs: list[BlockRun]  # in the README's order, up to the first that failed
    checkout: Path  # the copy they ran in (what they wrote is there until the module ends)


@pytest.fixture(scope="module")
def walkthrough() -> Iterator[Walkthrough]:
    """Every command block of the README, run in order; stops at the first that fails."""
    from backends.local_server import LocalServer

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="readme-") as directory:
        root = Path(directory)
        checkout = copy_repository(root / "clone")
        config = checkout / "config" / "local.yml"
        config.write_text(on_port(config.read_text(), port))
        environment = newcomer_environment(root)
        runs: list[BlockRun] = []
        try:
            for block in readme_commands():
                runs.append(run_block(block, checkout, environment, port))
                if runs[-1].returncode != 0:
                    break
            yield Walkthrough(runs, checkout)
        finally:
            LocalServer(checkout / ".serving").stop()  # whatever a failed block left serving


@pytest.mark.e2e
def test_readme_commands_run_in_order(walkthrough: Walkthrough) -> None:
    for run in walkthrough.runs:  # shown with `-rP`: how long each block took here
        print(f"line {run.block.line}: {run.seconds:.0f} s, exit code {run.returncode}")
    failed = [run for run in walkthrough.runs if run.returncode != 0]
    assert not failed, failed[0].describe()
    assert len(walkthrough.runs) == len(readme_commands())


def block_with(walkthrough: Walkthrough, command: str) -> BlockRun:
    matching = [run for run in walkthrough.runs if command in run.block.text]
    if not matching or matching[0].returncode != 0:
        pytest.skip(f"the block with {command!r} did not run to its end")
    return matching[0]


@pytest.mark.e2e
def test_readme_example_answer_is_what_the_server_returns(walkthrough: Walkthrough) -> None:
    """The answer shown after the curl is the shape, class and confidence the server gives
    (the id differs with every request)."""
    blocks = fenced_blocks(README.read_text())
    curl = next(i for i, block in enumerate(blocks) if "curl " in block.text)
    shown = json.loads(blocks[curl + 1].text)["predictions"][0]
    output = block_with(walkthrough, "curl ").output
    answer = json.loads(output[output.rindex('{"predictions"') :].splitlines()[0])
    served = answer["predictions"][0]
    assert set(served) == set(shown)
    assert served["prediction"] == shown["prediction"]
    assert re.fullmatch(r"[0-9a-f]{32}", served["id"])
    assert 0.99 < served["confidence"] <= 1.0 and 0.99 < shown["confidence"] <= 1.0


def test_the_readme_demo_is_the_demo_its_own_tests_run() -> None:
    # The README test leaves `uv run just demo` to tests/test_demo.py (one demo run per
    # suite): that holds only while the recipe runs scripts/demo.py.
    demo = [b for b in fenced_blocks(README.read_text()) if "uv run just demo" in b.text]
    recipe = subprocess.run(
        ["uv", "run", "just", "--show", "demo"], capture_output=True, text=True, check=True,
        cwd=REPO_ROOT,
    ).stdout  # fmt: skip
    assert len(demo) == 1 and demo[0].skipped
    assert "scripts/demo.py" in recipe, recipe


@pytest.mark.e2e
def test_readme_card_get_writes_the_pages(walkthrough: Walkthrough) -> None:
    """`card get <step> <file>.html`, for machines without a desktop browser, writes each
    card as a page."""
    runs = [run for run in walkthrough.runs if "card get" in run.block.text]
    names = [n for run in runs for n in re.findall(r"card get \S+ (\S+\.html)", run.block.text)]
    assert len(names) >= 3 and all(run.returncode == 0 for run in runs)
    for name in names:
        page = walkthrough.checkout / name
        assert page.exists(), f"{name} was not written"
        assert "<html" in page.read_text(errors="replace")[:5000].lower(), name
