"""The HTML report: self-contained, escaped, deterministic."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd
import plotly.graph_objects as go

from retention.report import Section, library_versions, render_report


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name in ("src", "href") and tag in ("script", "link", "img", "iframe") and value:
                self.external.append(value)


def _report() -> str:
    fig = go.Figure(go.Bar(x=["a", "b"], y=[1, 2]))
    sections = [
        Section(
            "Segments <b>bold</b>",
            paragraphs=["<script>alert('x')</script> from user text"],
            tables=[("caption", pd.DataFrame({"label": ["<img src=x onerror=alert(1)>"]}))],
            figures=[fig, fig],
            warnings=["Leave them alone"],
        )
    ]
    return render_report("Report & co", {"seed": 7, "sha256": "abc"}, sections)


def test_report_is_self_contained_and_escapes_user_text():
    page = _report()
    tags = _Tags()
    tags.feed(page)
    assert tags.external == []
    assert "<script>alert('x')</script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "Segments &lt;b&gt;bold&lt;/b&gt;" in page
    # plotly.js is inlined once (a large script), not once per chart
    assert page.count("plotly.js v") <= 2 and len(page) > 1_000_000
    assert page.count('id="chart-0"') == 1 and page.count('id="chart-1"') == 1


def test_report_is_deterministic_and_states_versions():
    assert _report() == _report()
    versions = library_versions()
    assert {"python", "numpy", "pandas", "torch", "sentence-transformers"} <= set(versions)
    assert versions["torch"] in _report()
