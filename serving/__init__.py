"""The model endpoint every cloud runs: one verified model over HTTP (``python -m serving``)."""
