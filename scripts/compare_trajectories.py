"""Compare the training-loss trajectories of two behaviour pins (scripts/pin_regimes.sh).

    python scripts/compare_trajectories.py BEFORE_DIR AFTER_DIR [NAME ...]

For each run NAME (default: every sub-folder of BEFORE_DIR) it lists every logged training step
(metrics.jsonl of the run and of its refinement sub-runs) as (file, step, stage, task, loss) and
reports whether the two trajectories are identical; exit 1 on any difference.
"""

from __future__ import annotations

import json
import pathlib
import sys


def trajectory(workdir: pathlib.Path) -> list[tuple]:
    out = []
    for f in sorted(workdir.rglob("metrics.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if r.get("split") == "train":
                out.append((str(f.relative_to(workdir)), r["step"], r.get("stage"), r["task"],
                            r["loss"]))  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    before, after = pathlib.Path(argv[1]), pathlib.Path(argv[2])
    names = argv[3:] or sorted(p.name for p in before.iterdir() if p.is_dir())
    bad = 0
    for name in names:
        b, a = trajectory(before / name), trajectory(after / name)
        same = b == a and bool(b)
        print(f"{name}: {len(b)} logged train steps before, {len(a)} after; identical: {same}")
        if not same:
            bad += 1
            diff = next(((x, y) for x, y in zip(b, a) if x != y), None)
            print(f"  first difference: {diff}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
