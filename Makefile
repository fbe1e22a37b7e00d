# The two commands a newcomer needs: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/medsentry demo

test: setup
	$(PY) -m pytest -n 2 --dist loadfile -q tests

bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf .medsentry demo-out .pytest_cache
