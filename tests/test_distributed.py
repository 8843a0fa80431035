"""The distributed outer loop: blocks of a meta-batch draw what the whole batch draws, and MAML-RL
trained by 1 or 2 ``torchrun`` processes (or none) ends with bit-identical parameters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adaptrl.algos.maml import MAML, MAMLConfig
from adaptrl.algos.maml_rl import MAMLRL, MAMLRLConfig
from adaptrl.algos.rl2 import RL2, RL2Config
from adaptrl.algos.trainer import train
from adaptrl.core import distributed
from adaptrl.core.distributed import Rows, World
from adaptrl.core.errors import ConfigError
from adaptrl.core.seeding import make_generator
from adaptrl.envs import make_family
from adaptrl.nn import heads

TORCHRUN = Path(sys.executable).with_name("torchrun")


def test_rows_draw_slices_the_whole_batch():
    full = torch.rand((6, 3), generator=make_generator(1))
    for start, count in [(0, 2), (2, 2), (4, 2), (1, 4)]:
        block = Rows(start, count, 6).draw(torch.rand, (count, 3), make_generator(1))
        assert torch.equal(block, full[start : start + count])
    assert Rows(1, 2, 3).scaled(4) == Rows(4, 8, 12)
    with pytest.raises(ValueError, match="3 rows for a block of 2"):
        Rows(0, 2, 6).draw(torch.rand, (3,), make_generator(1))
    with pytest.raises(ConfigError):
        Rows(5, 2, 6)


def test_world_shards_contiguous_blocks_and_refuses_uneven_batches():
    assert [World(r, 4).shard(8) for r in range(4)] == [Rows(2 * r, 2, 8) for r in range(4)]
    with pytest.raises(
        ConfigError, match=r"meta_batch_size=10 does not divide across 4 .* 8 or 12"
    ):
        World(1, 4).shard(10)
    x = torch.arange(3.0)
    assert World().gather(x) is x  # one process: no copy, autograd intact
    assert distributed.current() == World()


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_sampling_a_block_of_rows_matches_the_whole_batch(kind):
    spec = heads.DistSpec(kind, 5 if kind == "categorical" else 2)
    params = torch.randn(8, spec.param_dim, generator=make_generator(0))
    whole = heads.sample(spec, params, make_generator(3))
    top = heads.sample(spec, params[4:], make_generator(3), Rows(4, 4, 8))
    assert torch.equal(top, whole[4:])


@pytest.mark.parametrize("family_id", ["bandit-bernoulli-v0", "tabular-mdp-v0"])
def test_env_blocks_step_like_the_rows_of_the_whole_batch(family_id):
    family = make_family(family_id)
    tasks = family.tasks(6, "train", seed=0)
    arms = int(family.action_space.n)  # type: ignore[attr-defined]
    actions = torch.randint(arms, (5, 6), generator=make_generator(2))

    def run(lo: int, hi: int) -> list[torch.Tensor]:
        env = family.make_env(hi - lo)
        env.set_rows(Rows(lo, hi - lo, 6))
        env.set_tasks(tasks[lo:hi])
        out = [env.reset(seed=7)]
        for a in actions:
            step = env.step(a[lo:hi])
            out += [step.obs, step.reward]
        return out

    whole = run(0, 6)
    halves = [torch.cat(parts) for parts in zip(run(0, 3), run(3, 6), strict=True)]
    assert all(torch.equal(a, b) for a, b in zip(whole, halves, strict=True))
    with pytest.raises(ConfigError, match="a block of 2 rows for 3 environments"):
        family.make_env(3).set_rows(Rows(0, 2, 6))


def test_a_single_process_learner_is_refused_under_torchrun(monkeypatch):
    from adaptrl.algos.lstm_optimizer import LSTMOptimizerConfig, LSTMOptimizerLearner

    learner = LSTMOptimizerLearner(LSTMOptimizerConfig(iterations=1), seed=0)
    monkeypatch.setattr(distributed, "current", lambda: World(0, 2))
    with pytest.raises(ConfigError, match=r"lstm-optimizer trains in one process.*maml-rl"):
        train(learner, iterations=1, show_progress=False)


def test_chunk_bounds_cut_like_tensor_split():
    for n, chunks in [(8, 2), (7, 3), (5, 5), (4, 1)]:
        pieces = torch.arange(n).tensor_split(chunks)
        expect = [(int(p[0]), int(p[-1]) + 1) for p in pieces]
        assert distributed.chunk_bounds(n, chunks) == expect
    with pytest.raises(ConfigError, match="cannot cut 3 tasks into 4 chunks"):
        distributed.chunk_bounds(3, 4)
    with pytest.raises(ConfigError, match="grad_chunks=3 does not divide across 2 processes"):
        distributed.check_chunks(World(0, 2), 3)


def test_few_shot_chunked_meta_gradient_equals_the_whole_batch_gradient(monkeypatch):
    def trained(chunks: int) -> dict[str, torch.Tensor]:
        learner = MAML(MAMLConfig(meta_batch=6, grad_chunks=chunks), seed=0)
        learner.meta_train_step()
        return learner.model.state_dict()

    whole, chunked = trained(1), trained(3)
    for k in whole:
        torch.testing.assert_close(chunked[k], whole[k], rtol=0, atol=1e-6)
    monkeypatch.setattr(distributed, "current", lambda: World(0, 2))
    with pytest.raises(ConfigError, match="grad_chunks=3 does not divide across 2"):
        MAML(MAMLConfig(meta_batch=6, grad_chunks=3), seed=0)


def test_rl2_refuses_chunks_or_outer_loops_it_cannot_split(monkeypatch):
    monkeypatch.setattr(distributed, "current", lambda: World(0, 2))
    small = {"trials": 8, "minibatches": 2, "hidden": 8}
    with pytest.raises(ConfigError, match="grad_chunks=1 does not divide across 2 processes"):
        RL2(RL2Config(**small), seed=0)
    with pytest.raises(ConfigError, match="outer='ppo' only"):
        RL2(RL2Config(**small, outer="trpo", grad_chunks=2), seed=0)
    with pytest.raises(ConfigError, match="trials=3 does not divide across 2"):
        RL2(RL2Config(trials=3, minibatches=1, hidden=8), seed=0)
    with pytest.raises(ConfigError, match=r"trials \(6\) must be a multiple of grad_chunks \(4\)"):
        RL2Config(trials=6, minibatches=1, grad_chunks=4)
    with pytest.raises(ConfigError, match=r"grad_chunks \(8\) cannot exceed the trials of a minib"):
        RL2Config(trials=16, minibatches=4, grad_chunks=8)


# --- one result whatever the number of processes ------------------------------------------------
TINY = [
    "--iterations", "3", "--meta-batch-size", "4", "--rollouts-per-task", "4",
    "--hidden", "16", "--checkpoint-every", "2", "--keep", "5",
]  # fmt: skip


PROTONET = ["protonet", "--iterations", "2", "--tasks-per-batch", "2", "--grad-chunks", "2", "--filters", "8"]  # fmt: skip


def _train(out: Path, processes: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"}
    cli = ["-m", "adaptrl.cli.main", "train", *args]
    if processes == 0:
        cmd = [sys.executable, *cli]
    else:
        cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes), *cli]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def _params(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _assert_same_parameters(tmp_path: Path, args: list[str], processes: tuple[int, ...]) -> None:
    """Train ``args`` with each process count (0: no torchrun); the parameters must agree."""
    runs = []
    for n in processes:
        out = tmp_path / f"n{n}"
        done = _train(out, n, *args, "--out", str(out))
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(_params(out))
    assert all(_same(runs[0], params) for params in runs[1:])


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize("outer", ["trpo", "ppo"])
def test_maml_rl_parameters_do_not_depend_on_the_number_of_processes(tmp_path, outer):
    processes = (0, 1, 2) if outer == "trpo" else (0, 2)
    _assert_same_parameters(tmp_path, ["maml-rl", *TINY, "--outer", outer], processes)
    # the rank-0 process alone wrote the run: one metrics row per iteration
    rows = (tmp_path / "n2" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize(
    ("algo", "family"), [("rl2", "nav2d-goal-v0"), ("hyper-policy", "tabular-mdp-v0")]
)
def test_rl2_parameters_do_not_depend_on_the_number_of_processes(tmp_path, algo, family):
    # tabular MDPs: random transitions and rewards, drawn by each process for its rows; nav2d:
    # Gaussian actions from blocks of 2 trials (matrix products of 2 and 4 rows can differ in the
    # last bits; the fixed blocks keep them out)
    args = [algo, "--family", family, "--iterations", "2", "--trials", "4"]
    args += ["--minibatches", "1", "--grad-chunks", "2", "--hidden", "16"]
    _assert_same_parameters(tmp_path, args, (0, 2))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize(
    "args",
    [
        ["maml", "--iterations", "3", "--meta-batch", "4", "--grad-chunks", "2"],
        ["reptile", "--iterations", "3", "--meta-batch", "4", "--grad-chunks", "4"],
        PROTONET,
    ],
    ids=lambda a: a[0],
)
def test_few_shot_parameters_do_not_depend_on_the_number_of_processes(tmp_path, args):
    _assert_same_parameters(tmp_path, args, (0, 2))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
@pytest.mark.parametrize(("algo", "family"), [("pearl", "nav2d-goal-v0"), ("meta-q", None)])
def test_off_policy_parameters_do_not_depend_on_the_number_of_processes(tmp_path, algo, family):
    args = [algo, *(["--family", family] if family else []), "--iterations", "2"]
    args += ["--trials", "4", "--updates", "3", "--batch", "8", "--collect-chunks", "2"]
    _assert_same_parameters(tmp_path, args, (0, 2))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_rl2_on_meta_world_does_not_depend_on_the_number_of_processes(tmp_path):
    pytest.importorskip("metaworld")
    args = ["rl2", "metaworld-ml1-v0", "--task", "reach-v3", "--horizon", "30", "--episodes", "2"]
    args += ["--iterations", "2", "--trials", "4", "--minibatches", "1", "--grad-chunks", "2"]
    _assert_same_parameters(tmp_path, [*args, "--hidden", "16"], (0, 2))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_a_run_killed_in_one_process_resumes_in_two_to_the_same_result(tmp_path):
    ref = tmp_path / "ref"
    assert _train(ref, 0, "maml-rl", *TINY, "--out", str(ref)).returncode == 0
    # the run as a kill after its iteration-2 checkpoint leaves it: no model, no later rows
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    for name in ("model.json", "model.safetensors"):
        (cut / name).unlink()
    for late in (cut / "checkpoints").glob("ckpt-000000000003.*"):
        late.unlink()
    done = _train(cut, 2, "--resume", str(cut))
    assert done.returncode == 0, done.stderr[-2000:]
    assert _same(_params(ref), _params(cut))


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_an_uneven_meta_batch_is_refused_before_a_run_directory_exists(tmp_path):
    out = tmp_path / "odd"
    args = ["maml-rl", "--iterations", "1", "--meta-batch-size", "5", "--out", str(out)]
    done = _train(out, 2, *args)
    assert done.returncode != 0
    assert "meta_batch_size=5 does not divide across 2 processes" in done.stderr
    assert not out.exists()


def test_maml_rl_in_one_process_keeps_its_whole_meta_batch():
    learner = MAMLRL(MAMLRLConfig(meta_batch_size=3, rollouts_per_task=2, hidden=(8,)), seed=0)
    assert learner.shard == Rows(0, 3, 3)


def test_scaling_projection_splits_repeated_and_split_work():
    from adaptrl.bench.scaling import project

    # T(1) = 10, T(2) = 6.5 with 0.5 s in collectives: split work 8 s, repeated 2 s
    out = project(10.0, 6.5, 0.5, calls=10, nbytes=1e6, tasks=8, alpha=1e-3, beta=1e9)
    assert out["split_seconds"] == pytest.approx(8.0)
    assert out["repeated_seconds"] == pytest.approx(2.0)
    eight = out["projected"][8]  # 128 tasks: 2 + 128 / 8 s of work, 10 * 7 hops + 16 MB * 7/8
    assert eight["collective_seconds"] == pytest.approx(0.07 + 0.014)
    assert eight["seconds"] == pytest.approx(18.084)
    assert eight["efficiency"] == pytest.approx(130 / (8 * 18.084))
    assert out["amdahl_limit_speedup"] == pytest.approx(65.0)
    assert out["split_from"] == "2 processes"
    # measured from one process on half the meta-batch: T_half = 6 -> split 8 s, repeated 2 s,
    # whatever the 2-process time says
    half = project(10.0, 4.0, 0.5, calls=10, nbytes=1e6, tasks=8, alpha=1e-3, beta=1e9, t_half=6.0)
    assert half["split_from"] == "half batch" and not half["superlinear"]
    assert half["repeated_seconds"] == pytest.approx(2.0)
    # a half batch more than twice as fast cannot be split: fall back to the 2-process inference
    odd = project(10.0, 6.5, 0.5, calls=10, nbytes=1e6, tasks=8, alpha=1e-3, beta=1e9, t_half=4.0)
    assert odd["split_from"] == "2 processes" and odd["repeated_seconds"] == pytest.approx(2.0)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_scaling_bench_quick_writes_a_report(tmp_path):
    from adaptrl.bench.scaling import ScalingConfig, run_scaling

    payload = run_scaling(ScalingConfig(quick=True, out=tmp_path))
    assert set(payload["raw"]) == {"1", "2"}
    assert len(payload["half_batch"]["seconds"]) == 2  # 4 of the quick config's 8 tasks
    assert payload["projection"]["this_machine"]["split_from"] in ("half batch", "2 processes")
    assert payload["projection"]["calls_per_iteration"] > 0
    assert (tmp_path / "report.md").read_text().startswith("# adaptrl bench scaling")


def test_rl2_chunked_minibatch_gradients_sum_to_the_whole_minibatch_gradient():
    from adaptrl.envs.tabular import TabularMDPConfig

    def trained(chunks: int) -> dict[str, torch.Tensor]:
        config = RL2Config(
            family=TabularMDPConfig(), trials=8, minibatches=2, hidden=16, grad_chunks=chunks
        )
        learner = RL2(config, seed=0)
        learner.meta_train_step()
        return learner.net.state_dict()

    whole, chunked = trained(1), trained(4)
    assert not _same(whole, chunked)  # a different summation order...
    for k in whole:  # ...of the same gradient
        torch.testing.assert_close(chunked[k], whole[k], rtol=0, atol=1e-5)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")
def test_nproc_launches_torchrun_with_the_same_result(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _train(one, 0, "maml-rl", *TINY, "--out", str(one)).returncode == 0
    done = _train(two, 0, "maml-rl", *TINY, "--out", str(two), "--nproc", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(2 processes)" in " ".join(done.stdout.split())  # rich wraps long lines
    assert _same(_params(one), _params(two))


def test_nproc_errors(monkeypatch):
    from adaptrl.cli.main import main

    assert main(["train", "maml-rl", "--nproc", "0"]) == 2
    assert main(["train", "maml-rl", "--nproc=two"]) == 2
    with pytest.raises(SystemExit):  # the command is parsed before any process starts
        main(["train", "maml-rl", "--nproc", "2", "--no-such-flag"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "maml-rl", "--nproc", "2"]) == 2


def test_a_failed_launch_names_the_resume_command(tmp_path, monkeypatch):
    import adaptrl.cli.run_cmds as run_cmds
    from adaptrl.core.errors import TrainingError

    monkeypatch.setattr(subprocess, "call", lambda cmd: 1)  # the processes stopped early
    with pytest.raises(TrainingError, match=f"adaptrl train --resume {tmp_path} --nproc 2"):
        run_cmds.launch_processes(2, ["maml-rl", "--out", str(tmp_path)], tmp_path)
    (tmp_path / "model.json").write_text("{}")  # ... after the first process saved the model
    assert run_cmds.launch_processes(2, ["maml-rl", "--out", str(tmp_path)], tmp_path) == 0
