"""The seed-batching table of the main job's page, from ``python -m bench.seeds --save``.

Each row is one tiny model's train step with S copies in one program (``train.seeds`` = S)
against one copy, timed interleaved in one process. Besides the measured ratio the table gives
the floor a machine of ``cpu_cores`` cores sets: one copy that keeps ``b`` cores busy leaves
``cores - b`` idle, so S copies of the same work take at least ``S * b / cores`` of one copy's
time (``floor``). A ratio near that floor means the cores were full, not that batching failed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence


def floor(row: Mapping, seeds: int, cores: int) -> float:
    """The least S-copy / one-copy time ratio ``cores`` cores allow when one copy keeps
    ``row['cores_busy_one']`` of them busy (never below 1: S copies do at least one's work)."""
    return max(1.0, seeds * min(float(row["cores_busy_one"]), cores) / cores)


def loaded(rows: Sequence[Mapping], cores: int) -> list[str]:
    """The models timed while another job competed (1-minute load above cores + 1)."""
    return [f"{r['section']}/{r['model']}" for r in rows if r.get("load_1min", 0) > cores + 1]


def render(f: Mapping) -> str:
    s, target, cores = int(f["seeds"]), float(f["target"]), int(f["cpu_cores"])
    rows = list(f["models"])
    meets = [r for r in rows if r["ratio"] <= target]
    lines = [
        f"Each tiny model's train step with S = {s} copies in one program (`train.seeds={s}`) "
        "against one copy, on the task and first training batch of its own run (the main job's "
        "configs), compiled as the trainer compiles them and timed interleaved in one process "
        f"({f['rounds']} rounds of {f['steps']} steps each, medians; device {f['device']}). "
        f"The target is at most {target:g}x the time of one seed: {len(meets)} of {len(rows)} "
        "models meet it.",
        "",
        f"| section | model | parameters | S = 1 step (ms) | S = {s} step (ms) | S = {s} / S = 1 "
        f"| per seed | CPU time S = {s} / S = 1 | cores busy, S = 1 | cores busy, S = {s} "
        f"| floor on {cores} cores | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['section']} | {r['model']} | {r['params']:,} | {r['one_ms']:.1f} "
            f"| {r['seeds_ms']:.1f} | {r['ratio']:.2f}x | {r['per_seed_ratio']:.2f}x "
            f"| {r['cpu_ratio']:.2f}x | {r['cores_busy_one']:.2f} | {r['cores_busy_seeds']:.2f} "
            f"| {floor(r, s, cores):.2f}x | {r['load_1min']:.1f} |"
        )
    lines += ["", *sentences(rows, s, cores, target)]
    return "\n".join(lines)


def sentences(rows: Sequence[Mapping], seeds: int, cores: int, target: float) -> list[str]:
    """What the table shows, each sentence counted from its rows."""
    out = []
    floors = [floor(r, seeds, cores) for r in rows]
    above = [r for r, fl in zip(rows, floors, strict=True) if fl > target]
    if above:
        out.append(
            f"For {len(above)} of {len(rows)} models one copy's step already keeps enough of "
            f"the {cores} cores busy that {seeds} copies of its CPU work need more than "
            f"{target:g}x its time (floor above {target:g}x): on this machine the target is out "
            "of reach for them, and the ratio to compare is the one to the floor."
        )
    over = [r["ratio"] / fl for r, fl in zip(rows, floors, strict=True)]
    out.append(
        f"Measured ratio over the floor: {min(over):.2f}x to {max(over):.2f}x "
        f"(median {statistics.median(over):.2f}x)."
    )
    more_work = [f"{r['section']}/{r['model']}" for r in rows if r["cpu_ratio"] > seeds * 1.1]
    if more_work:
        out.append(
            f"The seed-batched program spends over 1.1 x {seeds} times one copy's CPU time for "
            f"{len(more_work)} models ({', '.join(more_work)}): there the vmapped step does "
            "more work per copy than one copy alone."
        )
    busy = loaded(rows, cores)
    if busy:
        out.append(
            f"Timed while another job competed (load above {cores + 1}): {', '.join(busy)}; "
            "their ratios are less certain."
        )
    return out
