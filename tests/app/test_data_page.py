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
    at.selectbox(key=f"currency.new.{_file_key(at)}").set_value("EUR").run()
    [b for b in at.button if b.label == "Save to workspace"][0].click().run()
    assert not at.exception
    assert any("Saved" in s.value for s in at.success)
    assert list(app_workspace.datasets()["name"]) == ["My planted data"]
    dataset_id = app_workspace.datasets()["id"].iloc[0]
    # Saved: no Save button left for the same file (it made duplicates or confused), a way on.
    assert not [b for b in at.button if b.label == "Save to workspace"]
    assert any("Saved ✓" in s.value for s in at.success)
    assert any(link.label == "Go to Segments" for link in at.get("page_link"))
    # The currency chosen before saving is the dataset's, and the summary says it.
    assert app_workspace.get_meta(f"dataset.currency.{dataset_id}") == "EUR"
    assert any("revenue in EUR (€)" in c.value for c in at.caption)

    fresh = make_app()  # a browser refresh: a new session on the same workspace
    assert not fresh.exception
    picker = fresh.sidebar.selectbox[0]
    assert picker.value == dataset_id
    assert "My planted data" in picker.format_func(picker.value)

    # The same file with the same columns again: the page says it is saved and offers no Save
    # (one home for storing a dataset: retention.runs.store_dataset, as on the command line).
    fresh.radio(key="data.source").set_value("A bundled sample").run()
    fresh.selectbox(key="data.sample").select_index(-1).run()
    assert any("Saved ✓" in s.value and "My planted data" in s.value for s in fresh.success)
    assert not [b for b in fresh.button if b.label == "Save to workspace"]
    assert list(app_workspace.datasets()["name"]) == ["My planted data"]


def _file_key(at) -> str:
    """The per-file key suffix the Data page gives the role pickers of the file shown."""
    return next(s.key for s in at.selectbox if s.key and s.key.startswith("roles.")).split(".")[1]


def test_a_stored_file_that_is_not_current_is_offered_not_saved_twice(
    app_workspace, planted_dataset
):
    """The same file again while another dataset is current: "Work on" it, never a copy."""
    other = app_workspace.save_dataset(
        name="Other",
        source_name="other.csv",
        sha256="0" * 64,
        shape=app_workspace.dataset(planted_dataset).shape,
        frames={"events": app_workspace.load(planted_dataset, "events").head(50)},
        mapping={"user": "user_id", "time": "ts"},
        report={"rows": 50, "rows_used": 50, "rows_rejected": 0},
    )
    app_workspace.set_meta("ui.last_dataset", other)
    at = make_app()
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(-1).run()
    assert not at.exception
    assert any("already in your workspace" in i.value for i in at.info)
    assert not [b for b in at.button if b.label == "Save to workspace"]
    [b for b in at.button if b.label.startswith("Work on")][0].click().run()
    assert not at.exception
    assert at.session_state["dataset_id"] == planted_dataset
    assert any("is now the current dataset" in s.value for s in at.success)
    assert len(app_workspace.datasets()) == 2


def test_bad_mapping_is_a_clear_error_not_a_traceback(app_workspace):
    at = make_app()
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(-1).run()
    _picker(at, "User").set_value("— not in this file —").run()
    assert not at.exception
    assert at.error, "expected an error message"
    assert "user" in at.error[0].value.lower()
    assert app_workspace.datasets().empty


def test_errors_in_the_browser_say_where_to_click_not_what_to_type(app_workspace, planted_dataset):
    """No command-line hint in the browser: the error names the role's box on this page."""
    at = make_app()
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(-1).run()
    _picker(at, "Time").set_value("— not in this file —").run()
    assert not at.exception
    message = at.error[0].value
    assert "Pick the right column in the 'Time' box under 'Which column is which?'" in message
    assert "--map" not in message and "command line" not in message
    # The campaign log's columns have their own boxes, and their own wording.
    at.selectbox(key=f"campaign.{_file_key(at)}.time").set_value("— not in this file —").run()
    _picker(at, "Time").set_value("ts").run()
    message = at.error[0].value
    assert "'Time' box under 'Campaign log columns'" in message and "--" not in message
    # "Your datasets" still shows while "Add data" refuses the input.
    assert at.selectbox(key="manage.target").value == planted_dataset


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


def test_dataset_view_shows_roles_as_a_table_and_opens_on_the_current_dataset(
    app_workspace, planted_dataset
):
    from retention.samples import SAMPLES, load_sample

    retail = load_sample(app_workspace, SAMPLES[0])
    app_workspace.set_meta("ui.last_dataset", planted_dataset)  # the current one, not the newest
    at = make_app()
    assert not at.exception
    assert at.selectbox(key="manage.target").value == planted_dataset
    assert any("pick *Online Retail (sample)* in the sidebar" in m.value for m in at.markdown)
    table = at.table[0].value
    assert table.index.name == "Role"
    assert list(table.columns) == ["Column", "What it is used for"]
    assert table.loc["User", "Column"] == "user_id" and table.loc["Time", "Column"] == "ts"
    assert "segments" in table.loc["Text", "What it is used for"].lower()
    assert table.loc["Campaign log: action", "Column"] == "action"
    assert "Campaign timing" in table.index
    grids = [*at.dataframe, *at.table]
    shown = " ".join(str(v) for df in grids for v in df.value.to_numpy().ravel())
    assert "sha256" not in shown.lower() and not any(len(w) == 64 for w in shown.split())
    assert not at.json  # no raw JSON
    # The sidebar moves the current dataset: the picker follows.
    at.sidebar.selectbox[0].set_value(retail).run()
    assert at.selectbox(key="manage.target").value == retail


def test_currency_of_the_revenue_column_is_set_and_shown(app_workspace, planted_dataset):
    from pages.ui.data_views import CURRENCY_LABEL

    at = make_app()
    box = at.selectbox(key=f"currency.{planted_dataset}")
    assert box.label == CURRENCY_LABEL and box.value == ""
    assert any("currency not set" in i.value for i in at.info)
    box.set_value("GBP").run()
    assert not at.exception
    assert app_workspace.get_meta(f"dataset.currency.{planted_dataset}") == "GBP"
    assert any("revenue in GBP (£)" in i.value for i in at.info)
    fresh = make_app()  # kept with the dataset
    assert fresh.selectbox(key=f"currency.{planted_dataset}").value == "GBP"
    fresh.selectbox(key=f"currency.{planted_dataset}").set_value("").run()
    assert app_workspace.get_meta(f"dataset.currency.{planted_dataset}") in ("", None)


def test_first_time_overview_shows_five_steps_and_is_dismissed_for_good(app_workspace):
    at = make_app()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "five steps" in text and "Where to start" in text
    labels = [link.label for link in at.get("page_link")]
    for step in ("Segments", "Retention", "Policy", "Strategies"):
        assert any(step in label for label in labels), step
    assert "add your file below" in text  # no sample in this workspace: start with a file
    at.checkbox(key="data.overview_hidden").check().run()
    assert "five steps" not in " ".join(m.value for m in at.markdown)
    fresh = make_app()  # remembered in the workspace
    assert "five steps" not in " ".join(m.value for m in fresh.markdown)
    # About / settings brings it back.
    fresh.sidebar.button(key="about.overview").click().run()
    assert not fresh.exception
    assert "five steps" in " ".join(m.value for m in fresh.markdown)


def test_sidebar_keeps_the_workspace_path_under_about_and_names_whole_words(app_workspace):
    long = "Online Retail II 2010-2011 full export from the shop with a very long name"
    app_workspace.save_dataset(
        name=long,
        source_name="x.csv",
        sha256="1" * 64,
        shape="events",
        frames={"events": _tiny_events()},
        mapping={"user": "user_id", "time": "ts"},
        report={"rows": 4, "rows_used": 4, "rows_rejected": 0},
    )
    at = make_app()
    assert not at.exception
    folder = str(app_workspace.folder)
    about = next(e for e in at.sidebar.expander if e.label == "About / settings")
    assert any(folder in c.value for c in about.caption)
    outside = [c.value for c in at.sidebar.caption if folder in c.value]
    assert len(outside) == 1  # only the one inside About / settings
    picker = at.sidebar.selectbox[0]
    shown = picker.format_func(picker.value)
    assert shown.endswith("…") and long.startswith(shown[:-1]) and len(shown) <= 29
    assert long[len(shown) - 1] == " "  # cut at a word boundary
    assert long in picker.help and "4 rows" in picker.help  # the full name on hover


def _tiny_events():
    import pandas as pd

    return pd.DataFrame(
        {
            "user_id": ["1", "2", "1", "2"],
            "ts": pd.to_datetime(["2011-01-01", "2011-01-02", "2011-02-01", "2011-03-01"]),
        }
    )


def test_short_name_cuts_at_word_boundaries():
    from pages.ui.common import short_name

    assert short_name("Online Retail (sample)") == "Online Retail (sample)"
    assert short_name("alpha beta gamma delta", 12) == "alpha beta…"
    assert short_name("supercalifragilistic", 10) == "supercali…"  # one long word: no boundary
    assert short_name("a, b, c, d, e, f, g", 9) == "a, b, c…"


def test_the_start_hint_names_only_the_samples_that_are_there(app_workspace, planted_dataset):
    """The hint "Upload a file to start" points to the samples in the workspace by name, and to the
    bundled-sample choice when the user has deleted them (it used to say they were there)."""
    at = make_app("pages/1_data.py")
    hint = next(i.value for i in at.info if i.value.startswith("Upload a file to start"))
    assert "*Planted demo (with campaign log)* is already in your workspace" in hint
    assert "Online Retail" not in hint

    app_workspace.delete_dataset(planted_dataset)
    at = make_app("pages/1_data.py")
    hint = next(i.value for i in at.info if i.value.startswith("Upload a file to start"))
    assert "already in your workspace" not in hint
    assert "*A bundled sample*" in hint


def test_reruns_after_a_file_is_read_neither_read_detect_nor_validate_it(
    app_workspace, monkeypatch
):
    """issue 22: the run that receives a file reads, detects and validates it once; every later
    rerun while the user names and saves it (typing, a currency) does none of it again."""
    import streamlit

    import retention.ingest

    calls: list[str] = []
    for name in ("open_source", "read_table", "detect_roles", "prepare_source"):
        real = getattr(retention.ingest, name)

        def counting(*args, _name=name, _real=real, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(retention.ingest, name, counting)
    streamlit.cache_resource.clear()  # another test may have read the same sample file
    streamlit.cache_data.clear()
    at = make_app()
    at.radio(key="data.source").set_value("A bundled sample").run()
    at.selectbox(key="data.sample").select_index(0).run()
    assert not at.exception
    assert calls.count("open_source") == 1 and calls.count("prepare_source") == 1
    assert calls.count("detect_roles") == 1
    calls.clear()
    at.text_input[0].set_value("My shop").run()
    at.text_input[0].set_value("My shop, 2024").run()
    assert not at.exception and calls == []
