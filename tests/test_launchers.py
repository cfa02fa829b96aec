"""The tpu/ launchers, run against stub ``gcloud`` and ``srun`` on PATH: the command line each
worker receives, after the real bash on the far side has parsed the ssh command string."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Records its arguments (NUL-separated, one call per file), then acts like the real tool as
# far as the launchers need: scp copies the tarball to every fake worker, ssh runs --command
# with bash in every fake worker's home.
GCLOUD = r"""#!/usr/bin/env bash
set -euo pipefail
n=$(ls "$STUB_LOG" | wc -l)
printf '%s\0' "$@" > "$STUB_LOG/gcloud.$n"
args=("$@")
if [[ " $* " == *" tpu-vm scp "* && " $* " != *" --recurse "* ]]; then
  for w in $STUB_WORKERS; do cp "${args[4]}" "$w/lexlm.tgz"; done
elif [[ " $* " == *" tpu-vm ssh "* ]]; then
  for ((i = 0; i < ${#args[@]}; i++)); do
    [[ ${args[i]} == --command ]] && cmd=${args[i+1]}
  done
  for w in $STUB_WORKERS; do (cd "$w" && HOME="$w" bash -c "$cmd"); done
fi
"""
# The worker's .venv/bin/python: records argv and the environment it was started with.
PYTHON = r"""#!/usr/bin/env bash
printf '%s\0' "$@" > "$(dirname "$0")/../../python_argv"
printf '%s' "${LEXLM_DATA_DIR-<unset>}" > "$(dirname "$0")/../../data_dir"
"""
SRUN = r"""#!/usr/bin/env bash
printf '%s\0' "$@" > "$STUB_LOG/srun"
"""


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def read_args(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\0")[:-1]


@pytest.fixture
def stubs(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    log.mkdir()
    write_exe(bin_dir / "gcloud", GCLOUD)
    write_exe(bin_dir / "srun", SRUN)
    workers = [tmp_path / f"worker{i}" for i in range(2)]
    for w in workers:
        write_exe(w / "lexlm" / ".venv" / "bin" / "python", PYTHON)
        write_exe(w / "lexlm" / ".venv" / "bin" / "pip", "#!/usr/bin/env bash\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXLM_", "SLURM_"))}
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        STUB_LOG=str(log),
        STUB_WORKERS=" ".join(map(str, workers)),
    )
    return env, log, workers


def run(script: str, args: list[str], env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "tpu" / script), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def gcloud_calls(log: Path) -> list[list[str]]:
    files = sorted(log.glob("gcloud.*"), key=lambda p: int(p.suffix[1:]))
    return [read_args(p) for p in files]


def test_pod_launcher_gives_every_worker_the_exact_arguments(stubs):
    env, log, workers = stubs
    overrides = [
        "--config.train.mesh=(4,4,1)",
        "--config.data.files=/data/my corpus.txt",
        "--config.data.tfds_name=wiki40b/en",
        "--config.train.lr=3e-4",
    ]
    proc = run(
        "run_tpu_pod.sh",
        ["pod", "us-central2-b", "lm:150m", "gs://bkt/runs/a", *overrides],
        env,
    )
    assert proc.returncode == 0, proc.stderr
    calls = gcloud_calls(log)
    scp, ssh = ["compute", "tpus", "tpu-vm", "scp"], ["compute", "tpus", "tpu-vm", "ssh"]
    assert [c[:4] for c in calls] == [scp, ssh]
    for call in calls:
        assert "--worker=all" in call and call[call.index("--zone") + 1] == "us-central2-b"
    for w in workers:
        assert (w / "lexlm" / "lexlm" / "run.py").is_file()  # the tree arrived
        assert not (w / "lexlm" / ".git").exists()
        assert read_args(w / "lexlm" / "python_argv") == [
            "-m",
            "lexlm.run",
            "--config",
            "lm:150m",
            "--workdir",
            "gs://bkt/runs/a",
            "--config.train.distributed=True",
            *overrides,
        ]
        # lexlm reads prepared TFDS data from LEXLM_DATA_DIR: one copy in the run's bucket
        assert (w / "lexlm" / "data_dir").read_text() == "gs://bkt/tfds"


def test_pod_launcher_keeps_a_given_data_dir_and_checks_its_arguments(stubs):
    env, _, workers = stubs
    env = {**env, "LEXLM_DATA_DIR": "gs://other/prepared data"}
    proc = run("run_tpu_pod.sh", ["pod", "zone", "lm:tiny", "gs://b/r"], env)
    assert proc.returncode == 0, proc.stderr
    assert (workers[0] / "lexlm" / "data_dir").read_text() == "gs://other/prepared data"
    proc = run("run_tpu_pod.sh", ["pod", "zone"], env)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_create_copy_and_delete_scripts(stubs, tmp_path):
    env, log, _ = stubs
    created = run("create_tpu_vm.sh", ["pod", "z", "v4-32", "tpu-ubuntu2204-base", "--spot"], env)
    assert created.returncode == 0, created.stderr
    local = str(tmp_path / "out dir")  # a space in the path, and nothing left in the repository
    assert run("copy_results.sh", ["pod", "z", "lexlm/results", local], env).returncode == 0
    assert (tmp_path / "out dir").is_dir()
    assert run("delete_tpu_vm.sh", ["pod", "z"], env).returncode == 0
    create, copy, delete = gcloud_calls(log)
    assert create == [
        *("compute", "tpus", "tpu-vm", "create", "pod", "--zone", "z"),
        *("--accelerator-type", "v4-32", "--version", "tpu-ubuntu2204-base", "--spot"),
    ]
    assert copy[:5] == ["compute", "tpus", "tpu-vm", "scp", "--recurse"]
    assert copy[5:7] == ["pod:lexlm/results", local] and "--worker=0" in copy
    assert delete == ["compute", "tpus", "tpu-vm", "delete", "pod", "--zone", "z", "--quiet"]


def test_slurm_launcher_passes_arguments_to_srun(stubs, tmp_path):
    env, log, _ = stubs
    env = {**env, "SLURM_SUBMIT_DIR": str(REPO)}
    mesh = "--config.train.mesh=(2,8,1)"
    proc = run("run_gpu_slurm.sh", ["lm:150m", "/shared/runs/x y", mesh], env)
    assert proc.returncode == 0, proc.stderr
    assert read_args(log / "srun") == [
        "--kill-on-bad-exit=1",
        ".venv/bin/python",
        *("-m", "lexlm.run", "--config", "lm:150m"),
        *("--workdir", "/shared/runs/x y", "--config.train.distributed=True", mesh),
    ]
