#!/usr/bin/env python3
"""An A/B of the training step: bitfleet-bench-step run with each variant's flags in turn, round
after round (A B A B ...), so that a shared machine's drift lands on every variant alike. Prints
examples/s per round and each variant's median against the first variant's, as ratios; --json-out
keeps every run's numbers.

  bench/ab_step.py --backbone DIR --variant block="--cpu-attention block" --variant flash="--cpu-attention flash"
                   [--rounds 3] [--slots 4,16] [--dtype bf16] [--seq 64] [--batch 16] [--steps 4] [--threads 2]

Each --variant is NAME=FLAGS (FLAGS: more bitfleet-bench-step flags, split as a shell would). The
first variant is the baseline.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_variant(text):
    name, sep, flags = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant must be NAME=FLAGS, got {text!r}")
    return name, shlex.split(flags)


def run_once(args, flags):
    command = [args.bin, "--backbone", args.backbone, "--slots", args.slots, "--seq", str(args.seq),
               "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads),
               "--dtype", args.dtype, "--json", *flags]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--variant", action="append", type=parse_variant, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slots", default="4,16")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin", "bitfleet-bench-step"))
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    if len(args.variant) < 2:
        parser.error("give at least two --variant")
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names):
        parser.error("variant names must differ")

    runs = {name: [] for name in names}  # name -> [run json per round]
    for round_index in range(args.rounds):
        for name, flags in args.variant:
            result = run_once(args, flags)
            runs[name].append(result)
            rates = " ".join(f"S={r['slots']} {r['examples_per_second']:.1f}" for r in result["results"])
            print(f"round {round_index + 1} {name:>12}: {rates} ex/s", flush=True)

    first = runs[names[0]][0]
    print(f"\n{first['cpu']}, {first['threads']} threads, {first['dtype']}, seq {first['seq']}, "
          f"{first['batch_per_slot']} per slot; median of {args.rounds} alternating rounds, ex/s")
    slot_counts = [r["slots"] for r in first["results"]]
    header = "| variant | " + " | ".join(f"S = {s}" for s in slot_counts) + " |"
    print(header)
    print("|" + " --- |" * (len(slot_counts) + 1))
    medians = {name: [statistics.median(run["results"][i]["examples_per_second"] for run in runs[name])
                      for i in range(len(slot_counts))] for name in names}
    for name in names:
        cells = []
        for i, value in enumerate(medians[name]):
            ratio = value / medians[names[0]][i]
            cells.append(f"{value:.1f}" + ("" if name == names[0] else f" ({ratio:.2f}×)"))
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"variants": {name: flags for name, flags in args.variant}, "runs": runs,
                       "medians": medians}, f, indent=1)


if __name__ == "__main__":
    main()
