"""lexlm: how language models represent lexical units, in JAX/Flax.

Sub-packages: ``lexlm.text`` (units), ``lexlm.nn`` (layers), ``lexlm.data`` (TFDS + grain),
``lexlm.train`` (mesh, trainer, checkpoints), ``lexlm.eval`` (metrics, checkpoint evaluation).
Importing ``lexlm`` itself imports none of them, so a layer can be taken alone.

Importing ``lexlm`` adds ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to
``XLA_FLAGS`` (unless ``XLA_FLAGS`` already names that flag). With jax 0.10.2 on CPU, XLA's
concurrency-optimised scheduler lets the train step of some seed-vmapped programs never finish:
every thread parks idle and the next dispatch waits forever. Reproduced with
``python -m lexlm.run --config lama:tiny --config.train.seeds=3 --config.model.embed=128
--config.model.heads=8 --config.model.hidden=64 --config.model.attn_hidden=64
--config.model.mlp_hidden=128`` (no step ever logged; with the flag it trains). The flag only
takes effect if lexlm is imported before jax first builds its CPU backend; it is an option of
XLA:CPU only.
"""

import os as _os

CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def _set_xla_flags(environ=None) -> None:
    """Add ``CPU_SCHEDULER_FLAG=false`` to ``environ["XLA_FLAGS"]`` unless it is already set."""
    environ = _os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "")
    if CPU_SCHEDULER_FLAG not in flags:
        environ["XLA_FLAGS"] = f"{flags} {CPU_SCHEDULER_FLAG}=false".strip()


_set_xla_flags()

__version__ = "0.1.0"
