# The two commands of the README, and a few more for developers. Everything installs from the project's files.
.PHONY: demo test lint bench soak faults faults-replicas kafka-start kafka-stop

demo:          ## Parley end to end on local defaults: Kafka, provider, services, a sample, its insights
	@scripts/bootstrap
	@.venv/bin/parley demo

test:          ## the whole suite: lint, types, unit, broker (in memory + real Kafka), end to end
	@scripts/bootstrap
	@scripts/test

lint:
	@scripts/bootstrap
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:         ## the pipeline benchmark (several minutes); writes benchmarks/results
	@scripts/bootstrap
	@.venv/bin/python -m parley_devtools.bench_pipeline

faults:        ## the fault-injection run, one replica of each service (about 5 minutes); writes benchmarks/faults.md
	@scripts/bootstrap
	@.venv/bin/python -m parley_devtools.fault_run

faults-replicas: ## the same with 3 replicas of each service and 2 engines on PostgreSQL; benchmarks/faults-replicas.md
	@scripts/bootstrap
	@.venv/bin/python -m parley_devtools.fault_run --replicas 3 --engines 2

soak:          ## 30 minutes at 50 conversations/s: memory, consumer lag, nothing lost; writes benchmarks/soak.md
	@scripts/bootstrap
	@.venv/bin/python -m parley_devtools.soak

kafka-start:
	@scripts/bootstrap
	@.venv/bin/parley kafka start

kafka-stop:
	@.venv/bin/parley kafka stop
