"""The README's commands as a newcomer runs them, and the links of the repository's pages.

Which blocks are commands: a ```bash block is run; one whose previous non-blank line is
`<!-- readme-test: skip (why) -->` is not (a server in the foreground, the test suite
itself); ```text, ```console, ```python, ```yaml blocks are never run. The walkthrough
runs in a copy of the repository's files (a fresh clone, with the working tree's
edits) with an environment that starts empty: its own HOME and METAFLOW_HOME, none of
the caller's MLflow, Metaflow, serving or token settings. Two things differ from a
newcomer's run, both said here: the model server's port (8080 may be taken on a shared
machine: a free port replaces it in the copy's config and in the commands), and the
training settings (`FAST_SETTINGS`), smaller so the walkthrough fits a CI budget.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO_ROOT

README = REPO_ROOT / "README.md"
SKIP_MARKER = re.compile(r"^<!--\s*readme-test:\s*skip\b.*-->$")
SERVER_PORT = "8080"  # config/local.yml's, and the README's curl
BLOCK_TIMEOUT = 900  # seconds for one block

# Training runs take their parameters from METAFLOW_RUN_<NAME> when the command line
# does not give them (Metaflow's click prefix). Every pipeline still runs; only the
# epochs and folds are fewer.
FAST_SETTINGS = {"METAFLOW_RUN_TRAINING_EPOCHS": "5", "METAFLOW_RUN_FOLDS": "2"}

# Variables of the caller that would point a newcomer's run at the caller's state.
_REDIRECTING = ("MLFLOW_", "METAFLOW_", "_MLFLOW_", "SERVING_", "PENGUINS_", "PIPELINE_TESTS_")
_NOT_INHERITED = {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH", "HOME"}


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    language: str
    text: str
    line: int  # of the opening fence, 1-based
    skipped: bool  # marked `readme-test: skip`

    @property
    def runs(self) -> bool:
        return self.language == "bash" and not self.skipped


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced block, in order, with its language and whether it is marked skipped."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    previous = ""  # the last non-blank line outside a block
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            start = index
            body = []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            skipped = bool(SKIP_MARKER.match(previous.strip()))
            blocks.append(Block(line[3:].strip(), "\n".join(body) + "\n", start + 1, skipped))
            previous = ""
        elif line.strip():
            previous = line
        index += 1
    return blocks


def readme_commands() -> list[Block]:
    """The README's blocks that are commands to run, in order."""
    return [block for block in fenced_blocks(README.read_text()) if block.runs]


def copy_repository(destination: Path) -> Path:
    """The repository's files as a clone would have them (tracked, plus new files not
    ignored), with the working tree's content, under `destination`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def newcomer_environment(root: Path) -> dict[str, str]:
    """The caller's environment without its project state, with a HOME of its own under
    `root`. uv keeps the caller's package cache and interpreter: no network is needed."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_REDIRECTING) and key not in _NOT_INHERITED
    }
    home = root / "home"
    (home / "metaflow").mkdir(parents=True, exist_ok=True)
    cache = subprocess.run(["uv", "cache", "dir"], capture_output=True, text=True, check=True)
    environment |= {
        "HOME": str(home),
        "METAFLOW_HOME": str(home / "metaflow"),
        "UV_CACHE_DIR": cache.stdout.strip(),
        "UV_PYTHON": os.path.realpath(sys.executable),
        "PYTHONUNBUFFERED": "1",
    }
    return environment | FAST_SETTINGS


def on_port(text: str, port: int) -> str:
    """`text` with the README's server port replaced by `port`."""
    return text.replace(f"127.0.0.1:{SERVER_PORT}", f"127.0.0.1:{port}")


def as_run_here(block: Block, port: int) -> str:
    """The block's commands as the test runs them (on the test's port)."""
    return on_port(block.text, port)


@dataclass
class BlockRun:
    block: Block
    script: str
    returncode: int
    output: str
    seconds: float

    def describe(self) -> str:
        return (
            f"README.md block at line {self.block.line} (exit code {self.returncode}, "
            f"{self.seconds:.0f} s):\n{self.script}\n--- output (end) ---\n{self.output[-6000:]}"
        )


def run_block(block: Block, checkout: Path, environment: dict[str, str], port: int) -> BlockRun:
    """Run one block with bash in `checkout`, stopping at its first failing command."""
    script = as_run_here(block, port)
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=checkout,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, ended whole on a timeout
        )
        try:
            returncode = process.wait(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
            log.write(f"\n(killed after {BLOCK_TIMEOUT} s)")
        log.seek(0)
        output = log.read()
    return BlockRun(block, script, returncode, output, time.monotonic() - started)


def link_targets(markdown: str) -> list[str]:
    """The targets of the Markdown links and images in `markdown`, outside code."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of `markdown`."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.S)
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", prose, flags=re.M):
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def has_heading(page: Path, anchor: str) -> bool:
    """Whether `anchor` names a heading of `page` (any anchor of a page that is not Markdown)."""
    return page.suffix != ".md" or anchor in heading_anchors(page.read_text())


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` that point at no file (or heading) of the repository,
    or outside it."""
    problems = []
    root = REPO_ROOT.resolve()
    for target in link_targets(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page.resolve()
        if not resolved.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and not has_heading(resolved, anchor):
            problems.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return problems
