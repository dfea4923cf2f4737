"""Worker groups for end-to-end tests: `mpirun -np R bitfleet-worker` in its own process group, so
a test can kill a whole group with one signal, stop one rank, or let it leave on SIGTERM."""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import bitfleet_testlib as lib
import trainlib


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerGroup:
    def __init__(self, coordinator, backbone, log_dir, name, ranks=2, slots=4, metrics_port=0, extra=(),
                 dtype="fp32"):
        """dtype: --dtype; fp32 unless a test says otherwise, as the tests compare with fp32
        references and `auto` (the binaries' default) is bf16 on AMX CPUs."""
        self.coordinator = coordinator
        self.dtype = dtype
        self.backbone = backbone
        self.ranks = ranks
        self.slots = slots
        self.metrics_port = metrics_port
        self.extra = list(extra)
        self.log_path = os.path.join(log_dir, f"worker-{name}.log")
        self.proc = None

    def start(self):
        token_file = os.path.join(self.coordinator.data_dir, "worker.token")
        command = trainlib.mpirun(self.ranks) + [
            lib.binary("bitfleet-worker"), "--coordinator", self.coordinator.url, "--backbone", self.backbone,
            "--slots", str(self.slots), "--token-file", token_file, "--threads", "1",
            "--cache-dir", os.path.join(os.path.dirname(self.log_path), "cache"),
            "--metrics-port", str(self.metrics_port), "--dtype", self.dtype, *self.extra]
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def rank_pid(self, rank):
        """The pid of one rank's bitfleet-worker process."""
        out = subprocess.run(["pgrep", "-s", str(self.proc.pid), "-f", "bitfleet-worker"], capture_output=True,
                             text=True).stdout.split()
        for pid in out:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            except OSError:
                continue
            if env.get(b"OMPI_COMM_WORLD_RANK") == str(rank).encode():
                return int(pid)
        raise RuntimeError(f"no rank {rank} among {out}")

    def kill(self):
        """kill -9 of every process of the group."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout=60):
        """SIGTERM to every rank, as srun or a Kubernetes pod stop delivers it; returns mpirun's status.
        (mpirun signalled itself reports 1 even when its ranks leave cleanly.)"""
        for rank in range(self.ranks):
            os.kill(self.rank_pid(rank), signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        if self.proc:
            self.log.close()

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()


def wait_for(predicate, timeout, what, interval=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def events(client, job_id):
    """Every event of a job, following the cursor."""
    out, after = [], 0
    while True:
        page = client.call("GET", f"/v1/jobs/{job_id}/events", params={"after": after, "limit": 1000}).json()
        out += page["data"]
        if not page["has_more"]:
            return out
        after = out[-1]["seq"]


def jobs_done(client, ids):
    jobs = [client.call("GET", f"/v1/jobs/{i}").json() for i in ids]
    return jobs if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) else None


def upload_tasks(client, directory, names, n_train, n_dev, seed=1):
    """Uploads each task's files once; returns {name: (train_id, dev_id, task spec)}."""
    import taskgen
    out = {}
    for name in names:
        train, dev, task = taskgen.write_task(directory, name, n_train, n_dev, seed=seed)
        out[name] = (client.upload(train).json()["id"], client.upload(dev).json()["id"], task)
    return out


def job_request(files, name, backbone, **hyper):
    train, dev, task = files[name]
    h = {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "max_seq_len": 64}
    h.update(hyper)
    return {"backbone": backbone, "train_file": train, "validation_file": dev, "task": task, "hyperparameters": h,
            "metadata": {"task": name}}


class Prometheus:
    """A Prometheus server on a free loopback port for one test; stop() kills it."""

    def __init__(self, binary, config_path, data_dir):
        self.port = free_port()
        self.proc = subprocess.Popen([binary, f"--config.file={config_path}",
                                      f"--web.listen-address=127.0.0.1:{self.port}",
                                      f"--storage.tsdb.path={data_dir}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(self, expr):
        """The HTTP API's whole answer, or {"status": "unreachable", ...} while it is not up."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?query=" + urllib.request.quote(expr)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)
        except OSError as e:
            return {"status": "unreachable", "error": str(e)}

    def result(self, expr):
        """The query's series ([] while it is not up)."""
        return self.query(expr).get("data", {}).get("result", [])

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def prometheus_config(path, targets, interval="1s", token_files=None):
    """A Prometheus config scraping {job: [host:port]}; token_files {job: path} adds a bearer token
    (the coordinator's /metrics needs its metrics token)."""
    scrape = [{"job_name": job, "scrape_interval": interval, "static_configs": [{"targets": hosts}]}
              for job, hosts in targets.items()]
    for s in scrape:
        if token_files and s["job_name"] in token_files:
            s["authorization"] = {"type": "Bearer", "credentials_file": token_files[s["job_name"]]}
    with open(path, "w") as f:
        json.dump({"global": {"scrape_interval": interval}, "scrape_configs": scrape}, f)  # YAML accepts JSON
    return path
