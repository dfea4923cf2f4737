"""Evaluation during training, the best checkpoint and early stopping, end to end on loopback: a
coordinator and a 2-rank worker group (evaluation is a collective over the ranks) on a random tiny
backbone.

The validation file is the training file with every label flipped, so the better a job fits its
training data the worse it does on validation: its best evaluation comes early and its last is
worse — the case where choosing the best checkpoint matters.

- the job object records every evaluation (its step, epoch and metrics), the best one, the final
  one and the test file's metrics; each evaluation is also an event;
- early stopping ends the job `early_stopping_patience` evaluations after its best;
- the artifact holds the best evaluation's parameters: loaded into transformers it reproduces the
  best's validation metrics (not the last's) and the reported test metrics; its metadata names the
  best step;
- bad evaluation settings get problem+json naming the field.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import taskgen  # noqa: E402
import trainlib  # noqa: E402

FLIP = {"pos": "neg", "neg": "pos"}


class EvaluationTest(trainlib.BackboneTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.coordinator = coordlib.Coordinator(os.path.join(cls.dir, "coordinator")).start()
        cls.client = coordlib.Client(cls.coordinator.url, cls.coordinator.admin_token())
        cls.group = fleetlib.WorkerGroup(cls.coordinator, cls.backbone, cls.dir, "group").start()
        train, test, cls.task = taskgen.write_task(cls.dir, "sentiment", 48, 32, seed=3)
        cls.flipped = os.path.join(cls.dir, "sentiment-flipped.tsv")
        rows = [dict(r, label=FLIP[r["label"]]) for r in _read_tsv(train)]
        taskgen.write_rows(cls.flipped, rows, "tsv")
        cls.paths = {"train": train, "validation": cls.flipped, "test": test}
        cls.files = {k: cls.client.upload(p).json()["id"] for k, p in cls.paths.items()}

    @classmethod
    def tearDownClass(cls):
        cls.group.stop()
        cls.coordinator.stop()
        super().tearDownClass()

    def request(self, **hyper):
        h = {"epochs": 6, "batch_size": 8, "learning_rate": 2e-2, "warmup_ratio": 0, "max_seq_len": 64,
             "eval_every_steps": 2}
        h.update(hyper)
        return {"backbone": os.path.basename(self.backbone), "train_file": self.files["train"],
                "validation_file": self.files["validation"], "test_file": self.files["test"],
                "task": self.task, "hyperparameters": h}

    def run_job(self, request):
        r = self.client.call("POST", "/v1/jobs", json=request)
        self.assertEqual(r.status_code, 201, r.text)
        job_id = r.json()["id"]
        (job,) = fleetlib.wait_for(lambda: fleetlib.jobs_done(self.client, [job_id]), 300, "the job to finish")
        self.assertEqual(job["status"], "succeeded", job["error"])
        return job

    def evaluate_artifact(self, job_id):
        import hf_bitfit
        from safetensors import safe_open
        from safetensors.torch import load_file
        path = os.path.join(self.dir, f"{job_id}.safetensors")
        with open(path, "wb") as f:
            f.write(self.client.call("GET", f"/v1/jobs/{job_id}/artifact").content)
        with safe_open(path, "pt") as f:
            metadata = f.metadata()
        tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(self.backbone)
        model = hf_bitfit.load_model(self.backbone, self.task, "cpu")
        _, unexpected = model.load_state_dict(load_file(path), strict=False)
        self.assertEqual(unexpected, [])
        scores = {}
        for split in ("validation", "test"):
            rows = hf_bitfit.encode(hf_bitfit.read_rows(self.paths[split]), self.task, tokenizer, 64)
            scores[split] = hf_bitfit.evaluate(model, tokenizer, self.task, rows)
        return metadata, scores

    def test_the_best_evaluation_is_the_result_and_early_stopping_ends_the_job(self):
        job = self.run_job(self.request(early_stopping_patience=3))
        evals = job["evaluations"]
        steps = [e["step"] for e in evals]
        self.assertEqual(steps, list(range(2, 2 * len(evals) + 1, 2)), "every 2 steps, in order")
        accuracy = [e["metrics"]["accuracy"] for e in evals]
        best = accuracy.index(max(accuracy))  # the earliest of the highest
        self.assertEqual(job["best"]["step"], steps[best])
        self.assertEqual(job["best"]["metrics"], evals[best]["metrics"])
        self.assertEqual(job["metrics"], evals[best]["metrics"], "the job's metrics are its result's")
        self.assertEqual(job["final_metrics"], evals[-1]["metrics"])
        self.assertLess(accuracy[-1], accuracy[best], "flipped labels: the last evaluation is worse")
        # Early stopping: three evaluations without improvement after the best, then the end.
        self.assertTrue(job["stopped_early"])
        self.assertEqual(len(evals) - 1 - best, 3)
        self.assertLess(job["progress"]["step"], 6 * 6)
        self.assertEqual(job["progress"]["step"], steps[-1])
        # Each evaluation is an event too.
        events = [e["data"] for e in fleetlib.events(self.client, job["id"]) if e["type"] == "evaluation"]
        self.assertEqual([e["step"] for e in events], steps)
        # The artifact is the best evaluation's parameters: transformers reproduces the best's
        # validation accuracy, not the last one's, and the reported test metrics.
        metadata, scores = self.evaluate_artifact(job["id"])
        self.assertEqual(int(metadata["best_step"]), job["best"]["step"])
        self.assertEqual(json.loads(metadata["metrics"]), job["metrics"])
        self.assertEqual(json.loads(metadata["final_metrics"]), job["final_metrics"])
        one_flip = 1.0 / 48 + 1e-9  # at most one near-tie may flip
        self.assertAlmostEqual(scores["validation"]["accuracy"], job["best"]["metrics"]["accuracy"], delta=one_flip)
        self.assertAlmostEqual(scores["test"]["accuracy"], job["test_metrics"]["accuracy"], delta=1.0 / 32 + 1e-9)

    def test_without_early_stopping_the_job_runs_to_its_last_step_and_still_keeps_its_best(self):
        job = self.run_job(self.request(epochs=3, eval_every_steps=0, metric_for_best="f1"))
        # Once per epoch (6 steps each), the last at the last step.
        self.assertEqual([e["step"] for e in job["evaluations"]], [6, 12, 18])
        self.assertEqual([e["epoch"] for e in job["evaluations"]], [1, 2, 3])
        self.assertFalse(job["stopped_early"])
        self.assertEqual(job["progress"]["step"], 18)
        f1 = [e["metrics"]["f1"] for e in job["evaluations"]]
        self.assertEqual(job["best"]["step"], 6 * (f1.index(max(f1)) + 1))
        self.assertEqual(job["hyperparameters"]["metric_for_best"], "f1")

    def test_bad_evaluation_settings_name_the_field(self):
        cases = [
            ({"metric_for_best": "pearson"}, {}, "hyperparameters.metric_for_best"),
            ({"metric_for_best": "loss"}, {}, "hyperparameters.metric_for_best"),
            ({"early_stopping_patience": 2}, {"validation_file": None}, "hyperparameters.early_stopping_patience"),
            ({"eval_every_steps": -1}, {}, "hyperparameters.eval_every_steps"),
            ({}, {"test_file": "file-" + "0" * 24}, "test_file"),
            ({}, {"test_file": "not-a-file"}, "test_file"),
        ]
        for hyper, top, field in cases:
            request = self.request(**hyper)
            request.update(top)
            r = self.client.call("POST", "/v1/jobs", json=request)
            self.assertIn(r.status_code, (404, 422), r.text)
            self.assertEqual(r.headers["Content-Type"], "application/problem+json")
            self.assertEqual(r.json().get("field"), field, r.text)


def _read_tsv(path):
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]


if __name__ == "__main__":
    unittest.main()
