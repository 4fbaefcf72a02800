# Entry points of the course repository.  See README.md.
#   make demo    create .venv, regenerate releases, grade a generated class, print grades
#   make test    the quick tier of the tests: what every change runs (at most 12 minutes on 2 cores)
#   make test-thorough  the rest of the suite (with make test: the whole suite, at most 40 minutes)
#   make test-notebook A=<assignment>  one assignment's rows, catalogue, module and claims (both tiers)
#   make bench   grading speed, measured side by side
#   make rehearsal  every notebook's full (Colab) path on stand-in data, training capped (CI runs it too)
#   make release regenerate release/ from source/ (commit the result)
#   make publish DEST=<mirror>  copy what students may see into the public mirror

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# What the venv installs: the exact Linux environment (CI too); `make venv REQUIREMENTS=requirements-cpu.txt`
# for a CPU-only grading server, requirements.txt for ranges on any platform (README "Installing").
REQUIREMENTS ?= requirements.lock
STAMP  := $(VENV)/.installed-$(notdir $(REQUIREMENTS))
# nbgrader runs `alembic` from PATH when it creates a gradebook.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv setup release check-release publish demo test test-thorough test-notebook times rehearsal test-nbgrader bench clean

$(STAMP): $(REQUIREMENTS) requirements.txt pyproject.toml engine/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r $(REQUIREMENTS)
	touch $@

venv: $(STAMP)

# System tools the kernel sandbox needs (bubblewrap); see README "Sandbox".
setup: venv
	@command -v bwrap >/dev/null 2>&1 || { \
	  echo "installing bubblewrap (kernel sandbox)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y -q bubblewrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }; \
	  else sudo apt-get install -y -q bubblewrap; fi; }
	@bwrap --unshare-all --die-with-parent --ro-bind / / true || { \
	  echo "bubblewrap cannot create namespaces here, so the kernel sandbox cannot start"; \
	  echo "(unprivileged user namespaces disabled? see README \"Sandbox\")"; exit 1; }

release: setup
	$(PY) -m coursekit release

check-release: setup
	$(PY) -m coursekit release --check

# What students may see (release/ + a student README) into the public mirror: make publish DEST=../mirror
publish: setup
	@test -n "$(DEST)" || { echo "usage: make publish DEST=<folder or checkout of the public mirror>"; exit 2; }
	$(PY) -m coursekit publish "$(DEST)"

demo: setup
	$(PY) -m coursekit demo

# The two tiers (tests/tiers.py: a test's tier follows from the fixtures it uses and the catalogue
# submissions it reads); each ends with its time table against tests/time_budget.json.
test: setup
	$(PY) -m pytest -q --durations=10 -m "not thorough and not rehearsal"

test-thorough: setup
	$(PY) -m pytest -q --durations=10 -m "thorough and not rehearsal"

# After editing one assignment: its rows of the shared table, its module (catalogue, cells, release) and
# its claims module, both tiers:  make test-notebook A=a3_alexnet_bn
test-notebook: setup
	@test -n "$(A)" -a -d "source/$(A)" || { echo "usage: make test-notebook A=<assignment> (one of: $$(ls source | tr '\n' ' '))"; exit 2; }
	$(PY) -m pytest -q --durations=5 -m "not rehearsal" -k "$(A) or claims" tests/test_assignments.py \
	  tests/test_$(A).py tests/test_$(firstword $(subst _, ,$(A)))_claims.py

# Both tiers, each timed, written as the budget file's JSON (commit it when a budget must change).
times: setup
	$(PY) -m pytest -q -m "not thorough and not rehearsal" --times-json=.times-quick.json
	$(PY) -m pytest -q -m "thorough and not rehearsal" --times-json=.times-thorough.json
	$(PY) -c "import json; q, t = (json.load(open(f)) for f in ('.times-quick.json', '.times-thorough.json')); \
	  print(json.dumps({'quick': q.get('quick', {}), 'thorough': t.get('thorough', {})}, indent=1, sort_keys=True))"

# The notebooks' full (Colab) path on stand-in files of the real sizes, in a real kernel, training capped
# (tests/test_full_mode.py, README "Full mode"); minutes on 2 cores, so outside `make test`.
rehearsal: setup
	$(PY) -m pytest -q --durations=5 -m rehearsal tests/test_full_mode.py

# nbgrader's own test suites, with the course's extensions loaded (README "nbgrader's own promises").
# test_side_effects is the one deliberate difference it asserts: the sandbox removes the files a
# submission's kernel made in autograded/ (generate_feedback would hand every one of them out).
test-nbgrader: setup
	cd $$(mktemp -d) && JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter_config $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider \
	  --pyargs nbgrader.tests.apps.test_nbgrader_autograde nbgrader.tests.apps.test_nbgrader_zip_collect \
	  -k "not test_side_effects"

bench: setup
	$(PY) -m coursekit bench

clean:
	rm -rf autograded submitted feedback reports gradebook.db .coursekit
