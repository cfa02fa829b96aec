"""Seeds as a batch axis: S copies trained in one program equal S single-seed runs, resume
exactly, and come apart for evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import train_helpers as th

from lexlm.errors import ConfigError
from lexlm.eval import restore_params
from lexlm.train import train, validate_train_config
from lexlm.train.seeds import SeedBatches, seed_batches, seed_params

N = th.N


def _two_seed_batches():
    return SeedBatches([th.PatternBatches(seed=0), th.PatternBatches(seed=1)])


def test_seed_batches_stack_and_resume():
    b = _two_seed_batches()
    first = next(b)
    assert first["inputs"].shape == (2, th.BATCH, th.SEQ)
    assert np.array_equal(first["inputs"][1], th.PatternBatches(seed=1).batch(0)["inputs"])
    state = b.get_state()
    assert state == {"seeds": [{"index": 1}, {"index": 1}]}
    c = _two_seed_batches()
    c.set_state(state)
    assert np.array_equal(next(c)["inputs"], next(b)["inputs"])
    with pytest.raises(ValueError, match="cannot resume 3 seeds"):
        SeedBatches([th.PatternBatches()] * 3).set_state(state)
    assert isinstance(seed_batches(lambda s: th.PatternBatches(seed=s), 1, 5), th.PatternBatches)


def test_seed_params_picks_one_copy_and_names_bad_indices():
    tree = {"w": np.arange(6).reshape(3, 2)}
    assert np.array_equal(seed_params(tree, 2, 3)["w"], [4, 5])
    assert seed_params(tree, None, 1) is tree
    with pytest.raises(ValueError, match=r"seeds 0\.\.2"):
        seed_params(tree, 3, 3)
    with pytest.raises(ValueError, match="one seed"):
        seed_params(tree, 1, 1)


def test_seeds_must_be_positive():
    with pytest.raises(ConfigError, match=r"train\.seeds"):
        validate_train_config(th.train_config(seeds=0))


def test_two_seeds_in_one_program_equal_two_single_runs(tmp_path):
    """Copy s of a 2-seed run is the run with ``train.seed = s`` (to float tolerance), its
    checkpoint restores per seed, and it resumes to the same state."""
    singles = []
    for s in range(2):
        cfg = th.train_config(seed=s, steps=N, ckpt_every=N)
        result = train(cfg, th.tiny_task(), th.PatternBatches(seed=s), tmp_path / f"single{s}")
        singles.append(th.flat(result.state.params))
    cfg = th.train_config(seeds=2, steps=N, ckpt_every=N)
    stacked = train(cfg, th.tiny_task(), _two_seed_batches(), tmp_path / "stacked")
    rows = th.read_metrics(tmp_path / "stacked")
    assert {"loss_seed0", "loss_seed1"} <= set(rows[0])
    single_losses = [th.losses(tmp_path / f"single{s}") for s in range(2)]
    np.testing.assert_allclose(
        [r["loss_seed1"] for r in rows], single_losses[1], rtol=1e-4, atol=1e-5
    )
    for s in range(2):
        got = th.flat(seed_params(stacked.state.params, s, 2))
        for name, value in singles[s].items():
            np.testing.assert_allclose(got[name], value, rtol=2e-4, atol=2e-5, err_msg=name)
        restored, step, _ = restore_params(th.tiny_task(), cfg, tmp_path / "stacked", seed=s)
        assert step == N
        for name, value in th.flat(restored).items():
            np.testing.assert_allclose(value, got[name], rtol=0, atol=0, err_msg=name)
    # the two copies really differ (different keys and data orders)
    a, b = (th.flat(seed_params(stacked.state.params, s, 2)) for s in range(2))
    assert any(not np.allclose(a[k], b[k]) for k in a)
    # resuming to 2N continues both copies
    more = train(th.train_config(seeds=2, steps=2 * N, ckpt_every=N), th.tiny_task(),
                 _two_seed_batches(), tmp_path / "stacked")  # fmt: skip
    assert (more.start_step, more.final_step) == (N, 2 * N)


SEEDS_ON_A_MESH = """
import sys, tempfile
import jax, numpy as np
sys.path.insert(0, "tests")
import train_helpers as th
from lexlm.train import train
from lexlm.train.seeds import SeedBatches, seed_params

with tempfile.TemporaryDirectory() as d:
    cfg = th.train_config(seeds=2, steps=th.N, ckpt_every=th.N, mesh=(4, 2, 1))
    its = [th.PatternBatches(seed=0), th.PatternBatches(seed=1)]
    stacked = train(cfg, th.tiny_task(), SeedBatches(its), d + "/s")
    one = th.train_config(seed=1, steps=th.N, ckpt_every=th.N)
    single = train(one, th.tiny_task(), th.PatternBatches(seed=1), d + "/one")
    a, b = th.flat(seed_params(stacked.state.params, 1, 2)), th.flat(single.state.params)
    print("DEVICES", jax.device_count())
    print("DIFF", max(float(np.abs(a[k] - b[k]).max()) for k in a))
    print("SPEC", jax.tree.leaves(stacked.state.params)[0].sharding.spec)
"""


def test_seeds_on_an_eight_device_mesh(tmp_path):
    """Two copies on a data x fsdp = 4 x 2 mesh: the seed axis replicated, the rest sharded as
    for one copy, and copy 1 equals the single run with seed 1 on one device."""
    out = th.run_script(SEEDS_ON_A_MESH, tmp_path / "seeds_mesh.py", [])
    assert out["DEVICES"] == "8"
    assert float(out["DIFF"]) < 1e-4
    assert out["SPEC"] == "P(None, 'fsdp')"


def test_importing_lexlm_turns_off_the_cpu_scheduler_that_hangs_seeded_programs():
    import os

    import lexlm

    assert f"{lexlm.CPU_SCHEDULER_FLAG}=false" in os.environ["XLA_FLAGS"]  # imported here
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    lexlm._set_xla_flags(env)
    assert env["XLA_FLAGS"] == (
        f"--xla_force_host_platform_device_count=8 {lexlm.CPU_SCHEDULER_FLAG}=false"
    )
    mine = {"XLA_FLAGS": f"{lexlm.CPU_SCHEDULER_FLAG}=true"}  # a user's own choice is kept
    lexlm._set_xla_flags(mine)
    assert mine["XLA_FLAGS"] == f"{lexlm.CPU_SCHEDULER_FLAG}=true"
    empty: dict = {}
    lexlm._set_xla_flags(empty)
    assert empty["XLA_FLAGS"] == f"{lexlm.CPU_SCHEDULER_FLAG}=false"
