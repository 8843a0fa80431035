"""Every ``adaptrl train|bench|eval|adapt`` command written in README.md and docs/results.md
parses with today's command line (nothing is run), so a documented reproduction cannot silently
rot when an option is renamed. Placeholders (RUN, COPY, MODEL, runs/... of another machine, a
seed S) stand for a shipped run directory and seed 0."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest

from adaptrl.algos import ALGOS
from adaptrl.algos.trainer import new_run
from adaptrl.bench import registry as bench_registry
from adaptrl.cli import main as cli
from adaptrl.cli import run_cmds

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_RUN = ROOT / "docs/results/maml-rl/maml-nav2d-110it-curriculum-evalsteps/models/MAML-s0"
START = r"(?:\.venv/bin/)?(?:nice )?adaptrl (?:bench|train|eval|adapt) "


def documented_commands(text: str) -> list[str]:
    """Commands in inline code spans (possibly wrapped over lines) and in code blocks (lines
    joined over trailing backslashes, trailing ``#`` comments dropped)."""
    found = [" ".join(m.group(1).split()) for m in re.finditer(f"`({START}[^`]*)`", text)]
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if re.match(START, line):
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            found.append(" ".join(re.split(r"\s#\s", line)[0].split()))
        i += 1
    return found


def arguments(command: str, runs: Path) -> list[str] | None:
    """The arguments after ``adaptrl``, placeholders replaced; None for elided commands and
    usage patterns (``adaptrl train ALGO``)."""
    args = shlex.split(command)
    args = args[next(i for i, a in enumerate(args) if a.endswith("adaptrl")) + 1 :]
    if (
        "..." in args
        or args[-1] == "--resume"
        or (args[0] in ("train", "bench") and args[1].isupper())
    ):
        return None
    for i, a in enumerate(args[1:], start=1):
        takes_run = args[i - 1] in ("eval", "adapt", "--resume", "--maml-run", "--runs", "--config")
        if takes_run and (a in ("RUN", "COPY", "MODEL") or a.startswith("runs/")):
            args[i] = str(runs / args[1]) if args[0] == "train" else str(SHIPPED_RUN)
        if args[i - 1] == "--seeds" and a == "S":
            args[i] = "0"
    return args


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of each algorithm (its configuration only), for ``--config RUN``."""
    root = tmp_path_factory.mktemp("runs")
    for name, spec in ALGOS.items():
        new_run(root / name, spec.config_cls())
    return root


COMMANDS = [
    (doc, command)
    for doc in ("README.md", "docs/results.md")
    for command in documented_commands((ROOT / doc).read_text())
]


def test_the_docs_hold_the_commands_this_test_checks():
    assert len(COMMANDS) > 80
    benches = {c.split()[c.split().index("bench") + 1] for _, c in COMMANDS if " bench " in c}
    assert {
        "rl2-bandits",
        "rl2-mdps",
        "maml-nav2d",
        "maml-cheetah",
        "sinusoid",
        "glyphs",
    } <= benches


@pytest.mark.parametrize("doc, command", COMMANDS)
def test_documented_command_parses(doc, command, runs):
    args = arguments(command, runs)
    if args is None:
        pytest.skip("an elided command (...), a bare --resume in prose or a usage pattern")
    runners = ("run_train", "run_eval", "run_eval_run", "run_adapt", "resume_train", "resume_eval")
    runners += ("launch_processes",)
    called = []

    def record(*args: object, **kwargs: object) -> int:
        called.append(args)
        return 0

    with contextlib.ExitStack() as stack:
        for name in runners:
            stack.enter_context(mock.patch.object(run_cmds, name, record))
        stack.enter_context(mock.patch.object(bench_registry, "run_bench", record))
        err = io.StringIO()
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        try:
            code = cli.main(args)
        except SystemExit as exc:  # tyro exits on a parse error or --help
            code = exc.code
    if "--help" in args:
        assert code == 0
        return
    assert code == 0, f"{doc}: `{command}` no longer parses: {err.getvalue()[-400:]}"
    assert called, f"{doc}: `{command}` parsed but reached no command"
