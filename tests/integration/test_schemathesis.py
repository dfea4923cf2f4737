"""schemathesis against the live coordinator and its own /v1/openapi.json: no 5xx, and no status
code, content type, header or body that the document does not describe."""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import coordlib  # noqa: E402

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


class SchemathesisTest(unittest.TestCase):
    def test_no_server_errors_and_no_responses_outside_the_document(self):
        schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
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
            # One worker: schemathesis's own concurrent runner trips a CPython AST bug here.
            proc = subprocess.run([schemathesis, "--config-file", config, "run", c.url + "/v1/openapi.json",
                                   "-H", f"Authorization: Bearer {c.admin_token()}", "--checks", CHECKS,
                                   "--max-examples", "40", "--seed", "7", "--workers", "1", "--no-shrink",
                                   "--request-timeout", "30"],
                                  capture_output=True, text=True, timeout=900, cwd=tmp)
            summary = proc.stdout[proc.stdout.find("SUMMARY"):]
            print(summary, flush=True)
            self.assertEqual(proc.returncode, 0, proc.stdout[-6000:] + proc.stderr[-2000:])
            self.assertIn("passed", summary)


if __name__ == "__main__":
    unittest.main(verbosity=2)
