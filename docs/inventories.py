"""Intersphinx inventories for the projects these docs link to, written offline.

The docs build has no network, so instead of downloading ``objects.inv`` files
they are written here from the short list of objects the docs cite, each with
its page on the project's site. ``conf.py`` calls :func:`write_inventories`
before every build; add a line below when the docs cite a new object.
"""

import zlib
from pathlib import Path

# project: (base URL, {name: (domain:role, page relative to the base)})
PROJECTS = {
    "sklearn": (
        "https://scikit-learn.org/stable/",
        {
            "sklearn.linear_model.LogisticRegression": (
                "py:class",
                "modules/generated/sklearn.linear_model.LogisticRegression.html",
            ),
            "sklearn.linear_model.LogisticRegressionCV": (
                "py:class",
                "modules/generated/sklearn.linear_model.LogisticRegressionCV.html",
            ),
            "sklearn.linear_model.SGDClassifier": (
                "py:class",
                "modules/generated/sklearn.linear_model.SGDClassifier.html",
            ),
            "sklearn.inspection.DecisionBoundaryDisplay": (
                "py:class",
                "modules/generated/sklearn.inspection.DecisionBoundaryDisplay.html",
            ),
            "sklearn.exceptions.ConvergenceWarning": (
                "py:class",
                "modules/generated/sklearn.exceptions.ConvergenceWarning.html",
            ),
            "sklearn.model_selection.StratifiedKFold": (
                "py:class",
                "modules/generated/sklearn.model_selection.StratifiedKFold.html",
            ),
            "sklearn.model_selection.GridSearchCV": (
                "py:class",
                "modules/generated/sklearn.model_selection.GridSearchCV.html",
            ),
            "sklearn.pipeline.Pipeline": (
                "py:class",
                "modules/generated/sklearn.pipeline.Pipeline.html",
            ),
        },
    ),
    "torch": (
        "https://docs.pytorch.org/docs/stable/",
        {
            "torch.Generator": ("py:class", "generated/torch.Generator.html"),
            "torch.optim.SGD": ("py:class", "generated/torch.optim.SGD.html"),
            "torch.autograd": ("py:module", "autograd.html"),
            "torch.autograd.grad": ("py:function", "generated/torch.autograd.grad.html"),
            "torch.func": ("py:module", "func.html"),
            "torch.nn.Linear": ("py:class", "generated/torch.nn.Linear.html"),
            "torch.device": ("py:class", "tensor_attributes.html#torch.device"),
            "torch.Tensor": ("py:class", "tensors.html#torch.Tensor"),
        },
    ),
    "matplotlib": (
        "https://matplotlib.org/stable/",
        {
            "matplotlib.animation.FuncAnimation": (
                "py:class",
                "api/_as_gen/matplotlib.animation.FuncAnimation.html",
            ),
        },
    ),
    "dask_ml": (
        "https://ml.dask.org/",
        {
            "dask_ml.wrappers.Incremental": (
                "py:class",
                "modules/generated/dask_ml.wrappers.Incremental.html",
            ),
        },
    ),
}


def write_inventories(directory):
    """Write ``<project>.inv`` for every project into ``directory``; return the mapping."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (base, objects) in PROJECTS.items():
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {project}\n"
            "# Version: stable\n"
            "# The remainder of this file is compressed using zlib.\n"
        ).encode()
        body = "".join(
            f"{name} {role} 1 {page} -\n" for name, (role, page) in sorted(objects.items())
        )
        path = directory / f"{project}.inv"
        path.write_bytes(header + zlib.compress(body.encode()))
        mapping[project] = (base, str(path))
    return mapping
