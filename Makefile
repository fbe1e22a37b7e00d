# The two commands a newcomer needs: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench bench-fleet clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/medsentry demo

test: setup
	$(PY) -m pytest -n 2 --dist loadfile -q tests

bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The simulated fleet (10,000 devices, 60 s; ~15 min with set-up): not part of `make bench`.
bench-fleet: setup
	$(PY) bench/fleet_load.py

clean:
	rm -rf .medsentry demo-out .pytest_cache
