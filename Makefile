# The two commands a newcomer runs:  make demo  |  make test
# Each creates .venv if missing and installs what it needs (this package with its extras at the
# versions of constraints.txt, then the host fastreid without its torch pin).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fastreid_ext_installed
DATA ?= datasets
DEMO_IDS ?= 120
DEMO_OUT ?= logs/demo

.PHONY: install demo test lint lint-fix bench bench-metrics bench-retrieval bench-retrieval-10m bench-shards bench-loader bench-index bench-eval bench-projects claims claims-quick clean-demo

install: $(STAMP)

# Runtime dependencies and the [cpu] (faiss-cpu), [onnx] (onnx, onnxruntime) and [dev] (pytest,
# ruff) extras from pyproject.toml, at the versions of constraints.txt; GPU machines:
# `make install EXTRAS=gpu,onnx,dev` (faiss-gpu).
EXTRAS ?= cpu,onnx,dev

$(STAMP): pyproject.toml setup.py requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt setuptools
	$(PY) -m pip install -q -c constraints.txt --no-build-isolation -e ".[$(EXTRAS)]"
	# the host pins torch==1.13.1 in its metadata: install it without dependencies
	$(PY) -m pip install -q --no-deps fastreid==1.4.0
	touch $(STAMP)

# Train the video baseline on the synthetic MARS set (generated if missing) and print mAP/CMC.
# Fixed seed and thread count, so that reruns sample the same batches (README "Quickstart").
DEMO_THREADS ?= 2

demo: install
	$(PY) -m fastreid_ext.data.synthetic --layout mars --out $(DATA)/synthetic/mars --ids $(DEMO_IDS) --seed 0
	OMP_NUM_THREADS=$(DEMO_THREADS) MKL_NUM_THREADS=$(DEMO_THREADS) FASTREID_DATASETS=$(DATA) \
	    $(PY) tools/train_net.py --config-file configs/Video-Baseline/synthetic_cpu.yml --overwrite \
	    SEED 0 OUTPUT_DIR $(DEMO_OUT)
	$(PY) tools/show_results.py $(DEMO_OUT)/results.json

test: install lint
	$(PY) -m pytest -q tests

# pyflakes + isort (pyproject.toml [tool.ruff]); `make lint-fix` applies the safe fixes
lint: install
	$(PY) -m ruff check .

lint-fix: install
	$(PY) -m ruff check --fix .

# Benchmarks print tables (docs/performance.md); none of them is a test.
bench: bench-metrics bench-retrieval bench-loader bench-index

bench-metrics: install
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) benchmarks/bench_metrics.py --runs 5

bench-retrieval: install
	$(PY) benchmarks/bench_retrieval.py

# out-of-core gallery (a 10 GB temporary vector file under /tmp, deleted at the end) and shard scaling
bench-retrieval-10m: install
	$(PY) benchmarks/bench_retrieval.py --scale 10M --queries 300 --index "IVF1024,PQ32x4fs,Refine(SQ6)|nprobe=16/32/64|k_factor=8"

bench-shards: install
	$(PY) benchmarks/bench_retrieval.py --shards 1 2 4 --gallery 500000 --ids 25000 --queries 200

bench-loader: install
	$(PY) benchmarks/bench_loader.py --batches 20

bench-index: install
	$(PY) benchmarks/bench_index.py

# time and peak memory of evaluating a MARS-sized video test set (docs/scoring.md)
bench-eval: install
	$(PY) benchmarks/bench_video_eval.py --threads 1

bench-projects: install
	$(PY) benchmarks/bench_fgreid.py
	$(PY) benchmarks/bench_mgrafa.py
	$(PY) benchmarks/bench_mgre.py

# The host's own DefaultTrainer (CPU-patched inside the script) vs ours on one host config, 3 seeds
# (docs/host-compatibility.md "fast-reid's own configs").
.PHONY: bench-host-parity
bench-host-parity: install
	$(PY) benchmarks/bench_host_parity.py

# Pre-registered claims, one per paper test (benchmarks/claims/README.md; table in docs/claims.md).
# Each claim runs its design's seeds; resumable: a rerun skips every complete (claim, row, seed)
# already saved under logs/claims. `make claims` takes many hours (python -m benchmarks.claims --plan).

claims: install
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) -m benchmarks.claims.pretrain
	$(PY) -m benchmarks.claims --claim all --jobs 2

claims-quick: install
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) -m benchmarks.claims.pretrain
	$(PY) -m benchmarks.claims --claim all --quick --jobs 2

clean-demo:
	rm -rf $(DEMO_OUT)

# GPU self-test (tools/gpu_selftest.py): every GPU path, a pass / fail table; < 10 min on one GPU.
# Without a CUDA device it prints the table with every row skipped and exits 0.
.PHONY: gpu-selftest
gpu-selftest: install
	$(PY) tools/gpu_selftest.py
