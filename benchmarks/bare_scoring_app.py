"""The scoring benchmark's baseline server: the bare minimum a scoring API does,
as in the issue's prototype (a strict pydantic body, a PyJWT check, the Feast
online lookup, the model's contributions, one JSON log line), and nothing else:
no key service, no roles, no audit, no decision log, no releases.

Run by ``scoring_service.py`` as ``uvicorn bare_scoring_app:app`` with
``BARE_WORKSPACE`` (a governed workspace) and ``BARE_PUBLIC_KEY`` (hex Ed25519).
"""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import mlflow
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import Response
from feast import FeatureStore

from bankplatform.feature_repo.definitions import credit_default_v1
from bankplatform.feature_repo.services import service_features
from bankplatform.serving.schemas import Application
from bankplatform.serving.scoring import OnlineFeatures, model_input

ROOT = Path(os.environ["BARE_WORKSPACE"])
KEY = Ed25519PublicKey.from_public_bytes(bytes.fromhex(os.environ["BARE_PUBLIC_KEY"]))
mlflow.set_tracking_uri(f"sqlite:///{ROOT / 'mlflow.db'}")
MODEL = mlflow.pyfunc.load_model(
    "models:/credit_default_pd@champion"
).unwrap_python_model()
FEATURES = OnlineFeatures(
    FeatureStore(repo_path=str(ROOT / "data" / "04_feature")),
    service_features(credit_default_v1),
)
LOG = (ROOT / "bare-decisions.jsonl").open("ab")
app = FastAPI()


@app.post("/v1/score")
async def score(application: Application, authorization: str = Header("")) -> Response:
    """Token, features, contributions, one log line."""
    try:
        jwt.decode(authorization.removeprefix("Bearer "), KEY, algorithms=["EdDSA"])
    except jwt.InvalidTokenError:
        raise HTTPException(401, "bad token") from None
    row = model_input(FEATURES.of(application.customer_token), application)
    margin = float(MODEL.contributions_of([row])[0].sum())
    body = orjson.dumps(
        {"customer_token": application.customer_token, "margin": margin}
    )
    LOG.write(body + b"\n")
    return Response(body, media_type="application/json")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Up."""
    return {"status": "ok"}
