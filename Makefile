# Convenience targets; scripts/ holds the real entry points.
PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick

# The serving benchmark: servepath against the peer stacks and the ceilings (about 16 minutes,
# longer on the first run, which installs each peer into bench/.venvs/). Extra flags:
#   make bench BENCH_ARGS="--peers servepath,tutorial,ceiling"
bench:
	scripts/setup
	$(PYTHON) bench/serving.py $(BENCH_ARGS)

# A short smoke run of the same (about 5 minutes once the peers are installed).
bench-quick:
	scripts/setup
	$(PYTHON) bench/serving.py --quick $(BENCH_ARGS)
