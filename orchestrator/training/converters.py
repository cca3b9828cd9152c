"""skl2onnx converters that keep float64 pipelines exact, registered before every conversion.

skl2onnx's own converters lose precision, or fail, on the float64 inputs the serving contract
uses (measured with scikit-learn 1.9, skl2onnx 1.20, onnxruntime 1.32):

- ``SimpleImputer`` becomes an ``ai.onnx.ml`` ``Imputer``, which onnxruntime implements for float32
  only (a float64 graph does not load) and whose statistics it rounds to float32. Here: ``IsNaN``
  (or ``Equal`` for a numeric ``missing_values``) and ``Where`` with float64 statistics, the
  columns scikit-learn drops (no observed value) dropped, ``add_indicator`` columns appended.
  Text inputs keep skl2onnx's converter.
- Random forests and extra trees: scikit-learn casts the input to float32 before comparing it with
  the thresholds; skl2onnx's float64 path compares the float64 value with thresholds rounded to
  float32, which sends rows near a threshold down the other branch (max probability difference
  0.03 on iris). Here the input is rounded to float32 first, the thresholds come from skl2onnx's
  float32 path (which reproduces scikit-learn's comparison), and the trees run on float64
  (thresholds and leaf weights in the ``*_as_tensor`` attributes of ``ai.onnx.ml`` 3).
- Histogram gradient boosting compares float64 values with float64 thresholds; skl2onnx stores
  them as float32 attributes (difference 0.05 on a mixed table). Here they go into the
  ``*_as_tensor`` float64 attributes too.

onnxruntime sums the trees in float64 but ``TreeEnsembleClassifier``'s output is float32, so tree
probabilities differ from scikit-learn's by the last float32 rounding (and, for boosting, a
float32 softmax): measured up to 5e-8 for forests and 3.5e-7 for histogram gradient boosting
(iris, wine, digits, a mixed table), within the 1e-6 the export check allows; the measured
difference of every export is in its manifest.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = ["register_converters"]

# The classes skl2onnx registers its tree converter for, with the options it accepts for each.
_FOREST_OPTIONS = {
    "zipmap": [True, False, "columns"],
    "raw_scores": [True, False],
    "nocl": [True, False],
    "output_class_labels": [False, True],
    "decision_path": [True, False],
    "decision_leaf": [True, False],
}
_HIST_OPTIONS = {
    "zipmap": [True, False, "columns"],
    "raw_scores": [True, False],
    "output_class_labels": [False, True],
    "nocl": [True, False],
}


@functools.cache
def register_converters() -> None:
    """Replace skl2onnx's converters for SimpleImputer, RandomForestClassifier,
    ExtraTreesClassifier and HistGradientBoostingClassifier by the float64-exact ones (once per
    process; skl2onnx's registry is global)."""
    from skl2onnx import update_registered_converter
    from skl2onnx._parse import _parse_sklearn_classifier
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer

    update_registered_converter(SimpleImputer, "SklearnSimpleImputer", _imputer_shape, _convert_imputer)
    for cls, options in (
        (RandomForestClassifier, _FOREST_OPTIONS),
        (ExtraTreesClassifier, _FOREST_OPTIONS),
        (HistGradientBoostingClassifier, _HIST_OPTIONS),
    ):
        update_registered_converter(
            cls,
            f"Sklearn{cls.__name__}",
            calculate_linear_classifier_output_shapes,
            _convert_trees,
            parser=_parse_sklearn_classifier,
            options=options,
        )


def _is_double(variable: Any) -> bool:
    from skl2onnx.common.data_types import DoubleTensorType

    return isinstance(variable.type, DoubleTensorType)


def _kept(imputer: Any) -> Any:
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if getattr(imputer, "keep_empty_features", False):
        return np.ones(len(statistics), dtype=bool)
    return ~np.isnan(statistics)


def _imputer_shape(operator: Any) -> None:
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    calculate_sklearn_imputer_output_shapes(operator)
    imputer = operator.raw_operator
    if _is_double(operator.inputs[0]):
        width = int(_kept(imputer).sum())
        if imputer.add_indicator:
            width += len(imputer.indicator_.features_)
        operator.outputs[0].type.shape = [operator.inputs[0].get_first_dimension(), width]


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common._apply_operation import apply_concat
    from skl2onnx.operator_converters.common import concatenate_variables
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    imputer = operator.raw_operator
    if not _is_double(operator.inputs[0]):
        convert_sklearn_imputer(scope, operator, container)
        return
    x = concatenate_variables(scope, operator.inputs, container)
    missing, name = imputer.missing_values, scope.get_unique_variable_name
    mask = name("missing")
    if missing is None or (isinstance(missing, float) and np.isnan(missing)):
        container.add_node("IsNaN", [x], [mask])
    elif isinstance(missing, int | float) and not isinstance(missing, bool):
        value = name("missing_value")
        container.add_initializer(value, TensorProto.DOUBLE, [], [float(missing)])
        container.add_node("Equal", [x, value], [mask])
    else:
        raise NotImplementedError(f"SimpleImputer(missing_values={missing!r}) on numbers")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    fill = name("statistics")
    container.add_initializer(
        fill, TensorProto.DOUBLE, [1, len(statistics)], np.nan_to_num(statistics, nan=0.0).tolist()
    )
    imputed = name("imputed")
    container.add_node("Where", [mask, fill, x], [imputed])
    kept = _kept(imputer)
    parts = [imputed]
    if not kept.all():
        parts = [_gather(scope, container, imputed, np.flatnonzero(kept), "imputed_kept")]
    if imputer.add_indicator:
        flags = _gather(scope, container, mask, imputer.indicator_.features_, "indicator_mask")
        indicator = name("indicator")
        container.add_node("Cast", [flags], [indicator], to=TensorProto.DOUBLE)
        parts.append(indicator)
    if len(parts) == 1:
        container.add_node("Identity", parts, [operator.outputs[0].full_name])
    else:
        apply_concat(scope, parts, operator.outputs[0].full_name, container, axis=1)


def _gather(scope: Any, container: Any, source: str, columns: Any, what: str) -> str:
    from onnx import TensorProto

    indices: str = scope.get_unique_variable_name(f"{what}_columns")
    out: str = scope.get_unique_variable_name(what)
    container.add_initializer(indices, TensorProto.INT64, [len(columns)], [int(c) for c in columns])
    container.add_node("Gather", [source, indices], [out], axis=1)
    return out


class _WithInputs:
    """An operator seen with other inputs (skl2onnx guards its own against assignment)."""

    def __init__(self, operator: Any, inputs: list[Any]) -> None:
        self._operator, self.inputs = operator, inputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)

    @property
    def input_full_names(self) -> list[str]:
        return [v.full_name for v in self.inputs]


class _Float64Trees:
    """A container that stores tree attributes as float64 tensors (``ai.onnx.ml`` 3)."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
        from onnx import numpy_helper

        if op_type == "TreeEnsembleClassifier":
            for key in ("nodes_values", "class_weights", "base_values", "nodes_hitrates"):
                if key in attrs:
                    values = np.asarray(attrs.pop(key), dtype=np.float64)
                    attrs[f"{key}_as_tensor"] = numpy_helper.from_array(values, name=key)
            # skl2onnx passes histogram trees' node ids as numpy uint32, which protobuf converts
            # with a DeprecationWarning (an error where warnings are errors): plain ints instead.
            for key, value in attrs.items():
                if isinstance(value, list) and any(isinstance(v, np.integer) for v in value):
                    attrs[key] = [int(v) for v in value]
        return self._container.add_node(op_type, *args, **attrs)


def _convert_trees(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    source = operator.inputs[0]
    if not _is_double(source):
        convert_sklearn_random_forest_classifier(scope, operator, container)
    elif hasattr(operator.raw_operator, "_predictors"):  # histogram gradient boosting: float64
        convert_sklearn_random_forest_classifier(scope, operator, _Float64Trees(container), op_version=3)
    else:
        # Forests compare float32(x), as scikit-learn does: the input is rounded to float32 and
        # the thresholds come from skl2onnx's float32 path (which reproduces that comparison).
        # Fed back as float64 with float64 leaf weights, onnxruntime sums the trees in float64.
        rounded = scope.get_unique_variable_name("tree_input_float32")
        container.add_node("Cast", source.full_name, rounded, to=TensorProto.FLOAT)
        widened = scope.declare_local_variable("tree_input", FloatTensorType(source.type.shape))
        container.add_node("Cast", rounded, widened.full_name, to=TensorProto.DOUBLE)
        convert_sklearn_random_forest_classifier(
            scope, _WithInputs(operator, [widened]), _Float64Trees(container), op_version=3
        )
