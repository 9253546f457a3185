"""The Data page: pick a file, map columns, validate, save; a refresh keeps it."""

from __future__ import annotations

from tests.app.conftest import make_app


def _picker(at, label: str):
    """The first role picker whose label starts with ``label`` (the file's, not the log's)."""
    return next(s for s in at.selectbox if s.label.startswith(label))


def test_sample_is_read_mapped_validated_and_saved_and_survives_refresh(app_workspace):
    at = make_app()
    assert not at.exception
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(-1).run()
    assert not at.exception
    assert any("Validation report" in s.value for s in at.subheader)
    used = [m.value for m in at.metric if m.label == "Rows used"]
    assert used == [f"{57707:,}", f"{44649:,}"]  # the events, then the campaign log
    headings = [m.value for m in at.markdown]
    assert "**Your file: planted_events.csv.gz**" in headings
    assert "**Campaign log: planted_campaigns.csv.gz**" in headings  # each report says whose
    assert _picker(at, "User").value == "user_id"
    assert _picker(at, "Time").value == "ts"

    at.text_input[0].set_value("My planted data").run()
    [b for b in at.button if b.label == "Save to workspace"][0].click().run()
    assert not at.exception
    assert any("Saved" in s.value for s in at.success)
    assert list(app_workspace.datasets()["name"]) == ["My planted data"]

    fresh = make_app()  # a browser refresh: a new session on the same workspace
    assert not fresh.exception
    picker = fresh.sidebar.selectbox[0]
    assert picker.value == app_workspace.datasets()["id"].iloc[0]
    assert "My planted data" in picker.format_func(picker.value)

    # The same file with the same columns again: the page says so, and saving stores nothing new
    # (one home for storing a dataset: retention.runs.store_dataset, as on the command line).
    fresh.radio(key="data.source").set_value("A bundled sample").run()
    fresh.selectbox(key="data.sample").select_index(-1).run()
    assert any("already in your workspace" in i.value for i in fresh.info)
    [b for b in fresh.button if b.label == "Save to workspace"][0].click().run()
    assert not fresh.exception
    assert list(app_workspace.datasets()["name"]) == ["My planted data"]
    assert any("already held this file" in s.value for s in fresh.success)


def test_bad_mapping_is_a_clear_error_not_a_traceback(app_workspace):
    at = make_app()
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(-1).run()
    _picker(at, "User").set_value("— not in this file —").run()
    assert not at.exception
    assert at.error, "expected an error message"
    assert "user" in at.error[0].value.lower()
    assert app_workspace.datasets().empty


def test_rename_and_delete(app_workspace, planted_dataset):
    at = make_app()
    at.text_input(key=f"rename.{planted_dataset}").set_value("Renamed demo").run()
    [b for b in at.button if b.label == "Rename"][0].click().run()
    assert app_workspace.dataset(planted_dataset).name == "Renamed demo"
    at.checkbox(key="delete.sure").check().run()
    at.button(key="delete").click().run()
    assert not at.exception
    assert app_workspace.datasets().empty


def test_typing_a_name_does_not_validate_again(app_workspace, monkeypatch):
    """The upload is validated once per (file, shape, mapping): a rerun for the dataset name
    reuses it, a changed mapping does not."""
    import retention.ingest

    calls = []
    real = retention.ingest.prepare_source

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(retention.ingest, "prepare_source", counting)
    at = make_app()
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(-1).run()
    assert not at.exception and calls[-1]["user"] == "user_id"
    calls.clear()
    at.text_input[0].set_value("Another name").run()
    at.text_input[0].set_value("Another name, again").run()
    assert not at.exception and calls == []
    _picker(at, "Amount").set_value("— not in this file —").run()
    assert not at.exception and len(calls) == 1 and calls[0]["amount"] is None
