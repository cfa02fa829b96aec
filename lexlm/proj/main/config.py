"""The main job: every project's tiny variant on the embedded corpora, in one workdir.

    python -m lexlm.run --config main --workdir results
    python -m lexlm.run --config main --workdir results --config.sections=lm,lama \\
        --config.lama.train.steps=60

Each section is the named project's config (``c.<section>``, overridable like any field) run
into ``W/runs/<section>``, a complete experiment workdir of its own (its runs, findings and
report); ``W/report.md`` joins the sections' reports. The lexinvariant section reuses the lm
section's run as its standard character LM when their configs are equal (checked, never
assumed). Variants: ``default``, and ``symbols`` (adds the lexinvariant symbol-task section,
which is longer).
"""

from __future__ import annotations

import ml_collections

from lexlm.experiment import registry
from lexlm.experiment.checks import names, unknown_variant

SECTIONS = ("lm", "lexinvariant", "word_pooled", "byte_patching", "lama", "pixel")
OPTIONAL = ("symbols",)  # run only when named in `sections`
VARIANTS = ("default", "symbols")
# section -> (project, variant of that project's config)
SOURCES = {
    "lm": ("lm", "tiny"),
    "lexinvariant": ("lexinvariant", "tiny"),
    "word_pooled": ("word_pooled", "main"),
    "byte_patching": ("byte_patching", "main"),
    "lama": ("lama", "tiny"),
    "pixel": ("pixel", "tiny"),
    "symbols": ("lexinvariant", "symbols"),
}


def section_config(section: str) -> ml_collections.ConfigDict:
    project, variant = SOURCES[section]
    return registry.module(project, "config").get_config(variant)


def get_config(arg: str | None = "default") -> ml_collections.ConfigDict:
    arg = arg or "default"
    if arg not in VARIANTS:
        raise unknown_variant("main", arg, VARIANTS)
    c = ml_collections.ConfigDict()
    c.project = "main"
    c.sections = ",".join(SECTIONS + (("symbols",) if arg == "symbols" else ()))
    for section in SECTIONS + OPTIONAL:
        c[section] = section_config(section)
    return c


def sections(c) -> list[str]:
    return names(c.sections, SECTIONS + OPTIONAL, "sections")


def validate(c) -> None:
    """Every section's config, before any section runs."""
    from lexlm.errors import ConfigError

    for section in sections(c):
        project = str(c[section].get("project", ""))
        if project != SOURCES[section][0]:
            raise ConfigError(f"{section}.project", f"must be {SOURCES[section][0]!r}")
        try:
            registry.module(project, "config").validate(c[section])
        except ConfigError as e:  # name the field as the command line spells it
            raise ConfigError(f"{section}.{e.field}", str(e).partition(": ")[2]) from None
