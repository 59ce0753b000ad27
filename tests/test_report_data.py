"""The report and its part as plain data are what their models give, for every sample order."""

from __future__ import annotations

from pathlib import Path

from tests.test_loom_support import SAMPLE, sample
from toyfoundry.formats.models import BatchSummary, Report
from toyfoundry.telemetry import artefacts, reports
from toyfoundry.telemetry.loom import run_loom
from toyfoundry.telemetry.summary import summarize


def test_report_data_is_the_report_models_data(tmp_path: Path) -> None:
    layout = sample(tmp_path / "p")
    run_loom(layout, export=True, today="2025-10-28")
    for order in SAMPLE:
        if not artefacts.is_built(layout, order.order_id):
            continue
        arts = artefacts.load(layout, order.order_id)
        summary = summarize(arts)
        data = reports.report_data(arts, summary)
        assert Report.model_validate(data).model_dump(mode="json") == data
        assert reports.build_report(arts).model_dump(mode="json") == data
        part = summary.model_dump(mode="json")
        assert BatchSummary.model_validate(part) == summary
        assert Report.model_validate_json(layout.report_json(order.order_id).read_bytes()) == (
            Report.model_validate(data)
        )
