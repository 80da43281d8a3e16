# The two commands of the README; each one sets up .venv on first use.
VENV ?= .venv
OUT ?= out/demo

.PHONY: demo test setup clean

setup:
	VENV=$(VENV) ./scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/st4r demo --out $(OUT)

test: setup
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
