"""A worker group whose coordinator answers garbage (issue 14): a loopback proxy in front of a real
coordinator first answers the group's registration, lease and heartbeat requests with malformed
bodies under 200/201 — an HTML error page, truncated JSON, wrong types, an empty body, nesting past
the JSON depth limit, a body cut short by a closed connection — then forwards everything. The
group (mpirun -np 2) must stay alive, log each bad answer, and finish its jobs once real answers
come, each at attempt 1.
"""
import http.server
import os
import socketserver
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import coordlib  # noqa: E402
import fleetlib  # noqa: E402
import requests  # noqa: E402
import trainlib  # noqa: E402

GARBAGE = [b"<html><body>502 Bad Gateway</body></html>", b'{"jobs": [{"id": "job-', b'{"id": 5, "jobs": "none", "cancel": {"a": 1}}',
           b"", b'{"jobs": ' + b"[" * 80 + b"]" * 80 + b"}", None]  # None: a body cut short by a closed connection


class GarbageProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, upstream, garbage_per_kind):
        self.upstream = upstream
        self.left = {kind: garbage_per_kind for kind in ("register", "lease", "heartbeat")}
        self.sent = {kind: 0 for kind in self.left}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    def garbage_for(self, method, path):
        kind = ("register" if path.endswith("/internal/v1/workers") else "lease" if path.endswith("/lease")
                else "heartbeat" if path.endswith("/heartbeat") else None)
        if method != "POST" or kind is None:
            return None
        with self.lock:
            if self.left[kind] == 0:
                return None
            self.left[kind] -= 1
            self.sent[kind] += 1
            return kind, GARBAGE[self.sent[kind] % len(GARBAGE)]


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        bad = self.server.garbage_for(self.command, self.path)
        if bad:
            kind, payload = bad
            self.send_response(201 if kind == "register" else 200)
            self.send_header("Content-Type", "application/json")
            if payload is None:
                self.send_header("Content-Length", "400")
                self.end_headers()
                self.wfile.write(b'{"jobs": [')
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        r = requests.request(self.command, self.server.upstream + self.path, data=body, headers=headers, timeout=60)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PUT = do_DELETE = relay


class ProtocolFaultsTest(trainlib.BackboneTestCase):
    def test_group_survives_garbage_answers_and_finishes_its_jobs(self):
        c = coordlib.Coordinator(os.path.join(self.dir, "coordinator"), lease_seconds=6).start()
        self.addCleanup(c.stop)
        client = coordlib.Client(c.url, c.admin_token())
        proxy = GarbageProxy(c.url, garbage_per_kind=len(GARBAGE))
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        self.addCleanup(proxy.shutdown)
        files = fleetlib.upload_tasks(client, self.dir, ["sentiment", "tagging"], n_train=64, n_dev=16)
        backbone = os.path.basename(self.backbone)
        ids = [j["id"] for j in client.call("POST", "/v1/jobs/batch", json={"jobs": [
            fleetlib.job_request(files, name, backbone, seed=s) for s, name in enumerate(["sentiment", "tagging"])]}).json()["data"]]

        class ViaProxy:  # the group's view of the coordinator: the proxy's URL, the real tokens
            url = f"http://127.0.0.1:{proxy.server_address[1]}"
            data_dir = c.data_dir
        group = fleetlib.WorkerGroup(ViaProxy, self.backbone, self.dir, "garbage",
                                     extra=["--collective-timeout", "20"]).start()
        self.addCleanup(group.stop)
        jobs = fleetlib.wait_for(lambda: fleetlib.jobs_done(client, ids), 300, "both jobs to finish")
        self.assertEqual([j["status"] for j in jobs], ["succeeded"] * 2, [j["error"] for j in jobs])
        self.assertEqual([j["attempt"] for j in jobs], [1, 1])
        self.assertTrue(group.alive(), group.log_text()[-3000:])
        fleetlib.wait_for(lambda: not any(proxy.left.values()), 60, "every kind of garbage to be sent")
        log = group.log_text()
        for what in ("registering with", "leasing jobs:", "heartbeat:"):
            self.assertGreaterEqual(log.count(what), 3, f"{what!r} bad answers logged\n{log[-3000:]}")
        self.assertNotIn("terminate called", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
