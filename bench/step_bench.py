"""The training-step benchmark, bitfleet beside the Python transformers BitFit loop, in one run.

    python bench/step_bench.py --backbone DIR [--slots 1,4,16] [--seq 128] [--batch 16]
                               [--threads 2] [--device cpu|cuda] [--steps 5] [--dtypes fp32,bf16]

bitfleet: bitfleet-bench-step once per dtype (mixed S-slot steps; FLOP accounting against the fp32
and bf16 matmul peaks measured in the same process). Baseline: hf_bitfit's loop — one task at a
time, batch `batch`, fixed-length synthetic inputs of `seq` tokens, AdamW over biases and head — in
fp32 and under bf16 autocast, timed over the same number of steps. Prints a table of examples/s
and ratios (against the best transformers loop, and bf16 against bitfleet's own fp32 step), names
the CPU and its ISA, and writes it all as JSON to bench/results/.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_bitfit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def hf_examples_per_second(backbone, seq, batch, steps, warmup, device, autocast):
    """Steps of the transformers BitFit loop on fixed-length inputs, timed after warm-up."""
    task = {"type": "classification", "text_fields": ["text"], "label_field": "label", "labels": ["a", "b"]}
    model = hf_bitfit.load_model(backbone, task, device)
    params = hf_bitfit.trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    batch_inputs = {"input_ids": torch.randint(5, vocab, (batch, seq), generator=g).to(device),
                    "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=device),
                    "labels": torch.randint(0, 2, (batch,), generator=g).to(device)}
    cuda = device == "cuda"
    for i in range(warmup + steps):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch_inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--slots", default="1,4,16")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows-per-pass", type=int, default=None)
    parser.add_argument("--profile-slots", type=int, default=0, help="profile one step at this S (Kineto)")
    parser.add_argument("--dtypes", default=None, help="bitfleet's --dtype runs (default: cpu fp32,bf16; cuda bf16)")
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin", "bitfleet-bench-step"))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = args.rows_per_pass if args.rows_per_pass is not None else -1  # -1: the engine's default

    dtypes = (args.dtypes or ("bf16" if args.device == "cuda" else "fp32,bf16")).split(",")
    runs = {}
    for dtype in dtypes:
        command = [args.bin, "--backbone", args.backbone, "--slots", args.slots, "--seq", str(args.seq), "--batch",
                   str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
                   str(args.threads), "--device", args.device, "--dtype", dtype, "--rows-per-pass", str(rows),
                   "--profile-slots", str(args.profile_slots), "--json"]
        runs[dtype] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    loop = (args.backbone, args.seq, args.batch, args.steps, args.warmup, args.device)
    hf = {"fp32": hf_examples_per_second(*loop, False), "bf16 autocast": hf_examples_per_second(*loop, True)}
    best_hf = max(hf.values())

    first = next(iter(runs.values()))
    # Each run measures both peaks; a process's first bf16 matmuls can run at half speed (seen on an
    # AMD EPYC: 212 against 411 GFLOP/s in the other process), so the attainable peak of a dtype is
    # the best any run measured, and every share is taken against it.
    peaks = {d: max(run[f"peak_matmul_flops_{d}"] for run in runs.values()) for d in ("fp32", "bf16")}
    for dtype, run in runs.items():
        for r in run["results"]:
            flops = r["share_of_peak"] * run["peak_matmul_flops"]
            r["share_of_peak"], r["share_of_bf16_peak"] = flops / peaks[dtype], flops / peaks["bf16"]
    print(f"{os.path.basename(args.backbone.rstrip('/'))} on {args.device}, CPU {first['cpu']}, seq {args.seq}, "
          f"{args.batch} examples per task, {args.threads} threads")
    print(f"matmul peaks, the best measured in the same runs: fp32 {peaks['fp32'] / 1e9:.1f}, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    print("transformers BitFit loop: " + ", ".join(f"{k} {v:.1f}" for k, v in hf.items()) + " examples/s")
    print(f"{'dtype':>5} {'S':>4} {'mixed ex/s':>11} {'vs best transformers':>21} {'vs own fp32':>12} "
          f"{'% own peak':>11} {'% bf16 peak':>12} {'all-reduce B':>13}")
    for dtype, run in runs.items():
        for r in run["results"]:
            fp32 = next((x for x in runs.get("fp32", {"results": []})["results"] if x["slots"] == r["slots"]), None)
            own = r["examples_per_second"] / fp32["examples_per_second"] if fp32 else float("nan")
            print(f"{dtype:>5} {r['slots']:>4} {r['examples_per_second']:>11.1f} "
                  f"{r['examples_per_second'] / best_hf:>21.2f} {own:>12.2f} {100 * r['share_of_peak']:>11.1f} "
                  f"{100 * r['share_of_bf16_peak']:>12.1f} {r['allreduce_bytes_per_step']:>13,}")
    for dtype, run in runs.items():
        if "profile" not in run:
            continue
        p = run["profile"]
        print(f"{dtype} profile of one step at S={args.profile_slots}: {p['step_ms']:.1f} ms wall, GPU busy "
              f"{p['gpu_busy_ms']:.1f} ms ({p['gpu_events']} GPU events, {p['host_events']} host events)")
        total = sum(e["ms"] for e in p["host_self_by_kind"])
        for e in p["host_self_by_kind"]:
            print(f"  host self {e['ms']:8.1f} ms {100 * e['ms'] / total:5.1f}%  {e['name']}")
        for kind in ("top_gpu", "top_host_self"):
            for e in p[kind][:10]:
                print(f"  {kind[4:]:>9} {e['ms']:8.2f} ms {e['count']:6d}x  {e['name']}")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out, f"step-{args.device}-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"bitfleet": runs, "peak_matmul_flops": peaks, "transformers_examples_per_second": hf,
                   "args": vars(args)}, f, indent=2)
    print(f"written {path}")


if __name__ == "__main__":
    main()
