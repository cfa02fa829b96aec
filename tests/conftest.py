"""Fixtures shared by the trainer and checkpoint tests (module-scoped: one per module)."""

import pytest
import train_helpers as th


@pytest.fixture(scope="module")
def compile_once(tmp_path_factory):
    """JAX's persistent compilation cache for the module: repeated tiny runs compile once."""
    with th.compilation_cache(tmp_path_factory.getbasetemp() / "jax_cache"):
        yield


@pytest.fixture
def unoptimised_xla():
    """XLA with most optimisations off for one test (``train_helpers.unoptimised_xla``)."""
    with th.unoptimised_xla():
        yield


@pytest.fixture(scope="module")
def reference(compile_once, tmp_path_factory):
    return th.reference_run(str(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def eight_device_runs(tmp_path_factory, reference):
    """The 8-device child process, started in the background; ``.wait()`` for its directory."""
    return th.eight_device_runs(str(tmp_path_factory.getbasetemp()), str(reference[0]))
