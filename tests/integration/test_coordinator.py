"""The coordinator's public contract, driven over loopback against the real server:

- bad requests (malformed JSON, wrong types, out-of-range values, unknown fields, huge bodies, bad
  ids, bad cursors, bad uploads, ...) each get the right 4xx and a problem+json naming the fault;
- auth: 401 without a token, another tenant's job is 404, the worker token cannot reach /v1;
- a queued job that no live group can run says why (waiting_reason) from its creation on;
- idempotency, pagination, cancel, the whole worker-side life of a job, leases that expire and
  requeue with the next attempt while late reports are refused (409);
- /metrics passes `promtool check metrics`; SIGTERM stops the server cleanly.
"""
import hashlib
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
from coordlib import Client, Coordinator  # noqa: E402

MISSING_JOB = "job-000000000000000000000000"


def raw_request(port, head, body=b""):
    """A hand-written HTTP request; returns (status, body)."""
    answer = coordlib.raw_exchange(port, head.encode() + body)
    assert answer is not None, "the server closed the connection without an answer"
    return answer[0], answer[2]


class CoordinatorTest(coordlib.TenantsTestCase, coordlib.ProblemAssertions, unittest.TestCase):
    coordinator_options = {"lease_seconds": 2, "extra": ["--max-expiries", "2", "--max-upload-mb", "1"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        url = cls.coordinator.url
        cls.b = Client(url, coordlib.TOKENS["b"])
        cls.admin = Client(url, coordlib.TOKENS["admin"])
        cls.anonymous = Client(url, None)
        cls.scraper = Client(url, coordlib.TOKENS["metrics"])

    def new_job(self, client=None, **hyper):
        r = (client or self.a).create_job(coordlib.job_request(self.file, **hyper))
        self.assertEqual(r.status_code, 201, r.text)
        return r.json()

    # --- 30+ bad requests, each with its status and the field it names -------------------------

    def test_bad_requests_name_their_fault(self):
        good = coordlib.job_request(self.file)

        def with_change(path, value):
            body = json.loads(json.dumps(good))
            target = body
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            return body

        cases = [
            # (description, client, method, path, kwargs, status, field, fragment)
            ("no token", self.anonymous, "GET", "/v1/jobs", {}, 401, "Authorization", None),
            ("unknown token", Client(self.coordinator.url, "nope-nope-nope-nope"), "GET", "/v1/jobs", {}, 401, "Authorization", None),
            ("worker token on /v1", self.worker, "GET", "/v1/jobs", {}, 403, "Authorization", None),
            ("user token on /internal", self.a, "POST", "/internal/v1/workers", {"json": {}}, 403, "Authorization", None),
            ("unknown path", self.a, "GET", "/v1/nothing", {}, 404, None, None),
            ("wrong method", self.a, "DELETE", "/v1/jobs", {}, 405, None, None),
            ("malformed JSON", self.a, "POST", "/v1/jobs", {"data": "{\"backbone\": ", "headers": {"Content-Type": "application/json"}}, 400, "body", "not valid JSON"),
            ("empty body", self.a, "POST", "/v1/jobs", {"headers": {"Content-Type": "application/json"}}, 400, "body", None),
            ("not JSON content", self.a, "POST", "/v1/jobs", {"data": "x", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type", None),
            ("body is a list", self.a, "POST", "/v1/jobs", {"json": [1]}, 422, None, "must be an object"),
            ("unknown field", self.a, "POST", "/v1/jobs", {"json": with_change(["gpu"], "a100")}, 422, "gpu", "unknown field"),
            ("epochs as text", self.a, "POST", "/v1/jobs", {"json": with_change(["hyperparameters", "epochs"], "3")}, 422, "hyperparameters.epochs", "integer"),
            ("learning rate out of range", self.a, "POST", "/v1/jobs", {"json": with_change(["hyperparameters", "learning_rate"], 5)}, 422, "hyperparameters.learning_rate", "(0, 1]"),
            ("negative batch", self.a, "POST", "/v1/jobs", {"json": with_change(["hyperparameters", "batch_size"], -2)}, 422, "hyperparameters.batch_size", "[1, 1024]"),
            ("bias kind unknown", self.a, "POST", "/v1/jobs", {"json": with_change(["hyperparameters", "bias_terms"], ["query", "gate"])}, 422, "hyperparameters.bias_terms[1]", None),
            ("train file not an id", self.a, "POST", "/v1/jobs", {"json": with_change(["train_file"], "train.tsv")}, 422, "train_file", "file id"),
            ("train file unknown", self.a, "POST", "/v1/jobs", {"json": with_change(["train_file"], "file-000000000000000000000000")}, 422, "train_file", "upload it"),
            ("column missing", self.a, "POST", "/v1/jobs", {"json": with_change(["task", "text_fields"], ["premise"])}, 422, "task.text_fields[0]", "sentence, label"),
            ("label column missing", self.a, "POST", "/v1/jobs", {"json": with_change(["task", "label_field"], "gold")}, 422, "task.label_field", None),
            ("duplicate label", self.a, "POST", "/v1/jobs", {"json": with_change(["task", "labels"], ["neg", "neg"])}, 422, "task.labels[1]", "unique"),
            ("task type unknown", self.a, "POST", "/v1/jobs", {"json": with_change(["task", "type"], "ranking")}, 422, "task.type", None),
            ("batch empty", self.a, "POST", "/v1/jobs/batch", {"json": {"jobs": []}}, 422, "jobs", "1 to 1000"),
            ("batch too big", self.a, "POST", "/v1/jobs/batch", {"json": {"jobs": [good] * 1001}}, 422, "jobs", "1 to 1000"),
            ("batch item bad", self.a, "POST", "/v1/jobs/batch", {"json": {"jobs": [good, good, with_change(["hyperparameters", "batch_size"], 0)]}}, 422, "jobs[2].hyperparameters.batch_size", None),
            ("batch unknown field", self.a, "POST", "/v1/jobs/batch", {"json": {"jobs": [good], "dry_run": True}}, 422, "dry_run", None),
            ("limit zero", self.a, "GET", "/v1/jobs", {"params": {"limit": "0"}}, 400, "limit", "[1, 100]"),
            ("limit not a number", self.a, "GET", "/v1/jobs", {"params": {"limit": "ten"}}, 400, "limit", None),
            ("status unknown", self.a, "GET", "/v1/jobs", {"params": {"status": "done"}}, 400, "status", None),
            ("cursor unknown", self.a, "GET", "/v1/jobs", {"params": {"after": MISSING_JOB}}, 400, "after", None),
            ("cursor garbage", self.a, "GET", "/v1/jobs", {"params": {"after": "'; drop table jobs"}}, 400, "after", None),
            ("events cursor negative", self.a, "GET", f"/v1/jobs/{MISSING_JOB}/events", {"params": {"after": "-1"}}, 400, "after", None),
            ("files limit too high", self.a, "GET", "/v1/files", {"params": {"limit": "101"}}, 400, "limit", None),
            ("job id unknown", self.a, "GET", f"/v1/jobs/{MISSING_JOB}", {}, 404, "id", None),
            ("job id malformed", self.a, "GET", "/v1/jobs/not-an-id", {}, 404, "id", None),
            ("cancel unknown job", self.a, "POST", f"/v1/jobs/{MISSING_JOB}/cancel", {}, 404, "id", None),
            ("file unknown", self.a, "GET", "/v1/files/file-000000000000000000000000", {}, 404, "id", None),
            ("upload without filename", self.a, "POST", "/v1/files", {"data": b"a\n1\n"}, 400, "filename", None),
            ("upload format unknown", self.a, "POST", "/v1/files", {"params": {"filename": "x.parquet"}, "data": b"a\n1\n"}, 400, "filename", ".tsv, .csv or .jsonl"),
            ("upload path in name", self.a, "POST", "/v1/files", {"params": {"filename": "../../etc/x.tsv"}, "data": b"a\n1\n"}, 400, "filename", None),
            ("upload bad record", self.a, "POST", "/v1/files", {"params": {"filename": "train.tsv"}, "data": b"a\tb\n1\t2\n3\n"}, 422, "body", "train.tsv:3"),
            ("upload no records", self.a, "POST", "/v1/files", {"params": {"filename": "t.csv"}, "data": b"a,b\n"}, 422, "body", "no records"),
            ("upload bad JSONL", self.a, "POST", "/v1/files", {"params": {"filename": "t.jsonl"}, "data": b"{\"a\": 1}\n{oops}\n"}, 422, "body", "t.jsonl:2"),
            ("trailing slash", self.a, "GET", "/v1/jobs/", {}, 404, None, None),
            ("cursor not UTF-8 safe to cut", self.a, "GET", "/v1/files", {"params": {"after": "\U0001d54b" * 40}}, 400, "after", None),
            ("sha256 filter not a digest", self.a, "GET", "/v1/files", {"params": {"sha256": "ABC"}}, 400, "sha256", "64 lower-case hex"),
            ("upload not UTF-8", self.a, "POST", "/v1/files", {"params": {"filename": "t.tsv"}, "data": b"\x89PNG\r\n\x1a\n\x00\x00"}, 422, "body", "not valid UTF-8"),
            ("idempotency key with spaces", self.a, "POST", "/v1/jobs", {"json": good, "headers": {"Idempotency-Key": "a b"}}, 400, "Idempotency-Key", None),
        ]
        self.assertGreaterEqual(len(cases), 30)
        before = len(self.admin.call("GET", "/v1/jobs", params={"limit": 100}).json()["data"])
        for description, client, method, path, kwargs, status, field, fragment in cases:
            with self.subTest(description):
                r = client.call(method, path, **kwargs)
                body = self.assert_problem(r, status, field, fragment)
                if status == 405:
                    self.assertEqual(r.headers.get("Allow"), "POST, GET, HEAD")
                if status == 401:
                    self.assertEqual(r.headers.get("WWW-Authenticate"), "Bearer")
                self.assertNotIn("sqlite", body["detail"].lower())
        # Nothing any refused request did was stored.
        self.assertEqual(len(self.admin.call("GET", "/v1/jobs", params={"limit": 100}).json()["data"]), before)

    def test_bad_percent_encoding_is_a_400(self):
        status, _ = raw_request(self.coordinator.port, "GET /v1/jobs/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(status, 400)

    def test_huge_bodies_are_refused_before_they_are_sent(self):
        token = "token-of-tenant-a-0123"
        status, body = raw_request(self.coordinator.port,
                                   "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                   "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n" % token, b"{")
        self.assertEqual(status, 413)
        self.assertIn(b"larger than the limit", body)
        status, _ = raw_request(self.coordinator.port,
                                "POST /v1/files?filename=x.tsv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                                "Content-Length: 2000000\r\n\r\n" % token, b"a\n")
        self.assertEqual(status, 413)  # --max-upload-mb 1

    # --- auth and tenancy -----------------------------------------------------------------------

    def test_tenants_see_only_their_own(self):
        job = self.new_job(self.a)
        self.assert_problem(self.b.call("GET", f"/v1/jobs/{job['id']}"), 404, "id")
        self.assert_problem(self.b.call("POST", f"/v1/jobs/{job['id']}/cancel"), 404, "id")
        self.assert_problem(self.b.call("GET", f"/v1/files/{self.file}"), 404, "id")
        self.assert_problem(self.b.create_job(coordlib.job_request(self.file)), 422, "train_file")
        self.assertNotIn(job["id"], [j["id"] for j in self.b.call("GET", "/v1/jobs").json()["data"]])
        self.assertEqual(self.admin.call("GET", f"/v1/jobs/{job['id']}").status_code, 200)

    def test_default_tokens_are_written_private_and_reused(self):
        with lib.TempDir() as tmp:
            c = Coordinator(os.path.join(tmp, "d")).start()
            try:
                for name in ("admin.token", "worker.token"):
                    mode = os.stat(os.path.join(c.data_dir, name)).st_mode & 0o777
                    self.assertEqual(mode, 0o600, name)
                token = c.admin_token()
                self.assertEqual(Client(c.url, token).call("GET", "/v1/jobs").status_code, 200)
                self.assertEqual(Client(c.url, c.worker_token()).call("GET", "/v1/jobs").status_code, 403)
                c.restart()
                self.assertEqual(c.admin_token(), token)
                self.assertEqual(Client(c.url, token).call("GET", "/v1/jobs").status_code, 200)
            finally:
                c.stop()

    # --- jobs -------------------------------------------------------------------------------------

    def test_idempotency_key_returns_the_first_answer(self):
        request = coordlib.job_request(self.file, seed=77)
        first = self.a.create_job(request, headers={"Idempotency-Key": "submit-77"})
        again = self.a.create_job(request, headers={"Idempotency-Key": "submit-77"})
        self.assertEqual(first.status_code, 201)
        self.assertEqual(again.status_code, 201)
        self.assertEqual(first.json()["id"], again.json()["id"])
        other = self.a.create_job(coordlib.job_request(self.file, seed=78), headers={"Idempotency-Key": "submit-77"})
        self.assert_problem(other, 409, "Idempotency-Key")
        # Keys are per tenant: b may use the same key for its own request.
        self.assertEqual(self.b.call("POST", "/v1/files", params={"filename": "x.tsv"}, data=b"sentence\tlabel\nhi\tpos\n",
                                     headers={"Idempotency-Key": "submit-77"}).status_code, 201)

    def test_batch_creates_all_in_order(self):
        requests_ = [coordlib.job_request(self.file, seed=s) for s in range(5)]
        r = self.a.call("POST", "/v1/jobs/batch", json={"jobs": requests_})
        self.assertEqual(r.status_code, 201, r.text)
        jobs = r.json()["data"]
        self.assertEqual([j["hyperparameters"]["seed"] for j in jobs], list(range(5)))
        self.assertTrue(all(j["status"] == "queued" for j in jobs))

    def test_a_job_no_live_group_can_run_says_why_from_its_creation(self):
        request = dict(coordlib.job_request(self.file), backbone="served-by-nobody")
        created = self.a.create_job(request)
        self.assertEqual(created.status_code, 201, created.text)
        why = 'no live worker group serves backbone "served-by-nobody"'
        self.assertEqual(created.json()["waiting_reason"], why)
        [batched] = self.a.call("POST", "/v1/jobs/batch", json={"jobs": [request]}).json()["data"]
        self.assertEqual(batched["waiting_reason"], why)
        for job in (created.json(), batched):
            self.assertEqual(self.a.call("GET", f"/v1/jobs/{job['id']}").json()["waiting_reason"], why)
        cancelled = self.a.call("POST", f"/v1/jobs/{batched['id']}/cancel").json()
        self.assertEqual((cancelled["status"], cancelled["waiting_reason"]), ("cancelled", None))

    def test_list_paginates_with_cursor_and_filters_by_status(self):
        fid = self.b.upload(coordlib.write_sentiment(os.path.join(self.dir, "b.tsv"))).json()["id"]
        ids = [self.b.create_job(coordlib.job_request(fid, seed=s)).json()["id"] for s in range(7)]
        seen, after = [], None
        while True:
            params = {"limit": 3, **({"after": after} if after else {})}
            page = self.b.call("GET", "/v1/jobs", params=params).json()
            seen += [j["id"] for j in page["data"]]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        self.assertEqual(seen[:7], list(reversed(ids)))  # newest first
        self.b.call("POST", f"/v1/jobs/{ids[0]}/cancel")
        cancelled = self.b.call("GET", "/v1/jobs", params={"status": "cancelled"}).json()["data"]
        self.assertEqual([j["id"] for j in cancelled], [ids[0]])

    def test_cancel_queued_then_again_is_conflict(self):
        job = self.new_job()
        r = self.a.call("POST", f"/v1/jobs/{job['id']}/cancel")
        self.assertEqual(r.json()["status"], "cancelled")
        self.assert_problem(self.a.call("POST", f"/v1/jobs/{job['id']}/cancel"), 409)
        self.assert_problem(self.a.call("GET", f"/v1/jobs/{job['id']}/artifact"), 409, "id")
        events = self.a.call("GET", f"/v1/jobs/{job['id']}/events").json()["data"]
        self.assertEqual([e["data"]["status"] for e in events if e["type"] == "status"], ["queued", "cancelled"])

    def test_file_in_use_cannot_be_deleted(self):
        path = coordlib.write_sentiment(os.path.join(self.dir, "del.tsv"))
        fid = self.a.upload(path).json()["id"]
        job = self.a.create_job(coordlib.job_request(fid)).json()
        self.assert_problem(self.a.call("DELETE", f"/v1/files/{fid}"), 409)
        self.a.call("POST", f"/v1/jobs/{job['id']}/cancel")
        self.assertEqual(self.a.call("DELETE", f"/v1/files/{fid}").json(), {"id": fid, "object": "file", "deleted": True})
        self.assert_problem(self.a.call("GET", f"/v1/files/{fid}"), 404)

    def test_uploaded_content_round_trips(self):
        data = "text,label\n\"a, quoted\nline\",pos\nplain,neg\n"
        f = self.a.call("POST", "/v1/files", params={"filename": "q.csv"}, data=data.encode()).json()
        self.assertEqual((f["rows"], f["columns"], f["format"]), (2, ["text", "label"], "csv"))
        self.assertEqual(self.a.call("GET", f"/v1/files/{f['id']}/content").content, data.encode())
        # A client finds its earlier upload by content digest (the CLI's upload-once), in its tenant only.
        digest = hashlib.sha256(data.encode()).hexdigest()
        found = self.a.call("GET", "/v1/files", params={"sha256": digest}).json()["data"]
        self.assertEqual([x["id"] for x in found], [f["id"]])
        self.assertEqual(self.b.call("GET", "/v1/files", params={"sha256": digest}).json()["data"], [])
        self.assertEqual(self.a.call("GET", "/v1/files", params={"sha256": "0" * 64}).json()["data"], [])

    # --- the worker side of a job: leases, reports, completion ------------------------------------

    def test_job_life_from_lease_to_artifact(self):
        job = self.new_job(self.a, seed=901)
        group = coordlib.register_worker(self.worker, slots=64)
        leased = []
        while not any(j["id"] == job["id"] for j in leased):  # other tests' jobs are queued too
            batch = self.worker.call("POST", f"/internal/v1/workers/{group}/lease", json={"free_slots": 64}).json()["jobs"]
            self.assertTrue(batch, "the job was never leased")
            leased += batch
        mine = [j for j in leased if j["id"] == job["id"]][0]
        self.assertEqual(mine["attempt"], 1)
        self.assertEqual(mine["train_file"]["id"], self.file)
        fence = {"worker_group": group, "attempt": 1}
        content = self.worker.call("GET", f"/internal/v1/files/{self.file}/content")
        self.assertEqual(content.headers["X-Bitfleet-Sha256"], mine["train_file"]["sha256"])
        r = self.worker.call("POST", f"/internal/v1/jobs/{job['id']}/events",
                             json={**fence, "events": [{"type": "train_loss", "data": {"step": 10, "loss": 0.5}}]})
        self.assertEqual(r.status_code, 200, r.text)
        r = self.worker.call("PUT", f"/internal/v1/jobs/{job['id']}/checkpoint", params={**fence, "step": 10}, data=b"ckpt-bytes")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.worker.call("GET", f"/internal/v1/jobs/{job['id']}/checkpoint").content, b"ckpt-bytes")
        hb = self.worker.call("POST", f"/internal/v1/workers/{group}/heartbeat",
                              json={"free_slots": 63, "jobs": [{"id": job["id"], "attempt": 1, "step": 10, "total_steps": 20}]})
        self.assertEqual(hb.json()["cancel"], [])
        self.assertEqual(self.a.call("GET", f"/v1/jobs/{job['id']}").json()["progress"], {"step": 10, "total_steps": 20})
        # Completing before the artifact is there is refused.
        self.assert_problem(self.worker.call("POST", f"/internal/v1/jobs/{job['id']}/complete", json={**fence, "steps": 20}), 409)
        self.worker.call("PUT", f"/internal/v1/jobs/{job['id']}/artifact", params=fence, data=b"artifact-bytes")
        done = self.worker.call("POST", f"/internal/v1/jobs/{job['id']}/complete",
                                json={**fence, "steps": 20, "train_loss": 0.25, "metrics": {"accuracy": 0.9}})
        self.assertEqual(done.status_code, 200, done.text)
        got = self.a.call("GET", f"/v1/jobs/{job['id']}").json()
        self.assertEqual((got["status"], got["metrics"], got["train_loss"]), ("succeeded", {"accuracy": 0.9}, 0.25))
        self.assertEqual(got["artifact"]["bytes"], len(b"artifact-bytes"))
        self.assertEqual(self.a.call("GET", f"/v1/jobs/{job['id']}/artifact").content, b"artifact-bytes")
        types = [e["type"] for e in self.a.call("GET", f"/v1/jobs/{job['id']}/events").json()["data"]]
        self.assertEqual(types, ["status", "status", "train_loss", "checkpoint", "status"])
        # The lease is gone: a late report is refused.
        self.assert_problem(self.worker.call("POST", f"/internal/v1/jobs/{job['id']}/fail", json={**fence, "reason": "x"}), 409)
        # Release every other job this test leased.
        for other in leased:
            if other["id"] != job["id"]:
                self.worker.call("POST", f"/internal/v1/jobs/{other['id']}/release",
                                 json={"worker_group": group, "attempt": other["attempt"]})

    def test_expired_lease_requeues_with_next_attempt_and_refuses_late_reports(self):
        # A tenant of its own, so that no other test's jobs are leased here.
        c = Coordinator(os.path.join(self.dir, "leases"), lease_seconds=2, extra=["--max-expiries", "2"]).start()
        try:
            user, worker = Client(c.url, c.admin_token()), Client(c.url, c.worker_token())
            fid = user.upload(coordlib.write_sentiment(os.path.join(self.dir, "l.tsv"))).json()["id"]
            jobs = [user.create_job(coordlib.job_request(fid, seed=s)).json()["id"] for s in range(3)]
            group = coordlib.register_worker(worker, slots=2)
            leased = worker.call("POST", f"/internal/v1/workers/{group}/lease", json={"free_slots": 2}).json()["jobs"]
            self.assertEqual([j["id"] for j in leased], jobs[:2])  # oldest first at equal priority
            self.assertEqual({j["attempt"] for j in leased}, {1})
            self.assertEqual(user.call("GET", f"/v1/jobs/{jobs[0]}").json()["status"], "running")
            # The group goes silent: its leases expire and the jobs are queued again.
            deadline = time.time() + 15
            while time.time() < deadline and user.call("GET", f"/v1/jobs/{jobs[0]}").json()["status"] != "queued":
                time.sleep(0.2)
            job = user.call("GET", f"/v1/jobs/{jobs[0]}").json()
            self.assertEqual((job["status"], job["attempt"]), ("queued", 1))
            reason = [e for e in user.call("GET", f"/v1/jobs/{jobs[0]}/events").json()["data"] if e["type"] == "status"][-1]
            self.assertIn("expired", reason["data"]["reason"])
            late = worker.call("POST", f"/internal/v1/jobs/{jobs[0]}/events",
                               json={"worker_group": group, "attempt": 1, "events": []})
            self.assert_problem(late, 409)
            # Leased again: attempt 2. A heartbeat of the stale attempt is told to drop the job.
            again = worker.call("POST", f"/internal/v1/workers/{group}/lease", json={"free_slots": 2}).json()["jobs"]
            self.assertIn((jobs[0], 2), [(j["id"], j["attempt"]) for j in again])
            hb = worker.call("POST", f"/internal/v1/workers/{group}/heartbeat",
                             json={"free_slots": 0, "jobs": [{"id": jobs[0], "attempt": 1}]}).json()
            self.assertEqual(hb["cancel"], [jobs[0]])
            # A second expiry reaches --max-expiries 2: the job fails, with the reason.
            deadline = time.time() + 15
            while time.time() < deadline and user.call("GET", f"/v1/jobs/{jobs[0]}").json()["status"] == "running":
                time.sleep(0.2)
            failed = user.call("GET", f"/v1/jobs/{jobs[0]}").json()
            self.assertEqual(failed["status"], "failed")
            self.assertIn("retry limit", failed["error"]["message"])
            metrics = Client(c.url, c.metrics_token()).call("GET", "/metrics").text
            self.assertRegex(metrics, r"bitfleet_lease_expiries_total [1-9]")
        finally:
            c.stop()

    def test_running_job_cancelled_is_dropped_at_next_heartbeat(self):
        c = Coordinator(os.path.join(self.dir, "cancel"), lease_seconds=30).start()
        try:
            user, worker = Client(c.url, c.admin_token()), Client(c.url, c.worker_token())
            fid = user.upload(coordlib.write_sentiment(os.path.join(self.dir, "c.tsv"))).json()["id"]
            job = user.create_job(coordlib.job_request(fid)).json()["id"]
            group = coordlib.register_worker(worker)
            worker.call("POST", f"/internal/v1/workers/{group}/lease", json={"free_slots": 1})
            self.assertEqual(user.call("POST", f"/v1/jobs/{job}/cancel").json()["status"], "cancelled")
            hb = worker.call("POST", f"/internal/v1/workers/{group}/heartbeat",
                             json={"free_slots": 0, "jobs": [{"id": job, "attempt": 1}]}).json()
            self.assertEqual(hb["cancel"], [job])
        finally:
            c.stop()

    # --- operations ------------------------------------------------------------------------------

    def test_metrics_pass_promtool_and_carry_no_job_ids(self):
        self.new_job()
        text = self.scraper.call("GET", "/metrics").text
        for name in ("bitfleet_jobs{", "bitfleet_job_submissions_total", "bitfleet_http_requests_total{",
                     "bitfleet_http_request_duration_seconds_bucket{", "bitfleet_job_queue_wait_seconds",
                     "bitfleet_job_duration_seconds", "bitfleet_worker_groups{", "bitfleet_worker_free_slots",
                     "bitfleet_lease_expiries_total", "bitfleet_job_requeues_total"):
            self.assertIn(name, text)
        self.assertNotIn("job-", text)
        self.assertNotIn("file-", text)
        promtool = os.environ.get("BITFLEET_PROMTOOL")
        if not promtool:
            self.skipTest("promtool is not installed")
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_health_ready_and_openapi_need_no_token(self):
        self.assertEqual(self.anonymous.call("GET", "/healthz").json(), {"status": "ok"})
        self.assertEqual(self.anonymous.call("GET", "/readyz").json()["status"], "ready")
        served = self.anonymous.call("GET", "/v1/openapi.json").json()
        with open(os.path.join(lib.SOURCE_DIR, "docs", "openapi.json")) as f:
            self.assertEqual(served, json.load(f))

    def test_sigterm_stops_cleanly(self):
        c = Coordinator(os.path.join(self.dir, "term")).start()
        self.assertEqual(c.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
