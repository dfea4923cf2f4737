"""The Python client of bitfleet: a coordinator's REST API (files, jobs, sweeps, workers) and
bitfleet-serve's predictions, with typed results, retries that never duplicate a creation, and
problem+json errors raised as exceptions that name the field.

    import bitfleet
    client = bitfleet.Client()  # BITFLEET_URL, BITFLEET_TOKEN / BITFLEET_TOKEN_FILE
    train = client.files.upload("train.tsv")
    job = client.jobs.create({"backbone": "minilm-l6", "train_file": train.id, ...})
    client.jobs.wait([job.id], progress=True)
    model = bitfleet.load_artifact(job.id, "/models/all-MiniLM-L6-v2", client=client)
"""
from .artifacts import load_artifact
from .client import Client
from .errors import BitfleetError, ConnectionFailed
from .types import Event, File, Job, Sweep, WorkerGroup

__all__ = ["Client", "BitfleetError", "ConnectionFailed", "File", "Job", "Sweep", "WorkerGroup", "Event",
           "load_artifact"]
__version__ = "0.1.0"
