"""Tasks per hour: 64 small BitFit tasks through one `bitfleet-train run` (one backbone in memory,
the tasks in slots of one batch) against the same tasks trained one after another by the Python
transformers BitFit loop, the way a user would script it today (model and tokenizer loaded per
task). Same machine, same threads, same hyperparameters, one run.

    python bench/tasks_per_hour.py [--tasks 64] [--train-rows 256] [--threads 2] [--dtype auto|fp32|bf16]

Tasks are GLUE-sized slices of real GLUE text (../shared/data/glue: SST-2, RTE, STS-B in turn,
each task its own random sample) when that folder exists, else generated tasks. Each task is
evaluated on its own dev sample; the mean metric of both systems is printed so that speed is
never bought with accuracy. Writes JSON to bench/results/ and the table docs/performance.md holds.
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

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
import accuracy  # noqa: E402
import hf_bitfit  # noqa: E402
import taskgen  # noqa: E402


def glue_tasks(glue, n, train_rows, dev_rows, tmp):
    """n tasks cycling through SST-2, RTE and STS-B, each a different random slice."""
    names = ["SST-2", "RTE", "STS-B"]
    tables = {}
    for name in names:
        tables[name] = {}
        for split in ("train", "dev"):
            with open(os.path.join(glue, name, f"{split}.tsv")) as f:
                lines = f.read().splitlines()
            tables[name][split] = (lines[0], [line for line in lines[1:] if line])
    tasks = []
    for i in range(n):
        name = names[i % len(names)]
        rng = random.Random(i)
        files = {}
        for split, rows in (("train", train_rows), ("dev", dev_rows)):
            header, lines = tables[name][split]
            path = os.path.join(tmp, f"task{i:02d}-{split}.tsv")
            with open(path, "w") as f:
                f.write("\n".join([header] + rng.sample(lines, min(rows, len(lines)))) + "\n")
            files[split] = path
        tasks.append((f"task{i:02d}-{name}", files["train"], files["dev"], accuracy.TASKS[name]["task"]))
    return tasks


def generated_tasks(n, train_rows, dev_rows, tmp):
    kinds = ["sentiment", "pairs", "scores", "topic"]
    tasks = []
    for i in range(n):
        d = os.path.join(tmp, f"task{i:02d}")
        os.makedirs(d)
        train, dev, spec = taskgen.write_task(d, kinds[i % len(kinds)], train_rows, dev_rows, seed=i)
        tasks.append((f"task{i:02d}-{kinds[i % len(kinds)]}", train, dev, spec))
    return tasks


def headline(task, metrics):
    return metrics["pearson"] if task["type"] == "regression" else metrics["accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue", default=os.path.join(HERE, "..", "..", "shared", "data", "glue"))
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--dev-rows", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--dtype", default="auto", help="bitfleet-train's --dtype (the loop runs in fp32)")
    hf_bitfit.add_run_arguments(parser, lr=2e-3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hyper = {"epochs": args.epochs, "batch_size": args.batch, "learning_rate": args.lr, "max_seq_len": args.max_seq_len}

    with tempfile.TemporaryDirectory() as tmp:
        real = os.path.isdir(args.glue)
        tasks = (glue_tasks(args.glue, args.tasks, args.train_rows, args.dev_rows, tmp) if real
                 else generated_tasks(args.tasks, args.train_rows, args.dev_rows, tmp))
        jobs = [{"name": name, "backbone": "bench", "train_file": train, "validation_file": dev, "task": task,
                 "hyperparameters": dict(hyper, seed=i)} for i, (name, train, dev, task) in enumerate(tasks)]
        spec = os.path.join(tmp, "spec.json")
        with open(spec, "w") as f:
            json.dump({"backbone": args.backbone, "slots": len(jobs), "log_every": 1000, "jobs": jobs}, f)
        start = time.time()
        subprocess.run([args.bin, "run", "--spec", spec, "--out", os.path.join(tmp, "out"), "--threads",
                        str(args.threads), "--dtype", args.dtype], check=True, stdout=subprocess.DEVNULL)
        bitfleet_seconds = time.time() - start
        with open(os.path.join(tmp, "out", "metrics.json")) as f:
            run = json.load(f)
            bitfleet = {name: r["eval"] for name, r in run["jobs"].items()}

        baseline, start = {}, time.time()
        for job in jobs:  # what a user's script does: everything per task
            tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(args.backbone)
            h = dict(hf_bitfit.DEFAULTS, **job["hyperparameters"])
            rows = hf_bitfit.encode(hf_bitfit.read_rows(job["train_file"]), job["task"], tokenizer, h["max_seq_len"])
            dev = hf_bitfit.encode(hf_bitfit.read_rows(job["validation_file"]), job["task"], tokenizer, h["max_seq_len"])
            model, tokenizer = hf_bitfit.train(args.backbone, job["task"], rows, h, bitfleet_recipe=False)
            baseline[job["name"]] = hf_bitfit.evaluate(model, tokenizer, job["task"], dev)
        baseline_seconds = time.time() - start

    mean = lambda results: sum(headline(j["task"], results[j["name"]]) for j in jobs) / len(jobs)  # noqa: E731
    result = {
        "data": "GLUE slices (SST-2, RTE, STS-B)" if real else "generated tasks",
        "tasks": len(jobs), "train_rows": args.train_rows, "dev_rows": args.dev_rows, "hyperparameters": hyper,
        "threads": args.threads, "cpu_count": os.cpu_count(), "dtype": run["dtype"], "cpu": run["cpu"],
        "bitfleet_seconds": bitfleet_seconds, "transformers_seconds": baseline_seconds,
        "bitfleet_tasks_per_hour": 3600 * len(jobs) / bitfleet_seconds,
        "transformers_tasks_per_hour": 3600 * len(jobs) / baseline_seconds,
        "bitfleet_mean_metric": mean(bitfleet), "transformers_mean_metric": mean(baseline),
    }
    result["ratio"] = result["bitfleet_tasks_per_hour"] / result["transformers_tasks_per_hour"]
    print(f"{len(jobs)} tasks ({result['data']}, {args.train_rows} train rows, {args.epochs} epochs), "
          f"{args.threads} threads; bitfleet in {run['dtype']} on {run['cpu']}")
    print("| system | wall s | tasks/hour | mean dev metric |")
    print("| --- | --- | --- | --- |")
    print(f"| bitfleet-train (one run, {len(jobs)} slots) | {bitfleet_seconds:.0f} | "
          f"{result['bitfleet_tasks_per_hour']:.0f} | {result['bitfleet_mean_metric']:.4f} |")
    print(f"| transformers loop (one task after another) | {baseline_seconds:.0f} | "
          f"{result['transformers_tasks_per_hour']:.0f} | {result['transformers_mean_metric']:.4f} |")
    print(f"ratio: {result['ratio']:.2f}x")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with open(os.path.join(args.out, f"tasks-per-hour-{stamp}.json"), "w") as f:
        json.dump(dict(result, bitfleet=bitfleet, transformers=baseline), f, indent=2)


if __name__ == "__main__":
    main()
