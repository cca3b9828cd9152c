"""``orchestrator package``: a classifier trained elsewhere into the same verified artifact as ``train``'s.

Modules: :mod:`.package` (``package``: the steps, the manifest, the write), :mod:`.checks` (the
classes, the probabilities, the reference table's columns and labels), :mod:`.trusted`
(loading a scikit-learn model saved with skops against a fixed list of trusted types; never
pickle), :mod:`.onnx_source` (reading an ONNX model converted elsewhere: its inputs, its
probabilities, its labels, and the graph surgery that brings it to the serving contract).
A scikit-learn model is converted by train's own export (:mod:`orchestrator.training.export`).
Every refusal names what is wrong and writes nothing.
"""
