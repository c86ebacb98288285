"""Entry point: navigation only. ``streamlit run dashboard/app.py -- --tracking-uri URI``.

The pages live in ``views/``, not ``pages/``: with a ``pages/`` folder beside the entry script,
Streamlit serves the first request of a fresh server through its old folder-based navigation when
that request is a deep link (``/sweep?run=...``), bypassing this file and ``st.navigation``.

Pages read the tracking URI themselves (``dashboard/_data.py``: ``--tracking-uri`` after ``--``,
else ``HPO_TRACKING_URI``, else ``MLFLOW_TRACKING_URI``, else ``./.hpo/mlflow.db``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# `streamlit run` puts this folder, not the repository, on sys.path.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
st.set_page_config(page_title="HPO dashboard", page_icon=":material/tune:", layout="wide")

_VIEWS = Path(__file__).parent / "views"
navigation = st.navigation(
    [
        st.Page(_VIEWS / "sweeps.py", title="Sweeps", icon=":material/view_list:", url_path="sweeps", default=True),
        st.Page(_VIEWS / "sweep.py", title="Sweep", icon=":material/leaderboard:", url_path="sweep"),
        st.Page(_VIEWS / "trial.py", title="Trial", icon=":material/monitoring:", url_path="trial"),
        st.Page(_VIEWS / "compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page(_VIEWS / "compress.py", title="Compression", icon=":material/compress:", url_path="compress"),
    ]
)
navigation.run()
