"""Loading a scikit-learn model saved with skops, trusting only a fixed list of types.

skops (``skops.io``) stores an estimator as a JSON schema plus numpy arrays and rebuilds it without
pickle; a type it does not trust by default is only instantiated when the loader names it. This
module names exactly :data:`TRUSTED_TYPES` (the scikit-learn internals fitted estimators are made
of, and ``numpy.dtype``) and refuses a file holding any other type outside skops's own defaults (a
custom class, a function, ``builtins.eval``...), naming the types, before anything is built. Files
that are pickles or joblib dumps are refused by name: loading one runs arbitrary code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.core.errors import ArtifactError

__all__ = ["PICKLE_SUFFIXES", "TRUSTED_TYPES", "load_skops"]

# Types skops does not trust by default but fitted scikit-learn estimators hold: tree structures,
# histogram-boosting predictors and binners, loss and link objects, numpy dtypes, scipy sparse
# matrices (a sparse one-hot output). Each is a data container with no code of its own to run.
TRUSTED_TYPES = frozenset(
    {
        "numpy.dtype",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.Interval",
        "sklearn.utils._bunch.Bunch",
    }
)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".dill")


def load_skops(path: Path) -> Any:
    """The estimator in the skops file ``path``; ArtifactError naming the file if it cannot be read,
    is not a skops file, or holds a type outside skops's defaults and :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ArtifactError(
            f"{path}: pickle and joblib files are not loaded (loading one runs arbitrary code); "
            "save the model with skops.io.dump(model, 'model.skops')",
            path=str(path),
        )
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a zip without skops's schema: KeyError, BadZipFile, JSONDecodeError...
        raise ArtifactError(
            f"{path}: not a readable skops file ({type(exc).__name__}: {exc})", path=str(path)
        ) from exc
    if refused := sorted(set(untrusted) - TRUSTED_TYPES):
        raise ArtifactError(
            f"{path}: holds types that are not trusted: {', '.join(refused)} (trusted: scikit-learn "
            "estimators and the data types they are made of); nothing was loaded",
            path=str(path),
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:  # skops raises TypeError, ValueError, UntrustedTypesFoundException...
        raise ArtifactError(
            f"{path}: cannot load the skops file ({type(exc).__name__}: {exc})", path=str(path)
        ) from exc
