"""Static HTML snapshots of ipywidgets, for the report: what a widget showed when it ran.

A live widget needs a kernel, or the ipywidgets HTML manager fetched from a CDN, which an
offline report cannot load: nbconvert left such a cell blank (`Out[4]:` and nothing). The
executed notebook carries each widget's state (nbclient's `store_widget_state`), so the
report draws it instead: boxes as flex rows and columns, a slider as a track filled to its
value, a dropdown and toggle buttons with the chosen option marked, a button, and an
Output widget's own outputs (text, HTML, plotly figures) as they were printed. Plain HTML
and CSS shapes only, so it renders with default fonts and no script.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from typing import Any

import nbformat

__all__ = ["SNAPSHOT_CLASS", "SNAPSHOT_CSS", "add_widget_snapshots", "snapshot_html"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
SNAPSHOT_CLASS = "k2-widget"
MODEL_PREFIX = "IPY_MODEL_"
SNAPSHOT_CSS = f"""<style>
.{SNAPSHOT_CLASS}{{border:1px solid #c8d1dc;border-radius:6px;padding:.6em .8em;
  background:#fbfcfd;font-family:sans-serif;font-size:13px}}
.{SNAPSHOT_CLASS} .k2w-note{{color:#6b7785;font-size:11px;margin-bottom:.4em}}
.{SNAPSHOT_CLASS} .k2w-row{{display:flex;flex-wrap:wrap;gap:1em;align-items:center}}
.{SNAPSHOT_CLASS} .k2w-col{{display:flex;flex-direction:column;gap:.5em}}
.{SNAPSHOT_CLASS} .k2w-control{{display:flex;gap:.5em;align-items:center}}
.{SNAPSHOT_CLASS} .k2w-track{{width:10em;height:6px;background:#dde3ea;border-radius:3px}}
.{SNAPSHOT_CLASS} .k2w-fill{{height:6px;background:#2f7ed8;border-radius:3px}}
.{SNAPSHOT_CLASS} .k2w-option{{border:1px solid #b8c2cc;border-radius:3px;padding:.15em .6em;
  background:#fff}}
.{SNAPSHOT_CLASS} .k2w-chosen{{background:#2f7ed8;color:#fff;border-color:#2f7ed8}}
.{SNAPSHOT_CLASS} .k2w-select{{border:1px solid #b8c2cc;border-radius:3px;padding:.15em .6em;
  background:#fff;min-width:6em}}
.{SNAPSHOT_CLASS} .k2w-button{{border:1px solid #9aa6b2;border-radius:3px;padding:.2em .8em;
  background:#eef1f4}}
.{SNAPSHOT_CLASS} pre{{margin:.2em 0;white-space:pre-wrap}}
</style>"""

HtmlOf = Callable[[dict[str, Any]], str]  # a plotly figure's JSON -> its HTML


def add_widget_snapshots(nb: nbformat.NotebookNode, plotly_html: HtmlOf) -> int:
    """Give every widget output a `text/html` snapshot of its saved state, in place, and
    drop the widget view and state (nothing offline could render them). Returns how many."""
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            view = data.get(WIDGET_VIEW)
            if view is None:
                continue
            model_id = _as_dict(view).get("model_id", "")
            data.pop(WIDGET_VIEW)
            if model_id in states:
                data["text/html"] = snapshot_html(model_id, states, plotly_html)
                count += 1
    nb.metadata.pop("widgets", None)
    return count


def snapshot_html(model_id: str, states: dict[str, Any], plotly_html: HtmlOf) -> str:
    """The widget `model_id` and its children as static HTML, with the report's CSS."""
    body = _render(model_id, states, plotly_html, depth=0)
    note = "<div class='k2w-note'>widget, as it stood when the notebook ran</div>"
    return f"{SNAPSHOT_CSS}<div class='{SNAPSHOT_CLASS}'>{note}{body}</div>"


def _render(model_id: str, states: dict[str, Any], plotly_html: HtmlOf, depth: int) -> str:
    model = states.get(model_id.removeprefix(MODEL_PREFIX))
    if model is None or depth > 20:  # a dangling or cyclic reference draws nothing
        return ""
    name, s = model.get("model_name", ""), model.get("state", {})
    label = _label(s)
    if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"):
        kind = "k2w-row" if name == "HBoxModel" else "k2w-col"
        inner = "".join(_render(c, states, plotly_html, depth + 1) for c in s.get("children", []))
        return f"<div class='{kind}'>{inner}</div>"
    if name.endswith("SliderModel"):
        return _slider(label, s, log=name == "FloatLogSliderModel")
    if name in ("DropdownModel", "SelectModel"):
        chosen = _chosen(s)
        return f"<div class='k2w-control'>{label}<span class='k2w-select'>{chosen}</span></div>"
    if name in ("ToggleButtonsModel", "RadioButtonsModel"):
        options = "".join(
            f"<span class='k2w-option{' k2w-chosen' if i == s.get('index') else ''}'>"
            f"{html.escape(str(o))}</span>"
            for i, o in enumerate(s.get("_options_labels", []))
        )
        return f"<div class='k2w-control'>{label}{options}</div>"
    if name in ("ButtonModel", "ToggleButtonModel"):
        return f"<span class='k2w-button'>{html.escape(str(s.get('description', '')))}</span>"
    if name in ("LabelModel", "TextModel", "IntTextModel", "FloatTextModel", "CheckboxModel"):
        value = html.escape(str(s.get("value", "")))
        return f"<div class='k2w-control'>{label}<span>{value}</span></div>"
    if name == "HTMLModel":
        return f"<div>{s.get('value', '')}</div>"  # the widget's own HTML, as it showed it
    if name == "OutputModel":
        return "".join(_output(o, plotly_html) for o in s.get("outputs", []))
    return ""  # layouts and styles carry no content of their own


def _label(s: dict[str, Any]) -> str:
    text = s.get("description", "")
    return f"<b>{html.escape(str(text))}</b>" if text else ""


def _chosen(s: dict[str, Any]) -> str:
    labels, index = s.get("_options_labels", []), s.get("index")
    return html.escape(str(labels[index])) if isinstance(index, int) and index < len(labels) else ""


def _slider(label: str, s: dict[str, Any], *, log: bool) -> str:
    lo, hi, value = (float(s.get(k, 0)) for k in ("min", "max", "value"))
    # a log slider's min and max are exponents of its base, and its track is logarithmic
    at = math.log(value, float(s.get("base", 10))) if log and value > 0 else value
    span = hi - lo
    fraction = 0.0 if span <= 0 else min(1.0, max(0.0, (at - lo) / span))
    shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"
    return (
        f"<div class='k2w-control'>{label}<div class='k2w-track'>"
        f"<div class='k2w-fill' style='width:{fraction * 100:.1f}%'></div></div>"
        f"<span>{shown}</span></div>"
    )


def _output(output: dict[str, Any], plotly_html: HtmlOf) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f"<pre>{html.escape(str(output.get('text', '')))}</pre>"
    if kind == "error":
        error = f"{output.get('ename', '')}: {output.get('evalue', '')}"
        return f"<pre>{html.escape(error)}</pre>"
    data = output.get("data", {})
    if PLOTLY_MIME in data:
        return plotly_html(_as_dict(data[PLOTLY_MIME]))
    if "text/html" in data:
        return str(data["text/html"])
    if "image/png" in data:
        return f"<img src='data:image/png;base64,{data['image/png']}'>"
    if "text/plain" in data:
        return f"<pre>{html.escape(str(data['text/plain']))}</pre>"
    return ""


def _as_dict(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return dict(loaded) if isinstance(loaded, dict) else {}
