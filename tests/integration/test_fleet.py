"""The whole service end to end on loopback (CPU): a coordinator and worker groups of
`mpirun -np 2 bitfleet-worker` on a random tiny backbone.

- 40 jobs submitted in one batch to two groups all succeed; every artifact loads into
  transformers with load_state_dict(strict=False) and reproduces the metrics the job reported;
- kill -9 of a group mid-run: its jobs requeue, resume from their checkpoints on the other group,
  and end with the same parameters, bit for bit, as the same jobs run without the fault;
- kill -9 of the coordinator mid-run, restarted on its data: the groups reconnect, nothing is lost;
- a rank stopped with SIGSTOP makes its group abort within the collective timeout; its jobs
  requeue and finish elsewhere;
- a job cancelled while training and a poisoned job beside healthy ones end alone;
- SIGTERM: the group checkpoints, gives its leases back, and leaves cleanly;
- a real Prometheus scrapes the coordinator and both groups and answers queries for their series;
- groups register the dtype they compute in (`--dtype auto` resolved by the CPU's ISA and vendor) and their
  CPU; a job that requires a dtype trains only on a group of it, and its artifact says so; while
  no live group can run it, the job says why (waiting_reason).
"""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import taskgen  # noqa: E402
import trainlib  # noqa: E402

TASKS = ["sentiment", "pairs", "scores", "tagging", "topic"]


class FleetTest(trainlib.BackboneTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.backbone_name = os.path.basename(cls.backbone)

    def start_coordinator(self, name, lease_seconds=4):
        c = coordlib.Coordinator(os.path.join(self.dir, name), lease_seconds=lease_seconds).start()
        self.addCleanup(c.stop)
        return c, coordlib.Client(c.url, c.admin_token())

    def start_group(self, coordinator, name, **kw):
        kw.setdefault("extra", ["--checkpoint-every-steps", "5", "--collective-timeout", "20"])
        g = fleetlib.WorkerGroup(coordinator, self.backbone, self.dir, name, **kw).start()
        self.addCleanup(g.stop)
        return g

    def submit(self, client, requests_):
        r = client.call("POST", "/v1/jobs/batch", json={"jobs": requests_})
        self.assertEqual(r.status_code, 201, r.text)
        return [j["id"] for j in r.json()["data"]]

    def wait_done(self, client, ids, timeout=300):
        return fleetlib.wait_for(lambda: fleetlib.jobs_done(client, ids), timeout, f"{len(ids)} jobs to finish")

    def artifact(self, client, job_id):
        path = os.path.join(self.dir, f"{job_id}.safetensors")
        with open(path, "wb") as f:
            f.write(client.call("GET", f"/v1/jobs/{job_id}/artifact").content)
        from safetensors.torch import load_file
        return load_file(path)

    # --- many jobs, two groups, artifacts checked in transformers --------------------------------

    def test_forty_jobs_on_two_groups_reproduce_in_transformers(self):
        import hf_bitfit
        c, client = self.start_coordinator("forty")
        groups = [self.start_group(c, f"forty-{i}") for i in range(2)]
        files = fleetlib.upload_tasks(client, os.path.join(self.dir), TASKS, n_train=48, n_dev=24)
        requests_ = [fleetlib.job_request(files, TASKS[i % 5], self.backbone_name, seed=i) for i in range(40)]
        ids = self.submit(client, requests_)
        jobs = self.wait_done(client, ids)
        self.assertEqual([j["status"] for j in jobs], ["succeeded"] * 40, [j["error"] for j in jobs])
        # No fault, so no hand-over: a group never leases more than it can admit (issue 13).
        self.assertEqual([j["attempt"] for j in jobs], [1] * 40)
        workers = client.call("GET", "/v1/workers").json()["data"]
        self.assertEqual(len(workers), 2)
        ran_on = {e["data"].get("worker_group") for i in ids for e in
                  fleetlib.events(client, i) if e["data"].get("status") == "running"}
        self.assertEqual(len(ran_on), 2, "both groups trained jobs")
        tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(self.backbone)
        dev_rows = {}
        for job in jobs:
            name = job["metadata"]["task"]
            task = files[name][2]
            if name not in dev_rows:
                path = os.path.join(self.dir, f"{name}-dev.{taskgen.TASKS[name][1]}")
                dev_rows[name] = hf_bitfit.encode(hf_bitfit.read_rows(path), task, tokenizer, 64)
            model = hf_bitfit.load_model(self.backbone, task, "cpu")
            missing, unexpected = model.load_state_dict(self.artifact(client, job["id"]), strict=False)
            self.assertEqual(unexpected, [], job["id"])
            got = hf_bitfit.evaluate(model, tokenizer, task, dev_rows[name])
            metric = "pearson" if task["type"] == "regression" else "accuracy"
            tolerance = 1e-4 if metric == "pearson" else 1.0 / 24 + 1e-9  # at most one near-tie may flip
            self.assertAlmostEqual(got[metric], job["metrics"][metric], delta=tolerance, msg=f"{job['id']} {name}")
        for g in groups:
            self.assertTrue(g.alive())

    # --- a group killed mid-run ---------------------------------------------------------------------

    def test_kill_9_of_a_group_resumes_elsewhere_bit_for_bit(self):
        data_dir = os.path.join(self.dir, "kill-data")
        os.makedirs(data_dir, exist_ok=True)

        def jobs_on(client):
            files = fleetlib.upload_tasks(client, data_dir, ["sentiment", "tagging", "scores"], n_train=400, n_dev=40)
            return [fleetlib.job_request(files, n, self.backbone_name, seed=s, epochs=30)
                    for s, n in enumerate(["sentiment", "tagging", "scores"])]

        # Without a fault: one group from start to finish.
        c, client = self.start_coordinator("kill-baseline")
        self.start_group(c, "kill-baseline")
        baseline = {}
        for job in self.wait_done(client, self.submit(client, jobs_on(client))):
            self.assertEqual(job["status"], "succeeded", job["error"])
            baseline[job["metadata"]["task"]] = self.artifact(client, job["id"])
        # With a fault: group A trains until every job is past a checkpoint, then dies.
        c, client = self.start_coordinator("kill-fault")
        a = self.start_group(c, "kill-a")
        ids = self.submit(client, jobs_on(client))
        fleetlib.wait_for(lambda: all(client.call("GET", f"/v1/jobs/{i}").json()["progress"]["step"] >= 50 for i in ids),
                          120, "every job to pass step 50 on group A")
        a.kill()
        self.start_group(c, "kill-b")
        jobs = self.wait_done(client, ids)
        for job in jobs:
            self.assertEqual(job["status"], "succeeded", job["error"])
            self.assertEqual(job["attempt"], 2, "resumed once, on group B")
            resumed = [e["data"]["resume_from_step"] for e in fleetlib.events(client, job["id"])
                       if e["data"].get("status") == "running"]
            self.assertGreater(resumed[-1], 0, "resumed from a checkpoint, not from scratch")
            got = self.artifact(client, job["id"])
            want = baseline[job["metadata"]["task"]]
            self.assertEqual(set(got), set(want))
            for k in want:
                self.assertTrue(bool((got[k] == want[k]).all()), f"{job['metadata']['task']} {k} differs")

    # --- the coordinator killed mid-run ---------------------------------------------------------------

    def test_kill_9_of_the_coordinator_loses_nothing(self):
        c, client = self.start_coordinator("coord-kill", lease_seconds=6)
        self.start_group(c, "coord-kill")
        files = fleetlib.upload_tasks(client, os.path.join(self.dir), ["sentiment", "tagging"], n_train=400, n_dev=40)
        ids = self.submit(client, [fleetlib.job_request(files, n, self.backbone_name, seed=s, epochs=20)
                                   for s, n in enumerate(["sentiment", "tagging", "sentiment", "tagging"])])
        fleetlib.wait_for(lambda: all(client.call("GET", f"/v1/jobs/{i}").json()["progress"]["step"] >= 10 for i in ids),
                          120, "every job to be training")
        c.kill()
        time.sleep(2)  # the group goes on training; its reports wait
        c.start()
        client = coordlib.Client(c.url, c.admin_token())
        jobs = self.wait_done(client, ids)
        self.assertEqual([j["status"] for j in jobs], ["succeeded"] * 4, [j["error"] for j in jobs])
        self.assertEqual([j["attempt"] for j in jobs], [1] * 4, "no job was requeued: the group reconnected")
        for i in ids:
            self.assertIn("eval", [e["type"] for e in fleetlib.events(client, i)])

    # --- a hung rank ------------------------------------------------------------------------------------

    def test_stopped_rank_aborts_its_group_and_its_jobs_finish_elsewhere(self):
        c, client = self.start_coordinator("hang")
        hung = self.start_group(c, "hang", extra=["--checkpoint-every-steps", "5", "--collective-timeout", "5"])
        files = fleetlib.upload_tasks(client, os.path.join(self.dir), ["sentiment", "tagging"], n_train=400, n_dev=40)
        ids = self.submit(client, [fleetlib.job_request(files, n, self.backbone_name, seed=s, epochs=40)
                                   for s, n in enumerate(["sentiment", "tagging"])])
        fleetlib.wait_for(lambda: all(client.call("GET", f"/v1/jobs/{i}").json()["progress"]["step"] >= 10 for i in ids),
                          120, "both jobs to be training")
        os.kill(hung.rank_pid(1), signal.SIGSTOP)
        stopped_at = time.time()
        hung.wait(timeout=60)  # the collective times out after 5 s and the group aborts
        self.assertLess(time.time() - stopped_at, 30)
        self.assertNotEqual(hung.proc.returncode, 0)
        self.assertIn("did not finish within", hung.log_text())
        self.start_group(c, "hang-rescue")
        jobs = self.wait_done(client, ids)
        self.assertEqual([j["status"] for j in jobs], ["succeeded"] * 2, [j["error"] for j in jobs])
        self.assertTrue(all(j["attempt"] == 2 for j in jobs))

    # --- cancel and poison ------------------------------------------------------------------------------

    def test_cancel_and_poisoned_job_end_alone(self):
        c, client = self.start_coordinator("poison")
        self.start_group(c, "poison")
        files = fleetlib.upload_tasks(client, os.path.join(self.dir), ["sentiment", "tagging"], n_train=400, n_dev=40)
        poison_path = os.path.join(self.dir, "poison.jsonl")
        with open(poison_path, "w") as f:
            for i in range(64):
                f.write('{"sentence": "the movie was good", "score": %s}\n' % ("3e38" if i % 2 else "-3e38"))
        poison_file = client.upload(poison_path).json()["id"]
        healthy = [fleetlib.job_request(files, "sentiment", self.backbone_name, seed=1),
                   fleetlib.job_request(files, "tagging", self.backbone_name, seed=2)]
        doomed = fleetlib.job_request(files, "sentiment", self.backbone_name, seed=3, epochs=100)
        poisoned = {"backbone": self.backbone_name, "train_file": poison_file,
                    "task": {"type": "regression", "text_fields": ["sentence"], "label_field": "score"}}
        ids = self.submit(client, healthy + [doomed, poisoned])
        fleetlib.wait_for(lambda: client.call("GET", f"/v1/jobs/{ids[2]}").json()["progress"]["step"] >= 5, 120,
                          "the job to cancel to be training")
        self.assertEqual(client.call("POST", f"/v1/jobs/{ids[2]}/cancel").json()["status"], "cancelled")
        jobs = self.wait_done(client, ids)
        self.assertEqual([j["status"] for j in jobs], ["succeeded", "succeeded", "cancelled", "failed"])
        self.assertIn("non-finite", jobs[3]["error"]["message"])
        # The cancelled job stopped training: its progress stays below its 100 epochs.
        self.assertLess(jobs[2]["progress"]["step"], jobs[2]["progress"]["total_steps"])

    # --- dtypes -----------------------------------------------------------------------------------------

    def test_groups_register_their_dtype_and_jobs_requiring_one_train_there(self):
        c, client = self.start_coordinator("dtypes")
        flags, model, vendor = set(), "", ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = " ".join(line.split(":", 1)[1].split())
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
        # auto: bf16 where bf16 matmuls are measured faster — AMX-BF16, or AVX512-BF16 on AMD (on
        # Intel's AVX512-BF16 without AMX they are slower).
        fast_bf16 = {"amx_bf16", "amx_tile"} <= flags or ("avx512_bf16" in flags and vendor == "AuthenticAMD")
        auto = "bf16" if fast_bf16 else "fp32"
        other = "fp32" if auto == "bf16" else "bf16"
        # A job no live group can run says why while it waits: first no group at all, then only a
        # group of the other dtype; once a group of its dtype is there it runs (checked below).
        files = fleetlib.upload_tasks(client, self.dir, ["sentiment"], n_train=48, n_dev=16)
        [early] = self.submit(client, [fleetlib.job_request(files, "sentiment", self.backbone_name, seed=9, dtype=other)])
        reason = lambda: client.call("GET", f"/v1/jobs/{early}").json()["waiting_reason"]  # noqa: E731
        self.assertEqual(reason(), f'no live worker group serves backbone "{self.backbone_name}"')
        auto_group = self.start_group(c, "dtype-auto", dtype="auto")
        fleetlib.wait_for(lambda: len(client.call("GET", "/v1/workers").json()["data"]) == 1, 120, "one group")
        self.assertEqual(reason(), f'no live worker group of backbone "{self.backbone_name}" can run it: it requires '
                                   f'dtype {other}, the groups run {auto} (their --dtype)')
        listed = [j for j in client.call("GET", "/v1/jobs?status=queued").json()["data"] if j["id"] == early]
        self.assertEqual([j["waiting_reason"] for j in listed], [reason()])
        self.start_group(c, "dtype-other", ranks=1, dtype=other)
        workers = fleetlib.wait_for(lambda: (lambda w: w if len(w) == 2 else None)(
            client.call("GET", "/v1/workers").json()["data"]), 120, "two groups to register")
        by_dtype = {w["dtype"]: w for w in workers}
        self.assertEqual(set(by_dtype), {auto, other}, workers)
        self.assertEqual(by_dtype[auto]["ranks"], 2)
        for w in workers:
            self.assertTrue(" ".join(w["cpu"].split()).startswith(model + ";"), w["cpu"])
            self.assertEqual("avx512_bf16" in w["cpu"].split(";")[1].split(), "avx512_bf16" in flags, w["cpu"])
        self.assertIn(f"dtype {auto} (--dtype auto)", auto_group.log_text())

        requests_ = [fleetlib.job_request(files, "sentiment", self.backbone_name, seed=i, dtype=d)
                     for i, d in enumerate(["bf16", "fp32", "bf16", "fp32"])]
        ids = self.submit(client, requests_)
        jobs = self.wait_done(client, ids)
        [done] = self.wait_done(client, [early])
        self.assertEqual((done["status"], done["waiting_reason"]), ("succeeded", None), done["error"])
        for job, request in zip(jobs, requests_):
            want = request["hyperparameters"]["dtype"]
            self.assertEqual(job["status"], "succeeded", job["error"])
            self.assertEqual(job["hyperparameters"]["dtype"], want)
            ran_on = {e["data"].get("worker_group") for e in fleetlib.events(client, job["id"])
                      if e["data"].get("status") == "running"}
            self.assertEqual(ran_on, {by_dtype[want]["id"]}, f"{job['id']} requires {want}")
            path = os.path.join(self.dir, f"{job['id']}.safetensors")
            with open(path, "wb") as f:
                f.write(client.call("GET", f"/v1/jobs/{job['id']}/artifact").content)
            from safetensors import safe_open
            with safe_open(path, "pt") as f:
                self.assertEqual(f.metadata()["dtype"], want)
        # A bad requirement is refused naming the field.
        bad = fleetlib.job_request(files, "sentiment", self.backbone_name, dtype="fp16")
        r = client.call("POST", "/v1/jobs", json=bad)
        self.assertEqual(r.status_code, 422, r.text)
        self.assertEqual(r.headers["Content-Type"].split(";")[0], "application/problem+json")
        self.assertIn("hyperparameters.dtype", r.text)

    # --- SIGTERM ----------------------------------------------------------------------------------------

    def test_sigterm_checkpoints_and_hands_jobs_back(self):
        c, client = self.start_coordinator("term", lease_seconds=6)  # progress arrives with heartbeats (every 2 s)
        group = self.start_group(c, "term")
        files = fleetlib.upload_tasks(client, os.path.join(self.dir), ["tagging"], n_train=400, n_dev=40)
        ids = self.submit(client, [fleetlib.job_request(files, "tagging", self.backbone_name, seed=5, epochs=100)])
        fleetlib.wait_for(lambda: client.call("GET", f"/v1/jobs/{ids[0]}").json()["progress"]["step"] >= 8, 120, "training")
        self.assertEqual(group.terminate(), 0)
        job = client.call("GET", f"/v1/jobs/{ids[0]}").json()
        self.assertEqual(job["status"], "queued", "given back at once, not left to a lease expiry")
        checkpoints = [e["data"]["step"] for e in fleetlib.events(client, ids[0]) if e["type"] == "checkpoint"]
        self.assertGreaterEqual(checkpoints[-1], 8)
        self.assertIn("left cleanly", group.log_text())

    # --- Prometheus --------------------------------------------------------------------------------------

    def test_prometheus_scrapes_coordinator_and_groups(self):
        prometheus = os.environ.get("BITFLEET_PROMETHEUS")
        if not prometheus:
            self.skipTest("prometheus is not installed")
        c, client = self.start_coordinator("prom")
        ports = [fleetlib.free_port() for _ in range(2)]  # rank r serves on port + r
        groups = [self.start_group(c, f"prom-{i}", metrics_port=ports[i]) for i in range(2)]
        files = fleetlib.upload_tasks(client, os.path.join(self.dir), ["sentiment"], n_train=48, n_dev=16)
        self.wait_done(client, self.submit(client, [fleetlib.job_request(files, "sentiment", self.backbone_name, seed=s)
                                                    for s in range(4)]))
        config = fleetlib.prometheus_config(os.path.join(self.dir, "prometheus.yml"), {
            "bitfleet-coordinator": [f"127.0.0.1:{c.port}"],
            "bitfleet-worker": [f"127.0.0.1:{p + r}" for p in ports for r in range(2)]},
            token_files={"bitfleet-coordinator": os.path.join(c.data_dir, "metrics.token")})
        server = fleetlib.Prometheus(prometheus, config, os.path.join(self.dir, "tsdb"))
        self.addCleanup(server.stop)
        query = server.result

        steps = fleetlib.wait_for(lambda: len(query("bitfleet_worker_steps_total")) == 4 and
                                  query("bitfleet_worker_steps_total"), 60, "Prometheus to scrape all four ranks")
        self.assertEqual({s["metric"]["rank"] for s in steps}, {"0", "1"})
        succeeded = fleetlib.wait_for(lambda: query('bitfleet_jobs{status="succeeded"}'), 30, "the coordinator's series")
        self.assertEqual(float(succeeded[0]["value"][1]), 4.0)
        up = query("up")
        self.assertEqual(len(up), 5)
        self.assertTrue(all(u["value"][1] == "1" for u in up))
        for g in groups:
            self.assertTrue(g.alive())


if __name__ == "__main__":
    unittest.main(verbosity=2)
