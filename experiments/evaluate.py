"""Evaluate a saved run from its checkpoint, without retraining.

    python -m experiments.evaluate --workdir runs/lm_tiny [--split test] [--step 300]

Writes ``eval_<split>_<step>.json`` (loss, bits per byte and per character, perplexity, loss
by position) into the run directory, never overwriting another step's; ``eval_<split>.json``
and ``loss_by_position_<split>.png`` follow the newest evaluated step, so ``--step`` on an old
checkpoint leaves them alone. The checkpoint is restored into this machine's devices (all of
them: evaluation is data parallel), whatever mesh wrote it; the workdir may be a bucket.
"""

from __future__ import annotations

import json
import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

from lexlm.errors import CheckpointError, ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "run directory written by experiments.run")
_SPLIT = flags.DEFINE_string("split", None, "data split (default: the run's config.eval.split)")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest readable)")
_DRAWS = flags.DEFINE_integer("draws", None, "random-embedding draws to average (lexinvariant)")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    from experiments.lm_runs import evaluate_run

    try:
        m = evaluate_run(_WORKDIR.value, _SPLIT.value, _STEP.value, _DRAWS.value)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({k: v for k, v in m.items() if k != "loss_by_position"}, indent=1))


if __name__ == "__main__":
    app.run(main)
