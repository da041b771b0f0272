# Convenience targets; scripts/ holds the real entry points.
PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick bench-zoo bench-zoo-quick

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

# The model-zoo benchmark: twelve models (forests, boosting in all its kinds, XGBoost, LightGBM,
# linear, SVM, MLP, a regressor) served by servepath, the tutorial service, MLServer and BentoML,
# c=1 and c=64 (about 25 minutes; the first run also installs the peers into bench/.venvs/,
# a few minutes more). Extra flags:
#   make bench-zoo ZOO_ARGS="--models random_forest,xgboost --peers servepath,tutorial"
bench-zoo:
	scripts/setup dev
	$(PYTHON) bench/zoo.py $(ZOO_ARGS)

# Three models, short points (about 5 minutes once the peers are installed).
bench-zoo-quick:
	scripts/setup dev
	$(PYTHON) bench/zoo.py --quick $(ZOO_ARGS)
