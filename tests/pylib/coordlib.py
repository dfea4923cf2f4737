"""A real bitfleet-coordinator on loopback for tests: start, stop, kill -9, restart on the same
data directory; and small clients for the public and worker APIs."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import requests

import bitfleet_testlib as lib


class Coordinator:
    def __init__(self, data_dir, lease_seconds=60, auth_file=None, extra=(), port=0):
        self.data_dir = data_dir
        self.lease_seconds = lease_seconds
        self.auth_file = auth_file
        self.extra = list(extra)
        self.port = port
        self.proc = None
        self.preexec_fn = None  # e.g. to lower resource limits before the coordinator starts
        self.log_path = os.path.join(data_dir, "coordinator.log")

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        command = [lib.binary("bitfleet-coordinator"), "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                   self.data_dir, "--lease-seconds", str(self.lease_seconds), *self.extra]
        if self.auth_file:
            command += ["--auth-file", self.auth_file]
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     preexec_fn=self.preexec_fn)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"coordinator did not start: {line!r}; log: {open(self.log_path).read()[-2000:]}")
        self.port = int(match.group(1))  # keep it across restarts
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def admin_token(self):
        with open(os.path.join(self.data_dir, "admin.token")) as f:
            return f.read().strip()

    def worker_token(self):
        with open(os.path.join(self.data_dir, "worker.token")) as f:
            return f.read().strip()

    def metrics_token(self):
        """The scrape token (role metrics) written at first start; /metrics needs it."""
        with open(os.path.join(self.data_dir, "metrics.token")) as f:
            return f.read().strip()

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        if self.proc:
            self.proc.stdout.close()
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Client:
    """requests against one coordinator with one token."""

    def __init__(self, url, token):
        self.url = url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method, path, **kw):
        return self.session.request(method, self.url + path, timeout=60, **kw)

    def upload(self, path, filename=None, **kw):
        with open(path, "rb") as f:
            return self.call("POST", "/v1/files", params={"filename": filename or os.path.basename(path)}, data=f, **kw)

    def create_job(self, request, **kw):
        return self.call("POST", "/v1/jobs", json=request, **kw)


def raw_exchange(port, raw, timeout=10):
    """Sends raw bytes (what clients refuse to send) to 127.0.0.1:port; returns (status, headers dict, body) of the answer, or None if the server
    closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                lengths = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")]
                if raw.startswith(b"HEAD") or (lengths and len(rest) >= lengths[0]):
                    break
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return int(lines[0].split(" ")[1]), headers, body


# Tokens of the contract tests' --auth-file: two tenants, an admin, the workers, a scraper.
TOKENS = {"a": "token-of-tenant-a-0123", "b": "token-of-tenant-b-4567", "admin": "token-of-the-admin-89",
          "worker": "token-of-the-workers-0", "metrics": "token-of-the-scraper-1"}


def write_auth_file(path):
    """An --auth-file with TOKENS: user tenants a and b, and one token of each other role."""
    entries = [{"token": TOKENS["a"], "tenant": "a"}, {"token": TOKENS["b"], "tenant": "b"},
               {"token": TOKENS["admin"], "tenant": "ops", "role": "admin"},
               {"token": TOKENS["worker"], "tenant": "workers", "role": "worker"},
               {"token": TOKENS["metrics"], "tenant": "ops", "role": "metrics"}]
    with open(path, "w") as f:
        json.dump({"tokens": entries}, f)
    return path


class TenantsTestCase:
    """A unittest.TestCase mixin: one coordinator per test class with the TOKENS auth file, clients
    `a` (tenant a) and `worker`, and `file`, a sentiment upload of tenant a. `coordinator_options`
    are the Coordinator's keyword arguments."""
    coordinator_options = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = lib.TempDir()
        cls.dir = cls.tmp.__enter__()
        cls.auth_file = write_auth_file(os.path.join(cls.dir, "auth.json"))
        cls.data = os.path.join(cls.dir, "data")
        cls.coordinator = Coordinator(cls.data, auth_file=cls.auth_file, **cls.coordinator_options).start()
        cls.a = Client(cls.coordinator.url, TOKENS["a"])
        cls.worker = Client(cls.coordinator.url, TOKENS["worker"])
        cls.file = cls.a.upload(write_sentiment(os.path.join(cls.dir, "train.tsv"))).json()["id"]

    @classmethod
    def tearDownClass(cls):
        cls.coordinator.stop()
        cls.tmp.__exit__(None, None, None)


class ProblemAssertions:
    """A unittest.TestCase mixin: assert_problem checks an RFC 9457 answer and the field it names."""

    def assert_problem(self, r, status, field=None, fragment=None):
        self.assertEqual(r.status_code, status, r.text)
        self.assertEqual(r.headers["Content-Type"], "application/problem+json")
        body = r.json()
        self.assertEqual(body["status"], status)
        for key in ("type", "title", "detail"):
            self.assertIn(key, body)
        if field is not None:
            self.assertEqual(body.get("field"), field, body)
        if fragment is not None:
            self.assertIn(fragment, body["detail"])
        return body


def job_request(train_file, validation_file=None, **hyper):
    request = {"backbone": "test-backbone", "train_file": train_file,
               "task": {"type": "classification", "text_fields": ["sentence"], "label_field": "label",
                        "labels": ["neg", "pos"]},
               "hyperparameters": dict({"epochs": 1, "batch_size": 8}, **hyper)}
    if validation_file:
        request["validation_file"] = validation_file
    return request


def write_sentiment(path, rows=20):
    with open(path, "w") as f:
        f.write("sentence\tlabel\n")
        for i in range(rows):
            f.write(f"the movie was {'good' if i % 2 else 'bad'} {i}\t{'pos' if i % 2 else 'neg'}\n")
    return path


def register_worker(client, backbone="test-backbone", slots=4, **extra):
    body = {"name": "test-group", "backbone": backbone, "slots": slots, **extra}
    r = client.call("POST", "/internal/v1/workers", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]
