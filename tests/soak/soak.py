"""Chaos soak: many jobs of mixed task types over worker groups while processes die at random.

    python tests/soak/soak.py [--jobs 200] [--fault-minutes 10] [--groups 2] [--ranks 2] [--seed 1]
                              [--out FILE.json] [--keep DIR]

1. Clean run: a coordinator and the groups train every job with no fault. Every job must succeed
   at attempt 1 (a group never leases more than it can admit).
2. Chaos run: a fresh coordinator and groups; the jobs are submitted in waves over the fault
   window (each wave under one Idempotency-Key, retried until acknowledged, so a create whose
   answer was lost is not duplicated) while, at random times, one of these happens: kill -9 of a
   rank, kill -9 of a whole group, kill -9 of the coordinator, SIGSTOP of a rank (its group aborts
   at the collective timeout). What died is restarted after a random delay.
3. Then: every acknowledged job exists exactly once and succeeded exactly once, its artifact is
   there and matches the digest the coordinator recorded, and its tensors equal the clean run's
   bit for bit (the groups have the same rank count and --threads, which is what
   docs/user-guide.md "Reproducibility, exactly" promises bit for bit).

Prints the figures as JSON (and writes them to --out); exits 1 if any check fails. Binaries come from
BITFLEET_BIN_DIR (default build/bin). `--jobs 20 --fault-minutes 1.5` is the short version in
./tests/run.sh (ctest soak_short).
"""
import argparse
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
os.environ.setdefault("BITFLEET_BIN_DIR", os.path.join(ROOT, "build", "bin"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import requests  # noqa: E402
import trainlib  # noqa: E402

TASKS = ["sentiment", "pairs", "scores", "tagging", "topic"]
FAULTS = ["kill_rank", "kill_group", "kill_coordinator", "stop_rank"]


def log(message):
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Fleet:
    """A coordinator and its worker groups, restartable; `lock` serialises faults and restarts."""

    def __init__(self, root, backbone, args):
        self.root, self.backbone, self.args = root, backbone, args
        os.makedirs(root, exist_ok=True)
        self.coordinator = coordlib.Coordinator(os.path.join(root, "coordinator"), lease_seconds=6).start()
        self.groups = [self.new_group(i) for i in range(args.groups)]
        self.lock = threading.Lock()
        self.restarts = 0
        self.stopped = []  # (group, pid) of ranks sent SIGSTOP

    def new_group(self, i):
        return fleetlib.WorkerGroup(self.coordinator, self.backbone, self.root, f"g{i}", ranks=self.args.ranks,
                                    slots=self.args.slots,
                                    extra=["--checkpoint-every-steps", "5", "--collective-timeout", "10"]).start()

    def client(self):
        return coordlib.Client(self.coordinator.url, self.coordinator.admin_token())

    def restart_dead(self):
        with self.lock:
            if self.coordinator.proc.poll() is not None:
                self.coordinator.stop()
                self.coordinator.start()
                self.restarts += 1
                log("coordinator restarted")
            for i, g in enumerate(self.groups):
                if not g.alive():
                    g.stop()
                    self.groups[i] = self.new_group(i)
                    self.restarts += 1
                    log(f"group g{i} restarted")

    def stop(self):
        for g in self.groups:
            g.stop()
        self.coordinator.stop()


def write_tasks(directory, n_train, n_dev):
    import taskgen
    os.makedirs(directory, exist_ok=True)
    return {name: taskgen.write_task(directory, name, n_train, n_dev, seed=7) for name in TASKS}


def upload(client, tasks):
    out = {}
    for name, (train, dev, task) in tasks.items():
        out[name] = (client.upload(train).json()["id"], client.upload(dev).json()["id"], task)
    return out


def requests_for(files, backbone_name, indexes):
    out = []
    for i in indexes:
        r = fleetlib.job_request(files, TASKS[i % len(TASKS)], backbone_name, seed=i, epochs=3 + i % 6)
        r["metadata"] = {"task": TASKS[i % len(TASKS)], "soak_index": str(i)}
        out.append(r)
    return out


def submit(fleet, body, key, deadline):
    """POST /v1/jobs/batch under `key` until acknowledged (the coordinator may be down); the ids."""
    while time.time() < deadline:
        try:
            r = fleet.client().call("POST", "/v1/jobs/batch", json=body, headers={"Idempotency-Key": key})
            if r.status_code in (200, 201):
                return [j["id"] for j in r.json()["data"]]
            if r.status_code < 500:
                raise AssertionError(f"batch {key} refused: {r.status_code} {r.text[:300]}")
        except (requests.ConnectionError, requests.Timeout, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"batch {key} not acknowledged before the deadline")


def all_jobs(client):
    out, after = [], ""
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        page = client.call("GET", "/v1/jobs", params=params).json()
        out += page["data"]
        if not page["has_more"]:
            return out
        after = out[-1]["id"]


def wait_finished(fleet, ids, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        fleet.restart_dead()
        try:
            jobs = fleetlib.jobs_done(fleet.client(), ids)
            if jobs:
                return jobs
        except (requests.ConnectionError, requests.Timeout, OSError):
            pass
        time.sleep(2)
    raise AssertionError(f"{len(ids)} jobs not finished within {timeout} s")


def artifact(client, job):
    """(tensors, whether the bytes match the recorded digest)."""
    from safetensors.torch import load
    data = client.call("GET", f"/v1/jobs/{job['id']}/artifact").content
    return load(data), hashlib.sha256(data).hexdigest() == job["artifact"]["sha256"]


def clean_run(root, backbone, tasks, args):
    fleet = Fleet(os.path.join(root, "clean"), backbone, args)
    try:
        client = fleet.client()
        files = upload(client, tasks)
        ids = []
        for first in range(0, args.jobs, 100):
            body = {"jobs": requests_for(files, os.path.basename(backbone), range(first, min(args.jobs, first + 100)))}
            ids += submit(fleet, body, f"clean-{first}", time.time() + 60)
        started = time.time()
        jobs = wait_finished(fleet, ids, args.timeout)
        seconds = time.time() - started
        bad = [(j["id"], j["status"], j["attempt"]) for j in jobs if j["status"] != "succeeded" or j["attempt"] != 1]
        assert fleet.restarts == 0, "a process died in the clean run"
        out = {}
        for j in jobs:
            out[j["metadata"]["soak_index"]] = artifact(client, j)[0]
        return out, {"jobs": len(jobs), "seconds": round(seconds, 1), "not_succeeded_at_attempt_1": bad}
    finally:
        fleet.stop()


def inject(fleet, rng, counts):
    fault = rng.choice(FAULTS)
    with fleet.lock:
        g = rng.choice([g for g in fleet.groups if g.alive()] or [None])
        if fault == "kill_coordinator":
            fleet.coordinator.kill()
        elif g is None:
            return
        elif fault == "kill_group":
            g.kill()
        else:
            try:
                pid = g.rank_pid(rng.randrange(fleet.args.ranks))
            except RuntimeError:
                return  # the group is going down already
            os.kill(pid, signal.SIGKILL if fault == "kill_rank" else signal.SIGSTOP)
            if fault == "stop_rank":
                fleet.stopped.append((g, pid))
    counts[fault] += 1
    log(f"fault: {fault}")


def chaos_run(root, backbone, tasks, args, rng):
    fleet = Fleet(os.path.join(root, "chaos"), backbone, args)
    counts = {f: 0 for f in FAULTS}
    try:
        files = upload(fleet.client(), tasks)
        window = args.fault_minutes * 60
        start = time.time()
        waves = max(1, min(args.jobs // 2, 20))
        bounds = [args.jobs * w // waves for w in range(waves + 1)]
        acknowledged, next_wave = [], 0
        next_fault = start + rng.uniform(5, 15)
        while time.time() - start < window or next_wave < waves:
            now = time.time()
            # Waves over the first 70% of the window, so late faults meet running jobs too.
            if next_wave < waves and now - start >= 0.7 * window * next_wave / waves:
                body = {"jobs": requests_for(files, os.path.basename(backbone),
                                             range(bounds[next_wave], bounds[next_wave + 1]))}
                acknowledged += submit(fleet, body, f"chaos-wave-{next_wave}", now + 120)
                next_wave += 1
            if now - start < window and now >= next_fault:
                inject(fleet, rng, counts)
                next_fault = now + rng.uniform(args.fault_gap / 2, args.fault_gap * 1.5)
            time.sleep(rng.uniform(1, 4))  # what died stays dead a little while
            fleet.restart_dead()
        with fleet.lock:  # a group idle when its rank was stopped may not have noticed yet
            for g, _ in fleet.stopped:
                if g in fleet.groups and g.alive():
                    g.kill()
        log(f"fault window over: {counts}; waiting for {len(acknowledged)} jobs")
        jobs = wait_finished(fleet, acknowledged, args.timeout)
        return fleet, counts, acknowledged, jobs
    except BaseException:
        fleet.stop()
        raise


def check(fleet, acknowledged, jobs, clean):
    client = fleet.client()
    stored = all_jobs(client)
    per_index = {}
    for j in stored:
        per_index.setdefault(j["metadata"]["soak_index"], []).append(j["id"])
    problems = []
    duplicated = {k: v for k, v in per_index.items() if len(v) != 1}
    if duplicated:
        problems.append(f"jobs stored more than once: {duplicated}")
    if len(stored) != len(acknowledged):
        problems.append(f"{len(stored)} jobs stored, {len(acknowledged)} acknowledged")
    identical, max_diff, resumed, corrupt = 0, 0.0, 0, []
    for j in jobs:
        index = j["metadata"]["soak_index"]
        if j["status"] != "succeeded":
            problems.append(f"{j['id']} (#{index}) ended {j['status']}: {j['error']}")
            continue
        successes = [e for e in fleetlib.events(client, j["id"]) if e["data"].get("status") == "succeeded"]
        if len(successes) != 1:
            problems.append(f"{j['id']} succeeded {len(successes)} times")
        resumed += j["attempt"] > 1
        tensors, digest_ok = artifact(client, j)
        if not digest_ok:
            corrupt.append(j["id"])
        want = clean[index]
        if set(tensors) != set(want):
            problems.append(f"{j['id']}: tensors {sorted(tensors)} != {sorted(want)}")
            continue
        diff = max(float((tensors[k] - want[k]).abs().max()) if want[k].numel() else 0.0 for k in want)
        max_diff = max(max_diff, diff)
        identical += diff == 0.0 and all(bool((tensors[k] == want[k]).all()) for k in want)
    if corrupt:
        problems.append(f"artifacts not matching their digest: {corrupt}")
    if identical != len(jobs):
        problems.append(f"{len(jobs) - identical} artifacts differ from the clean run (max |diff| {max_diff:.3e})")
    return {"acknowledged": len(acknowledged), "stored": len(stored), "succeeded": sum(j["status"] == "succeeded" for j in jobs),
            "resumed": resumed, "max_attempt": max(j["attempt"] for j in jobs),
            "bit_identical_to_clean": identical, "max_abs_diff": max_diff}, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--fault-minutes", type=float, default=10)
    parser.add_argument("--fault-gap", type=float, default=20, help="mean seconds between faults")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the jobs after each run")
    parser.add_argument("--out")
    parser.add_argument("--keep", help="work here and keep it (default: a temporary directory, removed)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.time()
    tmp = None
    if args.keep:
        root = args.keep
        os.makedirs(root, exist_ok=True)
    else:
        tmp = lib.TempDir()
        root = tmp.__enter__()
    fleet = None
    try:
        backbone = trainlib.random_backbone(root)
        tasks = write_tasks(os.path.join(root, "data"), n_train=160, n_dev=32)
        log(f"clean run of {args.jobs} jobs")
        clean, clean_figures = clean_run(root, backbone, tasks, args)
        log(f"clean run: {clean_figures['jobs']} jobs in {clean_figures['seconds']} s; chaos run")
        fleet, counts, acknowledged, jobs = chaos_run(root, backbone, tasks, args, rng)
        figures, problems = check(fleet, acknowledged, jobs, clean)
        if clean_figures["not_succeeded_at_attempt_1"]:
            problems.append(f"clean run: not succeeded at attempt 1: {clean_figures['not_succeeded_at_attempt_1']}")
        result = {"date": time.strftime("%Y-%m-%d"), "jobs": args.jobs, "groups": args.groups, "ranks": args.ranks,
                  "fault_minutes": args.fault_minutes, "faults": counts, "restarts": fleet.restarts,
                  "clean_run": clean_figures, "chaos_run": figures, "seconds": round(time.time() - started, 1),
                  "problems": problems}
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
        return 1 if problems else 0
    finally:
        if fleet:
            fleet.stop()
        if tmp:
            tmp.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
