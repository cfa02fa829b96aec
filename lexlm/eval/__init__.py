"""Metrics and checkpoint-based evaluation."""

from lexlm.eval.checkpoint_eval import restore_params
from lexlm.eval.lm_metrics import NLLSums, accumulate_nll, smooth

__all__ = ["NLLSums", "accumulate_nll", "restore_params", "smooth"]
