"""The `bitfleet` CLI against a live coordinator on loopback (and one worker group on a random
tiny backbone, for the commands that need jobs to run).

- a 200-task manifest creates 200 jobs with each row's overrides and uploads each distinct file
  once (twice the same content under two names included); submitting it again uploads nothing;
- bad manifests name the line, row and column, and leave nothing on the coordinator;
- `watch` in a pseudo-terminal redraws progress bars; piped, it prints plain lines; both end with
  the summary table and exit 0 only when every job succeeded;
- a queued job that no live group can run shows why in `jobs` and `watch`, until a group joins;
- JOB.json with local paths, `download` checked against the artifact, `events`, `cancel`,
  `workers`, `--json`, and the exit codes with the server's problem title and detail.
"""
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import taskgen  # noqa: E402
import trainlib  # noqa: E402

from safetensors.numpy import load_file  # noqa: E402

TASKS = ["sentiment", "pairs", "scores", "tagging", "topic"]


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = lib.TempDir()
        cls.dir = cls.tmp.__enter__()
        cls.data = os.path.join(cls.dir, "tasks")
        os.makedirs(cls.data)
        cls.specs = {}
        for name in TASKS:
            train, dev, spec = taskgen.write_task(cls.data, name, 60, 20, seed=3)
            cls.specs[name] = (os.path.basename(train), os.path.basename(dev), spec)
        os.makedirs(os.path.join(cls.data, "long"))
        train, dev, spec = taskgen.write_task(os.path.join(cls.data, "long"), "topic", 3000, 20, seed=3)
        cls.specs["long"] = (os.path.relpath(train, cls.data), os.path.relpath(dev, cls.data), spec)
        cls.backbone = trainlib.random_backbone(cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.__exit__(None, None, None)

    def setUp(self):
        self.coordinator = coordlib.Coordinator(os.path.join(self.dir, f"coord-{self._testMethodName}"),
                                                lease_seconds=3).start()
        self.addCleanup(self.coordinator.stop)
        self.client = coordlib.Client(self.coordinator.url, self.coordinator.admin_token())
        self.env = {"BITFLEET_URL": self.coordinator.url,
                    "BITFLEET_TOKEN_FILE": os.path.join(self.coordinator.data_dir, "admin.token")}

    def cli(self, *args, check=True, cwd=None):
        merged = dict(os.environ, **self.env)
        proc = subprocess.run([lib.binary("bitfleet"), *args], capture_output=True, text=True, env=merged,
                              cwd=cwd or self.data, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"bitfleet {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start_group(self):
        group = fleetlib.WorkerGroup(self.coordinator, self.backbone, self.dir, self._testMethodName, ranks=1,
                                     slots=4, extra=["--backbone-name", "tiny"]).start()
        self.addCleanup(group.stop)
        return group

    def all_jobs(self):
        jobs, after = [], None
        while True:
            params = {"limit": 100, **({"after": after} if after else {})}
            page = self.client.call("GET", "/v1/jobs", params=params).json()
            jobs += page["data"]
            if not page["has_more"]:
                return jobs
            after = jobs[-1]["id"]

    def files(self):
        return self.client.call("GET", "/v1/files", params={"limit": 100}).json()["data"]

    def write_manifest(self, name, header, rows):
        path = os.path.join(self.data, name)
        with open(path, "w") as f:
            f.write(",".join(header) + "\n")
            for row in rows:
                f.write(",".join(row) + "\n")
        return path

    def task_row(self, task, name, **overrides):
        train, dev, spec = self.specs[task]
        row = {"name": name, "train_file": train, "validation_file": dev, "task_type": spec["type"],
               "text_fields": "|".join(spec["text_fields"]), "label_field": spec["label_field"],
               "labels": "|".join(spec.get("labels", [])), "learning_rate": "", "seed": "", "epochs": "1"}
        row.update({k: str(v) for k, v in overrides.items()})
        return row

    # --- manifests ---------------------------------------------------------------------------------

    def test_manifest_of_200_tasks_creates_200_jobs_and_uploads_each_file_once(self):
        # The same sentiment content under a second name is still one upload.
        shutil.copy(os.path.join(self.data, self.specs["sentiment"][0]), os.path.join(self.data, "copy-train.tsv"))
        rows = [self.task_row(TASKS[i % len(TASKS)], f"task-{i:03d}", learning_rate=f"{(i % 7 + 1) * 1e-3:g}", seed=i)
                for i in range(200)]
        rows[5]["train_file"] = "copy-train.tsv"  # row 6: sentiment again, its train file under another name
        header = list(rows[0])
        manifest = self.write_manifest("tasks.csv", header, [[r[c] for c in header] for r in rows])

        out = self.cli("submit", "--manifest", manifest, "--backbone", "tiny", "--batch-size", "64", "--json")
        created = json.loads(out.stdout)
        self.assertEqual(len(created), 200)
        self.assertEqual(len(self.all_jobs()), 200)
        for i, job in enumerate(created):
            self.assertEqual(job["metadata"]["name"], f"task-{i:03d}")
            self.assertEqual(job["hyperparameters"]["seed"], i)
            self.assertAlmostEqual(job["hyperparameters"]["learning_rate"], (i % 7 + 1) * 1e-3)
            self.assertEqual(job["task"]["type"], self.specs[TASKS[i % len(TASKS)]][2]["type"])
        # 5 tasks x (train, dev) distinct contents; copy-train.tsv is sentiment's train content.
        self.assertEqual(len(self.files()), 10)
        self.assertEqual(created[5]["train_file"], created[0]["train_file"])

        again = self.cli("submit", "--manifest", manifest, "--backbone", "tiny")
        self.assertIn("0 uploaded, 10 already on the coordinator", again.stderr)
        self.assertEqual(len([line for line in again.stdout.splitlines() if "job-" in line]), 200)
        self.assertEqual(len(self.all_jobs()), 400)
        self.assertEqual(len(self.files()), 10)

    def test_a_manifest_cell_with_bar_separated_values_makes_its_row_a_sweep(self):
        rows = [self.task_row("sentiment", "plain", learning_rate="1e-3"),
                self.task_row("tagging", "swept", learning_rate="1e-4|1e-3|3e-3", seed="1|2"),
                self.task_row("topic", "plain-too")]
        header = list(rows[0])
        manifest = self.write_manifest("sweeps.csv", header, [[r[c] for c in header] for r in rows])
        out = self.cli("submit", "--manifest", manifest, "--backbone", "tiny")
        table = [line.split() for line in out.stdout.splitlines()[1:]]
        self.assertEqual([(r[0], r[1]) for r in table], [("1", "plain"), ("2", "swept"), ("3", "plain-too")])
        self.assertTrue(table[0][2].startswith("job-") and table[2][2].startswith("job-"))
        sweep_id = table[1][2]
        self.assertTrue(sweep_id.startswith("sweep-"), out.stdout)
        self.assertIn("created 2 jobs and 1 sweeps (6 variants)", out.stderr)
        sweep = self.client.call("GET", f"/v1/sweeps/{sweep_id}").json()
        self.assertEqual(sweep["grid"], {"learning_rate": [1e-4, 1e-3, 3e-3], "seed": [1, 2]})
        self.assertEqual(sweep["base"]["metadata"]["name"], "swept")
        self.assertEqual(len(self.all_jobs()), 2 + 6)
        # A bad value among the swept ones names its row and column; nothing is created.
        bad = [self.task_row("tagging", "bad", learning_rate="1e-3|7")]
        path = self.write_manifest("bad-sweep.csv", header, [[r[c] for c in header] for r in bad])
        proc = self.cli("submit", "--manifest", path, "--backbone", "tiny", check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn('row 1, column "learning_rate"', proc.stderr)
        self.assertEqual(len(self.all_jobs()), 2 + 6)

    def test_bad_manifests_name_line_row_and_column_and_change_nothing(self):
        good = self.task_row("sentiment", "ok")
        header = list(good)
        cases = [
            ({"epochs": "two"}, "epochs", "whole number"),
            ({"learning_rate": "5"}, "learning_rate", "(0, 1]"),
            ({"validation_file": "missing.tsv"}, "validation_file", "no such file"),
            ({"label_field": "lable"}, "label_field", "\"lable\" is not in"),
            ({"text_fields": "sentence|nope"}, "text_fields", "\"nope\""),
            ({"task_type": "ranking"}, "task_type", "classification"),
            ({"labels": ""}, "labels", None),
        ]
        for overrides, column, detail in cases:
            with self.subTest(column=column):
                bad = dict(good, **overrides)
                path = self.write_manifest("bad.csv", header, [[good[c] for c in header], [bad[c] for c in header]])
                proc = self.cli("submit", "--manifest", path, "--backbone", "tiny", check=False)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn(f'bad.csv:3: row 2, column "{column}"', proc.stderr)
                if detail:
                    self.assertIn(detail, proc.stderr)
                self.assertNotIn("row 1,", proc.stderr)
        with self.subTest(column="unknown"):
            path = self.write_manifest("bad.csv", header + ["lerning_rate"], [[good[c] for c in header] + ["1e-3"]])
            proc = self.cli("submit", "--manifest", path, "--backbone", "tiny", check=False)
            self.assertEqual(proc.returncode, 2)
            self.assertIn('bad.csv:1: column "lerning_rate" is not a manifest column', proc.stderr)
        with self.subTest(column="backbone"):
            path = self.write_manifest("bad.csv", header, [[good[c] for c in header]])
            proc = self.cli("submit", "--manifest", path, check=False)
            self.assertEqual(proc.returncode, 2)
            self.assertIn('row 1, column "backbone"', proc.stderr)
        self.assertEqual(self.all_jobs(), [])
        self.assertEqual(self.files(), [])

    # --- watching jobs run -------------------------------------------------------------------------

    def submit_rows(self, rows):
        header = list(rows[0])
        path = self.write_manifest("run.csv", header, [[r[c] for c in header] for r in rows])
        return [j["id"] for j in json.loads(self.cli("submit", "--manifest", path, "--backbone", "tiny", "--json").stdout)]

    def test_watch_in_a_terminal_redraws_progress_bars(self):
        self.start_group()
        ids = self.submit_rows([self.task_row("long", f"w-{seed}", epochs=2, seed=seed) for seed in range(3)])
        pid, fd = pty.fork()
        if pid == 0:  # the child: bitfleet on the pseudo-terminal's slave side
            os.environ.update(self.env, TERM="xterm", COLUMNS="120")
            os.execv(lib.binary("bitfleet"), ["bitfleet", "watch", *ids, "--interval", "0.2"])
        output = b""
        deadline = time.time() + 240
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        _, status = os.waitpid(pid, 0)
        text = output.decode(errors="replace")
        if os.environ.get("BITFLEET_KEEP_TMP"):
            print(text)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text[-2000:])
        self.assertIn("\x1b[", text)  # redrawn in place
        self.assertRegex(text, r"w-\w+\s+\[#*\.*\]\s+\d+%  step \d+/\d+  loss \d+\.\d{4}")
        self.assertRegex(text, r"3 jobs: 3 succeeded, 0 failed, 0 cancelled, 0 running, 0 queued")
        for job_id in ids:
            self.assertRegex(text, job_id + r"\s+w-\w+\s+succeeded")

    def test_watch_piped_prints_plain_lines_and_fails_when_a_job_is_cancelled(self):
        self.start_group()
        ids = self.submit_rows([self.task_row("sentiment", "runs", epochs=2),
                                self.task_row("long", "stopped", epochs=100)])
        fleetlib.wait_for(lambda: self.client.call("GET", f"/v1/jobs/{ids[1]}").json()["status"] == "running", 60,
                          "the long job to start")
        self.assertEqual(self.cli("cancel", ids[1]).stdout.split(), [ids[1], "cancelled"])
        proc = self.cli("watch", *ids, "--interval", "0.2", check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertNotIn("\x1b", proc.stdout)
        self.assertRegex(proc.stdout, ids[0] + r" \(runs\) succeeded  accuracy \d\.\d{4}")
        self.assertRegex(proc.stdout, ids[1] + r"\s+stopped\s+cancelled")

        # Cancelling a finished job is refused: exit 3 with the server's problem title and detail.
        again = self.cli("cancel", ids[0], check=False)
        self.assertEqual(again.returncode, 3)
        self.assertRegex(again.stderr, f"bitfleet: {ids[0]}: Conflict: .*succeeded")

    def test_a_job_no_group_can_run_says_why_in_jobs_and_watch_until_a_group_joins(self):
        [job_id] = self.submit_rows([self.task_row("sentiment", "stuck")])
        why = 'no live worker group serves backbone "tiny"'
        listed = self.cli("jobs").stdout
        self.assertIn(f"queued, and no live worker group can run them:\n  {job_id}: {why}\n", listed)

        watch = subprocess.Popen([lib.binary("bitfleet"), "watch", job_id, "--interval", "0.2"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=dict(os.environ, **self.env))
        self.addCleanup(lambda: watch.poll() is None and watch.kill())
        first = watch.stdout.readline()
        self.assertRegex(first, rf"^\d\d:\d\d:\d\d {job_id} \(stuck\) queued: {why}$")
        self.start_group()  # the job can run now: the reason goes, and watch follows it to the end
        out, err = watch.communicate(timeout=240)
        self.assertEqual(watch.returncode, 0, err)
        self.assertRegex(out, rf"{job_id} \(stuck\) succeeded  accuracy \d\.\d{{4}}")
        self.assertNotIn("no live worker group", out)
        self.assertNotIn("no live worker group", self.cli("jobs").stdout)

    def tagging_job_file(self, name, hyperparameters, **extra):
        """A job file of the tagging task, its data paths relative to the file."""
        train, dev, spec = self.specs["tagging"]
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            json.dump(dict({"backbone": "tiny", "train_file": os.path.join("tasks", train),
                            "validation_file": os.path.join("tasks", dev), "task": spec,
                            "hyperparameters": hyperparameters}, **extra), f)
        return path

    def test_job_file_download_events_workers_and_json(self):
        self.start_group()
        job_file = self.tagging_job_file("job.json", {"epochs": 2, "batch_size": 8, "bias_terms": "query+intermediate"},
                                         metadata={"name": "tags"})
        proc = self.cli("submit", job_file, "--watch", "--interval", "0.2")
        job_id = proc.stdout.split()[0]
        self.assertRegex(proc.stdout, job_id + r"\s+tags\s+succeeded\s+accuracy")

        out_dir = os.path.join(self.dir, "artifacts")
        downloaded = json.loads(self.cli("--json", "download", job_id, "-o", out_dir).stdout)
        path = os.path.join(out_dir, f"{job_id}.safetensors")
        tensors = load_file(path)
        self.assertEqual(downloaded[0]["path"], path)
        self.assertEqual(downloaded[0]["trainable_parameters"], sum(t.size for t in tensors.values()))
        self.assertTrue(all(n.endswith(("query.bias", "intermediate.dense.bias")) or n.startswith("classifier")
                            for n in tensors))
        job = self.client.call("GET", f"/v1/jobs/{job_id}").json()
        self.assertEqual(downloaded[0]["metrics"], job["metrics"])

        events = json.loads(self.cli("events", job_id, "--json").stdout)
        self.assertEqual(events, fleetlib.events(self.client, job_id))
        self.assertIn("eval", self.cli("events", job_id).stdout)

        workers = json.loads(self.cli("workers", "--json").stdout)
        self.assertEqual([(w["backbone"], w["slots"], w["status"], w["dtype"]) for w in workers],
                         [("tiny", 4, "active", "fp32")])
        table = self.cli("workers").stdout.splitlines()
        self.assertEqual(table[0].split()[3:5], ["DEVICE", "DTYPE"])
        self.assertEqual(table[1].split()[3:5], ["cpu", "fp32"])
        table = self.cli("jobs", "--status", "succeeded").stdout.splitlines()
        self.assertEqual(table[0].split()[:3], ["JOB", "NAME", "STATUS"])
        self.assertEqual(table[1].split()[:3], [job_id, "tags", "succeeded"])

    def test_sweep_watch_and_download_of_its_best(self):
        self.start_group()
        job_file = self.tagging_job_file("sweep-base.json", {"epochs": 2, "batch_size": 8, "warmup_ratio": 0})
        proc = self.cli("sweep", job_file, "--grid", "learning_rate=1e-6,2e-2", "--grid", "bias_terms=all,query+intermediate",
                        "--watch", "--interval", "0.2")
        sweep_id = proc.stdout.split()[0]
        self.assertTrue(sweep_id.startswith("sweep-"), proc.stdout)
        self.assertIn("4 variants, objective accuracy", proc.stdout)
        sweep = self.client.call("GET", f"/v1/sweeps/{sweep_id}").json()
        self.assertEqual(sweep["status"], "succeeded")
        # The grid's product by key name, the last key fastest: bias_terms, then learning_rate.
        self.assertEqual([(v["hyperparameters"]["bias_terms"], v["hyperparameters"]["learning_rate"]) for v in sweep["variants"]],
                         [("all", 1e-6), ("all", 2e-2), ("query+intermediate", 1e-6), ("query+intermediate", 2e-2)])
        self.assertEqual(sweep["best"]["hyperparameters"]["learning_rate"], 2e-2)
        self.assertIn(f"best: {sweep['best']['job']}", proc.stdout)
        # watch takes the sweep's id for its variants; download fetches the best's artifact.
        watched = self.cli("watch", sweep_id, "--interval", "0.2").stdout
        for v in sweep["variants"]:
            self.assertIn(v["job"], watched)
        out_dir = os.path.join(self.dir, "sweep-artifacts")
        self.cli("download", sweep_id, "-o", out_dir)
        with open(os.path.join(out_dir, f"{sweep_id}.safetensors"), "rb") as f:
            self.assertEqual(f.read(), self.client.call("GET", f"/v1/jobs/{sweep['best']['job']}/artifact").content)
        bad = self.cli("sweep", job_file, "--grid", "learning_rate", check=False)
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn("KEY=VALUE", bad.stderr)
        unknown = self.cli("sweep", job_file, "--grid", "dropout=0.1,0.2", check=False)
        self.assertEqual(unknown.returncode, 2, unknown.stderr)
        self.assertIn("grid.dropout", unknown.stderr)

    # --- errors --------------------------------------------------------------------------------------

    def test_exit_codes_carry_the_problem_title_and_detail(self):
        bad_job = os.path.join(self.dir, "bad.json")
        train = os.path.join(self.data, self.specs["sentiment"][0])
        with open(bad_job, "w") as f:
            json.dump({"backbone": "tiny", "train_file": train, "task": self.specs["sentiment"][2],
                       "hyperparameters": {"epochs": 0}}, f)
        proc = self.cli("submit", bad_job, check=False)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("hyperparameters.epochs", proc.stderr)
        self.assertIn("Invalid request", proc.stderr)

        missing = self.cli("download", "job-000000000000000000000000", "-o", self.dir, check=False)
        self.assertEqual(missing.returncode, 3)
        self.assertIn("Not found: no job job-000000000000000000000000", missing.stderr)

        self.env["BITFLEET_TOKEN_FILE"] = ""
        self.env["BITFLEET_TOKEN"] = "not-a-token"
        self.assertEqual(self.cli("jobs", check=False).returncode, 3)
        self.env["BITFLEET_URL"] = f"http://127.0.0.1:{fleetlib.free_port()}"
        unreachable = self.cli("jobs", "--timeout", "1", check=False)
        self.assertEqual(unreachable.returncode, 4)
        self.assertIn("cannot reach the coordinator", unreachable.stderr)
        usage = self.cli("jobs", "--stauts", "running", check=False)
        self.assertEqual((usage.returncode, usage.stderr.strip()), (2, "bitfleet: unknown flag --stauts"))


if __name__ == "__main__":
    unittest.main()
