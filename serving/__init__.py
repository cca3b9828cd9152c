"""The model: training pipeline, artifact format and the HTTP endpoint every cloud runs."""
