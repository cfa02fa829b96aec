"""Word-pooled tokenization (Thawani et al., "Learn Your Tokens", 2023): the word-pooled LM
against byte, character, subword and word-level LMs at matched training FLOPs.

``config`` (variants), ``run`` (the grid, shared with ``lexlm.proj.byte_patching``),
``kinds`` (each model's run config, task and FLOP count; the ``word_pooled`` and ``word`` run
kinds' training), ``artifacts`` (tokenizers and word vocabularies), ``data`` (splits, words,
targets), ``evaluate`` (checkpoint evaluation) and ``report``.
"""
