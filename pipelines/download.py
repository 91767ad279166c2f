"""DVC stage `download`: packaged/hub/local data -> data/raw/<dataset>/ (datasets on disk + stats.json)."""

from rnnlab.config import cli
from rnnlab.data.prepare import download


def run(cfg):
    stats = download(cfg)
    print(f"download: {cfg.data.name} -> {stats['counts']}, {stats['seconds']:.2f}s")


if __name__ == "__main__":
    cli(run, "download")
