"""Streamlit dashboard over :mod:`tracker.queries`: ``streamlit run dashboard/app.py`` or ``hpo dashboard``.

Nothing imports this package except its own pages and :mod:`dashboard.server` (used by the CLI).
"""
