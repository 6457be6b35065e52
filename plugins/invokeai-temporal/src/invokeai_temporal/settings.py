"""The `[plugins.temporal]` settings (pydantic only; never imports temporalio).

[plugins.temporal]
address = "127.0.0.1:7233"     # the Temporal frontend (host:port)    INVOKEAI_PLUGINS__TEMPORAL__ADDRESS
namespace = "default"          # the Temporal namespace
task_queue_prefix = "invokeai" # task queues: <prefix>-workflows, <prefix>-items (shared), <prefix>-worker-<id>
connect_timeout = 5            # seconds to reach Temporal before the command fails (or the API answers 503)
affinity = true                # send an item to an idle worker holding its models, when one exists
affinity_wait = 5              # seconds such an item waits for that worker before going to the shared queue
worker_ttl = 10                # seconds a worker's advertisement (models held, idle/busy) lives unrefreshed
heartbeat_timeout = 5          # seconds without a heartbeat after which Temporal retries an item elsewhere
max_attempts = 5               # attempts of an item on the shared queue (dead workers), then it fails
dispatch_interval = 2          # seconds between sweeps that hand accepted-but-undispatched items to Temporal
eager_start = true             # `invokeai serve` runs workflow tasks too and starts its items' workflows eagerly
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TemporalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(default="127.0.0.1:7233", pattern=r"^[^\s/]+:\d+$", description="host:port of Temporal")
    namespace: str = Field(default="default", min_length=1)
    task_queue_prefix: str = Field(default="invokeai", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    affinity: bool = True
    affinity_wait: float = Field(default=5.0, gt=0, le=3600)
    worker_ttl: float = Field(default=10.0, ge=1, le=3600)
    heartbeat_timeout: float = Field(default=5.0, ge=1, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=1000)
    dispatch_interval: float = Field(default=2.0, gt=0, le=3600)
    eager_start: bool = True

    @property
    def workflow_queue(self) -> str:
        """The task queue of the workflows (any worker process runs them)."""
        return f"{self.task_queue_prefix}-workflows"

    @property
    def shared_queue(self) -> str:
        """The task queue every worker takes items from."""
        return f"{self.task_queue_prefix}-items"

    def worker_queue(self, worker_id: int) -> str:
        """The task queue of one worker (items sent to it for the models it holds)."""
        return f"{self.task_queue_prefix}-worker-{worker_id}"


def load_settings(config: Any) -> TemporalSettings:
    """Settings from the configuration, with errors naming the key."""
    return config.plugin_settings_as("temporal", TemporalSettings) if config is not None else TemporalSettings()
