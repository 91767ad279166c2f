"""The MLflow model rnnlab logs for every training run (and registers as `champion`): an MLflow
"model from code", so loading it runs this file and unpickles nothing.

    model = mlflow.pyfunc.load_model("models:/rnnlab-<family>-<dataset>@champion")
    model.predict(["a gripping, beautifully shot film"])      # or a DataFrame with one text column

Its artifact `model_dir` is the model folder the train stage writes (model.pt with weights only, model.json,
tokenizer files); `load_context` rebuilds the network with the family's own loader (`torch.load` with
`weights_only=True`), and `predict` returns the lines `pipelines/predict.py` prints for the inputs.
"""

from __future__ import annotations

import argparse

import mlflow


class RnnlabModel(mlflow.pyfunc.PythonModel):
    # predict() takes a list of texts, a DataFrame or one string, and the family's options as params, and checks
    # them itself; MLflow's type-hint validation cannot express that. Without this flag (read by the pinned
    # MLflow's PythonModel.__init_subclass__) MLflow prints its advice to add type hints at every log and load
    # of the model, and no warnings filter reaches it (MLflow forces "once" around that check).
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from pathlib import Path

        from rnnlab.predict import model_family

        self.model_dir = Path(context.artifacts["model_dir"])
        self.family = model_family(self.model_dir)
        parser = argparse.ArgumentParser()
        self.family.add_predict_arguments(parser)
        self.defaults = parser.parse_args([])

    def predict(self, context, model_input, params=None):
        if hasattr(model_input, "iloc"):  # a DataFrame: its first column holds the inputs
            model_input = model_input.iloc[:, 0].tolist()
        elif isinstance(model_input, str):
            model_input = [model_input]
        args = argparse.Namespace(**{**vars(self.defaults), **(params or {})})
        return self.family.predict(self.model_dir, [str(x) for x in model_input], args)


mlflow.models.set_model(RnnlabModel())
