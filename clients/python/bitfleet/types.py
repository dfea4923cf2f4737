"""What the API returns, as dataclasses: the fields a user reads, and `raw`, the whole JSON object
(fields added by newer servers are there)."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

FINAL = ("succeeded", "failed", "cancelled")


class _FromJson:
    @classmethod
    def from_json(cls, data):
        """The API object's known fields, and all of it as `raw`."""
        known = {k: data.get(k) for k in cls.__dataclass_fields__ if k != "raw"}
        return cls(**known, raw=data)


@dataclass
class File(_FromJson):
    id: str
    filename: str = ""
    format: str = ""
    bytes: int = 0
    sha256: str = ""
    rows: int = 0
    columns: List[str] = field(default_factory=list)
    created_at: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Job(_FromJson):
    id: str
    status: str = ""
    backbone: str = ""
    task: Dict[str, Any] = field(default_factory=dict)
    hyperparameters: Dict[str, Any] = field(default_factory=dict)
    metadata: Dict[str, Any] = field(default_factory=dict)
    progress: Dict[str, Any] = field(default_factory=dict)
    metrics: Optional[Dict[str, float]] = None
    best: Optional[Dict[str, Any]] = None
    test_metrics: Optional[Dict[str, float]] = None
    evaluations: Optional[List[Dict[str, Any]]] = None
    error: Optional[Dict[str, Any]] = None
    # Why a queued job cannot start: no live worker group can run it (None while one can).
    waiting_reason: Optional[str] = None
    artifact: Optional[Dict[str, Any]] = None
    created_at: int = 0
    started_at: Optional[int] = None
    finished_at: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self):
        return self.status in FINAL

    @property
    def name(self):
        return (self.metadata or {}).get("name", self.id)


@dataclass
class Sweep(_FromJson):
    id: str
    status: str = ""
    variants: List[Dict[str, Any]] = field(default_factory=list)
    best: Optional[Dict[str, Any]] = None
    grid: Dict[str, Any] = field(default_factory=dict)
    objective: Dict[str, Any] = field(default_factory=dict)
    strategy: str = ""
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self):
        return all(v.get("status") in FINAL for v in self.variants)


@dataclass
class WorkerGroup(_FromJson):
    id: str
    name: str = ""
    backbone: str = ""
    device: str = ""
    dtype: str = ""
    cpu: str = ""
    ranks: int = 0
    slots: int = 0
    free_slots: int = 0
    status: str = ""
    last_heartbeat_at: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Event(_FromJson):
    seq: int
    type: str = ""
    created_at: int = 0
    data: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)
