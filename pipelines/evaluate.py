"""DVC stage `<family>_evaluate` (one matrix item): test metrics, plots and samples of one variant."""

from rnnlab.config import cli
from rnnlab.stages import evaluate

if __name__ == "__main__":
    cli(evaluate, "evaluate")
