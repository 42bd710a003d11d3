#!/usr/bin/env python3
"""Interleaved A/B of the pipeline bench's open loop at a fixed rate.

Copy each build's bench binary aside first (cargo prints its path):

    cargo bench -p warrant-bench --bench pipeline --no-run
    cp target/release/deps/pipeline-<hash> /tmp/pipe-a
    # ...change the engine, build again...
    cp target/release/deps/pipeline-<hash> /tmp/pipe-b
    python3 bench/open_loop_ab.py 46000 8 /tmp/pipe-a /tmp/pipe-b

Runs every binary once per round, in turn (the machine's noise lands on
all of them alike), with one short closed-loop round and then the open loop
at RATE intents/s for 2 s. Prints each run and the medians of p50, p99,
p99.9 and the CPU µs per intent (publisher included), and each run's
hypervisor steal time: a set whose runs lost much CPU to other guests says
more about the host than about the binaries.
"""

import os
import re
import statistics
import subprocess
import sys


def run(binary: str, rate: str) -> tuple[float, float, float, float, float]:
    env = dict(
        os.environ,
        WARRANT_PIPELINE_ROUNDS="1",
        WARRANT_PIPELINE_INTENTS="1000",
        WARRANT_PIPELINE_OPEN_RATE=rate,
    )
    done = subprocess.run([binary, "--bench"], env=env, capture_output=True, text=True)
    out = done.stdout
    if done.returncode != 0:
        sys.exit(f"{binary} exited with {done.returncode}:\n{out}\n{done.stderr}")
    cpu = re.search(r"open loop: ([\d.]+) CPU", out)
    steal = re.search(r"open loop: .*steal ([\d.]+) ms", out)
    lat = re.search(r"p50 ([\d.]+) ms  p99 ([\d.]+) ms  p99\.9 ([\d.]+) ms", out)
    if not cpu or not lat:
        sys.exit(f"{binary}: no open-loop line in its output:\n{out}")
    return (float(lat[1]), float(lat[2]), float(lat[3]), float(cpu[1]), float(steal[1]) if steal else float("nan"))


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rate, rounds, binaries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if not rate.replace(".", "", 1).isdigit():
        sys.exit(f"RATE must be a number of intents per second, got {rate!r}")
    results: dict[str, list[tuple[float, float, float, float, float]]] = {b: [] for b in binaries}
    for i in range(rounds):
        for b in binaries:
            r = run(b, rate)
            results[b].append(r)
            print(f"round {i} {b}: p50 {r[0]} ms  p99 {r[1]} ms  p99.9 {r[2]} ms  {r[3]} CPU µs/intent  steal {r[4]:.0f} ms", flush=True)
    print(f"medians of {rounds} runs at {rate}/s:")
    for b, rs in results.items():
        m = [statistics.median(r[k] for r in rs) for k in range(5)]
        p99s = ", ".join(f"{r[1]:.2f}" for r in sorted(rs, key=lambda r: r[1]))
        print(f"  {b}: p50 {m[0]:.3f} ms  p99 {m[1]:.3f} ms  p99.9 {m[2]:.3f} ms  {m[3]:.1f} CPU µs/intent  steal {m[4]:.0f} ms  (p99s: {p99s})")


if __name__ == "__main__":
    main()
