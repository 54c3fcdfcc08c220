"""Sphinx configuration: numpydoc API pages, a sphinx-gallery of examples/, pydata theme."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sktorch_lr  # noqa: E402

project = "sktorch_lr"
author = "the sktorch_lr developers"
copyright = "2026, the sktorch_lr developers"
version = release = sktorch_lr.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {
    "members": True,
    # scikit-learn's generated metadata-routing setters cite its own glossary.
    "exclude-members": "set_fit_request,set_partial_fit_request,set_score_request",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# No network at build time: the inventories of the projects cited are written
# offline (docs/inventories.py), and the links point to their sites.
from inventories import write_inventories  # noqa: E402

intersphinx_mapping = write_inventories(os.path.join(os.path.dirname(__file__), "_build", "inv"))

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
}

html_theme = "pydata_sphinx_theme"
html_title = "sktorch_lr"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = ["_static"]
# MathJax ships with the docs (docs/_static/mathjax), so formulas render offline too.
mathjax_path = "mathjax/tex-chtml.js"
templates_path = ["_templates"]
html_css_files = ["custom.css"]
exclude_patterns = ["_build"]
# The Makefile (and CI, through it) builds with -W -n: every reference must resolve.
nitpicky = True
