"""Byte-patching peers of the word-pooled LM (MegaByte, Yu et al., 2023; SpaceByte, Slagle,
2024) on the word-pooled grid at several matched training-FLOP budgets.

``config`` (variants and budgets), ``run`` (the word-pooled grid per budget), ``evaluate``
(the byte n-gram count reference and SpaceByte's patching counts) and ``report``.
"""
