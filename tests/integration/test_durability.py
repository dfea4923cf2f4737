"""Durability: a client submits 2,000 jobs, one request each with its own Idempotency-Key, while
the coordinator is killed with SIGKILL and restarted on the same data directory again and again.
Every job whose creation was acknowledged exists afterwards, and retries (same key) created no
duplicates: exactly 2,000 jobs, one per key."""
import os
import sys
import threading
import time
import unittest

import requests

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402

JOBS = 2000


class DurabilityTest(unittest.TestCase):
    def test_acknowledged_jobs_survive_kill_9_and_retries_do_not_duplicate(self):
        with lib.TempDir() as tmp:
            c = coordlib.Coordinator(os.path.join(tmp, "data")).start()
            token = c.admin_token()
            client = coordlib.Client(c.url, token)
            fid = client.upload(coordlib.write_sentiment(os.path.join(tmp, "t.tsv"))).json()["id"]
            acknowledged, retries, done = {}, [0], threading.Event()

            def submit():
                session = coordlib.Client(c.url, token)
                for i in range(JOBS):
                    while True:
                        try:
                            r = session.create_job(coordlib.job_request(fid, seed=i),
                                                   headers={"Idempotency-Key": f"durability-{i}"})
                            if r.status_code == 201:
                                acknowledged[i] = r.json()["id"]
                                break
                            self.assertGreaterEqual(r.status_code, 500, r.text)  # never a client error
                        except requests.RequestException:
                            pass
                        retries[0] += 1
                        time.sleep(0.05)
                done.set()

            kills = 0
            submitter = threading.Thread(target=submit)
            submitter.start()
            while not done.is_set():
                time.sleep(0.7)
                if done.is_set():
                    break
                c.kill()
                kills += 1
                c.start()
            submitter.join()
            try:
                self.assertGreaterEqual(kills, 3, "the run was too fast to kill the coordinator mid-way")
                seen = {}
                after = None
                while True:
                    page = client.call("GET", "/v1/jobs", params={"limit": 100, **({"after": after} if after else {})}).json()
                    for job in page["data"]:
                        seen.setdefault(job["hyperparameters"]["seed"], []).append(job["id"])
                    if not page["has_more"]:
                        break
                    after = page["data"][-1]["id"]
                print(f"\n{JOBS} jobs, {kills} kill -9 restarts, {retries[0]} retried requests", flush=True)
                self.assertEqual(len(acknowledged), JOBS)
                self.assertEqual(sorted(seen), list(range(JOBS)))
                duplicates = {seed: ids for seed, ids in seen.items() if len(ids) != 1}
                self.assertEqual(duplicates, {})
                for seed, job_id in acknowledged.items():
                    self.assertEqual(seen[seed], [job_id])
            finally:
                c.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
