"""Metrics and checkpoint-based evaluation."""

from lexlm.eval.checkpoint_eval import restore_params
from lexlm.eval.lm_metrics import NLLSums, accumulate_nll, global_batch, params_mesh, smooth

__all__ = [
    "NLLSums",
    "accumulate_nll",
    "global_batch",
    "params_mesh",
    "restore_params",
    "smooth",
]
