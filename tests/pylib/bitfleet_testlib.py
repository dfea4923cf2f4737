"""Shared helpers for bitfleet's Python tests: where the binaries are, running them, temp dirs.

Tests run under ctest, which exports BITFLEET_BIN_DIR (the product's binaries),
BITFLEET_TEST_BIN_DIR (test-only tools), BITFLEET_SOURCE_DIR and BITFLEET_MINILM_DIR.
"""
import json
import os
import shutil
import subprocess
import tempfile

BIN_DIR = os.environ.get("BITFLEET_BIN_DIR", "")
TEST_BIN_DIR = os.environ.get("BITFLEET_TEST_BIN_DIR", "")
SOURCE_DIR = os.environ.get("BITFLEET_SOURCE_DIR", "")
MINILM_DIR = os.environ.get("BITFLEET_MINILM_DIR", "")


def binary(name):
    """Path of a product binary (bitfleet-train, bitfleet-coordinator, ...)."""
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        # A missing binary is a broken build, never a reason to skip.
        raise AssertionError(f"{path} is not built (BITFLEET_BIN_DIR={BIN_DIR!r})")
    return path


def test_binary(name):
    return os.path.join(TEST_BIN_DIR, name)


def run(args, check=True, timeout=600, env=None, input=None):
    """Runs a command; on failure raises with its output so the test log shows why."""
    merged = dict(os.environ)
    merged.update(env or {})
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=merged,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def run_json(args, **kw):
    return json.loads(run(args, **kw).stdout)


class TempDir:
    """A temporary directory removed on exit unless BITFLEET_KEEP_TMP is set."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="bitfleet-test-")
        return self.path

    def __exit__(self, *exc):
        if not os.environ.get("BITFLEET_KEEP_TMP"):
            shutil.rmtree(self.path, ignore_errors=True)
