"""The Python client (clients/python, package `bitfleet`) against a live coordinator, a worker group
on a random tiny backbone, and bitfleet-serve:

- `pip install ./clients/python` into a fresh venv works, offline, and imports from there;
- a batch created from Python is waited for, each artifact loads into transformers through
  bitfleet.load_artifact (labels set) and reproduces the metric its job reported;
- problem+json answers are exceptions carrying status, title, detail and the field;
- a create whose response is lost (the connection dropped after the coordinator acted) is retried
  with the same Idempotency-Key and leaves exactly one job;
- the notebook flow in docs/python.md runs as written.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import hf_bitfit  # noqa: E402
import servelib  # noqa: E402
import taskgen  # noqa: E402
import trainlib  # noqa: E402

SOURCE = lib.SOURCE_DIR or os.path.join(os.path.dirname(__file__), "..", "..")
CLIENT_DIR = os.path.join(SOURCE, "clients", "python")
sys.path.insert(0, CLIENT_DIR)
import bitfleet  # noqa: E402


class DroppingProxy:
    """A loopback TCP proxy to `port` that forwards the first request it gets, reads the answer and
    drops the connection without passing it on (a response lost in flight); later connections are
    forwarded both ways."""

    def __init__(self, port):
        self.target = port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.dropped = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        upstream = socket.create_connection(("127.0.0.1", self.target))
        if self.dropped == 0:
            self.dropped = 1
            request = read_message(conn)
            upstream.sendall(request)
            read_message(upstream)  # the coordinator answered; the client never hears it
            conn.close()
            upstream.close()
            return

        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
        pipe(conn, upstream)

    def close(self):
        self.listener.close()


def read_message(sock):
    """One HTTP/1.1 message with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1)) if b"ontent-" in head else 0
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = lib.TempDir()
        cls.dir = cls.tmp.__enter__()
        cls.backbone = trainlib.random_backbone(cls.dir)
        cls.backbone_name = os.path.basename(cls.backbone)
        cls.coordinator = coordlib.Coordinator(os.path.join(cls.dir, "data"), lease_seconds=30).start()
        cls.group = fleetlib.WorkerGroup(cls.coordinator, cls.backbone, cls.dir, "g", ranks=1, slots=4).start()
        cls.client = bitfleet.Client(cls.coordinator.url, cls.coordinator.admin_token())

    @classmethod
    def tearDownClass(cls):
        cls.group.stop()
        cls.coordinator.stop()
        cls.tmp.__exit__(None, None, None)

    def test_pip_install_into_a_fresh_venv(self):
        # The wheel built here (offline: this environment's setuptools and wheel), installed by the
        # fresh venv's own pip, offline too.
        wheels = os.path.join(self.dir, "wheels")
        lib.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                 "-w", wheels, CLIENT_DIR], timeout=300)
        venv = os.path.join(self.dir, "venv")
        lib.run([sys.executable, "-m", "venv", "--system-site-packages", venv])
        pip = os.path.join(venv, "bin", "pip")
        lib.run([pip, "install", "-q", "--no-index", "--no-deps", *[os.path.join(wheels, w) for w in os.listdir(wheels)]],
                timeout=300)
        out = lib.run([os.path.join(venv, "bin", "python"), "-c",
                       "import bitfleet; print(bitfleet.__file__); print(bitfleet.Client('http://x', 't').url)"],
                      env={"PYTHONPATH": ""}).stdout.split()
        self.assertTrue(out[0].startswith(venv), out)  # installed, not the source tree
        self.assertEqual(out[1], "http://x")

    def test_a_batch_waited_for_loads_into_transformers_and_reproduces_its_metrics(self):
        names = ["sentiment", "pairs", "scores", "tagging"]
        paths = {n: taskgen.write_task(self.dir, n, 48, 24, seed=3) for n in names}
        requests_ = []
        for n in names:
            train, dev, task = paths[n]
            requests_.append({"backbone": self.backbone_name, "train_file": self.client.files.upload(train).id,
                              "validation_file": self.client.files.upload(dev).id, "task": task,
                              "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 5e-3, "max_seq_len": 64},
                              "metadata": {"name": n}})
        jobs = self.client.jobs.create_batch(requests_)
        self.assertEqual([j.status for j in jobs], ["queued"] * 4)
        jobs = self.client.jobs.wait([j.id for j in jobs], timeout=300, interval=0.5, progress=True)
        self.assertEqual([j.status for j in jobs], ["succeeded"] * 4, [j.error for j in jobs])
        self.assertEqual({j.id for j in self.client.jobs.list(status="succeeded")} >= {j.id for j in jobs}, True)
        tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(self.backbone)
        for job, n in zip(jobs, names):
            train, dev, task = paths[n]
            model = bitfleet.load_artifact(job.id, self.backbone, client=self.client)
            if task["type"] != "regression":
                self.assertEqual(model.config.id2label, dict(enumerate(task["labels"])))
            got = hf_bitfit.evaluate(model, tokenizer, task, hf_bitfit.encode(hf_bitfit.read_rows(dev), task, tokenizer, 64))
            metric = "pearson" if task["type"] == "regression" else "accuracy"
            tolerance = 1e-4 if metric == "pearson" else 1.0 / 24 + 1e-9  # one near-tie may flip
            self.assertAlmostEqual(got[metric], job.metrics[metric], delta=tolerance, msg=n)
        events = list(self.client.jobs.events(jobs[0].id))
        self.assertEqual([e.seq for e in events], sorted(e.seq for e in events))
        self.assertIn("succeeded", [e.data.get("status") for e in events])
        frame = self.client.jobs.to_dataframe(jobs)
        self.assertEqual(list(frame["name"]), names)
        self.assertEqual(list(frame["status"]), ["succeeded"] * 4)
        self.assertEqual([w.backbone for w in self.client.workers.list()], [self.backbone_name])

    def test_problems_are_exceptions_that_name_the_field(self):
        train = self.client.files.upload(coordlib.write_sentiment(os.path.join(self.dir, "errors.tsv")))
        request = coordlib.job_request(train.id, learning_rate=-1)
        request["backbone"] = self.backbone_name
        with self.assertRaises(bitfleet.BitfleetError) as e:
            self.client.jobs.create(request)
        self.assertEqual((e.exception.status, e.exception.field), (422, "hyperparameters.learning_rate"))
        self.assertIn("learning_rate", e.exception.detail)
        with self.assertRaises(bitfleet.BitfleetError) as e:
            self.client.jobs.get("job-000000000000000000000000")
        self.assertEqual(e.exception.status, 404)
        with self.assertRaises(bitfleet.BitfleetError) as e:
            bitfleet.Client(self.coordinator.url, "not-a-token").workers.list()
        self.assertEqual(e.exception.status, 401)
        with self.assertRaises(bitfleet.ConnectionFailed):
            bitfleet.Client(f"http://127.0.0.1:{fleetlib.free_port()}", "t", retries=2, backoff=0.01).workers.list()

    def test_a_create_retried_after_a_lost_response_creates_one_job(self):
        train = self.client.files.upload(coordlib.write_sentiment(os.path.join(self.dir, "retry.tsv")))
        request = coordlib.job_request(train.id)
        request.update(backbone="no-such-backbone", metadata={"name": "retried-once"})  # stays queued
        proxy = DroppingProxy(self.coordinator.port)
        self.addCleanup(proxy.close)
        through_proxy = bitfleet.Client(f"http://127.0.0.1:{proxy.port}", self.coordinator.admin_token(), backoff=0.05)
        job = through_proxy.jobs.create(request)
        self.assertEqual(proxy.dropped, 1)
        named = [j.id for j in self.client.jobs.list() if j.name == "retried-once"]
        self.assertEqual(named, [job.id])
        self.client.jobs.cancel(job.id)

    def test_the_notebook_flow_in_the_docs_runs_as_written(self):
        with open(os.path.join(SOURCE, "docs", "python.md")) as f:
            code = re.search(r"## The notebook flow.*?```python\n(.*?)```", f.read(), re.S).group(1)
        serve = servelib.Serve(self.backbone, os.path.join(self.coordinator.data_dir, "admin.token"), self.dir, "python",
                               coordinator=self.coordinator.url, artifact_dir=os.path.join(self.dir, "serve-cache"))
        self.addCleanup(serve.stop)
        serve.start()
        script = os.path.join(self.dir, "notebook.py")
        with open(script, "w") as f:
            f.write(code)
        env = dict(os.environ, BITFLEET_URL=self.coordinator.url, BITFLEET_TOKEN_FILE=os.path.join(
            self.coordinator.data_dir, "admin.token"), BITFLEET_BACKBONE=self.backbone_name,
            BITFLEET_BACKBONE_DIR=self.backbone, BITFLEET_SERVE_URL=serve.url, PYTHONPATH=CLIENT_DIR)
        env.pop("BITFLEET_TOKEN", None)
        proc = subprocess.run([sys.executable, script], cwd=SOURCE, env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(proc.returncode, 0, proc.stdout[-3000:] + proc.stderr[-3000:])
        self.assertIn("best: {'learning_rate':", proc.stdout)
        self.assertRegex(proc.stdout, r"\[\{'label': '(neg|pos)', 'score': ")  # the pipeline
        self.assertRegex(proc.stdout, r"\[\{'label': '(neg|pos)', 'probabilities'")  # bitfleet-serve


if __name__ == "__main__":
    unittest.main(verbosity=2)
