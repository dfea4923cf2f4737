"""bitfleet-serve for tests: a server process on an ephemeral loopback port, and the transformers
reference a prediction is checked against (the artifact loaded with load_state_dict)."""
import os
import re
import subprocess
import time

import requests

import bitfleet_testlib as lib


class Serve:
    def __init__(self, backbone, token_file, log_dir, name, coordinator=None, artifact_dir=None, extra=(),
                 dtype="fp32"):
        """dtype: --dtype; fp32 unless a test says otherwise (predictions are checked against
        transformers in fp32; `auto` is bf16 on AMX CPUs)."""
        self.command = [lib.binary("bitfleet-serve"), "--listen", "127.0.0.1:0", "--backbone", backbone,
                        "--token-file", token_file, "--threads", "1", "--dtype", dtype, *extra]
        if coordinator:
            self.command += ["--coordinator", coordinator]
        if artifact_dir:
            self.command += ["--artifact-dir", artifact_dir]
        self.log_path = os.path.join(log_dir, f"serve-{name}.log")
        with open(token_file) as f:
            self.token = f.read().strip()
        self.proc = None

    def start(self, timeout=60):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"bitfleet-serve did not start: {line!r}; log: {open(self.log_path).read()[-2000:]}")
        self.url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.time() + timeout
        while requests.get(self.url + "/readyz", timeout=5).status_code != 200:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"bitfleet-serve never became ready; log: {open(self.log_path).read()[-2000:]}")
            time.sleep(0.1)
        return self

    def predict(self, task, inputs, token=None, **kw):
        body = {"task": task, "inputs": inputs, **kw}
        return requests.post(self.url + "/v1/predict", json=body, timeout=60,
                             headers={"Authorization": f"Bearer {token or self.token}"})

    def metric(self, name):
        """The sum of a metric's samples whose name is exactly `name` (any labels)."""
        total = 0.0
        for line in requests.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stdout.close()
            self.log.close()
        return self.proc.returncode if self.proc else None


def inputs_of(rows, task):
    """Predict inputs from dataset rows of a task spec."""
    fields = task["text_fields"]
    out = []
    for r in rows:
        if task["type"] == "token_classification":
            words = r[fields[0]] if isinstance(r[fields[0]], list) else r[fields[0]].split()
            out.append({"tokens": [str(w) for w in words]})
        elif len(fields) == 2:
            out.append({"text": str(r[fields[0]]), "text_pair": str(r[fields[1]])})
        else:
            out.append({"text": str(r[fields[0]])})
    return out


def reference(backbone, task, artifact, inputs, max_seq_len):
    """What transformers predicts for `inputs` with the artifact loaded by load_state_dict:
    probabilities (classification), score (regression) or one tag per word (tagging)."""
    import torch
    from safetensors.torch import load_file
    import hf_bitfit
    tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(backbone)
    model = hf_bitfit.load_model(backbone, task, "cpu")
    missing, unexpected = model.load_state_dict(load_file(artifact), strict=False)
    assert not unexpected, unexpected
    model.eval()
    out = []
    with torch.no_grad():
        for x in inputs:
            if "tokens" in x:
                enc = tokenizer(x["tokens"], is_split_into_words=True, truncation=True, max_length=max_seq_len,
                                return_tensors="pt")
                ids = model(**enc).logits[0].argmax(-1).tolist()
                tags, seen = [None] * len(x["tokens"]), set()
                for t, w in enumerate(enc.word_ids()):
                    if w is not None and w not in seen:
                        seen.add(w)
                        tags[w] = task["labels"][ids[t]]
                out.append({"tags": tags})
                continue
            texts = [x["text"]] + ([x["text_pair"]] if "text_pair" in x else [])
            enc = tokenizer(*texts, truncation=True, max_length=max_seq_len, return_tensors="pt")
            logits = model(**enc).logits[0].double()
            if task["type"] == "regression":
                out.append({"score": float(logits[0])})
            else:
                p = torch.softmax(logits, -1).tolist()
                out.append({"probabilities": dict(zip(task["labels"], p))})
    return out
