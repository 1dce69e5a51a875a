"""The registered credit default model as an MLflow pyfunc: booster + design matrix.

MLflow logs this file as the model's code ("models from code"), so a registered
version loads with ``mlflow.pyfunc.load_model("models:/credit_default_pd@champion")``
anywhere mlflow, xgboost, pandas and numpy are installed, without bankplatform.
It therefore imports nothing from bankplatform and repeats the design-matrix
rule of ``bankplatform.training.boosting`` (the test suite checks both give the
booster's scores to 1e-12).

Artifacts: ``booster`` (xgboost UBJSON) and ``design`` (JSON: feature order and
the fixed category levels of the text features).

``predict`` takes the signature's columns (text features as strings) and returns
the probability of default per row; with ``params={"output": "contributions"}``
it returns xgboost's own per-feature contributions (log-odds, plus ``bias``),
from which reason codes and global explanations are built.
"""

# No `from __future__ import annotations`: MLflow reads `predict`'s type hints as
# objects to decide how to validate the input.
import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow.pyfunc.model import PythonModel, PythonModelContext

BOOSTER_ARTIFACT = "booster"
DESIGN_ARTIFACT = "design"
OUTPUTS = ("probability", "contributions")


class CreditDefaultModel(PythonModel):
    """Probability of default within 12 months, from the signature's columns."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the booster and the design (feature order, category levels)."""
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts[BOOSTER_ARTIFACT])
        design = json.loads(Path(context.artifacts[DESIGN_ARTIFACT]).read_text())
        self.features: list[str] = list(design["features"])
        self.categories: dict[str, list[str]] = dict(design["categories"])

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Scores (or contributions) for each row of ``model_input``."""
        output = (params or {}).get("output", "probability")
        if output not in OUTPUTS:
            msg = f"unknown output {output!r}; one of {', '.join(OUTPUTS)}"
            raise ValueError(msg)
        matrix = xgb.DMatrix(self.design_matrix(model_input), enable_categorical=True)
        limit = self.iteration_range()
        if output == "contributions":
            values = self.booster.predict(
                matrix, pred_contribs=True, iteration_range=limit
            )
            return pd.DataFrame(values, columns=[*self.features, "bias"])
        return np.asarray(self.booster.predict(matrix, iteration_range=limit))

    def design_matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature columns in order; text as the fixed categories; numbers as float64."""
        matrix = frame[self.features].copy()
        for column, levels in self.categories.items():
            matrix[column] = pd.Categorical(
                matrix[column].astype(str), categories=levels
            )
        for column in matrix.columns.difference(list(self.categories)):
            matrix[column] = matrix[column].astype("float64")
        return matrix

    def iteration_range(self) -> tuple[int, int]:
        """Trees up to the best iteration found by early stopping (all if none)."""
        best = self.booster.attr("best_iteration")
        return (0, int(best) + 1) if best is not None else (0, 0)


mlflow.models.set_model(CreditDefaultModel())
