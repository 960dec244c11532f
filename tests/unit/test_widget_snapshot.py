"""Static widget snapshots for the report, from a saved widget state."""

from __future__ import annotations

import nbformat
import pytest

from k2lib.demo.widget_snapshot import SNAPSHOT_CLASS, add_widget_snapshots

pytestmark = pytest.mark.unit

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = {
    "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_row", "IPY_MODEL_out"]}},
    "row": {
        "model_name": "HBoxModel",
        "state": {"children": ["IPY_MODEL_dd", "IPY_MODEL_log", "IPY_MODEL_gone"]},
    },
    "dd": {
        "model_name": "DropdownModel",
        "state": {"description": "symbol", "_options_labels": ["A", "B<"], "index": 1},
    },
    "log": {
        "model_name": "FloatLogSliderModel",
        "state": {"description": "scale", "min": 0, "max": 4, "value": 100.0, "base": 10},
    },
    "out": {
        "model_name": "OutputModel",
        "state": {
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "3 rows <ok>\n"},
                {
                    "output_type": "display_data",
                    "data": {"application/vnd.plotly.v1+json": {"data": []}},
                },
            ]
        },
    },
}


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={VIEW: {"model_id": "box"}, "text/plain": "VBox()"}
        )
    ]
    nb.cells.append(cell)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": STATE}}
    return nb


def test_a_widget_output_becomes_its_snapshot() -> None:
    nb = notebook()
    assert add_widget_snapshots(nb, lambda fig: "<div class='fig'>figure</div>") == 1
    data = nb.cells[0].outputs[0]["data"]
    assert VIEW not in data and "widgets" not in nb.metadata
    page = data["text/html"]
    assert f"class='{SNAPSHOT_CLASS}'" in page
    assert "<b>symbol</b><span class='k2w-select'>B&lt;</span>" in page
    assert "width:50.0%" in page  # 100 on a log track from 10^0 to 10^4 is half way
    assert "<pre>3 rows &lt;ok&gt;\n</pre>" in page and "<div class='fig'>figure</div>" in page


def test_a_view_without_saved_state_is_left_as_text() -> None:
    nb = notebook()
    nb.metadata.pop("widgets")
    assert add_widget_snapshots(nb, lambda fig: "") == 0
    assert nb.cells[0].outputs[0]["data"] == {"text/plain": "VBox()"}
