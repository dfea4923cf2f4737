"""Tokenizer parity: bitfleet's WordPiece and byte-level BPE give the ids Hugging Face
`tokenizers` gives, on thousands of varied strings and pairs, for vocabularies trained here and
(when installed) the real all-MiniLM-L6-v2 tokenizer."""
import json
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "pylib"))
import bitfleet_testlib as lib  # noqa: E402
import textgen  # noqa: E402

from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, Tokenizer  # noqa: E402
from transformers import BertTokenizerFast, RobertaTokenizerFast  # noqa: E402

N_SINGLE, N_PAIR, N_WORDS = 1400, 700, 300
MAX_LENS = [8, 12, 16, 32, 64, 128, 512]


def make_cases(seed):
    rng = random.Random(seed)
    texts = textgen.varied_strings(N_SINGLE + 2 * N_PAIR, seed)
    cases = [{"a": t, "b": None, "max_len": rng.choice(MAX_LENS)} for t in texts[:N_SINGLE]]
    for i in range(N_PAIR):
        cases.append({"a": texts[N_SINGLE + 2 * i], "b": texts[N_SINGLE + 2 * i + 1],
                      "max_len": rng.choice(MAX_LENS)})
    for _ in range(N_WORDS):
        cases.append({"a": None, "b": None, "words": textgen.word_list(rng), "max_len": rng.choice(MAX_LENS)})
    return cases


def bitfleet_encode(tokenizer_dir, cases):
    stdin = "".join(json.dumps(c) + "\n" for c in cases)
    out = lib.run([lib.test_binary("tokenize_tool"), tokenizer_dir], input=stdin).stdout
    return [json.loads(line) for line in out.splitlines()]


class TokenizerParityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = lib.TempDir()
        root = cls.tmp.__enter__()
        corpus = textgen.varied_strings(6000, seed=7)
        corpus_file = os.path.join(root, "corpus.txt")
        with open(corpus_file, "w") as f:
            f.write("\n".join(corpus))
        wp = BertWordPieceTokenizer(lowercase=True)
        wp.train([corpus_file], vocab_size=3000, min_frequency=2)
        # The vocabulary-file directories are what older checkpoints ship; transformers builds its
        # tokenizer from them, and save_pretrained() writes the tokenizer.json of newer ones.
        cls.bert_vocab_dir = os.path.join(root, "bert-vocab-only")
        os.makedirs(cls.bert_vocab_dir)
        wp.save_model(cls.bert_vocab_dir)  # vocab.txt
        cls.bert_dir = os.path.join(root, "bert")
        BertTokenizerFast.from_pretrained(cls.bert_vocab_dir).save_pretrained(cls.bert_dir)

        bpe = ByteLevelBPETokenizer()
        bpe.train([corpus_file], vocab_size=2500, min_frequency=2,
                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        cls.roberta_vocab_dir = os.path.join(root, "roberta-vocab-only")
        os.makedirs(cls.roberta_vocab_dir)
        bpe.save_model(cls.roberta_vocab_dir)  # vocab.json, merges.txt
        cls.roberta_dir = os.path.join(root, "roberta")
        RobertaTokenizerFast.from_pretrained(cls.roberta_vocab_dir).save_pretrained(cls.roberta_dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.__exit__(None, None, None)

    def check(self, tokenizer_dir, reference_dir, fast_class, seed, compare_types):
        cases = make_cases(seed)
        got = bitfleet_encode(tokenizer_dir, cases)
        ref = Tokenizer.from_file(os.path.join(reference_dir, "tokenizer.json"))
        ref.no_padding()
        # Guard against a vacuous pass: the reference must hold the trained vocabulary, and most
        # text must tokenize to real tokens rather than the unknown token.
        self.assertGreaterEqual(ref.get_vocab_size(), 2000)
        unk = ref.token_to_id("[UNK]") if ref.token_to_id("[UNK]") is not None else ref.token_to_id("<unk>")
        all_ids = [i for out in got for i in out["ids"]]
        self.assertLess(sum(1 for i in all_ids if i == unk) / len(all_ids), 0.2)
        words_ref = fast_class.from_pretrained(reference_dir, **(
            {"add_prefix_space": True} if fast_class is RobertaTokenizerFast else {}))
        mismatches = []
        for case, out in zip(cases, got):
            if case.get("words"):
                enc = words_ref(case["words"], is_split_into_words=True, truncation=True,
                                max_length=case["max_len"])
                want_ids = enc["input_ids"]
                want_words = [-1 if w is None else w for w in enc.word_ids()]
                ok = out["ids"] == want_ids and out["word_ids"] == want_words
                want = (want_ids, want_words)
            else:
                ref.enable_truncation(case["max_len"], strategy="longest_first")
                enc = ref.encode(case["a"], case["b"]) if case["b"] is not None else ref.encode(case["a"])
                ok = out["ids"] == enc.ids and (not compare_types or out["type_ids"] == enc.type_ids)
                want = (enc.ids, enc.type_ids)
            if not ok:
                mismatches.append((case, out, want))
        self.assertEqual(len(got), len(cases))
        self.assertGreaterEqual(len(cases), 2000)
        detail = "\n".join(f"{c!r}\n  bitfleet {o}\n  hf       {w}" for c, o, w in mismatches[:5])
        self.assertEqual(len(mismatches), 0, f"{len(mismatches)} of {len(cases)} differ:\n{detail}")

    def test_wordpiece_tokenizer_json(self):
        self.check(self.bert_dir, self.bert_dir, BertTokenizerFast, seed=1, compare_types=True)

    def test_wordpiece_vocab_txt(self):
        self.check(self.bert_vocab_dir, self.bert_dir, BertTokenizerFast, seed=2, compare_types=True)

    def test_byte_level_bpe_tokenizer_json(self):
        self.check(self.roberta_dir, self.roberta_dir, RobertaTokenizerFast, seed=3, compare_types=False)

    def test_byte_level_bpe_vocab_json_and_merges(self):
        self.check(self.roberta_vocab_dir, self.roberta_dir, RobertaTokenizerFast, seed=4, compare_types=False)

    def test_real_minilm_tokenizer(self):
        if not lib.MINILM_DIR or not os.path.exists(os.path.join(lib.MINILM_DIR, "tokenizer.json")):
            self.skipTest("all-MiniLM-L6-v2 is not installed (BITFLEET_MINILM_DIR); skipped")
        self.check(lib.MINILM_DIR, lib.MINILM_DIR, BertTokenizerFast, seed=5, compare_types=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
