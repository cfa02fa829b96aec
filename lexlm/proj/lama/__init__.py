"""LAMA (Mehta et al., 2019): attention-pooling text classifiers against baselines, and
low-rank attention inside the Transformer LM. ``config`` (the variants and how to run them),
``run`` (the ``classifier`` run kind and the project's run), ``low_rank_lm`` (the ``lm``
variant), ``evaluate`` (classifier checkpoints' accuracy), ``findings`` (selection on
validation and the summary numbers), ``report`` (tables and figures from findings)."""
