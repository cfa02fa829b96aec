"""Mesh + logical sharding rules, optimizer, the one training loop, checkpoints.

Never imports the data stack, so it runs on machines that only have jax/flax/optax/orbax.
"""

from lexlm.train.checkpoint import Checkpointer
from lexlm.train.lm_task import make_lm_task
from lexlm.train.loop import (
    Task,
    TrainResult,
    TrainState,
    build_state,
    default_train_config,
    train,
    validate_train_config,
)
from lexlm.train.sharding import LOGICAL_RULES, make_mesh

__all__ = [
    "LOGICAL_RULES",
    "Checkpointer",
    "Task",
    "TrainResult",
    "TrainState",
    "build_state",
    "default_train_config",
    "make_lm_task",
    "make_mesh",
    "train",
    "validate_train_config",
]
