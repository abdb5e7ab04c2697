"""The Ray backend (the ``ray`` extra): each run is a Ray task on one CPU, anywhere on the cluster.

Workers may be on other machines and cannot see the SQLite file: a task returns its result to the driver, which
writes it to the store. ``address=None`` starts a new local Ray instance (or uses one this process already
started), even if a cluster runs on this machine; ``address="auto"`` or ``"HOST:6379"`` joins a cluster started
with ``ray start --head``. Ray ≥ 2.59 authenticates with a token: the driver needs ``RAY_AUTH_MODE=token`` and
the cluster's token (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``), like every node.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import torch

from initlab._errors import fail
from initlab.compare.sweep.runner import Outcome, execute
from initlab.compare.train import TrainConfig

__all__ = ["RayCluster"]


def _execute_on_ray(config: dict[str, Any]) -> Outcome:
    torch.set_num_threads(1)  # one CPU per task, as the task asked Ray for
    return execute(config)


class RayCluster:
    """Run sweep points as Ray tasks; ``workers`` (default: the cluster's CPUs) runs are in flight at once."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise fail("the ray backend needs Ray, which is not installed",
                       fix="Install the extra: pip install 'initlab[ray]'.") from None  # fmt: skip
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                         num_cpus=workers if address is None else None)  # fmt: skip
            except ConnectionError as error:
                raise fail(f"cannot reach the Ray cluster at {address!r}: {error}",
                           fix="Start it with `ray start --head` and pass the address it prints, or leave out "
                               "--ray-address to start a local Ray. If the cluster uses token authentication, "
                               "export RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) "
                               "here too.") from None  # fmt: skip
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        self.workers = workers if workers is not None else cpus
        self._task = ray.remote(num_cpus=1, max_retries=0)(_execute_on_ray)

    def submit(self, config: TrainConfig) -> Future[Outcome]:
        future: Future[Outcome] = self._task.remote(config.to_dict()).future()
        return future

    def close(self, abort: bool = False) -> None:
        if self._owns:
            self._ray.shutdown()
