"""Helpers for tests that train with bitfleet-train: a random backbone, generated tasks, specs,
runs, and artifacts read back as tensors."""
import json
import os
import unittest

import bitfleet_testlib as lib
import taskgen
from safetensors import safe_open
from safetensors.torch import load_file


class BackboneTestCase(unittest.TestCase):
    """A test class's temporary directory (`dir`) and random backbone (`backbone`), made once."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = lib.TempDir()
        cls.dir = cls.tmp.__enter__()
        cls.backbone = random_backbone(cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.__exit__(None, None, None)


def random_backbone(directory, arch="bert", layers=2, hidden=64, heads=4, intermediate=128, vocab=1000, seed=5):
    out = os.path.join(directory, f"backbone-{arch}")
    if not os.path.exists(out):
        lib.run([lib.binary("bitfleet-train"), "random-backbone", "--arch", arch, "--layers", str(layers),
                 "--hidden", str(hidden), "--heads", str(heads), "--intermediate", str(intermediate),
                 "--vocab-size", str(vocab), "--max-seq-len", "128", "--seed", str(seed), "--out", out])
    return out


def job(directory, name, task="sentiment", n_train=200, n_dev=60, seed=0, **hyper):
    """A job entry for a spec: a generated task written into `directory`."""
    train, dev, spec = taskgen.write_task(directory, task, n_train, n_dev, seed=seed)
    hyperparameters = {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "seed": seed, "max_seq_len": 64}
    hyperparameters.update(hyper)
    return {"name": name, "backbone": "test", "train_file": train, "validation_file": dev, "task": spec,
            "hyperparameters": hyperparameters}


def run(directory, backbone, jobs, out_name, slots=4, extra=(), mpi_ranks=0, timeout=600, dtype="fp32"):
    """Runs bitfleet-train on `jobs`; returns (out_dir, metrics). dtype: --dtype, fp32 unless a test
    says otherwise (tests compare with fp32 references; `auto` is bf16 on AMX CPUs)."""
    spec_path = os.path.join(directory, f"{out_name}.spec.json")
    with open(spec_path, "w") as f:
        json.dump({"backbone": backbone, "slots": slots, "log_every": 1000, "jobs": jobs}, f)
    out = os.path.join(directory, out_name)
    command = [lib.binary("bitfleet-train"), "run", "--spec", spec_path, "--out", out, "--dtype", dtype, *extra]
    if mpi_ranks:
        command = mpirun(mpi_ranks) + command
    lib.run(command, timeout=timeout)
    with open(os.path.join(out, "metrics.json")) as f:
        return out, json.load(f)


def mpirun(ranks):
    mpiexec = os.environ.get("BITFLEET_MPIEXEC") or "mpirun"
    # Root in containers; more ranks than cores on small machines; no network but loopback.
    return [mpiexec, "--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader",
            "--mca", "btl_vader_single_copy_mechanism", "none", "-np", str(ranks)]


def artifact(out_dir, name):
    path = os.path.join(out_dir, f"{name}.safetensors")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    return load_file(path), metadata
