"""BitFit accuracy on real GLUE data, tuned by sweeps: one manifest of sweeps through a live
coordinator and worker group (the variants train side by side as slots of one resident backbone),
against the Python transformers BitFit loop over the same grid, one variant after another, on the
real all-MiniLM-L6-v2.

    python bench/accuracy.py [--glue ../shared/data/glue] [--train-rows 500] [--val-rows 200] [--threads 2]
                             [--learning-rates 1e-3,5e-3] [--epochs 2,4] [--tasks RTE,SST-2,STS-B,WNLI]

Protocol (select on validation, report on test): each task's validation split is held out of its
GLUE training file; GLUE's dev file is the test set (GLUE's test labels are not public). Every
variant evaluates on validation at each epoch's end and keeps its best evaluation; a task's result
is the variant best on validation, reported on test. The loop does exactly that too (same data
order, same initial head), so the two systems differ only in how they run the variants.

The manifest has two rows per task, one per bias_terms (all, query+intermediate), each a sweep over
learning_rate x epochs ('|' cells). Prints docs/accuracy.md's tables; writes everything (every
variant's validation history and test metrics, both systems' wall times) to bench/results/.
"""
import argparse
import csv
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
os.environ.setdefault("BITFLEET_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
import coordlib  # noqa: E402
import hf_bitfit  # noqa: E402
import trainlib  # noqa: E402

TASKS = {
    "RTE": {"task": {"type": "classification", "text_fields": ["sentence1", "sentence2"], "label_field": "label",
                     "labels": ["entailment", "not_entailment"]}, "metric": "accuracy"},
    "SST-2": {"task": {"type": "classification", "text_fields": ["sentence"], "label_field": "label",
                       "labels": ["0", "1"]}, "metric": "accuracy"},
    "STS-B": {"task": {"type": "regression", "text_fields": ["sentence1", "sentence2"], "label_field": "score"},
              "metric": "pearson"},
    "WNLI": {"task": {"type": "classification", "text_fields": ["sentence1", "sentence2"], "label_field": "label",
                      "labels": ["0", "1"]}, "metric": "accuracy"},
}
BIAS_TERMS = ("all", "query+intermediate")


def read_tsv(path):
    with open(path) as f:
        header, *rows = [line for line in f.read().splitlines() if line]
    return header, rows


def split_task(glue, name, tmp, train_rows, val_rows, seed):
    """train and validation: disjoint random samples of GLUE's train file; test: GLUE's dev file."""
    header, rows = read_tsv(os.path.join(glue, name, "train.tsv"))
    random.Random(seed).shuffle(rows)
    val_rows = min(val_rows, len(rows) // 6)  # WNLI: 635 rows in all
    parts = {"validation": rows[:val_rows], "train": rows[val_rows:val_rows + train_rows]}
    files = {"test": os.path.abspath(os.path.join(glue, name, "dev.tsv"))}
    for split, lines in parts.items():
        files[split] = os.path.join(tmp, f"{name}-{split}.tsv")
        with open(files[split], "w") as f:
            f.write("\n".join([header] + lines) + "\n")
    files["sizes"] = {split: len(lines) for split, lines in parts.items()}
    files["sizes"]["test"] = len(read_tsv(files["test"])[1])
    return files


def majority(task, test_file):
    """The test accuracy of always answering the most frequent training label (None for regression)."""
    if task["type"] != "classification":
        return None
    header, rows = read_tsv(test_file)
    column = header.split("\t").index(task["label_field"])
    labels = [r.split("\t")[column] for r in rows]
    return max(labels.count(v) for v in set(labels)) / len(labels)


def write_manifest(path, splits, grid, hyper):
    columns = ["name", "train_file", "validation_file", "test_file", "task_type", "text_fields", "label_field",
               "labels", "bias_terms", "learning_rate", "epochs"] + sorted(hyper)
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, columns)
        out.writeheader()
        for name, files in splits.items():
            task = TASKS[name]["task"]
            for bias in BIAS_TERMS:
                out.writerow(dict(hyper, name=f"{name}/{bias}", train_file=files["train"],
                                  validation_file=files["validation"], test_file=files["test"],
                                  task_type=task["type"], text_fields="|".join(task["text_fields"]),
                                  label_field=task["label_field"], labels="|".join(task.get("labels", [])),
                                  bias_terms=bias, learning_rate="|".join(map(str, grid["learning_rate"])),
                                  epochs="|".join(map(str, grid["epochs"]))))


def run_bitfleet(args, manifest, tmp):
    """The manifest through `bitfleet submit` to a coordinator and a 1-rank worker group; returns
    {(task, bias_terms): [variant]} and the wall seconds from submission to the last variant's end."""
    with coordlib.Coordinator(os.path.join(tmp, "coordinator"), lease_seconds=120) as c:
        env = dict(os.environ, BITFLEET_URL=c.url, BITFLEET_TOKEN=c.admin_token(), OMP_NUM_THREADS=str(args.threads))
        bins = os.environ["BITFLEET_BIN_DIR"]
        # One rank with --threads cores: not bound to one core, as mpirun binds a single rank by default.
        mpirun = trainlib.mpirun(1)
        mpirun[1:1] = ["--bind-to", "none"]
        worker = subprocess.Popen(
            mpirun + [os.path.join(bins, "bitfleet-worker"), "--coordinator", c.url, "--backbone",
             args.backbone, "--backbone-name", "minilm-l6", "--slots", str(args.slots), "--threads",
             str(args.threads), "--token-file", os.path.join(c.data_dir, "worker.token"), "--cache-dir",
             os.path.join(tmp, "cache")], env=env, stdout=open(os.path.join(tmp, "worker.log"), "w"),
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            client = coordlib.Client(c.url, c.admin_token())
            deadline = time.time() + 120
            while not client.call("GET", "/v1/workers").json()["data"]:
                if worker.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the worker group did not register; see " + os.path.join(tmp, "worker.log"))
                time.sleep(0.5)
            start = time.time()
            created = json.loads(subprocess.run(
                [os.path.join(bins, "bitfleet"), "--json", "submit", "--manifest", manifest, "--backbone",
                 "minilm-l6"], env=env, check=True, capture_output=True, text=True).stdout)
            # A row with '|' cells is a sweep, a row without one a plain job: one variant.
            rows = {}
            for obj in created:
                sweep = obj["id"].startswith("sweep-")
                name = (obj["base"] if sweep else obj)["metadata"]["name"]
                rows[tuple(name.split("/"))] = [v["job"] for v in obj["variants"]] if sweep else [obj["id"]]
            ids = [i for variants in rows.values() for i in variants]
            while True:
                jobs = {j["id"]: j for j in (client.call("GET", f"/v1/jobs/{i}").json() for i in ids)}
                if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs.values()):
                    break
                time.sleep(2)
            seconds = time.time() - start
            results = {
                key: [{"hyperparameters": {k: jobs[i]["hyperparameters"][k] for k in ("learning_rate", "epochs")},
                       "status": jobs[i]["status"], "best": jobs[i].get("best"), "test": jobs[i].get("test_metrics"),
                       "validation": [{"step": e["step"], "metrics": e["metrics"]}
                                      for e in jobs[i].get("evaluations") or []]}
                      for i in variants]
                for key, variants in rows.items()}
            return results, seconds
        finally:
            os.killpg(worker.pid, 9)
            worker.wait()


def run_loop(args, splits, grid, hyper):
    """The same variants with the transformers loop, one after another: per epoch a validation
    evaluation, the best kept, the test set scored with it. Model and data prepared per variant, as a
    user's script does."""
    results, start = {}, time.time()
    for name, files in splits.items():
        task, metric = TASKS[name]["task"], TASKS[name]["metric"]
        for bias in BIAS_TERMS:
            variants = results[(name, bias)] = []
            for lr in grid["learning_rate"]:
                for epochs in grid["epochs"]:
                    h = dict(hf_bitfit.DEFAULTS, **hyper, learning_rate=lr, epochs=epochs, bias_terms=bias)
                    tok = hf_bitfit.AutoTokenizer.from_pretrained(args.backbone)
                    data = {split: hf_bitfit.encode(hf_bitfit.read_rows(files[split]), task, tok, h["max_seq_len"])
                            for split in ("train", "validation", "test")}
                    history, best = [], {}

                    def on_epoch_end(model, step):
                        m = hf_bitfit.evaluate(model, tok, task, data["validation"])
                        history.append({"step": step, "metrics": m})
                        if not best or m[metric] > best["metrics"][metric]:  # ties keep the earlier, as bitfleet
                            best.update(step=step, metrics=m, params={
                                n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})

                    model, tok = hf_bitfit.train(args.backbone, task, data["train"], h, on_epoch_end=on_epoch_end)
                    model.load_state_dict(best.pop("params"), strict=False)
                    variants.append({"hyperparameters": {"learning_rate": lr, "epochs": epochs}, "status": "succeeded",
                                     "best": best, "test": hf_bitfit.evaluate(model, tok, task, data["test"]),
                                     "validation": history})
    return results, time.time() - start


def best_of(variants, metric):
    done = [v for v in variants if v["status"] == "succeeded" and v["best"]]
    return max(done, key=lambda v: v["best"]["metrics"][metric]) if done else None


def report(splits, bitfleet, loop, seconds, n_variants):
    print("| task | train / val / test rows | metric | system | chosen (bias_terms, lr, epochs, step) | "
          "val | test | majority (test) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, files in splits.items():
        metric, sizes = TASKS[name]["metric"], files["sizes"]
        for system, results in (("bitfleet", bitfleet), ("transformers", loop)):
            per_bias = {b: best_of(results[(name, b)], metric) for b in BIAS_TERMS}
            bias = max((b for b in BIAS_TERMS if per_bias[b]), key=lambda b: per_bias[b]["best"]["metrics"][metric])
            v = per_bias[bias]
            h = v["hyperparameters"]
            base = majority(TASKS[name]["task"], files["test"])
            print(f"| {name} | {sizes['train']:,} / {sizes['validation']:,} / {sizes['test']:,} | {metric} | {system} | "
                  f"{bias}, {h['learning_rate']:g}, {h['epochs']}, {v['best']['step']} | "
                  f"{v['best']['metrics'][metric]:.4f} | {v['test'][metric]:.4f} | "
                  f"{'—' if base is None else f'{base:.4f}'} |")
    print("\nall vs query+intermediate (each one's best variant on validation; its test metric):")
    print("| task | system | all: val | all: test | q+i: val | q+i: test |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in splits:
        metric = TASKS[name]["metric"]
        for system, results in (("bitfleet", bitfleet), ("transformers", loop)):
            cells = []
            for b in BIAS_TERMS:
                v = best_of(results[(name, b)], metric)
                cells += [f"{v['best']['metrics'][metric]:.4f}", f"{v['test'][metric]:.4f}"] if v else ["—", "—"]
            print(f"| {name} | {system} | " + " | ".join(cells) + " |")
    print(f"\n{n_variants} variants: bitfleet {seconds['bitfleet']:.0f} s "
          f"({3600 * n_variants / seconds['bitfleet']:.0f} variants/hour), transformers loop "
          f"{seconds['transformers']:.0f} s ({3600 * n_variants / seconds['transformers']:.0f} variants/hour); "
          f"ratio {seconds['transformers'] / seconds['bitfleet']:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue", default=os.path.join(HERE, "..", "..", "shared", "data", "glue"))
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, of " + ", ".join(TASKS))
    parser.add_argument("--train-rows", type=int, default=500, help="training rows per task (a random sample)")
    parser.add_argument("--val-rows", type=int, default=200, help="validation rows held out of each train file")
    parser.add_argument("--learning-rates", default="1e-3,5e-3")
    parser.add_argument("--epochs", default="2,4")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--slots", type=int, default=8, help="the worker's slots (variants trained together)")
    parser.add_argument("--skip-loop", action="store_true", help="bitfleet only")
    hf_bitfit.add_run_arguments(parser, lr=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = {"learning_rate": [float(x) for x in args.learning_rates.split(",")],
            "epochs": [int(x) for x in args.epochs.split(",")]}
    hyper = {"batch_size": args.batch, "warmup_ratio": 0.06, "weight_decay": 0.0, "max_seq_len": 128, "seed": 42,
             "max_grad_norm": 1.0}
    with tempfile.TemporaryDirectory() as tmp:
        splits = {name: split_task(args.glue, name, tmp, args.train_rows, args.val_rows, seed=0)
                  for name in args.tasks.split(",")}
        manifest = os.path.join(tmp, "sweeps.csv")
        write_manifest(manifest, splits, grid, hyper)
        with open(manifest) as f:
            manifest_text = f.read()
        bitfleet, seconds = {}, {}
        bitfleet, seconds["bitfleet"] = run_bitfleet(args, manifest, tmp)
        print(f"bitfleet: {seconds['bitfleet']:.0f} s", flush=True)
        loop, seconds["transformers"] = ({}, None) if args.skip_loop else run_loop(args, splits, grid, hyper)
    n_variants = sum(len(v) for v in bitfleet.values())
    if not args.skip_loop:
        report(splits, bitfleet, loop, seconds, n_variants)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    key = lambda results: {f"{n}/{b}": v for (n, b), v in results.items()}  # noqa: E731
    with open(os.path.join(args.out, f"accuracy-{stamp}.json"), "w") as f:
        json.dump({"bitfleet": key(bitfleet), "transformers": key(loop), "seconds": seconds, "grid": grid,
                   "hyperparameters": hyper, "sizes": {n: s["sizes"] for n, s in splits.items()},
                   "manifest": manifest_text, "threads": args.threads, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
