"""Plotly figure builders, shared by the app, the HTML report and the tests.

Each topic lives in its own submodule; this package re-exports them.
"""
