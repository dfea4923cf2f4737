"""The training-step benchmark, bitfleet beside the Python transformers BitFit loop, in one run.

    python bench/step_bench.py --backbone DIR [--slots 1,4,16] [--seq 128] [--batch 16]
                               [--threads 2] [--device cpu|cuda] [--steps 5]

bitfleet: bitfleet-bench-step (mixed S-slot steps and single-slot steps; FLOP accounting against
a matmul peak measured in the same process). Baseline: hf_bitfit's loop — one task at a time,
batch `batch`, fixed-length synthetic inputs of `seq` tokens, AdamW over biases and head (bf16
autocast on a GPU) — timed over the same number of steps. Prints a table of examples/s and
ratios and writes it as JSON to bench/results/.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import hf_bitfit  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def hf_examples_per_second(backbone, seq, batch, steps, warmup, device):
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
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
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
    parser.add_argument("--bin", default=os.path.join(HERE, "..", "build", "bin", "bitfleet-bench-step"))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = args.rows_per_pass if args.rows_per_pass is not None else -1  # -1: the engine's default

    command = [args.bin, "--backbone", args.backbone, "--slots", args.slots, "--seq", str(args.seq), "--batch",
               str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
               str(args.threads), "--device", args.device, "--rows-per-pass", str(rows),
               "--profile-slots", str(args.profile_slots), "--json"]
    bitfleet = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    hf = hf_examples_per_second(args.backbone, args.seq, args.batch, args.steps, args.warmup, args.device)

    single = bitfleet["results"][0]["examples_per_second"] if bitfleet["results"][0]["slots"] == 1 else None
    print(f"{os.path.basename(args.backbone.rstrip('/'))} on {args.device} ({platform.processor() or platform.machine()}), "
          f"seq {args.seq}, {args.batch} examples per task, {args.threads} threads")
    print(f"matmul peak measured in the same run: {bitfleet['peak_matmul_flops'] / 1e9:.1f} GFLOP/s")
    print(f"transformers BitFit loop: {hf:.1f} examples/s")
    print(f"{'S':>4} {'mixed ex/s':>11} {'vs S single':>12} {'vs transformers':>16} {'% of peak':>10} {'all-reduce B':>13}")
    for r in bitfleet["results"]:
        print(f"{r['slots']:>4} {r['examples_per_second']:>11.1f} "
              f"{(r['examples_per_second'] / single if single else float('nan')):>12.2f} "
              f"{r['examples_per_second'] / hf:>16.2f} {100 * r['share_of_peak']:>10.1f} {r['allreduce_bytes_per_step']:>13,}")
    if "profile" in bitfleet:
        p = bitfleet["profile"]
        print(f"profile of one step at S={args.profile_slots}: {p['step_ms']:.1f} ms wall, GPU busy {p['gpu_busy_ms']:.1f} ms "
              f"({p['gpu_events']} GPU events, {p['host_events']} host events)")
        for kind in ("top_gpu", "top_host"):
            for e in p[kind]:
                print(f"  {kind[4:]:>4} {e['ms']:8.2f} ms {e['count']:6d}x  {e['name']}")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(args.out, f"step-{args.device}-{stamp}.json")
    with open(path, "w") as f:
        json.dump({"bitfleet": bitfleet, "transformers_examples_per_second": hf, "args": vars(args)}, f, indent=2)
    print(f"written {path}")


if __name__ == "__main__":
    main()
