"""safetensors parity: files written by Python's safetensors read back equal in C++, and files
written by bitfleet's C++ writer read back equal in Python."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}


def tensor_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


class SafetensorsParityTest(unittest.TestCase):
    def test_python_written_file_reads_back_equal_in_cpp(self):
        g = torch.Generator().manual_seed(0)
        tensors = {}
        for name, dtype in DTYPES.items():
            if dtype.is_floating_point:
                t = torch.randn(3, 5, generator=g).to(dtype)
            elif dtype == torch.bool:
                t = torch.rand(7, generator=g) > 0.5
            else:
                t = torch.randint(-100 if dtype != torch.uint8 else 0, 100, (2, 3, 4), generator=g).to(dtype)
            tensors[f"t.{name}"] = t
        tensors["scalar"] = torch.tensor(3.5)
        tensors["empty"] = torch.zeros(0, 4)
        with lib.TempDir() as tmp:
            path = os.path.join(tmp, "py.safetensors")
            save_file(tensors, path, metadata={"job_id": "job-1", "note": "ünïcode"})
            dump = lib.run_json([lib.test_binary("safetensors_tool"), "dump", path])
        self.assertEqual(dump["metadata"], {"job_id": "job-1", "note": "ünïcode"})
        by_name = {t["name"]: t for t in dump["tensors"]}
        self.assertEqual(set(by_name), set(tensors))
        for name, t in tensors.items():
            got = by_name[name]
            self.assertEqual(got["shape"], list(t.shape), name)
            want_dtype = [k for k, v in DTYPES.items() if v == t.dtype][0]
            self.assertEqual(got["dtype"], want_dtype, name)
            self.assertEqual(bytes.fromhex(got["hex"]), tensor_bytes(t), name)

    def test_cpp_written_file_reads_back_equal_in_python(self):
        with lib.TempDir() as tmp:
            path = os.path.join(tmp, "cpp.safetensors")
            lib.run([lib.test_binary("safetensors_tool"), "write", path])
            loaded = load_file(path)
            with safe_open(path, framework="pt") as f:
                metadata = f.metadata()
        self.assertEqual(metadata, {"writer": "bitfleet", "steps": "30"})
        # The tool writes arange-based values, so they are known here exactly.
        torch.testing.assert_close(loaded["f32"], torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.25,
                                   rtol=0, atol=0)
        torch.testing.assert_close(loaded["i64"], torch.arange(5, dtype=torch.int64) - 2, rtol=0, atol=0)
        torch.testing.assert_close(loaded["bf16"], (torch.arange(6, dtype=torch.float32) * 1.5).to(torch.bfloat16),
                                   rtol=0, atol=0)
        self.assertEqual(loaded["empty"].shape, (0, 3))


if __name__ == "__main__":
    unittest.main()
