"""Saved views in the workspace: saved by name, listed, replaced, deleted, kept across a
restart (a new process opening the same folder)."""

from __future__ import annotations

import pytest

from retention.errors import InputError
from retention.saved_views import (
    MAX_NAME,
    check_name,
    delete_view,
    list_views,
    load_view,
    save_view,
)
from retention.workspace import Workspace


def test_views_are_saved_listed_replaced_and_deleted(tmp_path):
    ws = Workspace(tmp_path / "ws")
    save_view(ws, "retention", "Weekly", {"retention.period": "week"}, "d1")
    save_view(ws, "retention", "  monthly   churn ", {"retention.period": "month"}, "d1")
    save_view(ws, "segments", "Other page", {"segments.k": 4})
    assert [v.name for v in list_views(ws, "retention")] == ["monthly churn", "Weekly"]
    save_view(ws, "retention", "Weekly", {"retention.period": "day", "retention.top_n": 3})
    view = load_view(ws, "retention", "Weekly")
    assert view is not None and view.settings == {"retention.period": "day", "retention.top_n": 3}
    assert view.saved  # when, for the list
    delete_view(ws, "retention", "Weekly")
    assert load_view(ws, "retention", "Weekly") is None
    assert [v.name for v in list_views(ws, "retention")] == ["monthly churn"]
    assert [v.name for v in list_views(ws, "segments")] == ["Other page"]
    ws.close()

    again = Workspace(tmp_path / "ws")  # a restart
    kept = load_view(again, "retention", "monthly churn")
    assert kept is not None and kept.settings == {"retention.period": "month"}
    assert kept.dataset_id == "d1"
    again.close()


def test_names_and_values_are_checked(tmp_path):
    with pytest.raises(InputError, match="needs a name"):
        check_name("   ")
    with pytest.raises(InputError, match=f"at most {MAX_NAME} characters"):
        check_name("x" * (MAX_NAME + 1))
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InputError, match="cannot be saved"):
        save_view(ws, "retention", "Bad", {"x": float("nan")})
    assert list_views(ws, "retention") == []
    ws.set_meta("view.retention.Broken", "{not json")  # a damaged record is not offered
    assert list_views(ws, "retention") == []
    ws.close()
