"""Sweeps end to end on loopback: a coordinator and a 1-rank worker group of 3 slots on a random
tiny backbone.

- a grid sweep over learning rates {1e-6, 2e-2} picks 2e-2; its variants are ordinary jobs; the
  sweep's artifact is its best variant's; an Idempotency-Key replay creates nothing new;
- successive halving stops the losers at the first rung (cancelled, with the reason) and the
  queued variants take their slots at once, each judged at the rung against its threshold;
- cancelling a sweep cancels its unfinished variants;
- a successive-halving sweep survives kill -9 of its group and of the coordinator;
- bad sweeps get problem+json naming the field.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import taskgen  # noqa: E402
import trainlib  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")


class SweepTest(trainlib.BackboneTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Short leases: groups heartbeat every second, so a stopped variant leaves its slot at once.
        cls.coordinator = coordlib.Coordinator(os.path.join(cls.dir, "coordinator"), lease_seconds=3,
                                               extra=["--max-sweep-variants", "8"]).start()
        cls.client = coordlib.Client(cls.coordinator.url, cls.coordinator.admin_token())
        cls.group = fleetlib.WorkerGroup(cls.coordinator, cls.backbone, cls.dir, "group", ranks=1, slots=3).start()
        # Tagging: the task the tiny random backbone learns within an epoch at 2e-2 (and not at 1e-6).
        train, dev, cls.task = taskgen.write_task(cls.dir, "tagging", 64, 48, seed=4)
        cls.train = cls.client.upload(train).json()["id"]
        cls.dev = cls.client.upload(dev).json()["id"]

    @classmethod
    def tearDownClass(cls):
        cls.group.stop()
        cls.coordinator.stop()
        super().tearDownClass()

    def sweep(self, grid, **extra):
        base = {"backbone": os.path.basename(self.backbone), "train_file": self.train, "validation_file": self.dev,
                "task": self.task,
                "hyperparameters": {"epochs": 3, "batch_size": 8, "warmup_ratio": 0, "max_seq_len": 64}}
        return dict({"base": base, "grid": grid}, **extra)

    def create(self, body, **kw):
        r = self.client.call("POST", "/v1/sweeps", json=body, **kw)
        self.assertEqual(r.status_code, 201, r.text)
        return r.json()

    def wait_sweep(self, sweep_id, timeout=300):
        def done():
            s = self.client.call("GET", f"/v1/sweeps/{sweep_id}").json()
            return s if all(v["status"] in FINAL for v in s["variants"]) else None
        return fleetlib.wait_for(done, timeout, f"sweep {sweep_id} to finish")

    def test_a_grid_sweep_picks_the_learning_rate_that_learns(self):
        body = self.sweep({"learning_rate": [1e-6, 2e-2]}, objective={"metric": "accuracy"})
        created = self.create(body, headers={"Idempotency-Key": "sweep-grid-1"})
        self.assertEqual(len(created["variants"]), 2)
        self.assertEqual([v["hyperparameters"] for v in created["variants"]],
                         [{"learning_rate": 1e-6}, {"learning_rate": 2e-2}])
        # A replay under the same key answers the same sweep and creates no job.
        jobs_before = len(self.client.call("GET", "/v1/jobs", params={"limit": 100}).json()["data"])
        replay = self.client.call("POST", "/v1/sweeps", json=body, headers={"Idempotency-Key": "sweep-grid-1"})
        self.assertEqual(replay.status_code, 201, replay.text)
        self.assertEqual(replay.json()["id"], created["id"])
        self.assertEqual(len(self.client.call("GET", "/v1/jobs", params={"limit": 100}).json()["data"]), jobs_before)

        sweep = self.wait_sweep(created["id"])
        self.assertEqual(sweep["status"], "succeeded")
        self.assertEqual([v["status"] for v in sweep["variants"]], ["succeeded", "succeeded"])
        self.assertEqual(sweep["best"]["hyperparameters"], {"learning_rate": 2e-2})
        slow, fast = (self.client.call("GET", f"/v1/jobs/{v['job']}").json() for v in sweep["variants"])
        self.assertGreater(fast["metrics"]["accuracy"], slow["metrics"]["accuracy"])
        self.assertEqual(sweep["best"]["job"], fast["id"])
        self.assertEqual(fast["hyperparameters"]["metric_for_best"], "accuracy")
        # Each variant is an ordinary job with its evaluations; the sweep's artifact is the best's.
        self.assertGreater(len(fast["evaluations"]), 0)
        best_bytes = self.client.call("GET", f"/v1/sweeps/{created['id']}/artifact").content
        self.assertEqual(best_bytes, self.client.call("GET", f"/v1/jobs/{fast['id']}/artifact").content)
        listed = [s["id"] for s in self.client.call("GET", "/v1/sweeps").json()["data"]]
        self.assertIn(created["id"], listed)

    def test_successive_halving_stops_the_losers_at_the_first_rung_and_refills_their_slots(self):
        # Six variants on three slots: three run, three wait in the queue.
        body = self.sweep({"learning_rate": [2e-2, 1e-6, 1e-5], "seed": [1, 2]},
                          strategy="successive_halving", eta=3)
        body["base"]["hyperparameters"].update(eval_every_steps=2, epochs=20)  # the winner trains long
        created = self.create(body)
        sweep = self.wait_sweep(created["id"])
        variants = {v["job"]: v for v in sweep["variants"]}
        jobs = {i: self.client.call("GET", f"/v1/jobs/{i}").json() for i in variants}
        first = sweep["rungs"][0]
        self.assertEqual(first["rung"], 1)
        contenders = first["kept"] + first["stopped"]
        # The first rung was decided among the variants that had started (the slots' three) ...
        self.assertEqual(len(contenders), 6, first)  # ... and every later one judged against it
        accuracy = {i: jobs[i]["evaluations"][0]["metrics"]["accuracy"] for i in contenders}
        for kept in first["kept"]:
            self.assertGreaterEqual(accuracy[kept], first["threshold"])
        for stopped in first["stopped"]:
            self.assertLess(accuracy[stopped], first["threshold"])
            self.assertEqual(jobs[stopped]["status"], "cancelled")
            self.assertIn("successive halving at rung 1", jobs[stopped]["error"]["message"])
            self.assertEqual(len(jobs[stopped]["evaluations"]), 1, "stopped at its first evaluation")
        self.assertGreaterEqual(len(first["stopped"]), 2)
        # The queued variants took the slots the losers left, while the winner still trained.
        order = [jobs[v["job"]] for v in sweep["variants"]]  # leased in creation order
        early, late = order[:3], order[3:]
        winner = jobs[sweep["best"]["job"]]
        self.assertIn(winner["id"], first["kept"])
        self.assertIn(winner["id"], [j["id"] for j in early])
        first_stop = min(j["finished_at"] for j in early if j["status"] == "cancelled")
        for j in late:
            self.assertGreaterEqual(j["started_at"], first_stop)
            self.assertLessEqual(j["started_at"], winner["finished_at"])
        self.assertEqual(sweep["status"], "succeeded")

    def test_cancelling_a_sweep_cancels_its_unfinished_variants(self):
        created = self.create(self.sweep({"seed": [1, 2, 3, 4, 5, 6]}))
        r = self.client.call("POST", f"/v1/sweeps/{created['id']}/cancel")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["status"], "cancelled")
        sweep = self.wait_sweep(created["id"])
        self.assertEqual(sweep["status"], "cancelled")
        self.assertTrue(all(v["status"] in ("cancelled", "succeeded") for v in sweep["variants"]))
        self.assertIn("cancelled", [v["status"] for v in sweep["variants"]])

    def test_bad_sweeps_name_the_field(self):
        cases = [
            (self.sweep({}), "grid"),
            (self.sweep({"dropout": [0.1]}), "grid.dropout"),
            (self.sweep({"learning_rate": [1e-3, 7]}), "grid.learning_rate[1]"),
            (self.sweep({"seed": [1, 2, 3], "epochs": [1, 2, 3]}), "grid"),  # 9 > --max-sweep-variants 8
            (self.sweep({"seed": [1]}, objective={"metric": "pearson"}), "objective.metric"),
            (self.sweep({"seed": [1]}, strategy="hyperband"), "strategy"),
            (dict(self.sweep({"seed": [1]}), base=dict(self.sweep({})["base"], train_file="file-" + "0" * 24)),
             "base.train_file"),
        ]
        for body, field in cases:
            r = self.client.call("POST", "/v1/sweeps", json=body)
            self.assertIn(r.status_code, (400, 404, 422), r.text)
            self.assertEqual(r.headers["Content-Type"], "application/problem+json")
            self.assertEqual(r.json().get("field"), field, r.text)
        self.assertEqual(self.client.call("GET", "/v1/sweeps/sweep-" + "0" * 24).status_code, 404)


class SweepDurabilityTest(trainlib.BackboneTestCase):
    """A successive-halving sweep survives kill -9 of its worker group and of the coordinator: the
    variants resume from their checkpoints on a new group, the rungs already decided stand, and the
    sweep ends with its best."""

    def test_a_sweep_survives_kill_9_of_its_group_and_of_the_coordinator(self):
        c = coordlib.Coordinator(os.path.join(self.dir, "coordinator"), lease_seconds=3).start()
        self.addCleanup(c.stop)
        client = coordlib.Client(c.url, c.admin_token())
        extra = ["--checkpoint-every-steps", "4"]
        group = fleetlib.WorkerGroup(c, self.backbone, self.dir, "first", ranks=1, slots=4, extra=extra).start()
        self.addCleanup(group.stop)
        train, dev, task = taskgen.write_task(self.dir, "tagging", 64, 48, seed=5)
        base = {"backbone": os.path.basename(self.backbone), "train_file": client.upload(train).json()["id"],
                "validation_file": client.upload(dev).json()["id"], "task": task,
                "hyperparameters": {"epochs": 30, "batch_size": 8, "warmup_ratio": 0, "max_seq_len": 64,
                                    "eval_every_steps": 4}}
        body = {"base": base, "grid": {"learning_rate": [2e-2, 1e-6], "seed": [1, 2]},
                "strategy": "successive_halving", "eta": 2}
        r = client.call("POST", "/v1/sweeps", json=body)
        self.assertEqual(r.status_code, 201, r.text)
        sweep_id = r.json()["id"]

        def sweep():
            return client.call("GET", f"/v1/sweeps/{sweep_id}").json()

        fleetlib.wait_for(lambda: sweep()["rungs"], 120, "the first rung to be decided")
        fleetlib.wait_for(lambda: any(client.call("GET", f"/v1/jobs/{v['job']}").json()["progress"]["step"] >= 12
                                      for v in sweep()["variants"] if v["status"] == "running"),
                          120, "a kept variant to train past a checkpoint")
        group.kill()
        c.kill()
        time.sleep(1)
        c.start()
        client = coordlib.Client(c.url, c.admin_token())
        second = fleetlib.WorkerGroup(c, self.backbone, self.dir, "second", ranks=1, slots=4, extra=extra).start()
        self.addCleanup(second.stop)
        done = fleetlib.wait_for(lambda: (lambda s: s if all(v["status"] in FINAL for v in s["variants"]) else None)(sweep()),
                                 300, "the sweep to finish")
        self.assertEqual(done["status"], "succeeded")
        self.assertIsNotNone(done["best"])
        self.assertEqual(done["rungs"][0]["rung"], 1, "the decided rung stood")
        best = client.call("GET", f"/v1/jobs/{done['best']['job']}").json()
        self.assertEqual(best["status"], "succeeded")
        self.assertGreater(best["attempt"], 1, "the best variant resumed after the kill")
        self.assertEqual(best["progress"]["step"], 30 * 8)
        for v in done["variants"]:
            self.assertIn(v["status"], ("succeeded", "cancelled"), v)


if __name__ == "__main__":
    unittest.main()
