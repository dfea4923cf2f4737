"""BitFit with plain Hugging Face transformers: the baseline bitfleet is measured against.

What a user would write today: load the model for a task, freeze everything but the biases and the
head, and train with torch.optim.AdamW and transformers' linear schedule. Options make it follow
bitfleet's exact recipe (data order, head initialisation) so that parity tests compare like with
like; benchmarks use it as is, one task after another, model loaded per task.

    python bench/hf_bitfit.py --backbone DIR --spec job.json   (a job request with local paths)
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import torch
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                          get_linear_schedule_with_warmup)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "pylib"))
import bitfleet_order  # noqa: E402

DEFAULTS = {"epochs": 3, "batch_size": 16, "learning_rate": 1e-3, "warmup_ratio": 0.06, "weight_decay": 0.0,
            "max_seq_len": 128, "seed": 42, "max_grad_norm": 1.0, "max_steps": 0}


def add_run_arguments(parser, lr):
    """The flags every bitfleet-train-versus-transformers benchmark takes."""
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--backbone", default=os.environ.get("BITFLEET_MINILM_DIR"))
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--bin", default=os.path.join(here, "..", "build", "bin", "bitfleet-train"))
    parser.add_argument("--out", default=os.path.join(here, "results"))


def read_rows(path):
    """TSV (no quoting, GLUE style), CSV (RFC 4180) or JSONL rows as dicts."""
    if path.endswith(".jsonl") or path.endswith(".json"):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    with open(path, newline="") as f:
        if path.endswith(".tsv"):
            lines = [line.rstrip("\r\n") for line in f if line.strip("\r\n")]
            header = lines[0].split("\t")
            return [dict(zip(header, line.split("\t"))) for line in lines[1:]]
        return list(csv.DictReader(f))


def encode(rows, task, tokenizer, max_seq_len):
    """Tokenized examples: dicts of input_ids, token_type_ids and label/target/token_labels."""
    out = []
    fields, label_field = task["text_fields"], task["label_field"]
    for r in rows:
        if task["type"] == "token_classification":
            words = r[fields[0]] if isinstance(r[fields[0]], list) else r[fields[0]].split()
            tags = r[label_field] if isinstance(r[label_field], list) else r[label_field].split()
            enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_seq_len)
            word_ids, labels, previous = enc.word_ids(), [], None
            for w in word_ids:
                labels.append(-100 if w is None or w == previous else task["labels"].index(str(tags[w])))
                previous = w
            out.append({"input_ids": enc["input_ids"], "token_type_ids": enc.get("token_type_ids"), "labels": labels})
            continue
        texts = [str(r[f]) for f in fields]
        enc = tokenizer(*texts, truncation=True, max_length=max_seq_len)
        example = {"input_ids": enc["input_ids"], "token_type_ids": enc.get("token_type_ids")}
        if task["type"] == "regression":
            example["labels"] = float(r[label_field])
        else:
            example["labels"] = task["labels"].index(str(r[label_field]))
        out.append(example)
    return out


def load_model(backbone, task, device, dtype=None):
    kwargs = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if task["type"] == "token_classification":
        model = AutoModelForTokenClassification.from_pretrained(backbone, num_labels=len(task["labels"]), **kwargs)
    else:
        n = 1 if task["type"] == "regression" else len(task["labels"])
        model = AutoModelForSequenceClassification.from_pretrained(
            backbone, num_labels=n, problem_type="regression" if n == 1 else "single_label_classification", **kwargs)
    return model.to(device=device, dtype=dtype) if dtype else model.to(device)


def bitfleet_head_init(model, seed):
    """The head bitfleet draws for a new slot: normal(0, 0.02) from a CPU generator seeded with the
    job's seed (RoBERTa's dense layer first), zero biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head = model.classifier
        if hasattr(head, "dense"):
            head.dense.weight.copy_(torch.empty(head.dense.weight.shape).normal_(0.0, 0.02, generator=g))
            head.dense.bias.zero_()
            head = head.out_proj
        head.weight.copy_(torch.empty(head.weight.shape).normal_(0.0, 0.02, generator=g))
        head.bias.zero_()


BIAS_SUFFIXES = {"all": (".bias",), "query+intermediate": ("attention.self.query.bias", "intermediate.dense.bias")}


def trainable_parameters(model, bias_terms="all"):
    """BitFit: the encoder's biases (every one, or the paper's query + intermediate subset) and the
    task head."""
    params = []
    for name, p in model.named_parameters():
        train = name.endswith(BIAS_SUFFIXES[bias_terms]) or name.startswith("classifier")
        p.requires_grad_(train)
        if train:
            params.append(p)
    return params


def collate(examples, tokenizer, device):
    batch = tokenizer.pad([{k: v for k, v in e.items() if v is not None and k != "labels"} for e in examples],
                          return_tensors="pt")
    labels = [e["labels"] for e in examples]
    if isinstance(labels[0], list):
        width = batch["input_ids"].shape[1]
        labels = [row + [-100] * (width - len(row)) for row in labels]
    batch["labels"] = torch.tensor(labels)
    return {k: v.to(device) for k, v in batch.items()}


def train(backbone, task, examples, hyper, device="cpu", dtype=None, bitfleet_recipe=True, autocast_bf16=False,
          on_step=None, on_epoch_end=None):
    """Trains one task; returns the model. With bitfleet_recipe, the data order and the head's
    initial values are bitfleet's, so that the two can be compared step for step. on_epoch_end(model,
    step) runs after each epoch's last step (and after the last step), where bitfleet evaluates."""
    h = dict(DEFAULTS, **hyper)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = load_model(backbone, task, device, dtype)
    model.train()
    if bitfleet_recipe:
        bitfleet_head_init(model, h["seed"])
    params = trainable_parameters(model, h.get("bias_terms", "all"))
    lengths = [len(e["input_ids"]) for e in examples]
    if bitfleet_recipe:
        batches = bitfleet_order.batches(len(examples), h["seed"], h["epochs"], h["batch_size"], lengths, h["max_steps"])
    else:
        g = torch.Generator().manual_seed(h["seed"])
        batches = []
        for _ in range(h["epochs"]):
            order = torch.randperm(len(examples), generator=g).tolist()
            batches.extend(order[i:i + h["batch_size"]] for i in range(0, len(order), h["batch_size"]))
        if h["max_steps"]:
            batches = batches[:h["max_steps"]]
    optimizer = torch.optim.AdamW(params, lr=h["learning_rate"], betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=h["weight_decay"])
    warmup = math.ceil(h["warmup_ratio"] * len(batches))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, len(batches))
    for step, indices in enumerate(batches):
        batch = collate([examples[i] for i in indices], tokenizer, device)
        with torch.autocast(device_type=device if isinstance(device, str) else device.type, dtype=torch.bfloat16,
                            enabled=autocast_bf16):
            loss = model(**batch).loss
        loss.backward()
        if h["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(params, h["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if on_step:
            on_step(step, float(loss), len(indices))
        steps_per_epoch = math.ceil(len(examples) / h["batch_size"])
        if on_epoch_end and ((step + 1) % steps_per_epoch == 0 or step + 1 == len(batches)):
            on_epoch_end(model, step + 1)
    return model, tokenizer


@torch.no_grad()
def evaluate(model, tokenizer, task, examples, device="cpu", batch_size=64):
    model.eval()
    preds, gold = [], []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        batch = collate(chunk, tokenizer, device)
        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        if task["type"] == "regression":
            preds += logits.squeeze(-1).tolist()
            gold += labels.tolist()
        elif task["type"] == "classification":
            preds += logits.argmax(-1).tolist()
            gold += labels.tolist()
        else:
            p = logits.argmax(-1)
            mask = labels != -100
            preds += p[mask].tolist()
            gold += labels[mask].tolist()
    model.train()
    return metrics(task, preds, gold)


def metrics(task, preds, gold):
    if task["type"] == "regression":
        import numpy as np
        p, g = np.array(preds), np.array(gold)
        rank = lambda a: np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)  # noqa: E731
        return {"pearson": float(np.corrcoef(p, g)[0, 1]), "spearman": float(np.corrcoef(rank(p), rank(g))[0, 1]),
                "mse": float(((p - g) ** 2).mean())}
    accuracy = sum(int(a == b) for a, b in zip(preds, gold)) / max(1, len(gold))
    if task["type"] == "token_classification":
        return {"accuracy": accuracy}
    tp = sum(1 for a, b in zip(preds, gold) if a == 1 and b == 1)
    fp = sum(1 for a, b in zip(preds, gold) if a == 1 and b != 1)
    fn = sum(1 for a, b in zip(preds, gold) if a != 1 and b == 1)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"accuracy": accuracy, "f1": f1}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--spec", required=True, help="a job request with local file paths")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.spec) as f:
        job = json.load(f)
    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(args.backbone)
    hyper = dict(DEFAULTS, **job.get("hyperparameters", {}))
    train_rows = encode(read_rows(job["train_file"]), job["task"], tokenizer, hyper["max_seq_len"])
    model, tokenizer = train(args.backbone, job["task"], train_rows, hyper, device=args.device)
    result = {"seconds": time.time() - start}
    if job.get("validation_file"):
        dev = encode(read_rows(job["validation_file"]), job["task"], tokenizer, hyper["max_seq_len"])
        result["eval"] = evaluate(model, tokenizer, job["task"], dev, device=args.device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
