"""The monitoring step's drift check at 100k rows x 50 columns, against
Evidently's full ``DataDriftPreset`` and a scipy floor, on the same data.

Reference and current: 100k rows each of 40 continuous columns, 5 small counts
and 5 categorical columns, drift planted in 6 of them, plus the score. Timed
(median of 3, each in this process): our whole step (Evidently's default test
per column as conf/base/monitoring.yml ships it, the score's drift, Evidently's report for the score and the 10 most
drifted features, offline HTML, the JSON verdict), and once each: the bare
``DataDriftPreset(include_tests=True)`` run and its HTML, and the floor (scipy
KS per numeric column, PSI over 10 reference deciles, chi-squared for the
categorical ones). Checked: our per-column verdicts equal the preset's.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from bankplatform.monitoring.drift import P_VALUE_TESTS
from bankplatform.monitoring.reports import write_html
from bankplatform.monitoring.settings import MonitoringSettings
from bankplatform.monitoring.verdict import judge_window

REPO = Path(__file__).resolve().parents[1]
PLANTED = ("num_0", "num_1", "num_2", "count_0", "cat_0", "score")


def _frames(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(2026)

    def one(shifted: bool) -> pd.DataFrame:
        data: dict[str, object] = {}
        for i in range(40):
            shift = 0.25 if shifted and f"num_{i}" in PLANTED else 0.0
            data[f"num_{i}"] = rng.normal(shift, 1 + i / 40, rows)
        for i in range(5):
            lam = 1.6 if shifted and f"count_{i}" in PLANTED else 1.0
            data[f"count_{i}"] = rng.poisson(lam, rows).astype("float64")
        for i in range(5):
            probs = [0.5, 0.3, 0.2]
            if shifted and f"cat_{i}" in PLANTED:
                probs = [0.3, 0.3, 0.4]
            data[f"cat_{i}"] = rng.choice(["car", "home", "debt"], rows, p=probs)
        data["score"] = rng.beta(2.0 if shifted else 1.5, 12, rows)
        data["defaulted"] = np.nan
        return pd.DataFrame(data)

    return one(False), one(True)


def _our_step(
    reference: pd.DataFrame, current: pd.DataFrame, folder: Path
) -> tuple[float, dict[str, bool]]:
    shipped = yaml.safe_load((REPO / "conf" / "base" / "monitoring.yml").read_text())
    settings = MonitoringSettings.model_validate(shipped["monitoring"])
    began = time.perf_counter()
    verdict = judge_window(reference, current, settings)
    summary = {
        "window": "bench",
        "model_name": "bench",
        "model_version": 1,
        "reference_rows": len(reference),
        **verdict.summary(),
    }
    (folder / "drift_report.json").write_text(json.dumps(summary, default=str))
    if verdict.drift_snapshot is None:
        raise RuntimeError("no drift report: fewer rows than min_decisions")
    (folder / "evidently_drift.json").write_text(verdict.drift_snapshot.json())
    write_html(verdict.drift_snapshot, folder / "evidently_drift.html", summary)
    seconds = time.perf_counter() - began
    drifted = {d.column: d.drifted for d in verdict.measured.features}
    prediction = verdict.measured.prediction
    drifted["score"] = bool(prediction and prediction.drifted)
    return seconds, drifted


def _preset(
    reference: pd.DataFrame, current: pd.DataFrame, folder: Path
) -> tuple[float, float, dict[str, bool]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = [c for c in reference.columns if c != "defaulted"]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if not c.startswith("cat_")],
        categorical_columns=[c for c in columns if c.startswith("cat_")],
    )
    began = time.perf_counter()
    snapshot = Report([DataDriftPreset(include_tests=True)]).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    run_seconds = time.perf_counter() - began
    snapshot.save_html(str(folder / "preset.html"))
    total = time.perf_counter() - began
    drifted = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type") != "evidently:metric_v2:ValueDrift":
            continue
        p_value = "p_value" in config["method"] or config["method"] in P_VALUE_TESTS
        value, threshold = metric["value"], config["threshold"]
        drifted[config["column"]] = value < threshold if p_value else value >= threshold
    return run_seconds, total, drifted


def _floor(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    began = time.perf_counter()
    for column in reference.columns:
        if column == "defaulted":
            continue
        ref, cur = reference[column].to_numpy(), current[column].to_numpy()
        if column.startswith("cat_"):
            table = pd.crosstab(
                np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref, cur]
            )
            stats.chi2_contingency(table.to_numpy())
            continue
        stats.ks_2samp(ref, cur)
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, 11)))
        expected = np.histogram(ref, edges)[0] / len(ref) + 1e-6
        actual = np.histogram(cur, edges)[0] / len(cur) + 1e-6
        float(np.sum((actual - expected) * np.log(actual / expected)))
    return time.perf_counter() - began


def main(quick: bool = False) -> None:
    """Print the step's time, the preset's, the floor's, their ratios and the verdict check."""
    rows = 10_000 if quick else 100_000
    reference, current = _frames(rows)
    print(
        f"reference and current: {rows:,} rows x {reference.shape[1] - 1} columns; drift planted in {', '.join(PLANTED)}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours = [_our_step(reference, current, folder) for _ in range(3)]
        floors = [_floor(reference, current) for _ in range(3)]
        preset_run, preset_total, preset_verdicts = _preset(reference, current, folder)
        html_mb = (folder / "evidently_drift.html").stat().st_size / 1e6
    step = statistics.median(s for s, _ in ours)
    floor = statistics.median(floors)
    verdicts = ours[0][1]
    differing = sorted(
        c for c in preset_verdicts if preset_verdicts[c] != verdicts.get(c)
    )
    flagged = sorted(c for c, d in verdicts.items() if d)
    print(
        f"our monitoring step (median of 3): {step:.2f} s  [target <= 8 s: {'met' if step <= 8 else 'MISSED'}]; HTML {html_mb:.1f} MB"
    )
    print(
        f"floor, scipy KS + PSI / chi-squared per column (median of 3): {floor:.2f} s; ours / floor = {step / floor:.1f}x"
    )
    print(
        f"bare DataDriftPreset(include_tests=True): run {preset_run:.2f} s, with HTML {preset_total:.2f} s; preset / ours = {preset_total / step:.1f}x"
    )
    print(
        f"verdicts: {len(flagged)} drifted ({', '.join(flagged)}); identical to the preset's on {len(preset_verdicts) - len(differing)} of {len(preset_verdicts)} columns"
        + (f"; DIFFERENT: {differing}" if differing else "")
    )
