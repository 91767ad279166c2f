"""MLflow tracking helpers."""
