"""Draws sample-efficiency.png from the shipped files: PEARL's run (its metrics and its eval report)
beside MAML-TRPO's HalfCheetah-Vel training metrics and eval report (the same 100 test tasks; the
MAML model itself was lost, so offpolicy-cheetah cannot score it again). Run from the repository
root: .venv/bin/python docs/results/offpolicy/cheetah-vel-pearl-s0/plot.py"""

from pathlib import Path
import json
from adaptrl.bench.offpolicy import read_metric
from adaptrl.eval.curves import plot_sample_efficiency

maml_dir = Path("docs/results/maml-rl/maml-cheetah-vel-paper-budget")
it, ret = read_metric(maml_dir / "model", "return_post")  # training-metrics.csv beside it
per_it = 40 * 20 * 200 * 2  # tasks x rollouts x H, before and after the one inner step
maml_curve = ([i * per_it for i in it if i <= 160], [r for i, r in zip(it, ret) if i <= 160])
pearl = Path("docs/results/offpolicy/models/pearl-cheetah-vel-s0")
pit, pret = read_metric(pearl, "last_episode_return")
pearl_curve = ([i * 16 * 600 for i in pit], pret)
maml_eval = json.loads((maml_dir / "eval-160it-100tasks-lr005/results.json").read_text())
m = maml_eval["curves"][0]
import numpy as np
from adaptrl.eval.stats import mean_ci
v = np.asarray(m["values"])[:, 2]
mm, mc = mean_ci(v)
p = json.loads(Path("docs/results/offpolicy/cheetah-vel-pearl-s0/results.json").read_text())
pr = np.asarray(p["agents"][0]["returns"])[0, :, -1]
pm, pc = mean_ci(pr)
print(mm, mc, pm, pc)
plot_sample_efficiency(
    {"MAML-TRPO": maml_curve, "pearl-s0": pearl_curve},
    {"MAML-TRPO": (160 * per_it, mm, mc), "pearl-s0": (200 * 16 * 600, pm, pc)},
    "docs/results/offpolicy/cheetah-vel-pearl-s0/sample-efficiency.png",
    "halfcheetah-vel-v0: pearl after 2 context episodes vs MAML-TRPO after 2 steps, 100 held-out tasks",
)
