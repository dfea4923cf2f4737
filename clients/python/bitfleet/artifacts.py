"""load_artifact: a tuned task as a Hugging Face transformers model, labels set, ready for
pipeline(...). Needs transformers, safetensors and torch (pip install "./clients/python[artifacts]")."""
import json
import os
import tempfile


def load_artifact(path_or_job, backbone_dir, client=None):
    """The model of the backbone at `backbone_dir` with the artifact's biases and head loaded
    (load_state_dict, strict=False: every frozen weight comes from the backbone). `path_or_job`: an
    artifact file, or a job or sweep id downloaded through `client`. The model is in eval mode, its
    config's id2label/label2id are the task's labels."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    if not os.path.exists(path_or_job) and (path_or_job.startswith("job-") or path_or_job.startswith("sweep-")):
        if client is None:
            raise ValueError(f"{path_or_job} is a job or sweep id: pass client= to download its artifact")
        with tempfile.TemporaryDirectory() as tmp:
            path = client.jobs.download(path_or_job, os.path.join(tmp, f"{path_or_job}.safetensors"))
            return _load(path, backbone_dir, safe_open, load_file, AutoModelForSequenceClassification,
                         AutoModelForTokenClassification)
    return _load(path_or_job, backbone_dir, safe_open, load_file, AutoModelForSequenceClassification,
                 AutoModelForTokenClassification)


def _load(path, backbone_dir, safe_open, load_file, sequence_model, token_model):
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if "task" not in meta:
        raise ValueError(f"{path} is not a bitfleet artifact (no task metadata)")
    task = json.loads(meta["task"])
    labels = json.loads(meta.get("labels", "[]"))
    options = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if task["type"] == "regression":
        model = sequence_model.from_pretrained(backbone_dir, num_labels=1, problem_type="regression", **options)
    else:
        mapping = {"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
        cls = token_model if task["type"] == "token_classification" else sequence_model
        model = cls.from_pretrained(backbone_dir, num_labels=len(labels), **mapping, **options)
    missing, unexpected = model.load_state_dict(load_file(path), strict=False)
    if unexpected:
        raise ValueError(f"{path} holds tensors this backbone's model does not have: {unexpected[:5]}")
    model.bitfleet_metadata = meta
    return model.eval()
