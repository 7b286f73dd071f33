"""How long classifying the whole catalog takes in a fresh process, against importing sympy.

    python benchmarks/classify_speed.py [--runs 5]

Each run starts a new Python process. `--no-cache` proves every operator again (the cold
first run on a new machine); the plain command reuses the verdicts an earlier run proved
(ptq_verify/rules/store.py), as every later run does. The bounds: 5x
`python -c "import sympy"` for the catalog, 1 s for one operator (`--op Relu`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from machine import describe

CLASSIFY = [sys.executable, "-m", "ptq_verify", "classify"]
COMMANDS = {
    "python -c 'import sympy'": [sys.executable, "-c", "import sympy"],
    "ptq-verify classify --no-cache (proves all)": [*CLASSIFY, "--no-cache"],
    "ptq-verify classify (verdict cache filled)": CLASSIFY,
    "ptq-verify classify --op Relu (cache filled; bound 1 s)": [*CLASSIFY, "--op", "Relu"],
}


def wall_times(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(CLASSIFY, check=True, stdout=subprocess.DEVNULL)  # fill the verdict cache
    medians = {}
    print("| command | median s | min s | runs |")
    print("|---|---|---|---|")
    for label, command in COMMANDS.items():
        times = wall_times(command, args.runs)
        medians[label] = statistics.median(times)
        print(f"| {label} | {medians[label]:.2f} | {min(times):.2f} | {args.runs} |")
    baseline = medians["python -c 'import sympy'"]
    print()
    for label in list(COMMANDS)[1:]:
        print(f"{label} / import sympy = {medians[label] / baseline:.1f} (bound: 5)")
    print()
    print("\n".join(describe()))


if __name__ == "__main__":
    main()
