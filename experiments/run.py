"""Train one run from a config file, then evaluate it from its checkpoint.

    python -m experiments.run --config experiments/lm.py:tiny --workdir runs/lm_tiny \
        [--config.train.steps=1000 --config.data.source=files --config.data.files=a.txt]

Re-running the same command resumes from the newest checkpoint in ``--workdir``.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from lexlm.errors import CheckpointError, ConfigError, TrainingError

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, eval)")
_EVAL = flags.DEFINE_bool("eval", True, "evaluate the final checkpoint on config.eval.split")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    from experiments.lm_runs import evaluate_run, train_run

    cfg = _CONFIG.value
    try:
        result = train_run(cfg, _WORKDIR.value)
        print(f"trained {result.start_step} -> {result.final_step} steps ({result.stopped_by})")
        if _EVAL.value and result.stopped_by == "steps":
            m = evaluate_run(_WORKDIR.value)
            keys = ("loss", "bits_per_char", "bits_per_byte", "perplexity")
            print({k: round(m[k], 4) for k in keys if k in m})
    except (ConfigError, TrainingError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
