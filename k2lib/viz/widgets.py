"""ipywidgets controls for the notebooks. Each is a Box holding its inputs and an Output.

Every control has a method that does what a click does (`choose`, `trigger`, `update`), so a
headless run drives the same code path as the presenter, and returns the line it printed.
The work is passed in as callables, so the widgets need no services to build or test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as w
import plotly.io as pio

from k2lib.resilience import DegradationLevel, DegradationManager, actions_for

__all__ = [
    "AUTO",
    "ChaosControl",
    "CostControl",
    "LevelControl",
    "QueryControl",
    "TimeTravelControl",
    "level_actions_lines",
    "level_line",
    "show",
]

AUTO = "auto"
LEVEL_NAMES = tuple(level.name for level in DegradationLevel)
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _stream(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _figure(figure: Any) -> dict[str, Any]:
    """A display_data output for a plotly figure, built without the kernel's formatter."""
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            PLOTLY_MIME: json.loads(pio.to_json(figure, validate=False)),
            "text/plain": f"<{type(figure).__name__}>",
        },
    }


def show(output: w.Output, *items: Any) -> None:
    """Replace what `output` shows: strings become text, anything else a plotly figure.

    The Output's state is set directly. Its capture protocol (`with output:` and
    `clear_output()`, which uses it) round-trips through the frontend, and under a
    headless executor (nbclient) that round trip can stall a cell until it times out.
    """
    output.outputs = tuple(
        _stream(i if i.endswith("\n") else i + "\n") if isinstance(i, str) else _figure(i)
        for i in items
    )


def level_line(manager: DegradationManager) -> str:
    """The manager's level and what it means, read back from the manager (not echoed)."""
    level = manager.level
    a = actions_for(level)
    how = "forced" if manager.forced else "from signals"
    if not a.consume:
        path = "consumption paused (Kafka holds the data); historical queries only"
    elif a.max_realtime_tier >= 3:
        path = "all tiers on the real-time path"
    else:
        path = (
            f"tiers 1-{a.max_realtime_tier} on the real-time path, "
            f"higher tiers deferred to the spill"
        )
    return f"level {level.name} ({how}): {path}; queries up to {a.max_query_priority.name}"


def level_actions_lines() -> list[str]:
    """LEVEL_ACTIONS as a table: what each level does (the one definition in levels.py)."""
    lines = [
        f"{'level':14s} {'batch':>5s} {'commit':>6s} {'tiers':>5s} consume backfill "
        f"queries  sources"
    ]
    for level in DegradationLevel:
        a = actions_for(level)
        lines.append(
            f"{level.name:14s} {a.batch_size_factor:>4g}x {a.commit_interval_factor:>5g}x "
            f"{'1-' + str(a.max_realtime_tier) if a.max_realtime_tier else 'none':>5s} "
            f"{'yes' if a.consume else 'no':7s} {'yes' if a.backfill_deferred else 'no':8s} "
            f"{a.max_query_priority.name:8s} {','.join(sorted(a.query_sources))}"
        )
    return lines


class LevelControl(w.VBox):
    """Toggle buttons bound to `manager.force()`; the Output shows the level it now reports."""

    def __init__(self, manager: DegradationManager) -> None:
        self.manager = manager
        self.buttons = w.ToggleButtons(
            options=[AUTO, *LEVEL_NAMES],
            value=AUTO,
            description="level",
            tooltips=["hand control back to the signals", *[f"force {n}" for n in LEVEL_NAMES]],
        )
        self.output = w.Output(layout={"border": "1px solid #ddd", "padding": "4px"})
        self.buttons.observe(self._changed, names="value")
        super().__init__([self.buttons, self.output])
        self._show()

    def _changed(self, change: Mapping[str, Any]) -> None:
        value = change["new"]
        self.manager.force(None if value == AUTO else DegradationLevel[value])
        self._show()

    def _show(self) -> None:
        show(self.output, level_line(self.manager))

    def choose(self, value: str) -> str:
        """What clicking the button `value` does; returns the line now shown."""
        if value != AUTO and value not in LEVEL_NAMES:
            raise ValueError(f"level must be {AUTO!r} or one of {LEVEL_NAMES}")
        self.buttons.value = value
        return level_line(self.manager)


class ChaosControl(w.VBox):
    """A fault/load picker and an Apply button. `actions[name]()` does the work and returns
    the line to print. A click runs it in a thread so the kernel keeps serving the widgets."""

    def __init__(self, actions: Mapping[str, Callable[[], str]]) -> None:
        if not actions:
            raise ValueError("ChaosControl needs at least one action")
        self.actions = dict(actions)
        self.picker = w.Dropdown(options=list(self.actions), description="apply")
        self.button = w.Button(description="Apply", button_style="warning", icon="bolt")
        self.output = w.Output(layout={"border": "1px solid #ddd", "padding": "4px"})
        self.history: list[str] = []
        self._lock = threading.Lock()
        self.button.on_click(lambda _b: self._start(self.picker.value))
        super().__init__([w.HBox([self.picker, self.button]), self.output])

    def _start(self, name: str) -> None:
        threading.Thread(target=self.trigger, args=(name,), name="k2-chaos", daemon=True).start()

    def trigger(self, name: str) -> str:
        """Run action `name` now (what Apply does) and return its line."""
        with self._lock:  # one fault at a time: overlapping outages would blur the story
            self.picker.value = name
            self.button.disabled = True
            try:
                line = f"{name}: {self.actions[name]()}"
            finally:
                self.button.disabled = False
            self.history.append(line)
            show(self.output, *self.history[-8:])
            return line


class _FigureControl(w.VBox):
    """Inputs above an Output: `_compute()` turns their values into a figure and a line,
    recomputed whenever one changes; `_set` changes several with one recomputation."""

    def __init__(self, inputs: Sequence[w.ValueWidget], rows: Sequence[w.Widget]) -> None:
        self.output = w.Output()
        self.figure: Any = None
        self.line = ""
        self._quiet = False
        for control in inputs:
            control.observe(lambda _c: self._refresh(), names="value")
        super().__init__([*rows, self.output])
        self._refresh()

    def _compute(self) -> tuple[Any, str]:
        raise NotImplementedError

    def _refresh(self) -> None:
        if self._quiet:
            return
        self.figure, self.line = self._compute()
        show(self.output, self.line, self.figure)

    def _set(self, values: Sequence[tuple[w.ValueWidget, Any]]) -> str:
        """Give each input its value (None: leave it as it is), then recompute once."""
        self._quiet = True
        try:
            for control, value in values:
                if value is not None:
                    control.value = value
        finally:
            self._quiet = False
        self._refresh()
        return self.line


class QueryControl(_FigureControl):
    """Symbol, window (minutes) and source; `run(symbol, minutes, source)` returns the figure
    and the provenance line that the Output shows."""

    def __init__(
        self,
        run: Callable[[str, int, str], tuple[Any, str]],
        symbols: Sequence[str],
        *,
        window: int = 15,
        sources: Sequence[str] = ("hybrid", "historical", "realtime"),
    ) -> None:
        self.run = run
        self.symbol = w.Dropdown(options=list(symbols), value=symbols[0], description="symbol")
        self.window = w.IntSlider(
            value=window, min=1, max=60, step=1, description="window (min)", continuous_update=False
        )
        self.source = w.ToggleButtons(options=list(sources), value=sources[0], description="source")
        super().__init__(
            (self.symbol, self.window, self.source),
            (w.HBox([self.symbol, self.window]), self.source),
        )

    def _compute(self) -> tuple[Any, str]:
        return self.run(self.symbol.value, self.window.value, self.source.value)

    def update(
        self, *, symbol: str | None = None, window: int | None = None, source: str | None = None
    ) -> str:
        """Set any of the three (one query, not three) and return the provenance line."""
        return self._set(((self.symbol, symbol), (self.window, window), (self.source, source)))


class CostControl(_FigureControl):
    """Scale (1x-1000x, log) and retention sliders; `price(scale, days)` returns the figure
    and the line the Output shows."""

    def __init__(
        self,
        price: Callable[[float, int], tuple[Any, str]],
        *,
        scale: float = 1.0,
        retention_days: int = 30,
        max_retention_days: int = 1_825,
    ) -> None:
        self.price = price
        self.scale = w.FloatLogSlider(
            value=scale,
            base=10,
            min=0,
            max=3,
            step=0.25,
            description="scale (x)",
            continuous_update=False,
        )
        self.retention = w.IntSlider(
            value=retention_days,
            min=1,
            max=max_retention_days,
            step=1,
            description="retention (d)",
            continuous_update=False,
        )
        super().__init__((self.scale, self.retention), (w.HBox([self.scale, self.retention]),))

    def _compute(self) -> tuple[Any, str]:
        return self.price(float(self.scale.value), int(self.retention.value))

    def update(self, *, scale: float | None = None, retention_days: int | None = None) -> str:
        return self._set(((self.scale, scale), (self.retention, retention_days)))


class TimeTravelControl(w.VBox):
    """A snapshot slider; `read(n)` returns the line for snapshot #n."""

    def __init__(self, read: Callable[[int], str], snapshots: int) -> None:
        self.read = read
        self.slider = w.IntSlider(
            value=max(snapshots, 1),
            min=1,
            max=max(snapshots, 1),
            description="snapshot #",
            continuous_update=False,
        )
        self.output = w.Output(layout={"border": "1px solid #ddd", "padding": "4px"})
        self.line = ""
        self.slider.observe(lambda _c: self._refresh(), names="value")
        super().__init__([self.slider, self.output])
        self._refresh()

    def _refresh(self) -> None:
        self.line = self.read(int(self.slider.value))
        show(self.output, self.line)

    def choose(self, n: int) -> str:
        if self.slider.value == n:
            self._refresh()
        self.slider.value = n
        return self.line
