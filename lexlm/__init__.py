"""lexlm: how language models represent lexical units, in JAX/Flax.

Sub-packages: ``lexlm.text`` (units), ``lexlm.nn`` (layers), ``lexlm.data`` (TFDS + grain),
``lexlm.train`` (mesh, trainer, checkpoints), ``lexlm.eval`` (metrics, checkpoint evaluation).
Importing ``lexlm`` itself imports none of them, so a layer can be taken alone.
"""

__version__ = "0.1.0"
