#!/usr/bin/env python3
"""Print criterion results as the markdown tables of bench/README.md.

Usage: python3 bench/summarize.py verify|policy   (after `cargo bench -p warrant-bench --bench ...`)

Reads target/criterion/**/new/{benchmark,estimates}.json and reports the
*median* time per iteration, as criterion estimated it, for every benchmark
found there, with ratios computed within that same run. Criterion keeps
earlier runs' results too (a rule count not measured this time, say):
scripts/benchmarks.sh deletes target/criterion/policy_* before the policy
bench, so that everything read comes from the one run.
"""
import glob
import json
import os
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


def load():
    out = {}
    for bench in glob.glob(os.path.join(root, "**", "new", "benchmark.json"), recursive=True):
        with open(bench) as f:
            meta = json.load(f)
        with open(os.path.join(os.path.dirname(bench), "estimates.json")) as f:
            est = json.load(f)
        out[meta["full_id"]] = est["median"]["point_estimate"]  # ns per iteration
    return out


def verify(r):
    print("| benchmark | batch | median µs / signature | signatures / s | naive loop ÷ this |")
    print("|---|---:|---:|---:|---:|")
    single = [("dalek verify_strict", "verify/single/dalek_verify"),
              ("dalek verify (cofactorless)", "verify/single/dalek_verify_cofactorless"),
              ("warrant verify_one", "verify/single/warrant_verify_one")]
    for name, key in single:
        if key in r:
            us = r[key] / 1000
            print(f"| {name} | 1 | {us:.2f} | {1e6 / us:,.0f} | |")
    for n in (64, 256, 1024):
        naive = r.get(f"verify/batch/naive_dalek_loop/{n}")
        for name, fn in [("naive: dalek verify in a loop", "naive_dalek_loop"),
                         ("dalek verify_batch, 1 core", "dalek_verify_batch_1core"),
                         ("warrant batch, 1 core", "warrant_batch_1core"),
                         ("warrant batch, 1 core, 64 principals", "warrant_batch_1core_64keys"),
                         ("warrant batch, all cores", "warrant_batch_allcores")]:
            t = r.get(f"verify/batch/{fn}/{n}")
            if t is None:
                continue
            us = t / 1000 / n
            ratio = f"{naive / t:.2f}x" if naive else ""
            print(f"| {name} | {n} | {us:.2f} | {1e6 / us:,.0f} | {ratio} |")


def policy(r):
    print("| rules | engine | median ns / decision | decisions / s | Warrant's speed-up |")
    print("|---:|---|---:|---:|---:|")
    for n in (10, 100, 1000, 10000):
        w = r.get(f"policy/{n}/warrant/{n}")
        for eng in ("warrant", "cedar", "rego"):
            t = r.get(f"policy/{n}/{eng}/{n}")
            if t is None:
                continue
            ratio = "" if eng == "warrant" or not w else f"{t / w:,.0f}x"
            print(f"| {n:,} | {eng} | {t:,.0f} | {1e9 / t:,.0f} | {ratio} |")


which = sys.argv[1] if len(sys.argv) > 1 else "verify"
{"verify": verify, "policy": policy}[which](load())
