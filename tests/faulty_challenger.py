"""A deliberately faulty challenger, logged to MLflow as a real model version.

Models-from-code: MLflow runs this file when the version loads. It is the real
credit model (same booster, same design) with one injected fault from its
``fault`` artifact: ``raise`` (raises on a share of applications), ``nan``
(returns NaN on a share), ``sleep`` (answers after a delay), ``shift`` (adds a
constant to the log-odds), ``extra_column`` (one output too many), ``exit``
(calls ``sys.exit``), ``none`` (a healthy copy).
"""

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc.model import PythonModelContext

from bankplatform.training.pd_model import CreditDefaultModel

FAULT_ARTIFACT = "fault"


class FaultyChallenger(CreditDefaultModel):
    """The credit model with an injected fault."""

    def load_context(self, context: PythonModelContext) -> None:
        super().load_context(context)
        self.fault: dict[str, Any] = json.loads(
            Path(context.artifacts[FAULT_ARTIFACT]).read_text()
        )
        self.draws = random.Random(self.fault.get("seed", 0))  # noqa: S311 - fault injection

    def contributions_of(self, applicants: list[dict[str, Any]]) -> np.ndarray:
        kind, rate = self.fault["kind"], float(self.fault.get("rate", 0.0))
        draw = self.draws.random()
        if kind == "raise" and draw < rate:
            raise RuntimeError("injected fault")
        if kind == "sleep":
            time.sleep(float(self.fault["seconds"]))
        if kind == "exit":
            sys.exit(3)
        values = super().contributions_of(applicants)
        if kind == "extra_column":
            return np.hstack([values, np.zeros((len(values), 1))])
        if kind == "nan" and draw < rate:
            values[:] = np.nan
        if kind == "shift":
            values[:, -1] += float(self.fault["log_odds"])
        return values


mlflow.models.set_model(FaultyChallenger())
