"""Benchmarks: throughput, MFU and compiled memory of lexlm train steps (scripts, not tests).

They feed synthetic in-memory batches and never import the data stack (grain, TFDS), so they run
on a machine that only has jax/flax/optax. See ``bench/README.md``.
"""
