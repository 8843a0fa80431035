"""Entry point of the ``adaptrl`` command.

Errors caused by input (unknown ids, impossible sizes, bad files, missing extras) print one line
naming the fix and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import tyro

from adaptrl.cli.commands import BENCH_NAMES, BenchCmd, Command, DemoCmd, EvalCmd, ListCmd, PlotCmd
from adaptrl.core.config import parse_cli
from adaptrl.core.errors import AdaptrlError, UnknownIdError

MARKERS = (tyro.conf.OmitSubcommandPrefixes, tyro.conf.CascadeSubcommandArgs)
DESCRIPTION = (
    "adaptrl: meta-learning and meta-RL. Commands: list, eval, bench, plot, demo. "
    "Add --help after any command for its options; --debug shows tracebacks."
)


def _precheck(argv: list[str]) -> None:
    """Turn a mistyped family or bench id into a one-line error with the nearest id."""
    from adaptrl.envs import FAMILIES

    if argv[:1] == ["eval"]:
        for tok in argv[1:]:
            if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*-v\d+", tok) and tok not in FAMILIES:
                raise UnknownIdError("family", tok, FAMILIES)
    bench = argv[1] if argv[:1] == ["bench"] and len(argv) > 1 else "-"
    if not bench.startswith("-") and bench not in BENCH_NAMES:
        raise UnknownIdError("bench", bench, BENCH_NAMES)


def _resume_eval(args: list[str]) -> int:
    """``adaptrl eval --resume RUN_DIR``: everything else comes from the run's config.yaml."""
    from adaptrl.cli.run_cmds import resume_eval
    from adaptrl.core.errors import ConfigError

    i = args.index("--resume")
    rest = args[:i] + args[i + 2 :]
    if i + 1 >= len(args) or rest:
        raise ConfigError(
            "use `adaptrl eval --resume RUN_DIR` alone: the other options are read from the run's "
            "config.yaml"
        )
    return resume_eval(Path(args[i + 1]))


def run(cmd: object) -> int:
    """Dispatch a parsed command to the code that runs it."""
    from adaptrl.cli import run_cmds

    if isinstance(cmd, ListCmd):
        return run_cmds.run_list()
    if isinstance(cmd, EvalCmd):
        return run_cmds.run_eval(cmd)
    if isinstance(cmd, BenchCmd):
        return run_cmds.run_bench(cmd.bench)
    if isinstance(cmd, PlotCmd):
        return run_cmds.run_plot(cmd.run_dir)
    if isinstance(cmd, DemoCmd):
        return run_cmds.run_demo(cmd)
    raise TypeError(f"unknown command {cmd!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        if args[:1] == ["eval"] and "--resume" in args:
            return _resume_eval(args[1:])
        _precheck(args)
        if args[:1] == ["eval"]:  # eval also takes --config PATH.yaml (flags override the file)
            cmd = parse_cli(EvalCmd, args[1:], prog="adaptrl eval", markers=MARKERS)
            return run(cmd)
        cmd = tyro.cli(
            Command,
            args=args,
            prog="adaptrl",
            description=DESCRIPTION,
            config=MARKERS,
        )
        return run(cmd)
    except AdaptrlError as exc:
        if debug:
            raise
        print(f"adaptrl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("adaptrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
