"""The trainer's promises, checked on a random backbone with generated tasks (CPU, fp32 unless said):

- tasks trained together end where each trained alone ends, bit for bit on CPU (one segment per
  pass), at 1 and at 2 intra-op threads, also at MiniLM's widths where MKL's GEMMs take threads,
  in fp32 and in bf16 (`--dtype bf16`: oneDNN's bf16 GEMMs, on whatever CPU this runs);
- a run stopped at step N and resumed from its checkpoints ends bit for bit where a straight run
  ends, in fp32 and in bf16;
- a task entering a free slot mid-run leaves the others' trajectories unchanged;
- a poisoned task (its loss overflows) fails alone, with the reason, while the others finish;
- a job learns (its validation metric beats chance clearly).
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import trainlib  # noqa: E402

import torch  # noqa: E402


def assert_tensors_equal(test, a, b, tolerance=0.0, what=""):
    test.assertEqual(set(a), set(b), what)
    for name in a:
        diff = float((a[name] - b[name]).abs().max()) if a[name].numel() else 0.0
        test.assertLessEqual(diff, tolerance, f"{what}: {name} differs by {diff:.3e}")


class TrainerTest(trainlib.BackboneTestCase):
    def four_jobs(self, **hyper):
        return [trainlib.job(self.dir, "sentiment", "sentiment", seed=1, **hyper),
                trainlib.job(self.dir, "pairs", "pairs", seed=2, **hyper),
                trainlib.job(self.dir, "scores", "scores", seed=3, **hyper),
                trainlib.job(self.dir, "tagging", "tagging", seed=4, **hyper)]

    def test_together_equals_alone(self):
        jobs = self.four_jobs(max_steps=30, epochs=10)
        together, metrics = trainlib.run(self.dir, self.backbone, jobs, "together", slots=4)
        for j in jobs:
            self.assertEqual(metrics["jobs"][j["name"]]["steps"], 30)
            alone, _ = trainlib.run(self.dir, self.backbone, [j], f"alone-{j['name']}", slots=1)
            a, _ = trainlib.artifact(together, j["name"])
            b, _ = trainlib.artifact(alone, j["name"])
            assert_tensors_equal(self, a, b, tolerance=0.0, what=j["name"])

    def test_neighbours_never_change_a_job_at_minilm_widths_at_1_and_2_threads(self):
        # MiniLM's widths (384 hidden, 1536 intermediate): GEMMs big enough that MKL splits them over
        # threads, which is where a packed batch made a task's rows depend on the row count on Intel
        # Xeons (issue 13). One segment per pass makes the result independent of them on any CPU.
        wide = os.path.join(self.dir, "wide")
        os.makedirs(wide, exist_ok=True)
        backbone = trainlib.random_backbone(wide, layers=1, hidden=384, heads=6, intermediate=1536)
        jobs = [trainlib.job(wide, "sentiment", "sentiment", seed=1, max_steps=4, batch_size=16),
                trainlib.job(wide, "pairs", "pairs", seed=2, max_steps=4, batch_size=8),
                trainlib.job(wide, "tagging", "tagging", seed=3, max_steps=4, batch_size=24),
                trainlib.job(wide, "topic", "topic", seed=4, max_steps=4, batch_size=5)]
        for dtype, threads in [("fp32", "1"), ("fp32", "2"), ("bf16", "1"), ("bf16", "2")]:
            run = f"{dtype}-t{threads}"
            together, _ = trainlib.run(wide, backbone, jobs, f"together-{run}", slots=4, dtype=dtype,
                                       extra=["--threads", threads])
            alone, _ = trainlib.run(wide, backbone, jobs[:1], f"alone-{run}", slots=1, dtype=dtype,
                                    extra=["--threads", threads])
            a, meta = trainlib.artifact(together, "sentiment")
            b, _ = trainlib.artifact(alone, "sentiment")
            self.assertEqual(meta["dtype"], dtype)
            assert_tensors_equal(self, a, b, tolerance=0.0, what=f"sentiment in {dtype} at {threads} threads")

    def test_resume_continues_bit_for_bit(self):
        jobs = self.four_jobs(epochs=2)  # 200 examples / 8 = 25 steps per epoch, 50 in all
        for dtype in ("fp32", "bf16"):
            straight, _ = trainlib.run(self.dir, self.backbone, jobs, f"straight-{dtype}", dtype=dtype)
            stopped, metrics = trainlib.run(self.dir, self.backbone, jobs, f"resumed-{dtype}", dtype=dtype,
                                            extra=["--stop-after-steps", "25"])
            self.assertTrue(metrics["stopped"])
            self.assertTrue(all(j["status"] == "stopped" for j in metrics["jobs"].values()))
            resumed, metrics = trainlib.run(self.dir, self.backbone, jobs, f"resumed-{dtype}", dtype=dtype,
                                            extra=["--resume"])
            for j in jobs:
                self.assertEqual(metrics["jobs"][j["name"]]["status"], "succeeded")
                a, meta_a = trainlib.artifact(straight, j["name"])
                b, meta_b = trainlib.artifact(resumed, j["name"])
                assert_tensors_equal(self, a, b, tolerance=0.0, what=f"{j['name']} in {dtype}")
                self.assertEqual(meta_a["metrics"], meta_b["metrics"])

    def test_task_entering_mid_run_does_not_change_the_others(self):
        base = self.four_jobs(epochs=2)[:2]
        alone, _ = trainlib.run(self.dir, self.backbone, base, "without-late", slots=3)
        late = trainlib.job(self.dir, "late", "topic", seed=9)
        late["start_after_step"] = 10
        joined, metrics = trainlib.run(self.dir, self.backbone, base + [late], "with-late", slots=3)
        self.assertEqual(metrics["jobs"]["late"]["status"], "succeeded")
        for j in base:
            a, _ = trainlib.artifact(alone, j["name"])
            b, _ = trainlib.artifact(joined, j["name"])
            assert_tensors_equal(self, a, b, tolerance=0.0, what=j["name"])

    def test_poisoned_task_fails_alone(self):
        healthy = self.four_jobs(epochs=1)[:2]
        poisoned = trainlib.job(self.dir, "poisoned", "scores", seed=7, epochs=1)
        # Targets near float's limit: finite in the file, but their squared error overflows.
        path = os.path.join(self.dir, "poisoned.jsonl")
        with open(path, "w") as f:
            for i in range(64):
                f.write('{"sentence": "the movie was good", "score": %s}\n' % ("3e38" if i % 2 else "-3e38"))
        poisoned["train_file"] = path
        out, metrics = trainlib.run(self.dir, self.backbone, healthy + [poisoned], "poisoned")
        self.assertEqual(metrics["jobs"]["poisoned"]["status"], "failed")
        self.assertIn("non-finite", metrics["jobs"]["poisoned"]["reason"])
        self.assertFalse(os.path.exists(os.path.join(out, "poisoned.safetensors")))
        clean, _ = trainlib.run(self.dir, self.backbone, healthy, "clean")
        for j in healthy:
            self.assertEqual(metrics["jobs"][j["name"]]["status"], "succeeded")
            a, _ = trainlib.artifact(out, j["name"])
            b, _ = trainlib.artifact(clean, j["name"])
            assert_tensors_equal(self, a, b, tolerance=0.0, what=j["name"])

    def test_a_job_learns(self):
        job = trainlib.job(self.dir, "tagging", "tagging", n_train=400, n_dev=100, seed=3, epochs=3,
                           learning_rate=5e-3)
        _, metrics = trainlib.run(self.dir, self.backbone, [job], "learns", slots=1)
        # Five tags, the most frequent about a third of the words: chance is far below this.
        result = metrics["jobs"]["tagging"]
        self.assertGreater(result["eval"]["accuracy"], 0.7)
        # metrics.json records each evaluation with the best so far, as the coordinator's events do.
        evaluations = result["evaluations"]
        self.assertEqual([e["epoch"] for e in evaluations], [1, 2, 3])
        for i, e in enumerate(evaluations):
            accuracy = [x["metrics"]["accuracy"] for x in evaluations[:i + 1]]
            best = evaluations[accuracy.index(max(accuracy))]
            self.assertEqual(e["best"], {k: best[k] for k in ("step", "epoch", "metrics")}, f"evaluation {i}")
        self.assertEqual(result["best"], evaluations[-1]["best"])
        self.assertEqual(metrics["steps"], result["steps"], "a job alone: the group's steps are its steps")

    def test_bad_dataset_is_refused_naming_file_line_and_field(self):
        job = trainlib.job(self.dir, "bad", "sentiment", seed=1)
        with open(job["train_file"], "a") as f:
            f.write("the movie was good\tmaybe\n")
        proc = lib.run([lib.binary("bitfleet-train"), "run", "--spec", self.write_spec([job]), "--out",
                        os.path.join(self.dir, "bad-out")], check=False)
        self.assertEqual(proc.returncode, 2, "a mistake in the data")
        self.assertIn('job bad: ', proc.stderr)
        self.assertIn('sentiment-train.tsv:202: field "label": "maybe" is not one of', proc.stderr)

    def test_spec_mistakes_are_refused_naming_the_field_and_nothing_is_written_outside_out(self):
        job = trainlib.job(self.dir, "named", "sentiment", seed=2)
        for field, value in (("name", "../escaped"), ("name", "a/b"), ("name", ".hidden"), ("name", ""),
                             ("start_after_step", -1)):
            entry = dict(job, **{field: value})
            out = os.path.join(self.dir, "mistake-out")
            proc = lib.run([lib.binary("bitfleet-train"), "run", "--spec", self.write_spec([entry]), "--out", out],
                           check=False)
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertIn(f"jobs[0].{field}: must be", proc.stderr)
            self.assertFalse(os.path.exists(out))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "escaped.safetensors")))

    def test_a_local_job_need_not_name_a_backbone(self):
        job = trainlib.job(self.dir, "nameless", "sentiment", seed=4, epochs=1, max_steps=2)
        del job["backbone"]
        out, metrics = trainlib.run(self.dir, self.backbone, [job], "no-backbone", slots=1)
        self.assertEqual(metrics["jobs"]["nameless"]["status"], "succeeded")
        self.assertEqual(metrics["steps"], 2)
        _, metadata = trainlib.artifact(out, "nameless")
        self.assertEqual(metadata["backbone"], os.path.basename(self.backbone), "the spec's backbone directory")
        self.assertFalse(os.path.exists(os.path.join(out, "checkpoints")), "no checkpoints were asked for")

    def write_spec(self, jobs):
        import json
        path = os.path.join(self.dir, "adhoc.spec.json")
        with open(path, "w") as f:
            json.dump({"backbone": self.backbone, "slots": 2, "jobs": jobs}, f)
        return path


class DataParallelTest(unittest.TestCase):
    """mpirun -np 2 equals -np 1 with the same global batch (label mpi)."""

    def test_two_ranks_equal_one(self):
        if os.environ.get("BITFLEET_TEST_MPI") != "1":
            self.skipTest("run under the mpi label")
        with lib.TempDir() as tmp:
            backbone = trainlib.random_backbone(tmp)
            jobs = [trainlib.job(tmp, "sentiment", "sentiment", seed=1, max_steps=20, epochs=5),
                    trainlib.job(tmp, "tagging", "tagging", seed=2, max_steps=20, epochs=5, batch_size=7),
                    trainlib.job(tmp, "scores", "scores", seed=3, max_steps=20, epochs=5)]
            one, m1 = trainlib.run(tmp, backbone, jobs, "np1", mpi_ranks=1)
            two, m2 = trainlib.run(tmp, backbone, jobs, "np2", mpi_ranks=2)
            self.assertEqual(m2["ranks"], 2)
            for j in jobs:
                a, _ = trainlib.artifact(one, j["name"])
                b, _ = trainlib.artifact(two, j["name"])
                assert_tensors_equal(self, a, b, tolerance=1e-5, what=j["name"])
                self.assertAlmostEqual(m1["jobs"][j["name"]]["train_loss"], m2["jobs"][j["name"]]["train_loss"], places=4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
