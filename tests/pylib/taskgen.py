"""Small generated tasks that a BitFit model can learn: used by tests, benchmarks and the quickstart.

Sentences use plain English words (all in `bitfleet-train random-backbone`'s vocabulary, and in
any real BERT/RoBERTa vocabulary). Labels follow simple rules of those words, so a model that
trains correctly beats chance clearly and one that does not stays at chance.
"""
import csv
import json
import os
import random

POSITIVE = ["good", "great", "best", "fun", "love", "happy", "funny"]
NEGATIVE = ["bad", "terrible", "worst", "boring", "hate", "sad"]
NOUNS = ["movie", "film", "story", "actor", "plot", "music", "book", "song", "game", "team", "dog", "cat",
         "car", "house", "city", "man", "woman", "world"]
VERBS = ["saw", "said", "made", "went", "felt", "came", "play", "run", "walk", "win", "lose", "like"]
DETS = ["the", "a", "this", "that", "every", "each"]
ADJS = ["new", "old", "big", "small", "red", "blue", "green", "long", "short"]
FILLER = ["and", "but", "very", "so", "then", "also", "just", "still", "now", "here", "there"]

POS_TAGS = ["DET", "NOUN", "VERB", "ADJ", "OTHER"]


def _sentence(rng, n_words):
    words = []
    for _ in range(n_words):
        words.append(rng.choice(rng.choice([NOUNS, VERBS, DETS, ADJS, FILLER])))
    return words


def sentiment(rng, n):
    """Binary classification: does the sentence hold more positive than negative words?"""
    rows = []
    for _ in range(n):
        words = _sentence(rng, rng.randint(3, 14))
        label = rng.random() < 0.5
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append({"sentence": " ".join(words), "label": "pos" if label else "neg"})
    return rows


def topic(rng, n):
    """Three-way classification by which word family dominates."""
    families = {"animals": ["dog", "cat", "man", "woman"], "arts": ["movie", "film", "music", "song", "book"],
                "places": ["city", "house", "world", "car"]}
    rows = []
    for _ in range(n):
        name = rng.choice(sorted(families))
        words = _sentence(rng, rng.randint(2, 10))
        for _ in range(3):
            words.insert(rng.randrange(len(words) + 1), rng.choice(families[name]))
        rows.append({"text": " ".join(words), "topic": name})
    return rows


def pairs(rng, n):
    """Pair classification: does the second sentence mention the first one's noun?"""
    rows = []
    for _ in range(n):
        noun = rng.choice(NOUNS)
        first = _sentence(rng, rng.randint(3, 9)) + [noun]
        rng.shuffle(first)
        same = rng.random() < 0.5
        other = noun if same else rng.choice([w for w in NOUNS if w != noun])
        second = _sentence(rng, rng.randint(3, 9)) + [other]
        rng.shuffle(second)
        rows.append({"sentence1": " ".join(first), "sentence2": " ".join(second),
                     "label": "entailment" if same else "not_entailment"})
    return rows


def scores(rng, n):
    """Regression: 0..5 by the balance of positive and negative words."""
    rows = []
    for _ in range(n):
        words = _sentence(rng, rng.randint(3, 10))
        pos, neg = rng.randint(0, 3), rng.randint(0, 3)
        for w in [rng.choice(POSITIVE) for _ in range(pos)] + [rng.choice(NEGATIVE) for _ in range(neg)]:
            words.insert(rng.randrange(len(words) + 1), w)
        rows.append({"sentence": " ".join(words), "score": round(2.5 + (pos - neg) * 0.8, 2)})
    return rows


def tagging(rng, n):
    """Token classification: each word's part of speech, from fixed word lists."""
    tag_of = {**{w: "DET" for w in DETS}, **{w: "NOUN" for w in NOUNS}, **{w: "VERB" for w in VERBS},
              **{w: "ADJ" for w in ADJS}, **{w: "OTHER" for w in FILLER + POSITIVE + NEGATIVE}}
    rows = []
    for _ in range(n):
        words = _sentence(rng, rng.randint(3, 12))
        rows.append({"tokens": words, "tags": [tag_of[w] for w in words]})
    return rows


TASKS = {
    # name: (generator, file format, task spec)
    "sentiment": (sentiment, "tsv", {"type": "classification", "text_fields": ["sentence"], "label_field": "label",
                                     "labels": ["neg", "pos"]}),
    "topic": (topic, "csv", {"type": "classification", "text_fields": ["text"], "label_field": "topic",
                             "labels": ["animals", "arts", "places"]}),
    "pairs": (pairs, "tsv", {"type": "classification", "text_fields": ["sentence1", "sentence2"],
                             "label_field": "label", "labels": ["entailment", "not_entailment"]}),
    "scores": (scores, "jsonl", {"type": "regression", "text_fields": ["sentence"], "label_field": "score"}),
    "tagging": (tagging, "jsonl", {"type": "token_classification", "text_fields": ["tokens"],
                                   "label_field": "tags", "labels": POS_TAGS}),
}


def write_rows(path, rows, fmt):
    with open(path, "w", newline="") as f:
        if fmt == "jsonl":
            for r in rows:
                f.write(json.dumps(r) + "\n")
            return
        columns = list(rows[0])
        if fmt == "tsv":
            f.write("\t".join(columns) + "\n")
            for r in rows:
                f.write("\t".join(str(r[c]) for c in columns) + "\n")
        else:
            w = csv.writer(f)
            w.writerow(columns)
            for r in rows:
                w.writerow([r[c] for c in columns])


def write_task(directory, name, n_train, n_dev, seed):
    """Writes NAME-train.EXT and NAME-dev.EXT; returns (train_path, dev_path, task spec)."""
    generator, fmt, task = TASKS[name]
    rng = random.Random(f"{name}-{seed}")
    train = os.path.join(directory, f"{name}-train.{fmt}")
    dev = os.path.join(directory, f"{name}-dev.{fmt}")
    write_rows(train, generator(rng, n_train), fmt)
    write_rows(dev, generator(rng, n_dev), fmt)
    return train, dev, dict(task)
