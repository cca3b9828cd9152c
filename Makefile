# The two set-up commands in the README. Both install what they need first.
.PHONY: demo test bootstrap lint bench

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/orchestrator demo

test: bootstrap
	.venv/bin/python -m pytest -n auto --durations=25

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench: bootstrap
	.venv/bin/python benchmarks/serving.py
