"""Ctrl-C, many times over, at one point of a deploy on a running lab: does smship always end?

    SMSHIP_INVENTORY=/var/lib/smship/lab/inventory.yml sudo -E .venv/bin/python bench/ctrlc_soak.py \\
        --runs 40 --after migrating --delay 0-0.3

Each run starts ``smship deploy ENV --force`` in a process group of its own,
waits for the first output line holding ``--after``, waits a random time in
``--delay`` (seconds, uniform; ``--seed`` repeats a sequence), then sends the
group SIGINT, as a terminal's Ctrl-C does. An smship that has not ended
``--timeout`` seconds later is hung: it is asked where its threads are
(SIGUSR1), killed, and its stacks saved beside the table (``--stacks``). A
killed smship leaves its lock to a dead process, which the next run removes.

Where the signal lands inside smship varies from run to run; a hang that
needs it to land in a narrow window shows up in a few per hundred runs, not in
one lab test. A Markdown table on stdout. A last deploy runs to its end, so
the lab is left whole; its failure fails the soak.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests" / "lab")]

from commands import lab_arguments  # noqa: E402
from labkit import finish_smship, interrupt, start_smship, wait_for_line  # noqa: E402


def delay_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        bounds = float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS or LOW-HIGH") from None
    if not 0 <= bounds[0] <= bounds[1] <= 60:
        raise argparse.ArgumentTypeError(f"{text!r}: want 0 <= LOW <= HIGH <= 60")
    return bounds


def one_run(env: str, inventory: Path, needle: str, delay: float, timeout: float) -> dict:
    proc = start_smship("deploy", env, "--force", inventory=inventory, new_session=True)
    try:
        wait_for_line(proc, needle, timeout)
    except AssertionError as never:     # it ended (or went on) without that line
        finish_smship(proc, timeout)
        return {"outcome": "no line", "detail": str(never)[-2000:]}
    time.sleep(delay)
    interrupt(proc)
    signalled = time.monotonic()
    try:
        run = finish_smship(proc, timeout)
    except AssertionError as hung:
        return {"outcome": "hung", "detail": str(hung)}
    took = time.monotonic() - signalled
    if run.returncode == 0:
        return {"outcome": "finished first", "took": took}
    if "another deploy holds the lock" in run.stderr:
        return {"outcome": "lock held", "detail": run.stderr[-2000:]}
    return {"outcome": "interrupted" if "interrupted" in run.stderr else f"exit {run.returncode}", "took": took,
            "detail": run.stderr[-2000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="lab", help="the inventory's environment (default: lab)")
    parser.add_argument("--runs", type=int, default=20, help="interrupted deploys (default: 20)")
    parser.add_argument("--after", default="migrating", help="Ctrl-C after the first line holding this "
                        "(default: migrating; e.g. 'shipping', 'web: batch 1/')")
    parser.add_argument("--delay", type=delay_range, default=(0.0, 0.3), help="seconds after that line, "
                        "LOW-HIGH, uniform (default: 0-0.3)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds an interrupted smship may take to "
                        "end before it counts as hung (default: 120)")
    parser.add_argument("--seed", type=int, default=None, help="the delays' random seed")
    parser.add_argument("--stacks", type=Path, default=Path("ctrlc-soak-stacks.txt"),
                        help="where a hung smship's threads are written (default: ./ctrlc-soak-stacks.txt)")
    args, inventory = lab_arguments(parser, "runs", 1000)
    draw = random.Random(args.seed)
    results = []
    for number in range(1, args.runs + 1):
        delay = draw.uniform(*args.delay)
        result = one_run(args.env, Path(inventory), args.after, delay, args.timeout)
        results.append(result)
        print(f"run {number}: Ctrl-C {delay:.3f}s after {args.after!r}: {result['outcome']}", file=sys.stderr)
        if result["outcome"] in ("hung", "lock held", "no line") or result["outcome"].startswith("exit"):
            with args.stacks.open("a") as out:
                out.write(f"--- run {number}, Ctrl-C {delay:.3f}s after {args.after!r}: {result['outcome']}\n")
                out.write(result.get("detail", "") + "\n")
    # A deploy left to its end: the lab is left whole, and one that cannot finish says what the runs left.
    rerun = finish_smship(start_smship("deploy", args.env, "--force", inventory=Path(inventory)), args.timeout * 5)
    print(f"rerun to the end: exit {rerun.returncode}", file=sys.stderr)
    took = [r["took"] for r in results if "took" in r]
    counts = {outcome: sum(r["outcome"] == outcome for r in results) for outcome in
              ("interrupted", "finished first", "hung", "lock held", "no line")}
    others = len(results) - sum(counts.values())
    print(f"smship deploy {args.env} --force, Ctrl-C {args.delay[0]:g}-{args.delay[1]:g} s after {args.after!r}, "
          f"timeout {args.timeout:g} s\n")
    print("| runs | interrupted | finished first | hung | lock held | other exit | no line | "
          "Ctrl-C to exit, median s | max s |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {len(results)} | {counts['interrupted']} | {counts['finished first']} | {counts['hung']} | "
          f"{counts['lock held']} | {others} | {counts['no line']} | "
          f"{statistics.median(took) if took else float('nan'):.2f} | {max(took, default=float('nan')):.2f} |")
    if rerun.returncode != 0:
        print(f"\nThe deploy run to its end afterwards failed:\n{rerun.stderr[-3000:]}")
    return 1 if counts["hung"] or counts["lock held"] or others or rerun.returncode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
