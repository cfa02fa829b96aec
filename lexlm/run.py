"""Run an experiment: ``python -m lexlm.run --config <file or project>:<variant> --workdir W``.

Trains every run the config asks for (resuming what a killed command left), evaluates each
from its checkpoints and writes ``W/findings.json`` and ``W/report.md``. Rerunning the same
command reuses what is done; a changed config is refused with one line naming the fields, or,
in a grid, computed as a new entry. See ``lexlm.experiment`` for the layout and the rules.
"""

import sys

from lexlm.experiment.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main())
