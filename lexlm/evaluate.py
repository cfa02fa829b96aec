"""Evaluate saved runs: ``python -m lexlm.evaluate --workdir W [--step N] [--split S]``.

``W`` is a run directory (``W/runs/<name>``) or an experiment workdir, whose runs are each
evaluated. The run's recorded config says what it is (its ``kind``) and how to evaluate it;
the checkpoint is restored onto this machine's devices, whatever mesh wrote it. One JSON line
per run is printed; the metrics are saved in the run's ``evals/``.
"""

import sys

from lexlm.experiment.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
