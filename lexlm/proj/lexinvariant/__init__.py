"""Lexinvariant language models (Huang et al., NeurIPS 2023): findings 1-2, the readout-fix
ablation and the symbol tasks (findings 3-4). Variants and commands: ``config``."""
