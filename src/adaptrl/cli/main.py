"""Entry point of the ``adaptrl`` command.

Errors caused by input (unknown ids, impossible sizes, bad files, missing extras) print one line
naming the fix and exit with code 2; ``--debug`` shows the traceback instead.

``train ALGO``, ``bench NAME``, ``eval RUN_DIR`` and ``adapt RUN_DIR`` are dispatched by hand on
their first argument (so a mistyped id gets a one-line "did you mean"), then the rest is parsed by
tyro with the chosen algorithm's or benchmark's own config class; the other commands are one tyro
union.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

import tyro

from adaptrl.cli.commands import (
    AdaptCmd,
    Command,
    DemoCmd,
    EvalCmd,
    EvalRunCmd,
    ListCmd,
    PlotCmd,
    family_command,
    train_command,
)
from adaptrl.core.config import parse_cli, take_config_flag
from adaptrl.core.device import tune_cpu_allocator
from adaptrl.core.errors import AdaptrlError, ConfigError, UnknownIdError
from adaptrl.core.presets import load_preset, preset_path
from adaptrl.core.provenance import start_commit

MARKERS = (tyro.conf.OmitSubcommandPrefixes, tyro.conf.CascadeSubcommandArgs)
DESCRIPTION = (
    "adaptrl: meta-learning and meta-RL. Commands: list, train ALGO, eval (FAMILY --agents ... | "
    "RUN_DIR), adapt RUN_DIR, bench NAME, plot RUN_DIR, demo. Add --help after any command for its "
    "options; --debug shows tracebacks."
)
FAMILY_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*-v\d+")


def _precheck_eval(argv: list[str]) -> None:
    """Turn a mistyped family id into a one-line error with the nearest id. A token right after
    an option is that option's value (``--task reach-v3``, a Meta-World task), not a family."""
    from adaptrl.envs import FAMILIES
    from adaptrl.fewshot import FEWSHOT_FAMILIES

    known = [*FAMILIES, *FEWSHOT_FAMILIES]
    for before, tok in zip(["", *argv], argv, strict=False):
        if before.startswith("--") and "=" not in before:
            continue
        if FAMILY_ID.fullmatch(tok) and tok not in known:
            raise UnknownIdError("family", tok, known)


CONFIG_HELP = (
    "--config NAME_OR_PATH starts from a preset (`adaptrl list` shows them), a YAML file of the "
    "options or a run directory (its config.yaml); flags override it."
)


def _take_resume(args: list[str], command: str) -> Path | None:
    """``--resume RUN_DIR`` alone: everything else comes from the run's config.yaml."""
    if "--resume" not in args:
        return None
    i = args.index("--resume")
    rest = args[:i] + args[i + 2 :]
    if i + 1 >= len(args) or rest:
        raise ConfigError(
            f"use `adaptrl {command} --resume RUN_DIR` alone: the other options are read from the "
            "run's config.yaml"
        )
    return Path(args[i + 1])


def _family_flag(args: list[str]) -> list[str]:
    """Accept ``--family ID`` (and ``--family=ID``) as the positional family subcommand ``ID``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--family" and i + 1 < len(args):
            out.append(args[i + 1])
            i += 2
            continue
        if a.startswith("--family="):
            out.append(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return out


def _take_nproc(args: list[str]) -> tuple[int | None, list[str]]:
    """``--nproc N`` (or ``--nproc=N``) taken out of ``args``: (N or None, the other args)."""
    for i, a in enumerate(args):
        if a == "--nproc" or a.startswith("--nproc="):
            value = a.partition("=")[2] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            rest = args[:i] + args[i + (1 if "=" in a else 2) :]
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--nproc takes a number of processes >= 1, got {value!r}")
            return int(value), rest
    return None, args


def _train(args: list[str]) -> int:
    from adaptrl.algos import ALGOS, load_config
    from adaptrl.cli import run_cmds

    nproc, args = _take_nproc(args)
    launch = nproc is not None and nproc > 1  # as nproc torchrun processes, once args parse
    resume = _take_resume(args, "train")
    if resume is not None:
        if launch:
            return run_cmds.launch_processes(nproc, ["--resume", str(resume)], resume)  # type: ignore[arg-type]
        return run_cmds.resume_train(resume)
    if not args or args[0].startswith("-"):
        run_cmds.print_algos()
        if not args or args[0] in ("-h", "--help"):
            return 0
        raise ConfigError("name the algorithm first: adaptrl train ALGO [options]")
    spec = ALGOS.get(args[0])
    preset, rest = take_config_flag(_family_flag(args[1:]))
    _precheck_eval(rest)
    cls = train_command(spec.config_cls)
    default = None if preset is None else cls(algo=load_config(spec.name, preset))
    doc = f"{(spec.config_cls.__doc__ or '').strip()}\n\n{CONFIG_HELP}"
    prog = f"adaptrl train {spec.name}"
    cmd = parse_cli(
        cls, rest, prog=prog, markers=MARKERS, config_flag=False, default=default, description=doc
    )
    if launch:
        out = cmd.out if cmd.out is not None else run_cmds.default_run_dir(spec.name)
        extra = [] if cmd.out is not None else ["--out", str(out)]
        return run_cmds.launch_processes(nproc, [*args, *extra], out)  # type: ignore[arg-type]
    return run_cmds.run_train(spec.name, cmd)


def _bench(args: list[str]) -> int:
    from adaptrl.algos import ALGOS, load_config
    from adaptrl.bench import BENCHES
    from adaptrl.bench.registry import run_bench
    from adaptrl.cli import run_cmds

    if not args or args[0].startswith("-"):
        run_cmds.print_benches()
        if not args or args[0] in ("-h", "--help"):
            return 0
        raise ConfigError("name the benchmark first: adaptrl bench NAME [options]")
    spec = BENCHES.get(args[0])
    preset, rest = take_config_flag(args[1:])
    description = f"{spec.description}\n\n{CONFIG_HELP}"
    prog = f"adaptrl bench {spec.name}"
    if preset is not None and spec.preset_field is None:  # a whole bench configuration
        rest = ["--config", str(preset_path(spec.presets or spec.name, preset)), *rest]
        cfg = parse_cli(spec.config_cls, rest, prog=prog, markers=MARKERS, description=description)
        return run_bench(cfg)
    default = None
    if preset is not None:  # the learner's configuration: a preset, a file or a run's
        group = spec.presets or spec.name
        if group in ALGOS:
            value = load_config(group, preset)
        else:
            value = load_preset(
                typing.get_type_hints(spec.config_cls)[spec.preset_field], group, preset
            )
        default = dataclasses.replace(spec.config_cls(), **{spec.preset_field: value})
    cfg = parse_cli(
        spec.config_cls,
        rest,
        prog=prog,
        markers=MARKERS,
        config_flag=False,
        default=default,
        description=description,
    )
    return run_bench(cfg)


def _is_run_dir(token: str) -> bool:
    return not token.startswith("-") and Path(token).is_dir()


def _not_a_family(token: str) -> bool:
    """A first ``eval`` argument that is neither an option nor a family id: a mistyped path."""
    from adaptrl.envs import FAMILIES

    return not token.startswith("-") and not FAMILY_ID.fullmatch(token) and token not in FAMILIES


def _eval_run(args: list[str]) -> int:
    from adaptrl.cli import run_cmds

    cls, rest = _with_family(EvalRunCmd, args[1:])
    cmd = tyro.cli(cls, args=rest, prog=f"adaptrl eval {args[0]}", config=MARKERS)
    return run_cmds.run_eval_run(Path(args[0]), cmd)


def _with_family(cls: type, args: list[str]) -> tuple[type, list[str]]:
    """A run command and its arguments, with the ``--family ID [options]`` subcommand if given."""
    rest = _family_flag(args)
    return (cls, args) if rest == args else (family_command(cls), rest)


def _adapt(args: list[str]) -> int:
    from adaptrl.cli import run_cmds

    if not args or args[0] in ("-h", "--help"):
        tyro.cli(AdaptCmd, args=["--help"], prog="adaptrl adapt RUN_DIR", config=MARKERS)
        return 0
    if not _is_run_dir(args[0]):
        raise ConfigError(
            f"{args[0]} is not a run directory; use `adaptrl adapt RUN_DIR [options]`"
        )
    cls, rest = _with_family(AdaptCmd, args[1:])
    cmd = tyro.cli(cls, args=rest, prog=f"adaptrl adapt {args[0]}", config=MARKERS)
    return run_cmds.run_adapt(Path(args[0]), cmd)


def run(cmd: object) -> int:
    """Dispatch a parsed command to the code that runs it."""
    from adaptrl.cli import run_cmds

    if isinstance(cmd, ListCmd):
        return run_cmds.run_list()
    if isinstance(cmd, EvalCmd):
        return run_cmds.run_eval(cmd)
    if isinstance(cmd, PlotCmd):
        return run_cmds.run_plot(cmd.run_dir, cmd.beside, cmd.out)
    if isinstance(cmd, DemoCmd):
        from adaptrl.cli.demo import run_demo

        return run_demo(cmd)
    raise TypeError(f"unknown command {cmd!r}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    tune_cpu_allocator()
    start_commit()  # provenance names the code this process imported, not a later tree
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        head, rest = (args[0], args[1:]) if args else ("", [])
        if head == "train":
            return _train(rest)
        if head == "bench":
            return _bench(rest)
        if head == "adapt":
            return _adapt(rest)
        if head == "eval":
            resume = _take_resume(rest, "eval")
            if resume is not None:
                from adaptrl.cli.run_cmds import resume_eval

                return resume_eval(resume)
            if rest and _is_run_dir(rest[0]):
                return _eval_run(rest)
            if rest and _not_a_family(rest[0]):
                raise ConfigError(
                    f"{rest[0]}: no such run directory; give a directory made by `adaptrl train` "
                    "(or a family id to evaluate classic agents: `adaptrl list`)"
                )
            _precheck_eval(rest)
            # eval also takes --config PATH.yaml (flags override the file)
            return run(parse_cli(EvalCmd, rest, prog="adaptrl eval", markers=MARKERS))
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
    finally:
        from adaptrl.core.distributed import shutdown

        shutdown()  # a torchrun process leaves its group on every exit, errors included


if __name__ == "__main__":
    from adaptrl.core.distributed import exit_process

    exit_process(main())
