# litefs-py: the two commands a newcomer needs are `make demo` and `make test`.
.PHONY: install demo test lint bench clean

install:
	@bash scripts/install.sh

demo: install
	@bash scripts/demo.sh

test: install
	@bash scripts/test.sh

lint: install
	.venv/bin/ruff check core plugins tests bench
	.venv/bin/ruff format --check core plugins tests bench

bench: install
	.venv/bin/python bench/ltx_bench.py --size-mb 64

clean:
	rm -rf .venv .pytest_cache demo-run .services
