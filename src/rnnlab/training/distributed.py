"""DDP on one machine, reachable from that machine only.

torch's default rendezvous (`env://`) starts a TCPStore that listens on every network interface, and gloo
and NCCL open their peer sockets on the interface of the host name; on a shared or public machine anyone who
can reach the port can talk to the training. For a single-node run (`num_nodes=1`) rnnlab instead
- meets through a FileStore in a fresh private temporary folder (no listening socket at all), and
- keeps the peer sockets of gloo / NCCL on the loopback interface (GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME).
Multi-node runs keep Lightning's own rendezvous on MASTER_ADDR:MASTER_PORT, which the other nodes must reach:
firewall that port to the cluster's network (docs/scale-out.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

STORE_ENV = "RNNLAB_DDP_STORE"  # the FileStore path, set by the launching process, inherited by every rank


def loopback_interface() -> str | None:
    for name in ("lo", "lo0"):
        if Path(f"/sys/class/net/{name}").exists() or (sys.platform == "darwin" and name == "lo0"):
            return name
    return None


def prepare_local_rendezvous() -> Path | None:
    """In the launching process: a private folder for the FileStore (returned, to be removed after the run),
    and the loopback interface for gloo / NCCL. Ranks started by Lightning inherit both through the
    environment; a process that already has them (a rank) creates nothing."""
    interface = loopback_interface()
    if interface:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", interface)
    if os.environ.get(STORE_ENV):
        return None
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-ddp-"))  # mode 0700: other users cannot join
    os.environ[STORE_ENV] = str(folder / "store")
    return folder


def finish_local_rendezvous(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(STORE_ENV, None)


def local_ddp_strategy(**kwargs):
    """A Lightning DDPStrategy whose process group meets through the FileStore named in RNNLAB_DDP_STORE."""
    from pytorch_lightning.strategies import DDPStrategy
    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    class LocalDDPStrategy(DDPStrategy):
        strategy_name = "ddp"

        def setup_distributed(self) -> None:
            from lightning_fabric.utilities.seed import reset_seed

            reset_seed()
            self.set_world_ranks()
            self._process_group_backend = self._get_process_group_backend()
            if torch.distributed.is_initialized():
                return
            store = os.environ[STORE_ENV]
            device_id = self.root_device if self.root_device.type != "cpu" else None
            torch.distributed.init_process_group(
                self._process_group_backend, init_method=f"file://{store}", rank=self.global_rank,
                world_size=self.world_size, timeout=self._timeout, device_id=device_id)
            rank_zero_info(f"rnnlab: local DDP, distributed_backend={self._process_group_backend}, "
                           f"MEMBER: {self.world_size}/{self.world_size} processes, rendezvous through a "
                           f"FileStore in {Path(store).parent} (no listening socket)")

    return LocalDDPStrategy(**kwargs)
