"""Training parity: one task trained 50 steps by bitfleet-train and by a plain Python loop over
transformers (biases and head trainable; same initial head, data order, AdamW, clipping and
schedule) ends with every trained tensor within 1e-4."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import bitfleet_testlib as lib  # noqa: E402
import hf_bitfit  # noqa: E402
import trainlib  # noqa: E402

import torch  # noqa: E402

TOL = 1e-4


class TrainingParityTest(unittest.TestCase):
    def run_case(self, arch, task_name, n_train, **hyper):
        torch.set_num_threads(1)
        with lib.TempDir() as tmp:
            backbone = trainlib.random_backbone(tmp, arch=arch)
            job = trainlib.job(tmp, task_name, task_name, n_train=n_train, seed=11, **hyper)
            # The parameters after the last step are compared: without a validation set they are
            # the result (with one, the best evaluation's are; tests/unit/engine/evaluation_test.cpp).
            del job["validation_file"]
            out, metrics = trainlib.run(tmp, backbone, [job], "bitfleet", slots=2)
            got, _ = trainlib.artifact(out, task_name)
            self.assertEqual(metrics["jobs"][task_name]["steps"], 50)

            tokenizer = hf_bitfit.AutoTokenizer.from_pretrained(backbone)
            h = job["hyperparameters"]
            rows = hf_bitfit.encode(hf_bitfit.read_rows(job["train_file"]), job["task"], tokenizer, h["max_seq_len"])
            losses = []
            model, _ = hf_bitfit.train(backbone, job["task"], rows, h, on_step=lambda s, loss, n: losses.append(loss))
            self.assertEqual(len(losses), 50)
            want = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
        # bitfleet's artifact holds exactly the tensors the task's model trains.
        self.assertEqual(set(got), set(want))
        worst = max(float((got[n] - want[n]).abs().max()) for n in want)
        print(f"\n{arch} {task_name}: largest difference after 50 steps {worst:.2e}", flush=True)
        self.assertLess(worst, TOL, f"{arch} {task_name}: largest difference {worst:.2e}")
        # The tensors moved: the comparison is not of two untouched initialisations.
        moved = float((got["classifier.bias" if "classifier.bias" in got else "classifier.out_proj.bias"]).abs().max())
        self.assertGreater(moved, 1e-3)
        self.assertAlmostEqual(metrics["jobs"][task_name]["train_loss"], losses[-1], places=4)

    def test_bert_classification_50_steps(self):
        # 200 examples / batch 8 = 25 steps per epoch; 2 epochs = 50 steps.
        self.run_case("bert", "sentiment", 200, epochs=2, batch_size=8, learning_rate=3e-3, warmup_ratio=0.1,
                      weight_decay=0.01, max_grad_norm=1.0)

    def test_roberta_pairs_50_steps(self):
        self.run_case("roberta", "pairs", 200, epochs=2, batch_size=8, learning_rate=2e-3, warmup_ratio=0.06,
                      weight_decay=0.0, max_grad_norm=0.5)

    def test_bert_token_classification_50_steps(self):
        self.run_case("bert", "tagging", 400, epochs=1, batch_size=8, learning_rate=3e-3, warmup_ratio=0.2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
