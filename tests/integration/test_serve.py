"""bitfleet-serve on loopback (CPU), on a random tiny backbone.

- Parity: ten tuned tasks (classification, pairs, regression, tagging) served in mixed batches
  equal transformers with each artifact loaded by load_state_dict (probabilities and scores within
  1e-5, tags equal), and a task's outputs do not depend on which tasks share its batch (with one
  thread, bit for bit: docs/serving.md says where that holds);
- with a coordinator: bearer tokens are the coordinator's, a tenant predicts with its own jobs only
  (404 for another's), a sweep predicts with its best variant; LRU eviction past --max-tasks and
  reload; 429 with Retry-After under a full queue; malformed requests get problem+json naming the
  field; an artifact trained on another backbone is refused; the coordinator gone, resident tasks
  keep serving.
"""
import concurrent.futures
import json
import os
import shutil
import sys
import threading
import time
import unittest

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import hf_bitfit  # noqa: E402
import servelib  # noqa: E402
import taskgen  # noqa: E402
import trainlib  # noqa: E402

# Ten tasks of every type, two seeds each (the second sentiment one with max_seq_len 16, so that
# inputs are truncated as its training data was).
PARITY_TASKS = [("sentiment", 0, 64), ("sentiment", 1, 16), ("topic", 0, 64), ("topic", 1, 64), ("pairs", 0, 64),
                ("pairs", 1, 64), ("scores", 0, 64), ("scores", 1, 64), ("tagging", 0, 64), ("tagging", 1, 64)]


class ServeParityTest(trainlib.BackboneTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        jobs, cls.rows = [], {}
        for task, seed, seq in PARITY_TASKS:
            name = f"{task}-{seed}"
            d = os.path.join(cls.dir, name)
            os.makedirs(d)
            jobs.append(trainlib.job(d, name, task, n_train=48, n_dev=12, seed=seed, epochs=1, max_seq_len=seq))
            cls.rows[name] = (hf_bitfit.read_rows(jobs[-1]["validation_file"]), jobs[-1]["task"], seq)
        cls.out, _ = trainlib.run(cls.dir, cls.backbone, jobs, "artifacts", slots=10)
        cls.token_file = os.path.join(cls.dir, "serve.token")
        with open(cls.token_file, "w") as f:
            f.write("serve-test-token\n")

    def start_serve(self, name, extra=()):
        s = servelib.Serve(self.backbone, self.token_file, self.dir, name, artifact_dir=self.out, extra=extra).start()
        self.addCleanup(s.stop)
        return s

    def assert_close(self, got, want, atol):
        for g, w in zip(got, want):
            if "tags" in w:
                self.assertEqual(g["tags"], w["tags"])
            elif "score" in w:
                self.assertAlmostEqual(g["score"], w["score"], delta=atol)
            else:
                self.assertEqual(sorted(g["probabilities"]), sorted(w["probabilities"]))
                for label, p in w["probabilities"].items():
                    self.assertAlmostEqual(g["probabilities"][label], p, delta=atol)
                self.assertEqual(g["label"], max(w["probabilities"], key=w["probabilities"].get))

    def predict_all(self, serve, names, per_request):
        """Every task's dev inputs, `per_request` inputs a request, all sent at once from threads."""
        jobs = []
        for name in names:
            rows, task, _ = self.rows[name]
            inputs = servelib.inputs_of(rows, task)
            jobs += [(name, i, inputs[i:i + per_request]) for i in range(0, len(inputs), per_request)]
        with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(pool.map(lambda j: serve.predict(j[0], j[2]), jobs))
        out = {name: [] for name in names}
        for (name, _, _), r in zip(jobs, answers):
            self.assertEqual(r.status_code, 200, r.text)
            out[name] += r.json()["predictions"]
        return out

    def test_mixed_batches_equal_transformers(self):
        serve = self.start_serve("parity", ["--max-wait-ms", "50", "--max-batch-rows", "128"])
        names = [f"{t}-{s}" for t, s, _ in PARITY_TASKS]
        mixed = self.predict_all(serve, names, per_request=3)
        # The batches really were mixed: more inputs per forward pass than any one request has.
        self.assertGreater(serve.metric("bitfleet_serve_batch_tasks_sum") / serve.metric("bitfleet_serve_batch_tasks_count"), 1.5)
        for name in names:
            rows, task, seq = self.rows[name]
            want = servelib.reference(self.backbone, task, os.path.join(self.out, f"{name}.safetensors"),
                                      servelib.inputs_of(rows, task), seq)
            with self.subTest(task=name):
                self.assert_close(mixed[name], want, 1e-5)

    def test_outputs_do_not_depend_on_batch_neighbours(self):
        serve = self.start_serve("neighbours", ["--max-wait-ms", "50", "--max-batch-rows", "128"])
        names = [f"{t}-{s}" for t, s, _ in PARITY_TASKS]
        inputs = {n: servelib.inputs_of(self.rows[n][0], self.rows[n][1]) for n in names}
        alone = {n: serve.predict(n, inputs[n]).json()["predictions"] for n in names}  # one batch each
        before = (serve.metric("bitfleet_serve_batch_tasks_sum"), serve.metric("bitfleet_serve_batch_tasks_count"))
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:  # the same requests, all at once
            together = dict(zip(names, pool.map(lambda n: serve.predict(n, inputs[n]), names)))
        tasks = serve.metric("bitfleet_serve_batch_tasks_sum") - before[0]
        batches = serve.metric("bitfleet_serve_batch_tasks_count") - before[1]
        self.assertGreater(tasks / batches, 1.5, "the concurrent requests shared batches")
        for n in names:
            with self.subTest(task=n):
                self.assertEqual(together[n].status_code, 200, together[n].text)
                self.assertEqual(together[n].json()["predictions"], alone[n])  # one thread: bit for bit

    def test_artifact_names_and_refusals(self):
        serve = self.start_serve("names")
        r = serve.predict("sentiment-0", [{"text": "a good movie"}], token="wrong")
        self.assertEqual(r.status_code, 401, r.text)
        r = serve.predict("no-such-task", [{"text": "x"}])
        self.assertEqual(r.status_code, 404, r.text)
        self.assertEqual(r.json()["field"], "task")
        r = serve.predict("pairs-0", [{"text": "only one"}])
        self.assertEqual((r.status_code, r.json()["field"]), (422, "inputs[0].text_pair"), r.text)
        r = serve.predict("tagging-0", [{"text": "the dog saw a cat"}])  # words as text: split on spaces
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(len(r.json()["predictions"][0]["tags"]), 5)


class ServeCoordinatorTest(unittest.TestCase, coordlib.ProblemAssertions):
    """A coordinator with tenants a and b, one worker group, jobs of both tenants and a sweep."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = lib.TempDir()
        cls.dir = cls.tmp.__enter__()
        cls.backbone = trainlib.random_backbone(cls.dir)
        cls.auth_file = coordlib.write_auth_file(os.path.join(cls.dir, "auth.json"))
        cls.coordinator = coordlib.Coordinator(os.path.join(cls.dir, "data"), auth_file=cls.auth_file).start()
        cls.token_files = {}
        for who in ("admin", "worker"):
            cls.token_files[who] = os.path.join(cls.dir, f"{who}.token")
            with open(cls.token_files[who], "w") as f:
                f.write(coordlib.TOKENS[who])
        with open(os.path.join(cls.coordinator.data_dir, "worker.token"), "w") as f:
            f.write(coordlib.TOKENS["worker"])
        cls.group = fleetlib.WorkerGroup(cls.coordinator, cls.backbone, cls.dir, "g", ranks=1, slots=4).start()
        cls.a = coordlib.Client(cls.coordinator.url, coordlib.TOKENS["a"])
        cls.b = coordlib.Client(cls.coordinator.url, coordlib.TOKENS["b"])
        files_a = fleetlib.upload_tasks(cls.a, cls.dir, ["sentiment", "pairs", "scores"], n_train=32, n_dev=8)
        files_b = fleetlib.upload_tasks(cls.b, os.path.join(cls.dir), ["sentiment"], n_train=32, n_dev=8)
        name = os.path.basename(cls.backbone)
        cls.jobs = {}
        for task in ("sentiment", "pairs", "scores"):
            r = cls.a.create_job(fleetlib.job_request(files_a, task, name, epochs=1))
            assert r.status_code == 201, r.text
            cls.jobs[task] = r.json()["id"]
        r = cls.b.create_job(fleetlib.job_request(files_b, "sentiment", name, epochs=1))
        cls.job_b = r.json()["id"]
        base = fleetlib.job_request(files_a, "sentiment", name, epochs=1)
        r = cls.a.call("POST", "/v1/sweeps", json={"base": base, "grid": {"learning_rate": [1e-6, 5e-3]}})
        assert r.status_code == 201, r.text
        cls.sweep = r.json()["id"]
        ids = list(cls.jobs.values()) + [cls.job_b] + [v["job"] for v in r.json()["variants"]]
        admin = coordlib.Client(cls.coordinator.url, coordlib.TOKENS["admin"])
        done = fleetlib.wait_for(lambda: fleetlib.jobs_done(admin, ids), 300, "the jobs to finish")
        assert all(j["status"] == "succeeded" for j in done), [j["error"] for j in done]
        cls.group.stop()

    @classmethod
    def tearDownClass(cls):
        cls.coordinator.stop()
        cls.tmp.__exit__(None, None, None)

    def start_serve(self, name, backbone=None, extra=(), coordinator=None):
        s = servelib.Serve(backbone or self.backbone, self.token_files["admin"], self.dir, name,
                           coordinator=coordinator or self.coordinator.url,
                           artifact_dir=os.path.join(self.dir, f"cache-{name}"), extra=extra)
        self.addCleanup(s.stop)
        return s.start()

    def test_tenants_predict_with_their_own_tasks_only(self):
        serve = self.start_serve("tenants")
        text = [{"text": "a good movie"}]
        r = serve.predict(self.jobs["sentiment"], text, token=coordlib.TOKENS["a"])
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["job"], self.jobs["sentiment"])
        self.assert_problem(serve.predict(self.jobs["sentiment"], text, token=coordlib.TOKENS["b"]), 404, "task")
        self.assert_problem(serve.predict(self.job_b, text, token=coordlib.TOKENS["a"]), 404, "task")
        self.assertEqual(serve.predict(self.job_b, text, token=coordlib.TOKENS["b"]).status_code, 200)
        self.assert_problem(serve.predict(self.jobs["sentiment"], text, token="not-a-token"), 401)
        r = requests.post(serve.url + "/v1/predict", json={"task": self.jobs["sentiment"], "inputs": text})
        self.assert_problem(r, 401, "Authorization")

    def test_sweep_predicts_with_its_best_variant(self):
        serve = self.start_serve("sweep")
        sweep = self.a.call("GET", f"/v1/sweeps/{self.sweep}").json()
        r = serve.predict(self.sweep, [{"text": "a good movie"}], token=coordlib.TOKENS["a"])
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["job"], sweep["best"]["job"])
        self.assertEqual(r.json()["task"], self.sweep)

    def test_cli_predicts_a_text_and_a_whole_file(self):
        serve = self.start_serve("cli")
        env = {"BITFLEET_URL": self.coordinator.url, "BITFLEET_TOKEN": coordlib.TOKENS["a"], "BITFLEET_SERVE_URL": serve.url}
        bitfleet = lib.binary("bitfleet")
        one = lib.run_json([bitfleet, "--json", "predict", self.jobs["pairs"], "--text", "a dog", "--text-pair", "a cat"],
                           env=env)
        api = serve.predict(self.jobs["pairs"], [{"text": "a dog", "text_pair": "a cat"}], token=coordlib.TOKENS["a"])
        self.assertEqual(one["predictions"], api.json()["predictions"])
        # A whole dev file, in requests of 3 inputs: one JSON line per record, in order, equal to the API's.
        dev = os.path.join(self.dir, f"scores-dev.{taskgen.TASKS['scores'][1]}")
        out = os.path.join(self.dir, "scores.jsonl")
        lib.run([bitfleet, "predict", self.jobs["scores"], "--file", dev, "-o", out, "--batch", "3"], env=env)
        with open(out) as f:
            lines = [json.loads(line) for line in f]
        rows = hf_bitfit.read_rows(dev)
        self.assertEqual([x["line"] for x in lines], list(range(1, len(rows) + 1)))
        api = serve.predict(self.jobs["scores"], servelib.inputs_of(rows, taskgen.TASKS["scores"][2]),
                            token=coordlib.TOKENS["a"]).json()["predictions"]
        for got, want in zip(lines, api):
            self.assertAlmostEqual(got["score"], want["score"], places=6)
        # A record without the task's text field: the file and line are named, nothing is written past it.
        bad = os.path.join(self.dir, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"sentence": "fine"}\n{"other": "no sentence"}\n')
        proc = lib.run([bitfleet, "predict", self.jobs["scores"], "--file", bad], env=env, check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn(f"{bad} line 2", proc.stderr)

    def test_lru_eviction_and_reload(self):
        serve = self.start_serve("lru", extra=["--max-tasks", "2"])
        order = ["sentiment", "pairs", "scores", "sentiment"]
        inputs = {"sentiment": [{"text": "the best film"}], "scores": [{"text": "the best film"}],
                  "pairs": [{"text": "a dog", "text_pair": "a cat"}]}
        answers = []
        for task in order:
            r = serve.predict(self.jobs[task], inputs[task], token=coordlib.TOKENS["a"])
            self.assertEqual(r.status_code, 200, r.text)
            answers.append(r.json()["predictions"])
        self.assertEqual(serve.metric("bitfleet_serve_task_evictions_total"), 2)  # sentiment, then pairs
        self.assertEqual(serve.metric("bitfleet_serve_task_loads_total"), 4)
        self.assertEqual(serve.metric("bitfleet_serve_tasks_resident"), 2)
        self.assertEqual(answers[0], answers[3])  # reloaded, the same task answers the same

    def test_full_queue_answers_429_with_retry_after(self):
        serve = self.start_serve("queue", extra=["--max-queue-rows", "2", "--max-wait-ms", "3000",
                                                 "--max-batch-rows", "64"])
        job, token = self.jobs["sentiment"], coordlib.TOKENS["a"]
        self.assertEqual(serve.predict(job, [{"text": "warm"}], token=token).status_code, 200)  # loaded
        held = []
        t = threading.Thread(target=lambda: held.append(serve.predict(job, [{"text": "x"}, {"text": "y"}], token=token)))
        t.start()
        fleetlib.wait_for(lambda: serve.metric("bitfleet_serve_queue_rows") == 2, 10, "two queued inputs")
        r = serve.predict(job, [{"text": "one too many"}], token=token)
        self.assert_problem(r, 429)
        self.assertEqual(r.headers["Retry-After"], "1")
        t.join()
        self.assertEqual(held[0].status_code, 200, held[0].text)
        self.assertEqual(serve.metric("bitfleet_serve_rejected_total"), 1)

    def test_malformed_requests_get_problem_json(self):
        serve = self.start_serve("malformed")
        url, headers = serve.url + "/v1/predict", {"Authorization": f"Bearer {coordlib.TOKENS['a']}"}
        job = self.jobs["pairs"]
        r = requests.post(url, data="{not json", headers=dict(headers, **{"Content-Type": "application/json"}))
        self.assert_problem(r, 400, "body")
        r = requests.post(url, data="x", headers=dict(headers, **{"Content-Type": "text/plain"}))
        self.assert_problem(r, 415, "Content-Type")
        cases = [({"inputs": [{"text": "x"}]}, "task"), ({"task": job}, "inputs"), ({"task": job, "inputs": []}, "inputs"),
                 ({"task": job, "inputs": [{"text": 3}]}, "inputs[0].text"),
                 ({"task": job, "inputs": [{"text": "x", "colour": 1}]}, "inputs[0].colour"),
                 ({"task": job, "inputs": ["x"]}, "inputs[0]"), ({"task": "../etc", "inputs": [{"text": "x"}]}, "task"),
                 ({"task": job, "inputs": [{"text": "x"}], "timeout_ms": 0}, "timeout_ms"),
                 ({"task": job, "inputs": [{"text": "a"}]}, "inputs[0].text_pair"),
                 ({"task": job, "inputs": [{"tokens": ["a"]}]}, "inputs[0].tokens"),
                 ({"task": job, "inputs": [{"text": "x"}] * 257}, "inputs")]
        for body, field in cases:
            with self.subTest(field=field, body=str(body)[:60]):
                self.assert_problem(requests.post(url, json=body, headers=headers), 422, field)
        self.assert_problem(requests.get(url, headers=headers), 405)
        self.assert_problem(requests.get(serve.url + "/v1/jobs", headers=headers), 404)

    def test_artifact_of_another_backbone_is_refused(self):
        other = trainlib.random_backbone(os.path.join(self.dir, "other"), seed=6)  # same shapes, other weights
        serve = self.start_serve("other-backbone", backbone=other)
        r = serve.predict(self.jobs["sentiment"], [{"text": "x"}], token=coordlib.TOKENS["a"])
        self.assert_problem(r, 422, "task", "backbone")
        self.assertEqual(serve.metric("bitfleet_serve_task_loads_total"), 1)  # counted, as failed

    def test_resident_tasks_keep_serving_without_the_coordinator(self):
        # A coordinator of its own (on the same data), so that stopping it leaves the others' alone.
        data = os.path.join(self.dir, "data-gone")
        self.coordinator.stop()
        shutil.copytree(self.coordinator.data_dir, data, ignore=shutil.ignore_patterns("*.log"))
        self.coordinator.start()
        c = coordlib.Coordinator(data, auth_file=self.auth_file).start()
        self.addCleanup(c.stop)
        # Every request asks the coordinator (no cache), so the last answer is what keeps it going.
        serve = self.start_serve("gone", coordinator=c.url, extra=["--auth-cache-seconds", "0"])
        job, token = self.jobs["sentiment"], coordlib.TOKENS["a"]
        before = serve.predict(job, [{"text": "a fun story"}], token=token)
        self.assertEqual(before.status_code, 200, before.text)
        c.kill()
        time.sleep(0.5)
        after = serve.predict(job, [{"text": "a fun story"}], token=token)
        self.assertEqual(after.status_code, 200, after.text)
        self.assertEqual(after.json()["predictions"], before.json()["predictions"])
        self.assert_problem(serve.predict(self.jobs["pairs"], [{"text": "a", "text_pair": "b"}], token=token), 503)
        self.assertEqual(requests.get(serve.url + "/readyz").status_code, 200)


if __name__ == "__main__":
    unittest.main()
