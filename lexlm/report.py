"""Reports and results pages.

python -m lexlm.report --workdir W              # rewrite W/report.md from W/findings.json
python -m lexlm.report --workdir W --save NAME  # commit W's findings as the project's NAME
python -m lexlm.report --pages [--check]        # render every results page from findings
"""

import sys

from lexlm.experiment.cli import report_main

if __name__ == "__main__":
    sys.exit(report_main())
