"""Draws sample-efficiency.png from the shipped files: PEARL's run (its metrics and its eval report)
beside MAML-TRPO's HalfCheetah-Vel training metrics and eval report (the same 100 test tasks; the
MAML model itself was lost, so offpolicy-cheetah cannot score it again). Run from the repository
root: .venv/bin/python docs/results/offpolicy/cheetah-vel-pearl-s0/plot.py"""

import json
from pathlib import Path

import numpy as np
import yaml

from adaptrl.algos.maml_rl import MAMLRLConfig
from adaptrl.algos.trainer import load_trained
from adaptrl.bench.offpolicy import learner_curve, maml_curve, maml_steps_per_iteration
from adaptrl.core.config import config_from_dict
from adaptrl.eval.curves import plot_sample_efficiency
from adaptrl.eval.stats import mean_ci

maml_dir = Path("docs/results/maml-rl/maml-cheetah-vel-paper-budget")
record = yaml.safe_load((maml_dir / "train-config.yaml").read_text())
maml_cfg = config_from_dict(MAMLRLConfig, record["config"])
maml = maml_curve(maml_cfg, maml_dir / "model")  # training-metrics.csv beside it: 160 iterations
maml_eval = json.loads((maml_dir / "eval-160it-100tasks-lr005/results.json").read_text())
mm, mc = mean_ci(np.asarray(maml_eval["curves"][0]["values"])[:, 2])  # after 2 steps

shipped = Path("docs/results/offpolicy")
pearl = load_trained(shipped / "models/pearl-cheetah-vel-s0")
pearl_curve = learner_curve(pearl, {"run": str(shipped / "models/pearl-cheetah-vel-s0")})
report = json.loads((shipped / "cheetah-vel-pearl-s0/results.json").read_text())
pm, pc = mean_ci(np.asarray(report["agents"][0]["returns"])[0, :, -1])  # episode 3
plot_sample_efficiency(
    {"MAML-TRPO": maml, "pearl-s0": pearl_curve},
    {
        "MAML-TRPO": (float(sum(maml_steps_per_iteration(maml_cfg, 160))), mm, mc),
        "pearl-s0": (float(pearl_curve[0][-1]), pm, pc),
    },
    shipped / "cheetah-vel-pearl-s0/sample-efficiency.png",
    "halfcheetah-vel-v0: pearl after 2 context episodes vs MAML-TRPO after 2 steps, "
    "100 held-out tasks",
)
print(f"MAML-TRPO {mm:.2f} ± {mc:.2f}; pearl {pm:.2f} ± {pc:.2f}")
