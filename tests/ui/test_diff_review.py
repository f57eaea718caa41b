"""Approval dialogs resolve exactly once, with the hunks the user chose."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from app.services.api import ApprovalDecision, ApprovalRequest
from app.ui.diff_review import CommandApprovalDialog, DiffReviewDialog, approval_dialog

PAYLOAD = {
    "files": [
        {
            "path": "src/a.py",
            "op": "update",
            "hunks": [
                {"header": "@@ -1,2 +1,2 @@", "lines": ["-old", "+new", " same"]},
                {"header": "@@ -10 +10 @@", "lines": ["-x = 1", "+x = 2"]},
            ],
        },
        {"path": "docs/b.md", "op": "add", "hunks": [{"header": "@@ -0,0 +1 @@", "lines": ["+hello"]}]},
    ],
    "patch": "*** Begin Patch ...",
}


def _request(kind: str, payload: dict[str, Any]) -> tuple[ApprovalRequest, list[ApprovalDecision]]:
    got: list[ApprovalDecision] = []
    return ApprovalRequest(kind, "Apply patch?", payload, got.append), got  # type: ignore[arg-type]


def test_accept_selected_hunks(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Unticking a hunk resolves with that hunk rejected and the rest accepted."""
    req, got = _request("patch", PAYLOAD)
    dlg = approval_dialog(req)
    qtbot.addWidget(dlg)
    assert isinstance(dlg, DiffReviewDialog)
    dlg.checks["src/a.py"][1].setChecked(False)
    qtbot.mouseClick(dlg.accept_button, Qt.MouseButton.LeftButton)
    assert got == [ApprovalDecision(True, hunks={"src/a.py": [True, False], "docs/b.md": [True]})]


def test_reject_all_and_close_resolve_once(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Reject all refuses every hunk; a later close does not resolve again."""
    req, got = _request("patch", PAYLOAD)
    dlg = DiffReviewDialog(req)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.mouseClick(dlg.reject_button, Qt.MouseButton.LeftButton)
    dlg.close()
    assert got == [ApprovalDecision(False, hunks={"src/a.py": [False, False], "docs/b.md": [False]})]


def test_closing_counts_as_refusal(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Closing the window without a choice still resolves (the agent never waits forever)."""
    req, got = _request("command", {"command": "pytest -q", "cwd": "/p"})
    dlg = approval_dialog(req)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.close()
    assert got == [ApprovalDecision(False)]


def test_command_buttons(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Run once / Always allow / Deny map to the documented decisions."""
    for button, expected in (
        ("run_button", ApprovalDecision(True)),
        ("always_button", ApprovalDecision(True, always=True)),
        ("deny_button", ApprovalDecision(False)),
    ):
        req, got = _request("command", {"command": "rm -rf build", "cwd": "/p"})
        dlg = CommandApprovalDialog(req)
        qtbot.addWidget(dlg)
        dlg.show()
        qtbot.mouseClick(getattr(dlg, button), Qt.MouseButton.LeftButton)
        assert got == [expected], button


def test_a_link_shows_the_file_it_really_writes(qtbot) -> None:  # type: ignore[no-untyped-def]
    """A patch to an in-tree link names the link's target in the review, so `M docs/x` cannot hide it."""
    from PySide6.QtWidgets import QLabel

    payload = {
        "files": [
            {
                "path": "docs/notes.md",
                "op": "update",
                "resolved": "README.md",
                "hunks": [{"header": "@@", "lines": ["-a", "+b"]}],
            }
        ],
        "patch": "",
    }
    req, _ = _request("patch", payload)
    dlg = approval_dialog(req)
    qtbot.addWidget(dlg)
    texts = [lbl.text() for lbl in dlg.findChildren(QLabel)]
    assert any("docs/notes.md" in t and "writes README.md" in t for t in texts), texts
