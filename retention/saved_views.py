"""Saved views: a page's settings kept under a name in the workspace, to reopen by a link.

A view is the settings of one page (``page``: its short name, e.g. ``retention``) as a JSON
object (setting key -> value), the dataset it was looking at and when it was saved. It is kept
in the workspace's preferences (the ``meta`` table, key ``view.<page>.<name>``), so it survives
refreshes, restarts and ``kill -9`` like everything else there. The app opens one from a link
ending in ``?view=<name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from retention.errors import InputError
from retention.workspace import Workspace

_PREFIX = "view."
#: The longest view name (it goes into a link, and on a button).
MAX_NAME = 60


@dataclass(frozen=True)
class SavedView:
    """One saved view: its ``name``, the ``page`` it belongs to, the ``settings`` (setting key
    -> JSON value), the ``dataset_id`` it showed (None when not known) and when it was saved
    (ISO time, UTC)."""

    name: str
    page: str
    settings: dict[str, Any] = field(default_factory=dict)
    dataset_id: str | None = None
    saved: str = ""


def check_name(name: object) -> str:
    """A view name trimmed, or an :class:`InputError` that says what a name can be."""
    text = " ".join(str(name or "").split())
    if not text:
        raise InputError("A saved view needs a name. Type one, e.g. 'Weekly, 6-week churn'.")
    if len(text) > MAX_NAME:
        raise InputError(
            f"A view name can have at most {MAX_NAME} characters (this one has {len(text)}). "
            "Type a shorter one."
        )
    return text


def _key(page: str, name: str) -> str:
    return f"{_PREFIX}{page}.{name}"


def save_view(
    ws: Workspace,
    page: str,
    name: str,
    settings: dict[str, Any],
    dataset_id: str | None = None,
) -> SavedView:
    """Save (or replace) the view ``name`` of ``page``; the view as stored."""
    name = check_name(name)
    view = SavedView(
        name=name,
        page=page,
        settings=dict(settings),
        dataset_id=dataset_id,
        saved=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    record = {"settings": view.settings, "dataset_id": dataset_id, "saved": view.saved}
    try:
        text = json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"The settings of this view cannot be saved: {exc}.") from exc
    ws.set_meta(_key(page, name), text)
    return view


def _decode(page: str, name: str, text: str) -> SavedView | None:
    try:
        record = json.loads(text)
        return SavedView(
            name=name,
            page=page,
            settings=dict(record.get("settings") or {}),
            dataset_id=record.get("dataset_id"),
            saved=str(record.get("saved") or ""),
        )
    except (ValueError, TypeError, AttributeError):
        return None  # a damaged record is not offered


def load_view(ws: Workspace, page: str, name: str) -> SavedView | None:
    """The view ``name`` of ``page``, or None when there is none by that name."""
    name = " ".join(str(name or "").split())
    text = ws.get_meta(_key(page, name)) if name else None
    return _decode(page, name, text) if text is not None else None


def list_views(ws: Workspace, page: str) -> list[SavedView]:
    """The saved views of ``page``, by name."""
    prefix = _key(page, "")
    views = (_decode(page, k.removeprefix(prefix), v) for k, v in ws.meta_items(prefix).items())
    return sorted((v for v in views if v is not None), key=lambda v: v.name.casefold())


def delete_view(ws: Workspace, page: str, name: str) -> None:
    """Forget the view ``name`` of ``page``."""
    ws.delete_meta(_key(page, name))


__all__ = [
    "MAX_NAME",
    "SavedView",
    "check_name",
    "delete_view",
    "list_views",
    "load_view",
    "save_view",
]
