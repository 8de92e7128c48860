"""ConvNet Lab: the router. Every page lives in pages/; this file holds what they all share."""

from __future__ import annotations

import streamlit as st

from pages.common import keep_reruns_cheap, session_id

st.set_page_config(page_title="ConvNet Lab", page_icon=":material/hub:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/lecture.py", title="Lecture path", icon=":material/co_present:", url_path="lecture"),
    st.Page("pages/explorer.py", title="Architecture Explorer", icon=":material/account_tree:",
            url_path="explorer"),
    st.Page("pages/inside.py", title="Inside the network", icon=":material/visibility:", url_path="inside"),
    st.Page("pages/transfer.py", title="Transfer Learning Studio", icon=":material/model_training:",
            url_path="transfer"),
    st.Page("pages/lab.py", title="Training Lab", icon=":material/experiment:", url_path="lab"),
    st.Page("pages/design.py", title="Design Lab", icon=":material/science:", url_path="design"),
    st.Page("pages/zoo.py", title="Model Zoo", icon=":material/scatter_plot:", url_path="zoo"),
]
nav = st.navigation(pages)
# Every page keeps the session id in its address: a reload anywhere finds the session's runs.
session_id()
keep_reruns_cheap()     # once per server: the collection after each run skips the imports
nav.run()
