"""Render the results page again from a run's JSON files (no measuring): ``python -m bench.render DIR MD``.

    python -m bench.render bench/results bench/RESULTS.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._markdown import write_markdown

SCENARIOS = ("floor", "claim", "throughput", "idle", "wake", "takeover", "memory", "peers")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, md = Path(args[0]), Path(args[1])
    meta = json.loads((out / "run.json").read_text())
    results = {n: json.loads((out / f"{n}.json").read_text()) for n in SCENARIOS if (out / f"{n}.json").is_file()}
    write_markdown(md, meta, results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
