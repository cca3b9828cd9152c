"""What ``package --target`` (or ``--eval``) adds to the manifest beyond the metrics: the served
graph's interpretation (permutation importance on the labelled rows) and the champion–challenger
gate (:mod:`orchestrator.training.gate`) when ``--against`` is given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.training.champion import Champion, model_input
from orchestrator.training.export import OnnxModel
from orchestrator.training.gate import GateRows, challenger_gate, eval_rows
from orchestrator.training.interpret import explain

if TYPE_CHECKING:
    from orchestrator.training.packaging.package import PackageOptions, _Packaged

__all__ = ["assessed"]


def assessed(
    opts: PackageOptions, packaged: _Packaged, y_true: NDArray[np.int64] | None, champion: Champion | None
) -> dict[str, Any]:
    """The manifest fields ``interpretation`` (with labelled reference rows) and ``gate`` (with a
    champion); ChallengerRefused when the gate refuses the model."""
    fields: dict[str, Any] = {}
    if y_true is not None:
        served = _served(packaged)
        fields["interpretation"] = explain(
            fitted=None,
            predict=lambda features: served.predict(features)[0],
            features=packaged.features,
            y_true=y_true,
            names=[c.name for c in packaged.columns],
            kinds=[c.kind for c in packaged.columns],
            classes=packaged.classes,
            seed=0,
        )
    if champion is not None:
        fields["gate"] = challenger_gate(
            champion,
            _gate_rows(opts, packaged, y_true),
            packaged.classes,
            seed=0,
            allow_worse=opts.allow_worse,
        )
    return fields


def _served(packaged: _Packaged) -> OnnxModel:
    """The contract graph in ONNX Runtime, as it will be served."""
    return OnnxModel(packaged.model, packaged.columns if packaged.columns[0].input else [])


def _gate_rows(opts: PackageOptions, packaged: _Packaged, y_true: NDArray[np.int64] | None) -> GateRows:
    """The reference table with ``--target``, or the ``--eval`` table (always, when given)."""
    layout = "columns" if packaged.columns[0].input else "matrix"
    challenger = _served(packaged)

    def predict(by_name: Any) -> Any:
        return challenger.predict(model_input(by_name, packaged.columns, layout))[0]

    if opts.eval_table is not None:
        return eval_rows(opts.eval_table, opts.target, opts.categorical, packaged.classes, predict)
    assert y_true is not None  # PackageOptions asks for --target or --eval with --against
    return GateRows(
        what=f"the reference table {opts.reference.name}",
        by_name={c.name: c for c in packaged.typed},
        y_true=y_true,
        challenger=packaged.labels,
    )
