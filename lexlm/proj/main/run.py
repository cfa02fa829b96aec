"""The main job's run: each section into its own workdir, ``W/runs/<section>``."""

from __future__ import annotations

from lexlm.experiment import driver
from lexlm.experiment.store import Workdir
from lexlm.proj.main.config import sections


def run(c, wd: Workdir) -> dict:
    findings = {}
    for section in sections(c):
        kwargs = {}
        if section == "lexinvariant" and "lm" in findings:
            # the baseline LM is the lexinvariant section's standard character LM (checked)
            kwargs["reuse"] = {"learned_char": wd.sub("lm").run("lm")}
        sub = wd.sub(section)
        findings[section] = driver.run_section(c[section], sub, **kwargs)
        wd.timings[section] = sub.timings
    return findings
