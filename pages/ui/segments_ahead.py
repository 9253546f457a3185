"""The Segments page's work done ahead (issue 19): when a dataset is saved, when the app opens
on one and when the Segments page opens, the server's job worker starts, loads the text model
and embeds the dataset's distinct texts into the workspace's vector cache in the background,
then makes its reduced user vectors for the default settings (:func:`retention.jobs.prefetch_texts`),
so *Find segments* reads them instead of waiting for all of that. Once per dataset per server; it gives way to any job."""

from __future__ import annotations

import logging

from pages.ui import jobs_view as jobs

log = logging.getLogger("retention")


def embed_ahead(dataset_id: str | None) -> None:
    """Warm the worker and embed ``dataset_id``'s texts in the background (never raises: a
    failure here only means the segmentation embeds them itself)."""
    from retention.jobs import prefetch_enabled, prefetch_texts

    if not prefetch_enabled():
        return
    try:
        prefetch_texts(jobs.job_queue(), dataset_id)
    except Exception:  # noqa: BLE001 - ahead of time only
        log.debug("Could not start embedding %s ahead", dataset_id, exc_info=True)
