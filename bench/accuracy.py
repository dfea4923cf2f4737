"""BitFit accuracy on real GLUE data: bitfleet next to the Python transformers BitFit loop with
the same hyperparameters, data order and initial head, on the real all-MiniLM-L6-v2.

    python bench/accuracy.py [--glue ../shared/data/glue] [--sst2-train 8000] [--threads 2]

bitfleet trains the three tasks together in one `bitfleet-train run` (three slots on one backbone);
the baseline trains them one after another. Writes docs' table to stdout and JSON to bench/results/.
"""
import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_bitfit  # noqa: E402

TASKS = {
    "RTE": {"task": {"type": "classification", "text_fields": ["sentence1", "sentence2"], "label_field": "label",
                     "labels": ["entailment", "not_entailment"]}, "metric": "accuracy"},
    "SST-2": {"task": {"type": "classification", "text_fields": ["sentence"], "label_field": "label",
                       "labels": ["0", "1"]}, "metric": "accuracy"},
    "STS-B": {"task": {"type": "regression", "text_fields": ["sentence1", "sentence2"], "label_field": "score"},
              "metric": "pearson"},
}


def subsample(src, dst, n, seed):
    with open(src) as f:
        header, *rows = f.read().splitlines()
    random.Random(seed).shuffle(rows)
    with open(dst, "w") as f:
        f.write("\n".join([header] + rows[:n]) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--glue", default=os.path.join(HERE, "..", "..", "shared", "data", "glue"))
    parser.add_argument("--sst2-train", type=int, default=8000, help="SST-2 training rows used (of 67,349)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    hf_bitfit.add_run_arguments(parser, lr=2e-3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hyper = {"epochs": args.epochs, "batch_size": args.batch, "learning_rate": args.lr, "warmup_ratio": 0.06,
             "weight_decay": 0.0, "max_seq_len": 128, "seed": 42, "max_grad_norm": 1.0}

    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for i, (name, t) in enumerate(TASKS.items()):
            train = os.path.join(args.glue, name, "train.tsv")
            if name == "SST-2" and args.sst2_train:
                train = os.path.join(tmp, "sst2-train.tsv")
                subsample(os.path.join(args.glue, name, "train.tsv"), train, args.sst2_train, seed=0)
            jobs.append({"name": name, "backbone": "all-MiniLM-L6-v2", "train_file": os.path.abspath(train),
                         "validation_file": os.path.abspath(os.path.join(args.glue, name, "dev.tsv")),
                         "task": t["task"], "hyperparameters": dict(hyper, seed=42 + i)})
        spec = os.path.join(tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump({"backbone": args.backbone, "slots": len(jobs), "log_every": 50, "jobs": jobs}, f)
        start = time.time()
        subprocess.run([args.bin, "run", "--spec", spec, "--out", os.path.join(tmp, "out"), "--threads",
                        str(args.threads)], check=True)
        bitfleet_seconds = time.time() - start
        with open(os.path.join(tmp, "out", "metrics.json")) as f:
            bitfleet = json.load(f)

        baseline, baseline_seconds = {}, 0.0
        for job in jobs:
            start = time.time()
            tok = hf_bitfit.AutoTokenizer.from_pretrained(args.backbone)
            rows = hf_bitfit.encode(hf_bitfit.read_rows(job["train_file"]), job["task"], tok, 128)
            dev = hf_bitfit.encode(hf_bitfit.read_rows(job["validation_file"]), job["task"], tok, 128)
            model, tok = hf_bitfit.train(args.backbone, job["task"], rows, job["hyperparameters"])
            baseline[job["name"]] = hf_bitfit.evaluate(model, tok, job["task"], dev)
            baseline_seconds += time.time() - start

    rows_used = {"SST-2": args.sst2_train or 67349}
    print(f"| task | train rows | metric | bitfleet | transformers loop |")
    print(f"| --- | --- | --- | --- | --- |")
    for name, t in TASKS.items():
        metric = t["metric"]
        n = rows_used.get(name, "all")
        print(f"| {name} | {n} | {metric} | {bitfleet['jobs'][name]['eval'][metric]:.4f} | "
              f"{baseline[name][metric]:.4f} |")
    print(f"\nwall time: bitfleet {bitfleet_seconds:.0f} s (3 tasks together), "
          f"transformers loop {baseline_seconds:.0f} s (one after another)")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with open(os.path.join(args.out, f"accuracy-{stamp}.json"), "w") as f:
        json.dump({"bitfleet": bitfleet, "transformers": baseline, "bitfleet_seconds": bitfleet_seconds,
                   "transformers_seconds": baseline_seconds, "hyperparameters": hyper, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
