"""DVC stage `<family>_download`: packaged/hub/local data -> data/raw/<dataset>/ (datasets on disk + stats.json)."""

from rnnlab.config import cli
from rnnlab.stages import download

if __name__ == "__main__":
    cli(download, "download")
