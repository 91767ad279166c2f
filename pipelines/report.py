"""DVC stage `<family>_report`: reports/<family>/<dataset>.md (+ .png) comparing the grid, and the MLflow
registry alias `champion` on the variant with the best validation score."""

from rnnlab.config import cli
from rnnlab.stages import report

if __name__ == "__main__":
    cli(report, "report")
