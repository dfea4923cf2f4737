"""Client: a coordinator's REST API (and bitfleet-serve's predict) over one requests.Session.

Every call is retried with exponential backoff when the server cannot be reached or answers 5xx;
every creation (upload, job, batch, sweep) carries an Idempotency-Key chosen once per call, so a
retry whose first try did land returns the object it created instead of creating another. A 4xx is
raised at once as BitfleetError. Lists are iterators that follow the cursor.
Thread-safety: one Client per thread (requests.Session is not thread-safe).
"""
import os
import time
import uuid

import requests

from .errors import BitfleetError, ConnectionFailed
from .types import FINAL, Event, File, Job, Sweep, WorkerGroup

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_SERVE_URL = "http://127.0.0.1:8090"


def _token_from_env():
    token = os.environ.get("BITFLEET_TOKEN")
    if token:
        return token
    path = os.environ.get("BITFLEET_TOKEN_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return None


class Client:
    """Client(url=$BITFLEET_URL, token=$BITFLEET_TOKEN or the file $BITFLEET_TOKEN_FILE,
    serve_url=$BITFLEET_SERVE_URL, timeout=60, retries=5)."""

    def __init__(self, url=None, token=None, serve_url=None, timeout=60.0, retries=5, backoff=0.25):
        self.url = (url or os.environ.get("BITFLEET_URL") or DEFAULT_URL).rstrip("/")
        self.serve_url = (serve_url or os.environ.get("BITFLEET_SERVE_URL") or DEFAULT_SERVE_URL).rstrip("/")
        self.token = token if token is not None else _token_from_env()
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"
        self.files = Files(self)
        self.jobs = Jobs(self)
        self.sweeps = Sweeps(self)
        self.workers = Workers(self)

    # --- transport -----------------------------------------------------------------------------

    def request(self, method, path, *, base=None, json=None, params=None, data=None, headers=None,
                idempotent_create=False, stream=False):
        """One API call with retries; returns the requests.Response of a 2xx, raises otherwise."""
        headers = dict(headers or {})
        if idempotent_create:
            headers["Idempotency-Key"] = uuid.uuid4().hex  # one key for every retry of this call
        url = (base or self.url) + path
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            if hasattr(data, "seek"):
                data.seek(0)
            try:
                r = self.session.request(method, url, json=json, params=params, data=data, headers=headers,
                                         timeout=self.timeout, stream=stream)
            except (requests.ConnectionError, requests.Timeout) as e:
                if attempt == self.retries:
                    raise ConnectionFailed(f"{method} {url}: {e}") from e
            else:
                if r.status_code < 500:
                    if r.status_code >= 400:
                        raise BitfleetError.from_response(r)
                    return r
                if attempt == self.retries:
                    raise BitfleetError.from_response(r)
                retry_after = r.headers.get("Retry-After")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def get(self, path, **kw):
        return self.request("GET", path, **kw).json()

    def pages(self, path, params=None, limit=100):
        """Every item of a cursor-paginated list, fetched a page at a time."""
        params = dict(params or {}, limit=limit)
        while True:
            page = self.get(path, params=params)
            yield from page["data"]
            if not page.get("has_more") or not page["data"]:
                return
            params["after"] = page["data"][-1]["id"]

    # --- bitfleet-serve ------------------------------------------------------------------------

    def predict(self, task, inputs, timeout_ms=None):
        """Predictions from bitfleet-serve (serve_url) for `inputs`: strings (one text), (text, pair)
        tuples, lists of words (tagging), or the API's dicts. Returns one prediction per input."""
        body = {"task": task, "inputs": [_input(x) for x in inputs]}
        if timeout_ms:
            body["timeout_ms"] = timeout_ms
        return self.request("POST", "/v1/predict", base=self.serve_url, json=body).json()["predictions"]


def _input(x):
    if isinstance(x, dict):
        return x
    if isinstance(x, str):
        return {"text": x}
    if isinstance(x, tuple) and len(x) == 2:
        return {"text": x[0], "text_pair": x[1]}
    if isinstance(x, list):
        return {"tokens": [str(w) for w in x]}
    raise TypeError(f"an input is a text, a (text, text_pair) tuple, a list of words or a dict, not {type(x).__name__}")


class Files:
    def __init__(self, client):
        self.c = client

    def upload(self, path, filename=None):
        """Uploads a dataset file (TSV/CSV with a header, or JSONL); returns its File."""
        name = filename or os.path.basename(path)
        with open(path, "rb") as f:
            r = self.c.request("POST", "/v1/files", params={"filename": name}, data=f, idempotent_create=True,
                               headers={"Content-Type": "application/octet-stream"})
        return File.from_json(r.json())

    def list(self):
        return (File.from_json(f) for f in self.c.pages("/v1/files"))

    def get(self, file_id):
        return File.from_json(self.c.get(f"/v1/files/{file_id}"))

    def delete(self, file_id):
        return self.c.request("DELETE", f"/v1/files/{file_id}").json()


class Jobs:
    def __init__(self, client):
        self.c = client

    def create(self, request):
        """Creates a job from a request dict (ARCHITECTURE's job request); returns its Job."""
        return Job.from_json(self.c.request("POST", "/v1/jobs", json=request, idempotent_create=True).json())

    def create_batch(self, requests_):
        """Creates many jobs atomically (all or none); returns them in order."""
        r = self.c.request("POST", "/v1/jobs/batch", json={"jobs": list(requests_)}, idempotent_create=True)
        return [Job.from_json(j) for j in r.json()["data"]]

    def list(self, status=None):
        return (Job.from_json(j) for j in self.c.pages("/v1/jobs", params={"status": status} if status else None))

    def get(self, job_id):
        return Job.from_json(self.c.get(f"/v1/jobs/{job_id}"))

    def cancel(self, job_id):
        return Job.from_json(self.c.request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def events(self, job_id, after=0):
        """The job's log from `after` on, following the cursor."""
        while True:
            page = self.c.get(f"/v1/jobs/{job_id}/events", params={"after": after, "limit": 1000})
            for e in page["data"]:
                yield Event.from_json(e)
            if not page.get("has_more") or not page["data"]:
                return
            after = page["data"][-1]["seq"]

    def download(self, job_id, path):
        """The job's artifact into `path` (a sweep id: its best variant's)."""
        prefix = "sweeps" if job_id.startswith("sweep-") else "jobs"
        r = self.c.request("GET", f"/v1/{prefix}/{job_id}/artifact", stream=True)
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
        os.replace(tmp, path)
        return path

    def wait(self, job_ids, timeout=None, interval=2.0, progress=False):
        """Polls until every job is succeeded, failed or cancelled; returns them in order. progress:
        a tqdm bar per job (steps done of its total), when tqdm is installed."""
        ids = list(job_ids)
        bars = _bars(ids, progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                jobs = [self.get(i) for i in ids]
                for job, bar in zip(jobs, bars):
                    total = (job.progress or {}).get("total_steps")
                    if total and bar.total != total:
                        bar.total = total
                    bar.n = (job.progress or {}).get("step") or 0
                    bar.set_postfix_str(job.status, refresh=False)
                    bar.refresh()
                if all(j.status in FINAL for j in jobs):
                    return jobs
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{sum(j.status not in FINAL for j in jobs)} of {len(ids)} jobs not finished")
                time.sleep(interval)
        finally:
            for bar in bars:
                bar.close()

    def to_dataframe(self, jobs=None):
        """The jobs (default: every job) as a pandas DataFrame: id, name, status, the headline
        metric, its value, steps. Needs pandas."""
        import pandas as pd
        rows = []
        for j in (jobs if jobs is not None else self.list()):
            metrics = j.metrics or {}
            metric = next(iter(metrics), None)
            rows.append({"id": j.id, "name": j.name, "status": j.status, "task_type": (j.task or {}).get("type"),
                         "metric": metric, "value": metrics.get(metric), "step": (j.progress or {}).get("step"),
                         "best_step": (j.best or {}).get("step")})
        return pd.DataFrame(rows, columns=["id", "name", "status", "task_type", "metric", "value", "step", "best_step"])


class Sweeps:
    def __init__(self, client):
        self.c = client

    def create(self, base, grid, objective=None, strategy="grid", eta=None):
        body = {"base": base, "grid": grid, "strategy": strategy}
        if objective:
            body["objective"] = objective
        if eta:
            body["eta"] = eta
        return Sweep.from_json(self.c.request("POST", "/v1/sweeps", json=body, idempotent_create=True).json())

    def list(self):
        return (Sweep.from_json(s) for s in self.c.pages("/v1/sweeps"))

    def get(self, sweep_id):
        return Sweep.from_json(self.c.get(f"/v1/sweeps/{sweep_id}"))

    def cancel(self, sweep_id):
        return Sweep.from_json(self.c.request("POST", f"/v1/sweeps/{sweep_id}/cancel").json())

    def wait(self, sweep_id, timeout=None, interval=2.0, progress=False):
        """Waits for every variant; returns the finished Sweep."""
        sweep = self.get(sweep_id)
        self.c.jobs.wait([v["job"] for v in sweep.variants], timeout=timeout, interval=interval, progress=progress)
        return self.get(sweep_id)


class Workers:
    def __init__(self, client):
        self.c = client

    def list(self):
        return [WorkerGroup.from_json(w) for w in self.c.get("/v1/workers")["data"]]


class _NoBar:
    total = None
    n = 0

    def set_postfix_str(self, *a, **k):
        pass

    def refresh(self):
        pass

    def close(self):
        pass


def _bars(ids, progress):
    if not progress:
        return [_NoBar() for _ in ids]
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return [_NoBar() for _ in ids]
    return [tqdm(total=None, desc=i, position=k, leave=True, unit="step") for k, i in enumerate(ids)]
