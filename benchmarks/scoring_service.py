"""The scoring service under open-loop load on loopback.

A real ``bankplatform serve`` (uvicorn, one worker) over a governed workspace
(5k customers, ``kedro run --env test``, version 1 approved and promoted), and a
second process that sends authenticated ``POST /v1/score`` requests at a fixed
rate: each request's latency is counted from its *scheduled* send time, so a
server that falls behind shows it (no coordinated omission). Bounded in count
and time. Rates: 100 req/s for 30 s and 300 req/s for 10 s.

Baselines, measured in the same run: the floor (the Feast online lookup plus
the model's prediction with contributions, called in-process: what the service
cannot avoid), and a bare prototype server (``bare_scoring_app.py``: pydantic
body, PyJWT check, the same lookup and prediction, one log line) under the same
load: what the product's auth, audit, decision log and releases add. Also checked: audit records and decision-log lines equal the
requests. Then the same app under Ray Serve (``--engine ray``) at 100 req/s.

Target (issue 12): p99 <= 5 ms at 100/s and <= 8 ms at 300/s, zero 5xx.
``BANKPLATFORM_BENCH_WORKSPACE`` reuses a workspace that already has a champion.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "credit_default_pd"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BANKPLATFORM_TOKEN", "BANKPLATFORM_USER", "KEDRO_ENV")
    }
    env.update(
        PYTHONOPTIMIZE="1", KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", **extra
    )
    return env


def _run(args: list[str], root: Path, **extra: str) -> str:
    done = subprocess.run(
        args, cwd=root, env=_env(**extra), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip()


def governed_workspace(folder: Path) -> Path:
    """A workspace with a promoted champion (or ``$BANKPLATFORM_BENCH_WORKSPACE``)."""
    given = os.environ.get("BANKPLATFORM_BENCH_WORKSPACE")
    if given:
        return Path(given)
    root = folder / "ws"
    root.mkdir()
    for name in ("pyproject.toml", ".kedro.yml", "requirements.lock"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(
        REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local")
    )
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()
    # The service as deployed: base's polling and token cache, not the test env's.
    (root / "conf" / "test" / "serving.yml").unlink()
    cli = str(BIN / "bankplatform")
    _run([cli, "keys", "init"], root)
    _run(
        [
            cli,
            "data",
            "generate",
            "--customers",
            "5000",
            "--seed",
            "11",
            "--env",
            "test",
        ],
        root,
    )
    _run([str(BIN / "kedro"), "run", "--env", "test"], root)
    _run(
        [cli, "model", "approve", MODEL, "1", "--env", "test"],
        root,
        BANKPLATFORM_USER="victor.validator",
    )
    _run(
        [cli, "model", "promote", MODEL, "1", "--env", "test"],
        root,
        BANKPLATFORM_USER="rita.riskofficer",
    )
    return root


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": round(at(0.5), 3),
        "p99": round(at(0.99), 3),
        "p99.9": round(at(0.999), 3),
        "max": round(ordered[-1], 3),
    }


def floor(root: Path, customers: list[str], calls: int) -> dict[str, float]:
    """Feast online lookup + contributions, in-process: the service's unavoidable work."""
    os.chdir(root)
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from bankplatform.feature_repo.definitions import credit_default_v1
    from bankplatform.feature_repo.services import service_features
    from bankplatform.serving.scoring import OnlineFeatures

    os.environ["BANKPLATFORM_USER"] = "local-developer"
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env="test") as session:
        store = session.load_context().catalog.load("feature_store")
    os.environ.pop("BANKPLATFORM_USER")
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").unwrap_python_model()
    features = OnlineFeatures(store, service_features(credit_default_v1))
    times = []
    for i in range(calls):
        started = time.perf_counter()
        row = features.of(customers[i % len(customers)])
        row.update(loan_amount=5000.0, term_months=36, purpose="car")
        model.contributions_of([row])
        times.append((time.perf_counter() - started) * 1000)
    return _percentiles(times)


class _Connections:
    """Keep-alive HTTP/1.1 connections to one server: a minimal client (raw
    asyncio streams) so the generator spends far less CPU per request than the
    server it measures on the same two cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, request: bytes) -> int:
        reused = bool(self._idle)
        connection = (
            self._idle.pop()
            if reused
            else await asyncio.open_connection(self.host, self.port)
        )
        reader, writer = connection
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not reused or error.partial:
                raise
            # The server closed an idle keep-alive connection: send again on a new
            # one, as any HTTP client does (the request never reached it).
            writer.close()
            return await self.post_new(request)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        self._idle.append(connection)
        return status

    async def post_new(self, request: bytes) -> int:
        """Send on a fresh connection."""
        self._idle.append(await asyncio.open_connection(self.host, self.port))
        return await self.post(request)


async def _open_loop(
    url: str, token: str, customers: list[str], rate: float, seconds: float
) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    pool = _Connections(host, int(port))
    count = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def request(i: int) -> bytes:
        body = json.dumps(
            {
                "customer_token": customers[i % len(customers)],
                "amount": 5000.0,
                "term_months": 36,
                "purpose": "car",
            }
        ).encode()
        return (
            f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def send(i: int, scheduled: float) -> None:
        try:
            code = await pool.post(request(i))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            code = 599
        latencies.append((time.perf_counter() - scheduled) * 1000)
        statuses[code] = statuses.get(code, 0) + 1

    # Warm the connections and the server's caches first.
    await asyncio.gather(*(send(i, time.perf_counter()) for i in range(20)))
    latencies.clear()
    statuses.clear()
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    return {
        "rate": rate,
        "seconds": seconds,
        "requests": count,
        "statuses": statuses,
        **_percentiles(latencies),
    }


def load(argv: list[str]) -> None:
    """The load generator's own process: ``load URL TOKEN RATE SECONDS CUSTOMERS_JSON``."""
    url, token, rate, seconds, customers = argv
    result = asyncio.run(
        _open_loop(
            url,
            token,
            json.loads(Path(customers).read_text()),
            float(rate),
            float(seconds),
        )
    )
    print(json.dumps(result))


def _serve(root: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    import httpx

    log = (root / f"bench-serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN / "bankplatform"),
            "serve",
            "--env",
            "test",
            "--port",
            str(port),
            *extra,
        ],
        cwd=root,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"serve exited: see {log.name}")
        try:
            if (
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                == 200
            ):
                return process
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("serve did not start")


def _serve_bare(root: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """The baseline server (``bare_scoring_app``) and a token it accepts."""
    import httpx
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    token = jwt.encode(
        {"sub": "origination-system", "exp": int(time.time()) + 3600},
        key,
        algorithm="EdDSA",
    )
    log = (root / f"bench-bare-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN / "uvicorn"),
            "bare_scoring_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).parent,
        env=_env(BARE_WORKSPACE=str(root), BARE_PUBLIC_KEY=public),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bare server exited: see {log.name}")
        try:
            if (
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                == 200
            ):
                return process, token
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("bare server did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _drive(
    url: str, token: str, customers_file: Path, rate: float, seconds: float
) -> dict[str, Any]:
    """One open-loop phase; a phase that collapses (the generator times out or
    fails) is reported as a collapse, a figure like any other, never a crash."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "load",
                url,
                token,
                str(rate),
                str(seconds),
                str(customers_file),
            ],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"collapsed": f"no result within {seconds + 120:.0f} s"}
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {
            "collapsed": f"load generator exited {done.returncode}: {last[0][:200]}"
        }
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _records(root: Path) -> tuple[int, int]:
    audit = root / ".bankplatform" / "audit" / "audit.jsonl"
    requests = sum(
        '"action":"scoring.request"' in line and '"route":"POST /v1/score"' in line
        for line in audit.read_text().splitlines()
    )
    decisions = sum(
        len(p.read_text().splitlines())
        for p in (root / "data" / "08_reporting" / "decisions").glob("*.jsonl")
    )
    return requests, decisions


def _report(
    name: str, result: dict[str, Any], floor_p99: float, target: float | None
) -> None:
    if "collapsed" in result:
        print(f"{name:<28} COLLAPSED: {result['collapsed']}")
        return
    errors = sum(n for code, n in result["statuses"].items() if int(code) >= 500)
    verdict = (
        ""
        if target is None
        else (
            f" (target <= {target:.0f} ms: {'met' if result['p99'] <= target and not errors else 'NOT met'})"
        )
    )
    print(
        f"{name:<28} {result['requests']:>6} requests  p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  p99.9 {result['p99.9']:7.2f} ms  max {result['max']:7.1f} ms  5xx {errors}  statuses {result['statuses']}  p99 / floor p99 {result['p99'] / floor_p99:5.1f}x{verdict}"
    )


def _uvicorn_runs(
    root: Path,
    token: str,
    customers_file: Path,
    plan: list[tuple[float, float, float]],
    floor_p99: float,
    bare_p99: dict[float, float],
    runs: int,
) -> None:
    """The product's service over ``runs`` runs of the plan: each phase, then the
    median p99 and the worst p99.9 and maximum per rate, and the records written."""
    port = _free_port()
    server = _serve(root, port)
    try:
        before = _records(root)
        sent = 0
        seen: dict[float, list[dict[str, Any]]] = {rate: [] for rate, _, _ in plan}
        for run in range(1, runs + 1):
            for rate, seconds, target in plan:
                result = _drive(
                    f"http://127.0.0.1:{port}", token, customers_file, rate, seconds
                )
                _report(
                    f"uvicorn {rate:.0f} req/s (run {run})",
                    result,
                    floor_p99,
                    target,
                )
                if "collapsed" not in result:
                    sent += result["requests"] + 20  # and the warm-up
                    seen[rate].append(result)
        for rate, results in seen.items():
            if results:
                p99s = sorted(r["p99"] for r in results)
                median = p99s[len(p99s) // 2]
                print(
                    f"uvicorn {rate:.0f} req/s over {len(results)} run(s): median p99 {median:.2f} ms "
                    f"({median / bare_p99[rate]:.2f}x the bare prototype's {bare_p99[rate]:.2f} ms), "
                    f"worst p99.9 {max(r['p99.9'] for r in results):.2f} ms, worst max {max(r['max'] for r in results):.1f} ms"
                )
        time.sleep(1.0)  # the last audit batch is written after the answers
    finally:
        server.terminate()
        server.wait(timeout=60)
    after = _records(root)
    print(
        f"records: {after[0] - before[0]} audit records and {after[1] - before[1]} decision-log lines for {sent} requests"
    )


def main(quick: bool = False) -> None:
    """Run the scoring benchmark and print its figures."""
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bankplatform-bench-scoring-") as folder:
        root = governed_workspace(Path(folder))
        customers = sorted(
            pd.read_parquet(
                root / "data" / "04_feature" / "customer_features.parquet",
                columns=["customer_token"],
            )["customer_token"].unique()
        )
        customers_file = Path(folder) / "customers.json"
        customers_file.write_text(json.dumps(customers))
        token = _run(
            [
                str(BIN / "bankplatform"),
                "token",
                "issue",
                "--user",
                "origination-system",
                "--role",
                "scoring_client",
                "--env",
                "test",
            ],
            root,
        )
        base = floor(root, customers, 300 if quick else 2_000)
        print(
            f"floor (Feast online lookup + contributions, in-process): p50 {base['p50']:.3f} ms  p99 {base['p99']:.3f} ms"
        )
        plan = [
            (100.0, 5.0 if quick else 30.0, 5.0),
            (300.0, 3.0 if quick else 10.0, 8.0),
        ]
        port = _free_port()
        bare, bare_token = _serve_bare(root, port)
        bare_p99 = {}
        try:
            for rate, seconds, _ in plan:
                result = _drive(
                    f"http://127.0.0.1:{port}",
                    bare_token,
                    customers_file,
                    rate,
                    seconds,
                )
                bare_p99[rate] = result.get("p99", float("nan"))
                _report(f"bare prototype {rate:.0f} req/s", result, base["p99"], None)
        finally:
            bare.terminate()
            bare.wait(timeout=60)
        _uvicorn_runs(
            root, token, customers_file, plan, base["p99"], bare_p99, 1 if quick else 3
        )
        port = _free_port()
        server = _serve(root, port, "--engine", "ray")
        try:
            for rate, seconds in (
                (100.0, 5.0 if quick else 30.0),
                (150.0, 5.0 if quick else 10.0),
            ):
                result = _drive(
                    f"http://127.0.0.1:{port}", token, customers_file, rate, seconds
                )
                _report(f"ray serve {rate:.0f} req/s", result, base["p99"], None)
        finally:
            server.terminate()
            server.wait(timeout=120)
            subprocess.run(
                [str(BIN / "ray"), "stop", "--force"],
                env=_env(),
                capture_output=True,
                check=False,
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load(sys.argv[2:])
    else:
        main(quick="--quick" in sys.argv)
