"""Engine parity with Hugging Face transformers on the same weights (fp32, CPU):

- forward: logits within 1e-5 for BERT and RoBERTa, sequence classification, regression and token
  classification, with padding in the batch;
- backward: every bias and head gradient within 1e-5 of transformers autograd with only the biases
  and the head trainable, relative to the tensor's largest value floored at 1e-3 of the largest
  gradient in the model (the key bias's true gradient is exactly zero, as softmax is invariant to
  it, so there both sides hold rounding noise);
- the real all-MiniLM-L6-v2 (when installed) gives transformers' logits.
"""
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (BertConfig, BertForSequenceClassification, BertForTokenClassification,  # noqa: E402
                          RobertaConfig, RobertaForSequenceClassification, RobertaForTokenClassification)

TOL = 1e-5
SLOT = 2  # not slot 0, so that slot indexing is exercised


def tiny_config(arch, num_labels, regression=False):
    common = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  num_labels=num_labels, problem_type="regression" if regression else None)
    if arch == "bert":
        return BertConfig(max_position_embeddings=64, type_vocab_size=2, **common)
    return RobertaConfig(max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5, **common)


def randomize(model, seed):
    """transformers initialises biases to zero and LayerNorm to ones; make every term matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def make_inputs(arch, n, max_len, seed, with_types):
    g = torch.Generator().manual_seed(seed)
    lengths = [max_len] + [int(x) for x in torch.randint(2, max_len, (n - 1,), generator=g)]
    pad = 0 if arch == "bert" else 1
    ids = torch.full((n, max_len), pad, dtype=torch.long)
    mask = torch.zeros((n, max_len), dtype=torch.long)
    types = torch.zeros((n, max_len), dtype=torch.long)
    for i, length in enumerate(lengths):
        ids[i, :length] = torch.randint(3, 120, (length,), generator=g)  # never the pad id
        mask[i, :length] = 1
        if with_types:
            types[i, length // 2:length] = 1
    return ids, mask, types, lengths


def trainable(name):
    return name.endswith(".bias") or name.startswith("classifier")


class EngineParityTest(unittest.TestCase):
    def run_case(self, arch, task, num_labels, seed):
        regression = task == "regression"
        config = tiny_config(arch, num_labels, regression)
        cls = {("bert", "token_classification"): BertForTokenClassification,
               ("roberta", "token_classification"): RobertaForTokenClassification,
               ("bert", "seq"): BertForSequenceClassification,
               ("roberta", "seq"): RobertaForSequenceClassification}[
            (arch, "token_classification" if task == "token_classification" else "seq")]
        torch.manual_seed(seed)
        model = cls(config).eval()
        randomize(model, seed)
        n, max_len = 6, 12
        ids, mask, types, lengths = make_inputs(arch, n, max_len, seed, with_types=(arch == "bert"))
        g = torch.Generator().manual_seed(seed + 1)
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        if task == "classification":
            labels = torch.randint(0, num_labels, (n,), generator=g)
            inputs["labels_cls"] = labels
            loss_scale = 1.0 / n
        elif task == "regression":
            labels = torch.randn(n, generator=g)
            inputs["labels_reg"] = labels
            loss_scale = 1.0 / n
        else:
            labels = torch.randint(0, num_labels, (n, max_len), generator=g)
            labels[mask == 0] = -100
            labels[:, 0] = -100  # the first token carries no label, as with word-initial labelling
            inputs["labels_tok"] = labels
            loss_scale = 1.0 / int((labels != -100).sum())

        with lib.TempDir() as tmp:
            model.save_pretrained(os.path.join(tmp, "model"))
            save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(tmp, "in.safetensors"))
            heads = {f"slot{SLOT}/{k}": v.detach().contiguous() for k, v in model.state_dict().items()
                     if k.startswith("classifier")}
            save_file(heads, os.path.join(tmp, "heads.safetensors"))
            spec = {"segments": [{"slot": SLOT, "task": task, "num_outputs": num_labels,
                                  "examples": list(range(n)), "loss_scale": loss_scale}]}
            with open(os.path.join(tmp, "spec.json"), "w") as f:
                json.dump(spec, f)
            lib.run([lib.test_binary("engine_probe"), "--backbone", os.path.join(tmp, "model"),
                     "--inputs", os.path.join(tmp, "in.safetensors"), "--spec", os.path.join(tmp, "spec.json"),
                     "--heads", os.path.join(tmp, "heads.safetensors"), "--out", os.path.join(tmp, "out.safetensors")])
            out = load_file(os.path.join(tmp, "out.safetensors"))

        for name, p in model.named_parameters():
            p.requires_grad_(trainable(name))
        hf_inputs = {"input_ids": ids, "attention_mask": mask}
        if arch == "bert":
            hf_inputs["token_type_ids"] = types
        result = model(**hf_inputs, labels=labels)
        result.loss.backward()

        got = out["logits/0"]
        want = result.logits.detach()
        if task == "token_classification":
            seg_len = got.shape[1]
            self.assertEqual(seg_len, max(lengths))
            for i, length in enumerate(lengths):
                torch.testing.assert_close(got[i, :length], want[i, :length], rtol=0, atol=TOL)
        else:
            torch.testing.assert_close(got.reshape(want.shape), want, rtol=0, atol=TOL)
        torch.testing.assert_close(out["loss/0"], result.loss.detach(), rtol=TOL, atol=TOL)

        grads = {k[len(f"grad/slot{SLOT}/"):]: v for k, v in out.items() if k.startswith(f"grad/slot{SLOT}/")}
        expected = {name: p.grad for name, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        # Every trainable tensor of transformers' task model has a bitfleet gradient, and back.
        self.assertEqual(set(grads), set(expected))
        largest = max(float(g.abs().max()) for g in expected.values())
        for name, g_want in expected.items():
            scale = max(float(g_want.abs().max()), 1e-3 * largest)
            err = float((grads[name] - g_want).abs().max()) / scale
            self.assertLess(err, TOL, f"{arch} {task}: gradient of {name} differs by {err:.2e} (relative)")
        # The gradients are not all zero (a vacuous pass would compare zeros).
        self.assertGreater(sum(float(g.abs().sum()) for g in expected.values()), 1e-6)

    def test_bert_classification(self):
        self.run_case("bert", "classification", 3, seed=11)

    def test_bert_regression(self):
        self.run_case("bert", "regression", 1, seed=12)

    def test_bert_token_classification(self):
        self.run_case("bert", "token_classification", 5, seed=13)

    def test_roberta_classification(self):
        self.run_case("roberta", "classification", 2, seed=14)

    def test_roberta_regression(self):
        self.run_case("roberta", "regression", 1, seed=15)

    def test_roberta_token_classification(self):
        self.run_case("roberta", "token_classification", 4, seed=16)

    def test_real_minilm_matches_transformers(self):
        if not lib.MINILM_DIR or not os.path.exists(os.path.join(lib.MINILM_DIR, "model.safetensors")):
            self.skipTest("all-MiniLM-L6-v2 is not installed (BITFLEET_MINILM_DIR): skipped, not passed")
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(lib.MINILM_DIR)
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(lib.MINILM_DIR, num_labels=2).eval()
        texts = [("A man is playing a guitar.", "Someone plays music."), ("The cat sat.", "Dogs bark loudly at night."),
                 ("BitFit trains only biases.", "It matches full fine-tuning on small data.")]
        enc = tok([a for a, _ in texts], [b for _, b in texts], padding=True, return_tensors="pt")
        with torch.no_grad():
            want = model(**enc).logits
        with lib.TempDir() as tmp:
            save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                       "token_type_ids": enc["token_type_ids"], "labels_cls": torch.zeros(3, dtype=torch.long)},
                      os.path.join(tmp, "in.safetensors"))
            save_file({f"slot0/{k}": v.contiguous() for k, v in model.state_dict().items() if k.startswith("classifier")},
                      os.path.join(tmp, "heads.safetensors"))
            with open(os.path.join(tmp, "spec.json"), "w") as f:
                json.dump({"segments": [{"slot": 0, "task": "classification", "num_outputs": 2,
                                         "examples": [0, 1, 2], "loss_scale": 1 / 3}]}, f)
            lib.run([lib.test_binary("engine_probe"), "--backbone", lib.MINILM_DIR, "--inputs",
                     os.path.join(tmp, "in.safetensors"), "--spec", os.path.join(tmp, "spec.json"), "--heads",
                     os.path.join(tmp, "heads.safetensors"), "--out", os.path.join(tmp, "out.safetensors")])
            got = load_file(os.path.join(tmp, "out.safetensors"))["logits/0"]
        torch.testing.assert_close(got, want, rtol=0, atol=TOL)


class RandomBackboneAndDescribeTest(unittest.TestCase):
    def test_random_backbone_loads_in_transformers_with_equal_logits_and_ids(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        texts = ["the movie was very good", "A man said: it's not bad, it's GREAT!", "zqx unknown wörds"]
        for arch in ("bert", "roberta"):
            with lib.TempDir() as tmp:
                out = os.path.join(tmp, arch)
                lib.run([lib.binary("bitfleet-train"), "random-backbone", "--arch", arch, "--layers", "2",
                         "--hidden", "32", "--heads", "4", "--intermediate", "48", "--vocab-size", "700",
                         "--max-seq-len", "64", "--seed", "3", "--out", out])
                tok = AutoTokenizer.from_pretrained(out)
                cases = [{"a": t, "b": None, "max_len": 64} for t in texts]
                got_ids = [json.loads(line)["ids"] for line in lib.run(
                    [lib.test_binary("tokenize_tool"), out], input="".join(json.dumps(c) + "\n" for c in cases)
                ).stdout.splitlines()]
                self.assertEqual(got_ids, [tok(t)["input_ids"] for t in texts], arch)
                torch.manual_seed(0)
                model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2).eval()
                enc = tok(texts, padding=True, return_tensors="pt")
                with torch.no_grad():
                    want = model(**enc).logits
                types = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
                save_file({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                           "token_type_ids": types, "labels_cls": torch.zeros(3, dtype=torch.long)},
                          os.path.join(tmp, "in.safetensors"))
                save_file({f"slot0/{k}": v.contiguous() for k, v in model.state_dict().items()
                           if k.startswith("classifier")}, os.path.join(tmp, "heads.safetensors"))
                with open(os.path.join(tmp, "spec.json"), "w") as f:
                    json.dump({"segments": [{"slot": 0, "task": "classification", "num_outputs": 2,
                                             "examples": [0, 1, 2], "loss_scale": 1 / 3}]}, f)
                lib.run([lib.test_binary("engine_probe"), "--backbone", out, "--inputs",
                         os.path.join(tmp, "in.safetensors"), "--spec", os.path.join(tmp, "spec.json"),
                         "--heads", os.path.join(tmp, "heads.safetensors"), "--out", os.path.join(tmp, "out.safetensors")])
                got = load_file(os.path.join(tmp, "out.safetensors"))["logits/0"]
                torch.testing.assert_close(got, want, rtol=0, atol=TOL, msg=arch)

    def test_describe_counts_what_transformers_counts_for_bert_base(self):
        from transformers import BertModel
        config = BertConfig()  # bert-base-uncased's shape
        with lib.TempDir() as tmp:
            config.to_json_file(os.path.join(tmp, "config.json"))
            described = lib.run_json([lib.binary("bitfleet-train"), "describe", tmp, "--json"])
        model = BertModel(config)
        total = sum(p.numel() for p in model.parameters())
        biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
        qi = sum(p.numel() for n, p in model.named_parameters()
                 if n.endswith("attention.self.query.bias") or n.endswith("intermediate.dense.bias"))
        self.assertEqual(described["total_parameters"], total)
        self.assertEqual(described["bias_parameters"], {"all": biases, "query+intermediate": qi})
        # The paper's figures: 0.09% and 0.04% of 109M.
        self.assertEqual((total, biases, qi), (109_482_240, 102_912, 46_080))
        self.assertAlmostEqual(described["fraction"]["all"] * 100, 0.094, places=3)
        self.assertAlmostEqual(described["fraction"]["query+intermediate"] * 100, 0.042, places=3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
