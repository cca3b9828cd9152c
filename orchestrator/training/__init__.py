"""Training: from a dataset to a verified, versioned artifact, or to a refusal that writes nothing.

Importable without the endpoint (``serving/``), and the endpoint without it: the ONNX parity check
runs ONNX Runtime directly. Modules: :mod:`.pipeline` (``train``, the search, the content-derived
version, the manifest's fields), :mod:`.datasets` (loading, refusals, the split), :mod:`.evaluate`
(metrics), :mod:`.export` (ONNX and its agreement with scikit-learn), :mod:`.canary` (the
synthetic canary), :mod:`.gate` (the metric gate) and :mod:`.report` (``report.md`` and plots).
scikit-learn, skl2onnx and matplotlib are imported inside the functions that use them.
"""
