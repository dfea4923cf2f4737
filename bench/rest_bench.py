"""The coordinator under load on loopback, measured with wrk (and a Python loop for leases).

    python bench/rest_bench.py [--duration 10] [--connections 8]

- submissions: POST /v1/jobs (one job per request) and POST /v1/jobs/batch (100 per request);
  every request commits (synchronous=FULL), so this is the durable submission rate;
- list latency: GET /v1/jobs?limit=20 with 10,000 jobs stored;
- lease latency: a worker group leasing one job and releasing it, one round trip each.
Writes JSON to bench/results/ and prints the table docs/performance.md records.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pylib"))
os.environ.setdefault("BITFLEET_BIN_DIR", os.path.join(HERE, "..", "build", "bin"))
import coordlib  # noqa: E402


def wrk(url, path, token, duration, connections, method="GET", body=None, threads=2):
    script = f"""
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
{"wrk.body = " + json.dumps(body) if body else ""}
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency",
                          "-s", f.name, url + path], capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1) for p in ("50", "99")}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_second": rps, "p50": latency["50"], "p99": latency["99"],
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp, coordlib.Coordinator(os.path.join(tmp, "data"), lease_seconds=600) as c:
        token = c.admin_token()
        client = coordlib.Client(c.url, token)
        fid = client.upload(coordlib.write_sentiment(os.path.join(tmp, "t.tsv"))).json()["id"]
        job = coordlib.job_request(fid)

        results["POST /v1/jobs"] = wrk(c.url, "/v1/jobs", token, args.duration, args.connections, "POST", json.dumps(job))
        batch = json.dumps({"jobs": [job] * 100})
        r = wrk(c.url, "/v1/jobs/batch", token, args.duration, args.connections, "POST", batch)
        r["jobs_per_second"] = r["requests_per_second"] * 100
        results["POST /v1/jobs/batch (100 jobs)"] = r

        stored = len(client.call("GET", "/v1/jobs", params={"limit": 1}).json()["data"])
        while True:  # top up to at least 10,000 stored jobs
            count = client.call("GET", "/metrics").text
            total = sum(int(float(v)) for v in re.findall(r'^bitfleet_jobs\{status="\w+"\} ([\d.e+]+)$', count, re.M))
            if total >= 10000:
                break
            client.call("POST", "/v1/jobs/batch", json={"jobs": [job] * 1000})
        results["GET /v1/jobs?limit=20"] = wrk(c.url, "/v1/jobs?limit=20", token, args.duration, args.connections)
        results["GET /v1/jobs?limit=20"]["jobs_stored"] = total

        worker = coordlib.Client(c.url, c.worker_token())
        group = coordlib.register_worker(worker, backbone="test-backbone", slots=1)
        samples = []
        for _ in range(300):
            start = time.perf_counter()
            leased = worker.call("POST", f"/internal/v1/workers/{group}/lease", json={"free_slots": 1}).json()["jobs"]
            samples.append((time.perf_counter() - start) * 1000)
            for j in leased:
                worker.call("POST", f"/internal/v1/jobs/{j['id']}/release", json={"worker_group": group, "attempt": j["attempt"]})
        samples.sort()
        results["lease (1 job)"] = {"p50_ms": statistics.median(samples), "p99_ms": samples[int(len(samples) * 0.99) - 1],
                                    "jobs_stored": total}
    print(f"coordinator on loopback, {os.cpu_count()} cores shared with the load generator, "
          f"{args.connections} connections, {args.duration} s each")
    for name, r in results.items():
        print(f"{name:32s} {json.dumps(r)}")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with open(os.path.join(args.out, f"rest-{stamp}.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
