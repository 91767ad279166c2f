"""The MLflow model rnnlab logs for every training run (and registers as `champion`): an MLflow
"model from code", so loading it runs this file and unpickles nothing.

    model = mlflow.pyfunc.load_model("models:/rnnlab-<family>-<dataset>@champion")
    model.predict(pd.DataFrame({"text": ["a gripping, beautifully shot film"]}))   # or a list of strings
    mlflow models serve -m models:/rnnlab-<family>-<dataset>@champion --env-manager local   (HTTP, JSON)

Its artifact `model_dir` is the model folder the train stage writes (model.pt with weights only, model.json,
tokenizer files); `load_context` rebuilds the network once with the family's own loader (`torch.load` with
`weights_only=True`). `predict` answers each input with the lines `pipelines/predict.py` prints for it,
joined by newlines; what it accepts and refuses is in rnnlab/tracking/serving.py.
"""

from __future__ import annotations

import mlflow


class RnnlabModel(mlflow.pyfunc.PythonModel):
    # The model's signature (logged with it) describes the input; MLflow's type-hint validation would add
    # nothing. Without this flag (read by the pinned MLflow's PythonModel.__init_subclass__) MLflow prints its
    # advice to add type hints at every log and load of the model, and no warnings filter reaches it.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from pathlib import Path

        from rnnlab.predict import model_family
        from rnnlab.tracking.serving import predict_parser

        self.model_dir = Path(context.artifacts["model_dir"])
        self.family = model_family(self.model_dir)
        self.parser = predict_parser(self.family)
        self.predictor = self.family.load_predictor(self.model_dir)

    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException

        from rnnlab.errors import RnnlabError
        from rnnlab.tracking.serving import input_texts, options

        try:
            texts = input_texts(model_input)
            groups = self.family.predict_each(self.predictor, texts, options(self.parser, params))
        except RnnlabError as err:  # bad input: HTTP 400 with the message under `mlflow models serve`
            raise MlflowException.invalid_parameter_value(str(err)) from None
        return ["\n".join(lines) for lines in groups]


mlflow.models.set_model(RnnlabModel())
