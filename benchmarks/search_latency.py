"""Wall time of a cold ``khnet search`` on the zoo's default entry, and of the CLI's start-up (a fresh process
each run, as a user runs it).

Every budget is answered from the entry's shipped whole-space table: no data, no evaluation. Offline, with an
empty results cache and no data folder, so nothing but the installed package is read.

Run:  python benchmarks/search_latency.py [--repeats 5] [--out docs/performance-search.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {  # label -> khnet arguments
    "search --max-flops 4M (deployed network)": "search --max-flops 4M --json",
    "search --budget-net benchmark --max-flops 50M": "search --budget-net benchmark --max-flops 50M --json",
    "search with 3 budgets": "search --max-flops 3M --max-flops 4M --max-flops 6M --json",
    "khnet --version (start-up alone)": "--version",
    "khnet space 6111": "space 6111",
    "khnet zoo list": "zoo list",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("docs/performance-search.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "KHNET_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "KHNET_RESULTS": f"{tmp}/results",
               "KHNET_DATA": f"{tmp}/no-data"}  # fmt: skip
        for label, command in COMMANDS.items():
            argv = command.split(" ")
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "khnet", *argv], env=env, capture_output=True, text=True,
                                      check=False)  # fmt: skip
                times.append(time.perf_counter() - start)
                if done.returncode != 0:
                    sys.exit(f"error: khnet {' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
            strategy = json.loads(done.stdout)[0]["strategy"] if argv[0] == "search" else "-"
            row = {"command": label, "median_s": round(statistics.median(times), 2), "min_s": round(min(times), 2),
                   "max_s": round(max(times), 2), "strategy": strategy}  # fmt: skip
            rows.append(row)
            print(rows[-1], flush=True)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    args.out.write_text(json.dumps({"machine": machine, "repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
