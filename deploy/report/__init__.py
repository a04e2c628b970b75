"""The run report: ``report.html`` (one self-contained file) and PNG plots in ``plots/``.

```python
from deploy.analysis import analyze
from deploy.report import write_report
a = analyze(Path("runs/latest"))
write_report(a)            # -> runs/latest/report.html and runs/latest/plots/*.png
```
"""

from __future__ import annotations

from pathlib import Path

from deploy.analysis.rundir import Analysis
from deploy.report._data import ReportData, build_report_data
from deploy.report.html import render_html, write_html
from deploy.report.plots import write_plots

__all__ = ["ReportData", "build_report_data", "render_html", "write_report"]


def write_report(a: Analysis, out_dir: Path | None = None, *, plots: bool = True) -> Path:
    """Write ``plots/*.png`` (unless ``plots`` is false) and ``report.html`` into ``out_dir``
    (default: the run directory). Returns the HTML path."""
    out = out_dir or a.inputs.root
    out.mkdir(parents=True, exist_ok=True)
    data = build_report_data(a)
    if out != a.inputs.root:
        data.root = out
    if plots:
        write_plots(data, out / "plots")
    return write_html(data, out / "report.html")
