"""Errors that both front doors show: the command line names its option, the browser does not."""

from __future__ import annotations

import pytest

from retention.errors import InputError
from retention.workspace import Workspace


def test_a_workspace_that_cannot_be_created_speaks_to_each_front_door(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError) as caught:
        Workspace(blocker / "ws")
    exc = caught.value
    assert "Cannot create the workspace folder" in str(exc) and "--workspace DIR" in str(exc)
    assert "Cannot create the workspace folder" in exc.in_app
    assert "--" not in exc.in_app and "RETENTION_WORKSPACE" in exc.in_app
