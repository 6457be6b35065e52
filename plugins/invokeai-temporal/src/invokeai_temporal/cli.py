"""`invokeai worker`: the command (click only at import; the worker module when it runs)."""

from __future__ import annotations

import re
import signal
import sys
import threading
from typing import Any

import click

from invokeai_core import CliError, CliState, InvokeAIError, pass_state

DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")


@click.command("worker")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="The device this worker runs on: cpu, cuda, cuda:N, mps or auto. Run one worker per GPU.",
)
@pass_state
def worker_command(state: CliState, device: str) -> None:
    """Run queue items handed out by Temporal on one device (services.queue = "temporal",
    invokeai-temporal), one at a time, until interrupted (Ctrl-C, SIGTERM: the running item
    finishes first)."""
    if not DEVICE_RE.match(device):
        raise CliError(f"--device: {device!r} is not a device (cpu, cuda, cuda:N, mps or auto)")
    config = state.config
    if config.services.queue != "temporal":
        raise CliError(
            f"invokeai worker runs the items of the Temporal queue, and services.queue is "
            f'{config.services.queue!r}: set services.queue = "temporal" (with [plugins.temporal] and '
            "[plugins.postgres])"
        )
    extra = config.plugins.model_extra
    if extra is not None:  # the diffusers plugin reads its device from [plugins.diffusers]
        diffusers = dict(extra.get("diffusers") or {})
        diffusers["device"] = device
        extra["diffusers"] = diffusers
    invoker = state.invoker()
    try:
        invoker.start(process_queue=False)
        queue = invoker.services.queue
    except InvokeAIError as e:
        raise CliError(str(e)) from None
    from invokeai_temporal.queue import TemporalSessionQueue
    from invokeai_temporal.worker import DeviceWorker

    assert isinstance(queue, TemporalSessionQueue)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    worker = DeviceWorker(invoker, queue, device)

    def ready(task_queue: str) -> None:
        settings = queue.temporal
        click.echo(
            f"worker {worker.worker_id} on {device}: Temporal {settings.address} (namespace {settings.namespace}), "
            f"task queues {settings.shared_queue} and {task_queue} (Ctrl-C stops)",
            err=True,
        )
        sys.stderr.flush()

    try:
        worker.serve(stop, on_ready=ready)
    except KeyboardInterrupt:
        stop.set()
    except InvokeAIError as e:
        raise CliError(str(e)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        invoker.stop()
