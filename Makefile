# talkstack — `make demo` renders the bundled sample and the social-ad template; `make test` runs the whole suite.
# Both create/refresh the virtual environment first; nothing relies on hand-installed packages.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv sysdeps lint format schemas synth bench gpu-smoke mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: CI machines carry this version as a CPU-only wheel (no CUDA download);
	# the gpu extra's range then accepts it as installed.
	$(PY) -m pip install --quiet 'torch==2.13.0'
	$(PY) -m pip install --quiet -e '.[dev,local,modal,gpu,cdk]'
	# mediapipe without its opencv-contrib/matplotlib/sounddevice pins (see pyproject.toml)
	$(PY) -m pip install --quiet --no-deps 'mediapipe==1.2.2'
	touch $(STAMP)

venv: $(STAMP)

# espeak-ng for the lite-voice engine (apt where we can; a clear hint where we can't).
sysdeps:
	@scripts/install-system-deps.sh

demo: venv
	$(VENV)/bin/talkstack demo --output out/demo.mp4
	# a finished video too: the social-ad template with its example variables, rendered offline
	$(VENV)/bin/talkstack templates render social-ad --example --output out/demo-social-ad.mp4

lint: venv
	$(VENV)/bin/ruff check talkstack aws modal_workers infra tests bench
	$(VENV)/bin/ruff format --check talkstack aws modal_workers infra tests bench
	$(VENV)/bin/lint-imports --no-cache

format: venv
	$(VENV)/bin/ruff check --fix talkstack aws modal_workers infra tests bench
	$(VENV)/bin/ruff format talkstack aws modal_workers infra tests bench

# The TypeScript SDK's dev dependencies, exactly as its package-lock.json pins them; its tests
# (tests/integration/test_typescript_sdk.py) run `npm test` there against the local API.
SDK_TS       := clients/typescript
SDK_TS_STAMP := $(SDK_TS)/node_modules/.installed

$(SDK_TS_STAMP): $(SDK_TS)/package-lock.json $(SDK_TS)/package.json
	@command -v npm >/dev/null || { echo "npm (Node 20+) is needed for the TypeScript SDK in $(SDK_TS)"; exit 1; }
	cd $(SDK_TS) && npm ci --no-audit --no-fund
	touch $(SDK_TS_STAMP)

# The pinned CDK CLI (package.json / package-lock.json at the root).
CDK_STAMP := node_modules/.installed

$(CDK_STAMP): package-lock.json package.json
	@command -v npm >/dev/null || { echo "npm (Node 20+) is needed for the CDK CLI"; exit 1; }
	npm ci --no-audit --no-fund
	touch $(CDK_STAMP)

# Synthesize the stack (bundles the Lambda code and layers locally, no Docker; cdk-nag runs as a
# validation plugin) and lint the template. Needs no AWS credentials.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := 1
synth: venv $(CDK_STAMP)
	npx cdk synth --no-notices --quiet
	$(VENV)/bin/cfn-lint cdk.out/*.template.json

schemas: venv $(SDK_TS_STAMP)
	$(VENV)/bin/talkstack schemas --write schemas
	$(VENV)/bin/talkstack settings --write docs/settings.md
	cd $(SDK_TS) && npm run --silent generate

# pytest exits 5 when it collects nothing: treat that as a failure, never a pass.
# Two pytest-xdist processes, tests dealt to whichever is free (each process that gets an integration
# test starts its own local stack: docs/testing.md says why not one group per stack), and beside them
# the schemathesis file in a pytest of its own (its generated cases share one node id, which xdist
# would run once instead of once per API operation). It runs at the same time because the
# integration tests spend much of their time waiting on their stacks, so a third process uses CPU
# that would otherwise sit idle; its output is printed when both have ended.
SCHEMATHESIS := tests/integration/test_api_schemathesis.py
SCHEMATHESIS_LOG := .pytest-schemathesis.log
test: venv sysdeps lint $(SDK_TS_STAMP) $(CDK_STAMP)
	@$(PY) -m pytest $(SCHEMATHESIS) > $(SCHEMATHESIS_LOG) 2>&1 & st=$$!; \
	$(PY) -m pytest -n 2 --dist load --durations=30 --ignore=$(SCHEMATHESIS); rc=$$?; \
	wait $$st; rc2=$$?; echo "--- $(SCHEMATHESIS) (ran beside the run above)"; cat $(SCHEMATHESIS_LOG); \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	if [ $$rc2 -eq 5 ]; then echo "pytest collected no schemathesis tests: failing"; exit 1; fi; \
	[ $$rc -eq 0 ] && exit $$rc2; exit $$rc

# Mutation testing of the core modules (docs/testing.md): slow (over two hours on 2 cores), so not part
# of `make test`. mutmut keeps its results in mutants/ and reruns only what changed; MUTANTS=<glob>
# reruns the named mutants (e.g. MUTANTS='talkstack.pipeline.tenancy.*'). The report prints the score
# per module, writes mutants/survivors.md and fails when the gate in scripts/mutation_report.py does.
MUTATION_JOBS ?= 2
mutation: venv sysdeps
	$(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(PY) scripts/mutation_report.py

bench: venv
	$(PY) bench/lite_avatar.py
	$(PY) bench/pipeline_overhead.py

# Deploy every Modal GPU app and smoke-test each model on it (needs a Modal token and the weights
# volume: docs/gpu-workers.md). Prints cold start / load / render / cost; videos in out/gpu-smoke/.
gpu-smoke: venv
	$(PY) scripts/gpu_smoke.py $(GPU_SMOKE_ARGS)

clean:
	rm -rf $(VENV) out cdk.out node_modules .pytest_cache .pytest-schemathesis.log .ruff_cache *.egg-info
