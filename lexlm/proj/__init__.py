"""One package per project, each with the same files: ``config.py`` (``get_config(variant)``
and ``validate``), ``run.py`` (``run(config, workdir) -> findings``), ``evaluate.py`` (its run
kinds' checkpoint evaluation), ``report.py`` (Markdown and figures from findings, and the page
text), ``README.md`` (its results page, generated from ``findings/``).

Projects: ``lm`` (the baseline decoder-only LM), ``lexinvariant``, ``word_pooled``,
``byte_patching``, ``lama``, ``pixel``, and ``main`` (the main job: every tiny variant).
"""
