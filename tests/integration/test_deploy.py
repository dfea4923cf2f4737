"""deploy/ as shipped, exercised against the real binaries on loopback:

- Prometheus: `promtool check config` and `check rules` pass, `promtool test rules` proves every
  alert fires on its failure and stays quiet on a healthy fleet;
- the Grafana dashboard and the alert rules use only metrics (and labels) that a live coordinator,
  a live worker group and a live bitfleet-serve export, and every expression is valid PromQL to a real Prometheus
  running the shipped prometheus.yml (file-based worker discovery included);
- the Slurm script starts a worker group (srun and scontrol stood in for by shims that run mpirun)
  that registers with the coordinator, publishes its ranks as Prometheus targets, and on SIGTERM
  hands its leases back and leaves cleanly;
- the Kubernetes manifests: the coordinator starts with the Deployment's arguments and the tokens
  of make-auth-secret.sh's Secret; the Service, mounts and worker flags agree with each other and
  with what the binaries accept;
- the systemd units (coordinator, bitfleet-serve) pass `systemd-analyze verify`, and their ExecStart
  serves; bitfleet-serve's Kubernetes Deployment and Slurm script start servers that get ready.
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import unittest

import requests
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import servelib  # noqa: E402
import trainlib  # noqa: E402

DEPLOY = os.path.join(lib.SOURCE_DIR or os.path.join(os.path.dirname(__file__), "..", ".."), "deploy")
PROMTOOL = os.environ.get("BITFLEET_PROMTOOL") or shutil.which("promtool")
PROMETHEUS = os.environ.get("BITFLEET_PROMETHEUS") or shutil.which("prometheus")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metrics(*urls, token=None):
    """{family: set of label names} from live /metrics endpoints (the coordinator's needs `token`)."""
    families = {}
    for url in urls:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        text = requests.get(url, headers=headers, timeout=10).text
        for name in re.findall(r"^# TYPE (\w+) \w+$", text, re.M):
            families.setdefault(name, set())
        for name, labels in re.findall(r"^(\w+)\{([^}]*)\}", text, re.M):
            family = next((name[:-len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s) and name[:-len(s)] in families), name)
            families.setdefault(family, set()).update(re.findall(r"(\w+)=\"", labels))
    return families


def referenced_metrics(expr):
    """[(family, {label names in its selector})] of the bitfleet metrics an expression reads."""
    out = []
    for name, selector in re.findall(r"\b(bitfleet_\w+)(\{[^}]*\})?", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name[:-len(suffix)]
        out.append((name, set(re.findall(r"(\w+)\s*=~?", selector))))
    return out


class DeployTest(trainlib.BackboneTestCase):
    def start_coordinator(self, name, **kw):
        c = coordlib.Coordinator(os.path.join(self.dir, name), **kw).start()
        self.addCleanup(c.stop)
        return c, coordlib.Client(c.url, c.admin_token())

    def dashboard_exprs(self):
        with open(os.path.join(DEPLOY, "grafana", "dashboards", "bitfleet.json")) as f:
            dashboard = json.load(f)
        exprs = []
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            self.assertTrue(panel["targets"], panel["title"])
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
            exprs += [(panel["title"], t["expr"]) for t in panel["targets"]]
        return exprs

    def alert_exprs(self):
        with open(os.path.join(DEPLOY, "prometheus", "alerts.yml")) as f:
            rules = yaml.safe_load(f)
        return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]

    # --- Prometheus and Grafana ----------------------------------------------------------------------

    @unittest.skipUnless(PROMTOOL, "promtool is not installed (deploy/install-deps.sh installs it)")
    def test_promtool_checks_the_config_and_tests_every_alert(self):
        prometheus_dir = os.path.join(DEPLOY, "prometheus")
        # The shipped config as is, but for where the scrape token lives (promtool checks that the
        # file exists) and the rule file's absolute path.
        with open(os.path.join(prometheus_dir, "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        token = os.path.join(self.dir, "metrics.token")
        with open(token, "w") as f:
            f.write("a-metrics-token-for-promtool\n")
        self.assertEqual(config["scrape_configs"][0]["authorization"]["type"], "Bearer")
        config["scrape_configs"][0]["authorization"]["credentials_file"] = token
        config["rule_files"] = [os.path.join(prometheus_dir, name) for name in config.get("rule_files", [])]
        checked = os.path.join(self.dir, "prometheus-checked.yml")
        with open(checked, "w") as f:
            yaml.safe_dump(config, f)
        lib.run([PROMTOOL, "check", "config", checked])
        lib.run([PROMTOOL, "check", "rules", os.path.join(prometheus_dir, "alerts.yml")])
        out = lib.run([PROMTOOL, "test", "rules", os.path.join(prometheus_dir, "alerts_test.yml")]).stdout
        self.assertIn("SUCCESS", out)
        with open(os.path.join(prometheus_dir, "alerts_test.yml")) as f:
            tested = {case["alertname"] for group in yaml.safe_load(f)["tests"] for case in group["alert_rule_test"]}
        self.assertEqual(tested, {name for name, _ in self.alert_exprs()})

    @unittest.skipUnless(PROMETHEUS, "prometheus is not installed (deploy/install-deps.sh installs it)")
    def test_dashboard_and_alerts_read_only_exported_metrics_through_the_shipped_config(self):
        c, client = self.start_coordinator("metrics", lease_seconds=4)
        metrics_port = fleetlib.free_port()
        group = fleetlib.WorkerGroup(c, self.backbone, self.dir, "metrics", ranks=2, slots=2,
                                     metrics_port=metrics_port).start()
        self.addCleanup(group.stop)
        files = fleetlib.upload_tasks(client, self.dir, ["sentiment"], n_train=32, n_dev=8)
        job = client.call("POST", "/v1/jobs", json=fleetlib.job_request(files, "sentiment", "backbone-bert")).json()
        fleetlib.wait_for(lambda: fleetlib.jobs_done(client, [job["id"]]), 120, "the job")
        serve = servelib.Serve(self.backbone, os.path.join(c.data_dir, "admin.token"), self.dir, "metrics",
                               coordinator=c.url, artifact_dir=os.path.join(self.dir, "serve-cache")).start()
        self.addCleanup(serve.stop)
        self.assertEqual(serve.predict(job["id"], [{"text": "a good movie"}]).status_code, 200)

        rank_urls = [f"http://127.0.0.1:{metrics_port + r}/metrics" for r in range(2)]
        families = exported_metrics(f"{c.url}/metrics", *rank_urls, f"{serve.url}/metrics", token=c.metrics_token())
        for title, expr in self.dashboard_exprs() + self.alert_exprs():
            for family, labels in referenced_metrics(expr):
                self.assertIn(family, families, f"{title}: {expr}")
                self.assertLessEqual(labels, families[family], f"{title}: labels of {family}")
        used = {f for _, e in self.dashboard_exprs() for f, _ in referenced_metrics(e)}
        for needed in ["bitfleet_jobs", "bitfleet_job_queue_wait_seconds", "bitfleet_worker_examples_total",
                       "bitfleet_worker_step_seconds", "bitfleet_worker_allreduce_seconds", "bitfleet_worker_free_slots",
                       "bitfleet_serve_request_seconds", "bitfleet_serve_queue_rows", "bitfleet_serve_tasks_resident",
                       "bitfleet_serve_batch_rows", "bitfleet_serve_task_loads_total"]:
            self.assertIn(needed, used)

        # The shipped prometheus.yml, pointed at this coordinator; the group's ranks by file discovery.
        with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")) as f:
            config = yaml.safe_load(f)
        config["global"]["scrape_interval"] = "1s"
        config["rule_files"] = [os.path.join(DEPLOY, "prometheus", "alerts.yml")]
        config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{c.port}"]
        config["scrape_configs"][0]["authorization"]["credentials_file"] = os.path.join(c.data_dir, "metrics.token")
        targets = os.path.join(self.dir, "targets")
        os.makedirs(targets, exist_ok=True)
        config["scrape_configs"][1]["file_sd_configs"][0]["files"] = [os.path.join(targets, "*.json")]
        config["scrape_configs"][2]["static_configs"][0]["targets"] = [serve.url.removeprefix("http://")]
        with open(os.path.join(targets, "group.json"), "w") as f:
            json.dump([{"targets": [f"127.0.0.1:{metrics_port + r}" for r in range(2)], "labels": {"group": "g"}}], f)
        config_path = os.path.join(self.dir, "prometheus.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        prometheus = fleetlib.Prometheus(PROMETHEUS, config_path, os.path.join(self.dir, "tsdb"))
        self.addCleanup(prometheus.stop)

        up = fleetlib.wait_for(lambda: len(prometheus.result("up == 1")) == 4 and prometheus.result("up"), 60,
                               "Prometheus to scrape the coordinator, both ranks and bitfleet-serve")
        self.assertEqual({r["metric"]["job"] for r in up}, {"bitfleet-coordinator", "bitfleet-worker", "bitfleet-serve"})
        for title, expr in self.dashboard_exprs() + self.alert_exprs():
            answer = prometheus.query(expr)
            self.assertEqual(answer["status"], "success", f"{title}: {expr}: {answer}")
        jobs = prometheus.result("sum by (status) (bitfleet_jobs)")
        self.assertEqual({r["metric"]["status"]: r["value"][1] for r in jobs}["succeeded"], "1")

    # --- Slurm ---------------------------------------------------------------------------------------

    def test_slurm_script_runs_a_group_that_registers_and_hands_leases_back(self):
        c, client = self.start_coordinator("slurm", lease_seconds=30)
        shims = os.path.join(self.dir, "shims")
        os.makedirs(shims, exist_ok=True)
        mpirun = " ".join(trainlib.mpirun(2)[:-2])  # everything but -np N
        with open(os.path.join(shims, "srun"), "w") as f:
            # srun's part here: start SLURM_NTASKS ranks, forward SIGTERM to them, return their status.
            f.write(textwrap.dedent(f"""\
                #!/usr/bin/env bash
                while [[ "$1" == --* ]]; do shift; done
                {mpirun} -np "$SLURM_NTASKS" "$@" &
                launcher=$!
                trap 'pkill -TERM -P "$launcher"' TERM
                while kill -0 "$launcher" 2>/dev/null; do wait "$launcher"; status=$?; done
                exit "$status"
                """))
        with open(os.path.join(shims, "scontrol"), "w") as f:
            f.write("#!/usr/bin/env bash\necho 127.0.0.1\n")
        for shim in ("srun", "scontrol"):
            os.chmod(os.path.join(shims, shim), 0o755)
        targets = os.path.join(self.dir, "slurm-targets")
        os.makedirs(targets, exist_ok=True)
        env = dict(os.environ, PATH=shims + os.pathsep + os.environ["PATH"], SLURM_JOB_ID="4242", SLURM_NTASKS="2",
                   SLURM_NTASKS_PER_NODE="2", SLURM_JOB_NODELIST="127.0.0.1", SLURM_CPUS_PER_TASK="1",
                   BITFLEET_COORDINATOR=c.url, BITFLEET_BACKBONE=self.backbone,
                   BITFLEET_TOKEN_FILE=os.path.join(c.data_dir, "worker.token"), BITFLEET_BIN=lib.BIN_DIR,
                   BITFLEET_DEVICE="cpu", BITFLEET_SLOTS="2", BITFLEET_METRICS_PORT=str(fleetlib.free_port()),
                   BITFLEET_PROMETHEUS_TARGETS=targets, BITFLEET_CACHE_DIR=os.path.join(self.dir, "slurm-cache"),
                   BITFLEET_WORKER_ARGS="--checkpoint-every-steps 5")
        log = open(os.path.join(self.dir, "slurm.log"), "w")
        script = subprocess.Popen(["bash", os.path.join(DEPLOY, "slurm", "bitfleet-workers.sbatch")], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(lambda: script.poll() is None and os.killpg(script.pid, signal.SIGKILL))

        workers = fleetlib.wait_for(lambda: client.call("GET", "/v1/workers").json()["data"], 120, "the group to register")
        self.assertEqual((workers[0]["ranks"], workers[0]["slots"], workers[0]["backbone"]), (2, 2, "backbone-bert"))
        with open(os.path.join(targets, "slurm-4242.json")) as f:
            port = int(env["BITFLEET_METRICS_PORT"])
            self.assertEqual(json.load(f), [{"targets": [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"],
                                             "labels": {"group": "slurm-4242"}}])
        self.assertIn("bitfleet_worker_steps_total", requests.get(f"http://127.0.0.1:{port + 1}/metrics").text)

        files = fleetlib.upload_tasks(client, self.dir, ["topic"], n_train=3000, n_dev=8)
        job = client.call("POST", "/v1/jobs", json=fleetlib.job_request(files, "topic", "backbone-bert", epochs=50)).json()
        fleetlib.wait_for(lambda: client.call("GET", f"/v1/jobs/{job['id']}").json()["progress"]["step"] >= 10, 120,
                          "the job to train")
        script.send_signal(signal.SIGTERM)  # what Slurm sends the batch shell before the time limit
        status = script.wait(timeout=120)
        log.close()
        with open(log.name) as f:
            self.assertEqual(status, 0, f.read()[-3000:])
        after = client.call("GET", f"/v1/jobs/{job['id']}").json()
        self.assertEqual((after["status"], after["attempt"]), ("queued", 1))  # handed back, not expired
        self.assertFalse(os.path.exists(os.path.join(targets, "slurm-4242.json")))

    # --- Kubernetes ----------------------------------------------------------------------------------

    def load_manifests(self, name):
        with open(os.path.join(DEPLOY, "kubernetes", name)) as f:
            return {d["kind"]: d for d in yaml.safe_load_all(f)}

    def test_kubernetes_coordinator_starts_with_its_arguments_and_generated_secret(self):
        coordinator = self.load_manifests("coordinator.yaml")
        self.assertEqual(set(coordinator), {"PersistentVolumeClaim", "Deployment", "Service"})
        deployment, service = coordinator["Deployment"], coordinator["Service"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(deployment["spec"]["strategy"]["type"], "Recreate")
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"])
        self.assertEqual(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["data"]["persistentVolumeClaim"]["claimName"],
                         coordinator["PersistentVolumeClaim"]["metadata"]["name"])

        secret = yaml.safe_load(lib.run([os.path.join(DEPLOY, "kubernetes", "make-auth-secret.sh"), "team-a"]).stdout)
        self.assertEqual(volumes["auth"]["secret"]["secretName"], secret["metadata"]["name"])
        auth = json.loads(base64.b64decode(secret["data"]["auth.json"]))
        tokens = {t["role"] if t["role"] != "user" else t["tenant"]: t["token"] for t in auth["tokens"]}
        self.assertEqual(base64.b64decode(secret["data"]["worker.token"]).decode(), tokens["worker"])

        # The container's arguments, with the pod's paths mapped into a temp dir and a free port.
        root = os.path.join(self.dir, "k8s")
        os.makedirs(os.path.join(root, "etc"), exist_ok=True)
        with open(os.path.join(root, "etc", "auth.json"), "w") as f:
            json.dump(auth, f)
        port = fleetlib.free_port()
        args = [a.replace(mounts["data"], os.path.join(root, "data")).replace(mounts["auth"], os.path.join(root, "etc"))
                 .replace("0.0.0.0:8080", f"127.0.0.1:{port}") for a in container["args"]]
        proc = subprocess.Popen([lib.binary(container["command"][0]), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertIn("listening", proc.stdout.readline(), proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://127.0.0.1:{port}"
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertEqual(requests.get(url + container[probe]["httpGet"]["path"]).status_code, 200)
        bearer = lambda who: {"Authorization": f"Bearer {tokens[who]}"}  # noqa: E731
        self.assertEqual(requests.get(url + "/v1/jobs", headers=bearer("admin")).status_code, 200)
        self.assertEqual(requests.get(url + "/v1/jobs", headers=bearer("team-a")).status_code, 200)
        self.assertEqual(requests.get(url + "/v1/jobs", headers=bearer("worker")).status_code, 403)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)

    def test_kubernetes_worker_group_agrees_with_the_coordinator_and_the_worker_flags(self):
        service = self.load_manifests("coordinator.yaml")["Service"]
        mpijob = self.load_manifests("worker-mpijob.yaml")["MPIJob"]
        launcher = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
        worker_pod = mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
        args = launcher["args"]
        np = int(args[args.index("-np") + 1])
        self.assertEqual(np, mpijob["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] * mpijob["spec"]["slotsPerWorker"])
        worker_args = args[args.index("bitfleet-worker") + 1:]
        flags = dict(a[2:].split("=", 1) for a in worker_args)
        self.assertEqual(flags["coordinator"],
                         f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}")
        mounts = {m["mountPath"]: m["name"] for m in worker_pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in worker_pod["volumes"]}
        token_dir, token_name = os.path.split(flags["token-file"])
        self.assertEqual(volumes[mounts[token_dir]]["secret"]["items"][0]["key"], token_name)
        self.assertIn(os.path.dirname(flags["backbone"]), mounts)
        self.assertEqual(worker_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], 1)

        # Every flag is one bitfleet-worker accepts: it gets past flag parsing, loads the backbone
        # and keeps trying to register with the (here unreachable) coordinator until stopped.
        unreachable = f"http://127.0.0.1:{fleetlib.free_port()}"
        token = os.path.join(self.dir, "k8s-worker.token")
        with open(token, "w") as f:
            f.write("x\n")
        local = {"coordinator": unreachable, "backbone": self.backbone, "token-file": token, "device": "cpu",
                 "cache-dir": os.path.join(self.dir, "k8s-cache"), "metrics-port": str(fleetlib.free_port())}
        log_path = os.path.join(self.dir, "k8s-worker.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([lib.binary("bitfleet-worker")] + [f"--{k}={local.get(k, v)}" for k, v in flags.items()],
                                    stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())

        def log_text():
            with open(log_path) as f:
                return f.read()
        fleetlib.wait_for(lambda: "registering with " + unreachable in log_text() or proc.poll() is not None, 120,
                          "the worker to try the coordinator")
        self.assertIsNone(proc.poll(), log_text())
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=60), 0, log_text())

    def test_kubernetes_serve_agrees_with_the_coordinator_the_secret_and_the_serve_flags(self):
        service = self.load_manifests("coordinator.yaml")["Service"]
        serve = self.load_manifests("serve.yaml")
        self.assertEqual(set(serve), {"Deployment", "Service"})
        pod = serve["Deployment"]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(serve["Service"]["spec"]["selector"], serve["Deployment"]["spec"]["template"]["metadata"]["labels"])
        self.assertEqual(serve["Service"]["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"])
        flags = dict(a[2:].split("=", 1) for a in container["args"])
        self.assertEqual(flags["coordinator"], f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}")
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        token_dir, token_name = os.path.split(flags["token-file"])
        self.assertEqual(volumes[mounts[token_dir]]["secret"]["items"][0]["key"], token_name)
        secret = yaml.safe_load(lib.run([os.path.join(DEPLOY, "kubernetes", "make-auth-secret.sh")]).stdout)
        serve_token = base64.b64decode(secret["data"][token_name]).decode()
        auth = json.loads(base64.b64decode(secret["data"]["auth.json"]))
        self.assertIn({"token": serve_token, "tenant": "serve", "role": "admin"}, auth["tokens"])
        self.assertIn(os.path.dirname(flags["backbone"]), mounts)
        self.assertIn(flags["artifact-dir"], mounts)

        # Every flag is one bitfleet-serve accepts: with the pod's paths mapped here it listens, loads
        # the backbone and answers its probes (the coordinator is only asked per request).
        token = os.path.join(self.dir, "k8s-serve.token")
        with open(token, "w") as f:
            f.write(serve_token)
        port = fleetlib.free_port()
        local = {"listen": f"127.0.0.1:{port}", "backbone": self.backbone, "token-file": token,
                 "artifact-dir": os.path.join(self.dir, "k8s-serve-cache"), "threads": "1",
                 "coordinator": f"http://127.0.0.1:{fleetlib.free_port()}"}
        proc = subprocess.Popen([lib.binary(container["command"][0])] + [f"--{k}={local.get(k, v)}" for k, v in flags.items()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertIn("listening", proc.stdout.readline(), proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://127.0.0.1:{port}"
        for probe in ("readinessProbe", "livenessProbe"):
            fleetlib.wait_for(lambda p=probe: requests.get(url + container[p]["httpGet"]["path"]).status_code == 200, 60,
                              f"the serve {probe}")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        proc.stdout.close()
        proc.stderr.close()

    def test_slurm_serve_script_starts_a_server_per_task_and_stops_on_sigterm(self):
        shims = os.path.join(self.dir, "serve-shims")
        os.makedirs(shims, exist_ok=True)
        with open(os.path.join(shims, "srun"), "w") as f:  # one task, local id 0
            f.write("#!/usr/bin/env bash\nwhile [[ \"$1\" == --* ]]; do shift; done\n"
                    "SLURM_LOCALID=0 exec \"$@\"\n")
        with open(os.path.join(shims, "scontrol"), "w") as f:
            f.write("#!/usr/bin/env bash\necho 127.0.0.1\n")
        for shim in ("srun", "scontrol"):
            os.chmod(os.path.join(shims, shim), 0o755)
        token = os.path.join(self.dir, "slurm-serve.token")
        with open(token, "w") as f:
            f.write("x\n")
        targets = os.path.join(self.dir, "serve-targets")
        os.makedirs(targets, exist_ok=True)
        port = fleetlib.free_port()
        env = dict(os.environ, PATH=shims + os.pathsep + os.environ["PATH"], SLURM_JOB_ID="77", SLURM_NTASKS="1",
                   SLURM_NTASKS_PER_NODE="1", SLURM_JOB_NODELIST="127.0.0.1", SLURM_CPUS_PER_TASK="1",
                   BITFLEET_COORDINATOR=f"http://127.0.0.1:{fleetlib.free_port()}", BITFLEET_BACKBONE=self.backbone,
                   BITFLEET_TOKEN_FILE=token, BITFLEET_BIN=lib.BIN_DIR, BITFLEET_DEVICE="cpu",
                   BITFLEET_SERVE_PORT=str(port), BITFLEET_PROMETHEUS_TARGETS=targets,
                   BITFLEET_CACHE_DIR=os.path.join(self.dir, "slurm-serve-cache"))
        log = open(os.path.join(self.dir, "slurm-serve.log"), "w")
        script = subprocess.Popen(["bash", os.path.join(DEPLOY, "slurm", "bitfleet-serve.sbatch")], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(lambda: script.poll() is None and os.killpg(script.pid, signal.SIGKILL))

        def ready():
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False
        fleetlib.wait_for(ready, 60, "the server to be ready")
        with open(os.path.join(targets, "serve-77.json")) as f:
            self.assertEqual(json.load(f), [{"targets": [f"127.0.0.1:{port}"], "labels": {"group": "serve-77"}}])
        script.send_signal(signal.SIGTERM)
        status = script.wait(timeout=60)
        log.close()
        with open(log.name) as f:
            self.assertEqual(status, 0, f.read()[-3000:])
        self.assertFalse(os.path.exists(os.path.join(targets, "serve-77.json")))

    # --- systemd -------------------------------------------------------------------------------------

    def test_systemd_serve_unit_verifies_and_its_command_serves(self):
        with open(os.path.join(DEPLOY, "systemd", "bitfleet-serve.service")) as f:
            unit = f.read()
        exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
        self.assertEqual(exec_start[0], "/usr/local/bin/bitfleet-serve")
        state = re.search(r"^StateDirectory=(.*)$", unit, re.M).group(1)
        self.assertEqual(exec_start[exec_start.index("--artifact-dir") + 1], f"/var/lib/{state}")
        if shutil.which("systemd-analyze"):
            local = os.path.join(self.dir, "bitfleet-serve.service")
            with open(local, "w") as f:
                f.write(unit.replace(exec_start[0], lib.binary("bitfleet-serve")))
            proc = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True)
            self.assertEqual([line for line in proc.stderr.splitlines() if os.path.basename(local) in line], [])
        token = os.path.join(self.dir, "systemd-serve.token")
        with open(token, "w") as f:
            f.write("x\n")
        port = fleetlib.free_port()
        mapping = {"0.0.0.0:8090": f"127.0.0.1:{port}", f"/var/lib/{state}": os.path.join(self.dir, "systemd-serve"),
                   "/etc/bitfleet/serve.token": token, "http://127.0.0.1:8080": f"http://127.0.0.1:{fleetlib.free_port()}"}
        args = [mapping.get(a, a) for a in exec_start[1:]]
        args[args.index("--backbone") + 1] = self.backbone
        proc = subprocess.Popen([lib.binary("bitfleet-serve"), *args, "--threads", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertIn("listening", proc.stdout.readline())
        fleetlib.wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/readyz").status_code == 200, 60, "ready")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=30), 0)
        proc.stdout.close()

    def test_systemd_unit_verifies_and_its_command_serves(self):
        with open(os.path.join(DEPLOY, "systemd", "bitfleet-coordinator.service")) as f:
            unit = f.read()
        exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
        self.assertEqual(exec_start[0], "/usr/local/bin/bitfleet-coordinator")  # cmake --install's prefix
        data_dir = re.search(r"^StateDirectory=(.*)$", unit, re.M).group(1)
        self.assertEqual(exec_start[exec_start.index("--data-dir") + 1], f"/var/lib/{data_dir}")
        if shutil.which("systemd-analyze"):
            local = os.path.join(self.dir, "bitfleet-coordinator.service")
            with open(local, "w") as f:
                f.write(unit.replace(exec_start[0], lib.binary("bitfleet-coordinator")))
            proc = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True)
            problems = [line for line in proc.stderr.splitlines() if os.path.basename(local) in line]
            self.assertEqual(problems, [])
        port = fleetlib.free_port()
        args = [a.replace("0.0.0.0:8080", f"127.0.0.1:{port}").replace(f"/var/lib/{data_dir}", os.path.join(self.dir, "systemd"))
                for a in exec_start[1:]]
        proc = subprocess.Popen([lib.binary("bitfleet-coordinator"), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertIn("listening", proc.stdout.readline())
        self.assertEqual(requests.get(f"http://127.0.0.1:{port}/readyz").status_code, 200)
        self.assertEqual(oct(os.stat(os.path.join(self.dir, "systemd", "admin.token")).st_mode & 0o777), "0o600")
        proc.send_signal(signal.SIGTERM)  # the unit's KillSignal
        self.assertEqual(proc.wait(timeout=30), 0)


class ContainerFilesTest(unittest.TestCase):
    """The image's files agree with the build and the manifests (the image itself is built and proved
    by deploy/container/build.sh and smoke.sh, outside ./tests/run.sh: docs/operations.md)."""

    def read(self, *parts):
        with open(os.path.join(DEPLOY, "..", *parts)) as f:
            return f.read()

    def test_the_containerfile_builds_every_program_cmake_installs(self):
        cmake = self.read("CMakeLists.txt")
        programs = set(re.search(r"set\(BITFLEET_PROGRAMS (\S+)\)", cmake).group(1).split())
        programs |= set(re.search(r"list\(APPEND BITFLEET_PROGRAMS ([^)]*)\)", cmake).group(1).split())
        targets = re.search(r"--target ([\w\- ]+)'", self.read("deploy", "container", "Containerfile")).group(1)
        self.assertEqual(set(targets.split()), programs)

    def test_the_manifests_name_the_tag_that_build_sh_builds(self):
        version = re.search(r"project\(bitfleet VERSION ([0-9.]+)", self.read("CMakeLists.txt")).group(1)
        for name in ("coordinator.yaml", "worker-mpijob.yaml", "serve.yaml"):
            images = set(re.findall(r"image: (\S+)", self.read("deploy", "kubernetes", name)))
            self.assertEqual(images, {f"bitfleet:{version}"}, name)
        for script in ("build.sh", "smoke.sh"):
            subprocess.run(["bash", "-n", os.path.join(DEPLOY, "container", script)], check=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
