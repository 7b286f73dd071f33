"""The checker on the adversarial corpus: how often it is right, undecided, slow or wrong.

    python benchmarks/adversarial.py [--timeout 30] [--file params.toml] [--name CASE] [--json]

Every case of tests/data/adversarial/*.toml is classified in a worker process, with
classify's own time budget set to --timeout (its verdict is then undecided, counted here as a
time-out); a worker that does not answer within the budget plus 30 s is killed and replaced.
The time is that of ``classify`` alone, in a warm process. Each verdict is then judged
against the case's independent ground truth (tests/adversarial_truth.py): a claimed rule is
re-checked at high precision, a refutation is wrong where the case has a rule. The table goes
to stdout, then every case that is not right, by name. Targets (issue 10): 0 false rules, 0 false
refutations, undecided + time-outs <= 10%, median time <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import adversarial_truth as truth  # noqa: E402
from machine import describe  # noqa: E402

GRACE_S = 30.0
ROWS = [
    ("expected", "the case's rule"),
    ("acceptable", "a rule the case lists as acceptable"),
    ("other_valid", "a valid rule that is neither"),
    ("undecided", "undecided"),
    ("timeout", "time-outs"),
    ("error", "crashes"),
    ("false_rule", "false rules"),
    ("false_refutation", "false refutations"),
]


def _worker(requests, replies, timeout: float) -> None:
    from ptq_verify.rules import classify
    from ptq_verify.rules.decide import TIMEOUT_REASON

    cases = {c.name: c for c in truth.load_corpus()}
    while True:
        name = requests.get()
        if name is None:
            return
        case = cases[name]
        try:
            op = case.operator()
            start = time.perf_counter()
            verdict = classify(op, timeout=timeout)
            elapsed = time.perf_counter() - start
        except Exception as err:  # a crash is a result to report, not a reason to stop
            replies.put("classified")
            replies.put((name, "error", f"{type(err).__name__}: {err}", None))
            continue
        replies.put("classified")  # the time limit covers classify, not the judging
        outcome, detail = truth.judge(case, op, verdict)
        if outcome == "undecided" and TIMEOUT_REASON in detail:
            outcome = "timeout"  # classify's own budget ran out
        replies.put((name, outcome, detail or verdict.rule.describe(), elapsed))


class _Worker:
    def __init__(self, timeout: float) -> None:
        context = multiprocessing.get_context("fork")
        self.requests, self.replies = context.Queue(), context.Queue()
        self.process = context.Process(
            target=_worker, args=(self.requests, self.replies, timeout)
        )
        self.process.start()

    def run(self, name: str, timeout: float):
        """The reply, or None when classify has not returned within its own budget plus
        a grace (re-validation runs after the budget; a hang past both is killed)."""
        self.requests.put(name)
        try:
            self.replies.get(timeout=timeout + GRACE_S)
        except queue.Empty:
            return None
        return self.replies.get()

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            self.requests.put(None)
        self.process.join()


def run(cases: list[truth.Case], timeout: float) -> list[dict]:
    results = []
    worker = _Worker(timeout)
    for index, case in enumerate(cases, 1):
        started = time.perf_counter()
        reply = worker.run(case.name, timeout)
        if reply is None:
            worker.stop(kill=True)
            worker = _Worker(timeout)
            reply = (case.name, "timeout", f"no verdict within {timeout + GRACE_S:g} s", None)
        name, outcome, detail, elapsed = reply
        results.append({"name": name, "file": case.file, "outcome": outcome,
                        "detail": detail, "seconds": elapsed,
                        "wall": time.perf_counter() - started})
        print(f"[{index}/{len(cases)}] {name}: {outcome}", file=sys.stderr, flush=True)
    worker.stop()
    return results


def table(results: list[dict], timeout: float) -> str:
    counts = {key: sum(r["outcome"] == key for r in results) for key, _ in ROWS}
    times = [r["seconds"] for r in results if r["seconds"] is not None]
    decided_in_time = [
        r["seconds"] for r in results if r["seconds"] is not None and r["outcome"] != "timeout"
    ]
    undecided = counts["undecided"] + counts["timeout"]
    lines = ["| outcome | cases |", "|---|---|", f"| cases | {len(results)} |"]
    lines += [f"| {label} | {counts[key]} |" for key, label in ROWS]
    lines.append(f"| right (expected + acceptable) | {counts['expected'] + counts['acceptable']} |")
    share = undecided / len(results) if results else 0
    lines.append(f"| undecided + time-outs | {undecided} ({share:.1%}; target <= 10%) |")
    if times:
        lines.append(f"| median classify time | {statistics.median(times):.2f} s (target <= 3 s) |")
    if decided_in_time:
        worst = max(decided_in_time)
        lines.append(f"| worst classify time (time-outs excluded) | {worst:.2f} s |")
    lines.append(f"| time limit per case | {timeout:g} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    parser.add_argument("--file", help="only the cases of this corpus file (e.g. params.toml)")
    parser.add_argument("--name", action="append", help="only this case (repeatable)")
    parser.add_argument("--json", help="also write every result to this JSON file")
    args = parser.parse_args()
    cases = truth.load_corpus()
    if args.file:
        cases = [c for c in cases if c.file == args.file]
    if args.name:
        cases = [c for c in cases if c.name in args.name]
    results = run(cases, args.timeout)
    print(table(results, args.timeout))
    order = [key for key, _ in ROWS if key not in ("expected", "acceptable")][::-1]
    for key in order:
        listed = [r for r in results if r["outcome"] == key]
        if listed:
            print(f"\n{key} ({len(listed)}):")
            for r in listed:
                print(f"- {r['name']} ({r['file']}): {r['detail']}")
    print()
    print("\n".join(describe()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
