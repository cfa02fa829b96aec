"""The main job's report: every section's report, in order, under one heading."""

from __future__ import annotations

from lexlm.experiment import registry
from lexlm.proj.main.config import SOURCES

PAGE = {
    "title": "The main job",
    "intro": """
`bash run.sh` sets up a virtual environment, then runs every project's tiny variant on the
embedded corpora (`python -m lexlm.run --config main --workdir results`), each into
`results/runs/<section>`. It checks that every capability trains, resumes and evaluates from
its checkpoints end to end; at these sizes its numbers are not findings (each project's page
has those).
""",
    "findings": [
        ("main", "The last main job"),
        ("seeds", "Seeds as a batch axis: S = 4 copies against one (`python -m bench.seeds`)"),
    ],
}

TITLES = {
    "lm": "Baseline LM",
    "lexinvariant": "Lexinvariant LMs",
    "word_pooled": "Word-pooled tokenization",
    "byte_patching": "Byte-patching peers",
    "lama": "LAMA",
    "pixel": "Pixel sentence encoders",
    "symbols": "Lexinvariant symbol tasks",
}


def render(findings: dict, provenance: dict, figures) -> str:
    if findings.get("bench") == "seeds":
        from lexlm.proj.main import seeds_report

        return seeds_report.render(findings)
    wall = provenance.get("wall_s")
    lines = []
    if isinstance(wall, (int, float)):
        lines += [f"The job took {wall / 60:.1f} min ({provenance.get('machine', '?')}).", ""]
    for section, f in findings.items():
        project = SOURCES[section][0]
        sub = {**provenance, "timings": provenance.get("timings", {}).get(section, {})}
        prefix, figures.prefix = figures.prefix, f"{figures.prefix}{section}_"
        try:
            body = registry.module(project, "report").render(f, sub, figures)
        finally:
            figures.prefix = prefix
        lines += [f"### {TITLES[section]}", "", body.strip(), ""]
    return "\n".join(lines)
