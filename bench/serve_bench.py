"""Serving benchmark: bitfleet-serve under a bounded closed-loop load on loopback, beside the Python
transformers alternatives a user has today, in one run, on the real all-MiniLM-L6-v2.

    python bench/serve_bench.py [--tasks 1,16,256] [--seconds 8] [--concurrency 64]
                                [--max-batch-rows 64] [--threads 2] [--glue ../shared/data/glue]
                                [--dtype auto|fp32|bf16]

Tasks: N binary classifiers on the backbone, each an artifact in bitfleet's format (every bias
perturbed and a head drawn from its own seed: serving cost does not depend on the values, only on
the format). Inputs: sentences of GLUE SST-2's dev file (or generated ones), one per request, each
request for a task drawn uniformly from the N resident ones.

bitfleet: bitfleet-serve --artifact-dir with every task loaded before timing; `concurrency` client
threads each send a request, wait for its answer and send the next (closed loop): the peak. Then
paced at ~50% and ~90% of that peak (each client keeps its share of the rate, never more than one
request in flight): examples/s and p50/p99 latency. Before the first timed run, an untimed closed-loop
run warms the server (allocator, thread pools). Memory per task: a server started with --max-tasks M
and M tasks loaded and served, against one started with --max-tasks 1 and one task, per extra task
(the task table is allocated at start, so one server cannot show it by loading more).

transformers (in this process, no HTTP: generous to it), the same stream of requests in batches of
--max-batch-rows as a batcher sees them at saturation, each batch grouped by task: (a) one model
kept per task, each task's group one forward (run where the models fit in memory), (b) one model,
each group's artifact swapped in (load_state_dict of its biases and head) before its forward.
Prints a table with ratios; writes JSON to bench/results/.
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hf_bitfit  # noqa: E402

TASK = {"type": "classification", "text_fields": ["sentence"], "label_field": "label", "labels": ["neg", "pos"]}
TOKEN = "serve-bench"


def sentences(glue, n, seed=0):
    path = os.path.join(glue, "SST-2", "dev.tsv")
    if os.path.exists(path):
        rows = hf_bitfit.read_rows(path)
        out = [r["sentence"] for r in rows]
    else:
        words = "the a movie film story was good bad great boring very not funny long short actor plot".split()
        rng = random.Random(seed)
        out = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 25))) for _ in range(800)]
    random.Random(seed).shuffle(out)
    return out[:n]


def write_artifacts(backbone, n, directory):
    """N artifacts as bitfleet writes them: Hugging Face names, the task and backbone in metadata."""
    model = hf_bitfit.load_model(backbone, TASK, "cpu")
    with open(os.path.join(backbone, "model.safetensors"), "rb") as f:
        backbone_sha256 = hashlib.sha256(f.read()).hexdigest()
    base = {k: v.detach().clone() for k, v in model.named_parameters() if k.endswith(".bias") or k.startswith("classifier")}
    names = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        tensors = {}
        for k, v in base.items():
            noise = torch.empty(v.shape).normal_(0, 0.02 if k.startswith("classifier") else 0.01, generator=g)
            tensors[k] = (noise if k == "classifier.weight" else v + noise).contiguous()
        name = f"task-{i:04d}"
        save_file(tensors, os.path.join(directory, f"{name}.safetensors"), metadata={
            "format": "pt", "job_id": name, "task": json.dumps(TASK), "labels": json.dumps(TASK["labels"]),
            "bias_terms": "all", "hyperparameters": json.dumps({"max_seq_len": 128}), "backbone_sha256": backbone_sha256})
        names.append(name)
    return names


class Server:
    def __init__(self, args, artifact_dir, tmp, max_tasks):
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN)
        self.log = open(os.path.join(tmp, f"serve-{max_tasks}.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(args.bin_dir, "bitfleet-serve"), "--listen", "127.0.0.1:0", "--backbone", args.backbone,
             "--token-file", token_file, "--artifact-dir", artifact_dir, "--threads", str(args.threads),
             "--max-tasks", str(max_tasks), "--max-batch-rows", str(args.max_batch_rows),
             "--max-wait-ms", str(args.max_wait_ms), "--handler-threads", str(args.concurrency + 8),
             "--dtype", args.dtype],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.rsplit(":", 1)[1])
        while True:
            try:
                if self.get("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def load(server, tasks, texts, concurrency, seconds, rate=None, seed=0):
    """Closed loop (rate None) or paced at `rate` requests/s in all: (examples/s, latencies)."""
    bodies = [json.dumps({"task": t, "inputs": [{"text": x}]}).encode() for t, x in
              zip((random.Random(seed).choice(tasks) for _ in range(4096)), (texts[i % len(texts)] for i in range(4096)))]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies, lock, errors = [], threading.Lock(), []
    stop_at = time.time() + seconds

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        interval = concurrency / rate if rate else 0.0
        next_send, i, mine = time.time() + random.Random(k).random() * interval, k, []
        while True:
            if rate:
                delay = next_send - time.time()
                if delay > 0:
                    time.sleep(delay)
                next_send += interval
            if time.time() >= stop_at:
                break
            start = time.perf_counter()
            c.request("POST", "/v1/predict", body=bodies[i % len(bodies)], headers=headers)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                errors.append(r.status)
            mine.append(time.perf_counter() - start)
            i += concurrency
        with lock:
            latencies.extend(mine)

    begin = time.time()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    elapsed = time.time() - begin
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {sorted(set(errors))}")
    latencies.sort()
    return len(latencies) / elapsed, latencies


def warm(server, tasks):
    """One request per task, so that every one is resident before timing."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def one(t):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        c.request("POST", "/v1/predict", body=json.dumps({"task": t, "inputs": [{"text": "warm up"}]}), headers=headers)
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"{t}: {r.status} {r.read()[:300]}")
        r.read()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, tasks))


def cpu_description():
    """The CPU's model name and the matrix ISA flags that decide bf16 speed (AMX, AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = next((set(line.split(":", 1)[1].split()) for line in info.splitlines() if line.startswith("flags")), set())
    isa = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(isa) or 'no AVX-512'}"


def percentile(values, q):
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def transformers_throughput(args, artifact_dir, tasks, texts, swap, seconds):
    """Examples/s of the transformers alternative at saturation: batches of max_batch_rows random-task
    requests, each batch grouped by task, one forward per group (swap: the group's artifact loaded
    into the one model first)."""
    tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(args.backbone)
    states = {t: load_file(os.path.join(artifact_dir, f"{t}.safetensors")) for t in tasks}
    if swap:
        model = hf_bitfit.load_model(args.backbone, TASK, "cpu").eval()
        models = None
    else:
        models = {}
        for t in tasks:
            models[t] = hf_bitfit.load_model(args.backbone, TASK, "cpu").eval()
            models[t].load_state_dict(states[t], strict=False)
    rng = random.Random(1)
    done, begin, current = 0, time.time(), None
    with torch.inference_mode():
        while time.time() - begin < seconds:
            batch = [(rng.choice(tasks), texts[rng.randrange(len(texts))]) for _ in range(args.max_batch_rows)]
            groups = {}
            for t, x in batch:
                groups.setdefault(t, []).append(x)
            for t, xs in groups.items():
                if swap:
                    if current != t:
                        model.load_state_dict(states[t], strict=False)
                        current = t
                    m = model
                else:
                    m = models[t]
                enc = tokenizer(xs, padding=True, truncation=True, max_length=128, return_tensors="pt")
                torch.softmax(m(**enc).logits, -1)
            done += len(batch)
    return done / (time.time() - begin)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default=os.environ.get("BITFLEET_MINILM_DIR"))
    parser.add_argument("--bin-dir", default=os.path.join(HERE, "..", "build", "bin"))
    parser.add_argument("--glue", default=os.path.join(HERE, "..", "..", "shared", "data", "glue"))
    parser.add_argument("--tasks", default="1,16,256")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-batch-rows", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--dtype", default="auto", help="bitfleet-serve's --dtype (the transformers runs stay fp32)")
    parser.add_argument("--per-task-models-up-to", type=int, default=16,
                        help="run the one-model-per-task alternative up to this N (each model is a whole backbone)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    args.tasks = [int(x) for x in args.tasks.split(",")]
    torch.set_num_threads(args.threads)
    texts = sentences(args.glue, 800)
    rows, results = [], {"bitfleet": {}, "transformers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        artifact_dir = os.path.join(tmp, "artifacts")
        os.makedirs(artifact_dir)
        names = write_artifacts(args.backbone, max(args.tasks), artifact_dir)
        results["artifact_tensor_bytes"] = sum(
            t.numel() * t.element_size() for t in load_file(os.path.join(artifact_dir, f"{names[0]}.safetensors")).values())
        n_max = max(args.tasks)
        rss = {}
        for m in sorted({1, n_max}):  # memory first, each in its own server
            server = Server(args, artifact_dir, tmp, m)
            try:
                warm(server, names[:m])
                load(server, names[:m], texts, args.concurrency, 2, seed=m)
                rss[m] = server.rss()
            finally:
                server.stop()
        if n_max > 1:
            results["memory_per_extra_task_bytes"] = (rss[n_max] - rss[1]) / (n_max - 1)
        results["rss_bytes"] = rss
        server = Server(args, artifact_dir, tmp, n_max)
        try:
            warm(server, names[:n_max])
            load(server, names[:1], texts, args.concurrency, args.seconds, seed=99)  # untimed warm-up
            for n in sorted(args.tasks):
                tasks = names[:n]
                peak, lat = load(server, tasks, texts, args.concurrency, args.seconds, seed=n)
                entry = {"peak": peak, "peak_p50": percentile(lat, 0.5), "peak_p99": percentile(lat, 0.99)}
                for share in (0.5, 0.9):
                    xs, lat = load(server, tasks, texts, args.concurrency, args.seconds, rate=share * peak, seed=n + 7)
                    entry[f"at{int(share * 100)}"] = {"examples_per_second": xs, "p50": percentile(lat, 0.5),
                                                      "p99": percentile(lat, 0.99)}
                results["bitfleet"][n] = entry
                print(f"bitfleet N={n}: {peak:.0f} ex/s peak", flush=True)
        finally:
            server.stop()
        for n in sorted(args.tasks):
            tasks = names[:n]
            r = {"swap": transformers_throughput(args, artifact_dir, tasks, texts, True, args.seconds)}
            if n <= args.per_task_models_up_to:
                r["per_task_models"] = transformers_throughput(args, artifact_dir, tasks, texts, False, args.seconds)
            results["transformers"][n] = r
            print(f"transformers N={n}: {r}", flush=True)

    one = results["bitfleet"][min(args.tasks)]["peak"]
    print(f"\n{datetime.date.today()}, {cpu_description()}, --threads {args.threads}, bitfleet --dtype {args.dtype}")
    print("\n| N tasks | bitfleet ex/s (peak) | vs N=1 | p50 / p99 ms at ~50% | p50 / p99 ms at ~90% | "
          "transformers: swap ex/s | one model per task ex/s | bitfleet / best transformers |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sorted(args.tasks):
        b, t = results["bitfleet"][n], results["transformers"][n]
        best = max(t.values())
        per_task = f"{t['per_task_models']:.0f}" if "per_task_models" in t else "— (N whole models: not run)"
        print(f"| {n} | {b['peak']:.0f} | {b['peak'] / one:.2f} | {b['at50']['p50'] * 1e3:.1f} / {b['at50']['p99'] * 1e3:.1f} | "
              f"{b['at90']['p50'] * 1e3:.1f} / {b['at90']['p99'] * 1e3:.1f} | {t['swap']:.0f} | {per_task} | "
              f"{b['peak'] / best:.2f}x |")
    if "memory_per_extra_task_bytes" in results:
        print(f"\nmemory per extra resident task (bitfleet-serve RSS, --max-tasks {max(args.tasks)} over 1): "
              f"{results['memory_per_extra_task_bytes'] / 1e6:.3f} MB (one artifact's tensors: "
              f"{results['artifact_tensor_bytes'] / 1e6:.3f} MB); "
              f"one transformers model: {sum(p.numel() * 4 for p in hf_bitfit.load_model(args.backbone, TASK, 'cpu').parameters()) / 1e6:.0f} MB")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with open(os.path.join(args.out, f"serve-{stamp}.json"), "w") as f:
        json.dump({"args": vars(args), "cpu": cpu_description(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
