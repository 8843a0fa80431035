"""The meta-test protocol: held-out tasks, budgets, 95% confidence intervals, reports."""

from adaptrl.eval.protocol import EVAL_SEED, AgentResult, EvalResult, evaluate, run_trials
from adaptrl.eval.report import save_report, to_markdown
from adaptrl.eval.stats import mean_ci, within

__all__ = [
    "EVAL_SEED",
    "AgentResult",
    "EvalResult",
    "evaluate",
    "mean_ci",
    "run_trials",
    "save_report",
    "to_markdown",
    "within",
]
