"""Context panel badges follow the services' file list, row by row."""

from __future__ import annotations

from app.services.api import FileBadge
from app.ui.context_panel import ContextPanel


def test_badges_update(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Adds, changes and removes rows; pending sorts first; summary counts each state."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.update_files([
        FileBadge("src/a.py", "in_view"),
        FileBadge("src/b.py", "in_view"),
        FileBadge(".env", "excluded", "secret"),
    ])
    assert panel.summary.text() == "3 files  ·  2 in view  ·  1 excluded"
    row_b = panel._rows["src/b.py"]
    panel.update_files([
        FileBadge("src/a.py", "in_view"),
        FileBadge("src/b.py", "pending"),
        FileBadge("logo.png", "summarised", "binary"),
    ])
    assert panel._rows["src/b.py"] is row_b  # same row, updated in place
    assert row_b.text(1) == "pending" and row_b.text(2) == "changed on disk"
    assert panel.badge(".env") is None and ".env" not in panel._rows
    assert panel._rows["logo.png"].text(2) == "binary"
    assert panel.tree.topLevelItem(0).text(0) == "src/b.py"  # pending first
    assert panel.counts() == {"in_view": 1, "pending": 1, "excluded": 0, "summarised": 1}
    assert "1 pending" in panel.summary.text()


def test_filter_and_pin(qtbot) -> None:  # type: ignore[no-untyped-def]
    """The filter hides non-matching rows; pinning marks the row and emits the request."""
    panel = ContextPanel()
    qtbot.addWidget(panel)
    panel.update_files([FileBadge("src/a.py", "in_view"), FileBadge("README.md", "in_view")])
    panel.filter.setText("readme")
    assert panel._rows["src/a.py"].isHidden() and not panel._rows["README.md"].isHidden()
    with qtbot.waitSignal(panel.pin_requested, timeout=1000) as sig:
        panel.toggle_pin("src/a.py")
    assert sig.args == ["src/a.py", True]
    assert panel._rows["src/a.py"].text(0).startswith("★")
    panel.toggle_pin("src/a.py")
    assert not panel._rows["src/a.py"].text(0).startswith("★")
