"""schemathesis against the live coordinator and its own /v1/openapi.json, and against a live
bitfleet-serve and its document: no 5xx, and no status code, content type, header or body that the
document does not describe."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402
import servelib  # noqa: E402
import trainlib  # noqa: E402

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


def run_schemathesis(url, token, cwd, config=None):
    schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    # One worker: schemathesis's own concurrent runner trips a CPython AST bug here.
    return subprocess.run([schemathesis, *(["--config-file", config] if config else []), "run", url + "/v1/openapi.json",
                           "-H", f"Authorization: Bearer {token}", "--checks", CHECKS,
                           "--max-examples", "40", "--seed", "7", "--workers", "1", "--no-shrink",
                           "--request-timeout", "30"],
                          capture_output=True, text=True, timeout=900, cwd=cwd)


class SchemathesisTest(unittest.TestCase):
    def assert_passed(self, proc):
        summary = proc.stdout[proc.stdout.find("SUMMARY"):]
        print(summary, flush=True)
        self.assertEqual(proc.returncode, 0, proc.stdout[-6000:] + proc.stderr[-2000:])
        self.assertIn("passed", summary)

    def test_serve_no_server_errors_and_no_responses_outside_its_document(self):
        with lib.TempDir() as tmp:
            backbone = trainlib.random_backbone(tmp)
            trainlib.run(tmp, backbone, [trainlib.job(tmp, "sentiment", n_train=16, n_dev=4, epochs=1)], "artifacts")
            token = os.path.join(tmp, "token")
            with open(token, "w") as f:
                f.write("schemathesis")
            serve = servelib.Serve(backbone, token, tmp, "schemathesis", artifact_dir=os.path.join(tmp, "artifacts"))
            serve.start()
            try:
                self.assert_passed(run_schemathesis(serve.url, "schemathesis", tmp))
            finally:
                serve.stop()

    def test_no_server_errors_and_no_responses_outside_the_document(self):
        with lib.TempDir() as tmp, coordlib.Coordinator(os.path.join(tmp, "data")) as c:
            client = coordlib.Client(c.url, c.admin_token())
            # Real ids, so that the per-file and per-job operations reach past 404.
            fid = client.upload(coordlib.write_sentiment(os.path.join(tmp, "train.tsv"))).json()["id"]
            jid = client.create_job(coordlib.job_request(fid)).json()["id"]
            config = os.path.join(tmp, "schemathesis.toml")
            with open(config, "w") as f:
                f.write('[[operations]]\ninclude-path-regex = "^/v1/jobs/\\\\{id\\\\}"\nparameters = { id = "%s" }\n\n'
                        '[[operations]]\ninclude-path-regex = "^/v1/files/\\\\{id\\\\}"\nparameters = { id = "%s" }\n'
                        % (jid, fid))
            self.assert_passed(run_schemathesis(c.url, c.admin_token(), tmp, config))


if __name__ == "__main__":
    unittest.main(verbosity=2)
