# postergenre: predict an anime's genres from its poster.
# Settings are plain variables: `make features heads report DATA=../shared/data/anime-posters BACKBONE=efficientnet_lite0`.
# `make help` prints them; the list below is their one copy.

# DATA         a data set folder (CSV + images); the default is the synthetic sample
# BACKBONE     resnet50 | efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2 (| _multiscale for lite0, lite2)
#              default: the built-in backbone whose feature file DATA has (make heads, final, ... then need no
#              BACKBONE=; with two or more they ask which), else resnet50
#              | timm:<any timm model name>, e.g. timm:convnext_base.fb_in22k (timm downloads its weights when online)
# WEIGHTS      optional local state_dict file for the backbone
# BATCH        extraction batch size (default: 8 on the CPU, 64 on CUDA)
# TTA          1: average each embedding with the flipped poster's
# PRECISION    make features: fp32 (default, the same features on every CPU) | auto | bf16 | fp16
# ENGINE       auto | torch | onnxruntime: runs the frozen backbone (features, predict, serve with a head);
#              auto is onnxruntime on the CPU in fp32, several times faster there, and torch on CUDA
# SEED         the split's seed (default 0)
# SPLIT        the split file (default: features/<data set's name>-split.json)
# MIN_COUNT    drop genres with fewer training posters (default 5)
# GROUPS       make split: franchise (a new split's default: each franchise's seasons, sequels and movies in one
#              part, so test figures are of new anime) | none (poster by poster); an existing split keeps its own
# HEADS        make heads: which to fit, of logistic mlknn mlp (default: all three; with UNION, logistic)
# THRESHOLDS   global | per-genre, chosen on validation
# NEIGHBOURS   make heads: ML-kNN's neighbour search, exact | hnsw (approximate, for 100,000 posters or more)
# CV           make heads: also cross-validate each head over the training and validation parts, FOLDSxREPEATS (5x2);
#              where a head has it, it chooses between models instead of validation mAP; default: 5x2 under 100
#              validation posters, else none; CV=none never
# UNION        make heads, make final: another data set's feature file (same BACKBONE) to train the logistic head on too
# TITLES       make titles, make final: a table of anime titles and genres the title head learns from too (Kaggle
#              layout: Name, Genres), e.g. $(SHARED_DATA)/anime-dataset-2023-genres.csv; evaluated franchises' rows
#              are left out
# SEEDS        make finetune / make cnn: one run per seed (e.g. "0 1 2"); the report shows mean ± std
# FREEZE       finetune: frozen-stage settings to sweep (none, stem, or the backbone's stage names)
# EPOCHS       finetune/cnn: at most this many epochs (early stopping on validation mAP)
# AUGMENT      finetune/cnn: none | light | strong
# TRAIN_ARGS   finetune/cnn: further flags, e.g. --loss asl --resume (see python -m postergenre.finetune --help)
# CSV          make posters: a Kaggle anime CSV with anime_id and Image URL; posters go to DATA/images
# CONCURRENCY  make posters: requests in flight (default 4)
# RATE         make posters: requests per second per host (default 4)
# MODEL        make predict / explain / serve / export: a saved model, models/<dataset>-<model>.skops (head) or .safetensors
#              (network), or models/<dataset>-final.json (ensemble); predict and serve default to DATA's final model
#              (make final or final-ensemble, the one made last) if there is one, else to its best by validation mAP;
#              without DATA either, to the built-in anime genre model (make builtin)
# IMAGES       make predict: an image or a folder of images (default: the test part of DATA, scored by its
#              evaluated model: the final model has seen it)
# PREDICTIONS  make predict: the CSV to write (default: reports/predictions/<model, data set or anime>.csv for IMAGES,
#              <model or data set>-test.csv for DATA's test part, so neither overwrites the other)
# PORT         make serve: the local port (default 8000)
# SHARED_DATA  the real posters that tests and benchmarks read
# FULL         make bench: 1 runs everything, not what fits in an hour
# ALL          make report DATA=x: 1 reports every data set with results, not x alone
# SERVE_MODEL  make bench: the network the page is timed with
# GENRE_TABLE  make report: the Kaggle genre table its appendix shows (default: in SHARED_DATA)
DATA ?= data/sample
# What is given on the command line must be a setting listed above, the one list: a typo (DTA=, IMAGE=) would
# otherwise be dropped silently and the default used.
SETTINGS := $(shell sed -n '/^# DATA /,/^[^#]/s/^# \([A-Z_][A-Z_]*\) .*/\1/p' $(firstword $(MAKEFILE_LIST)))
unknown := $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(filter-out $(SETTINGS),$(v))))
$(if $(strip $(unknown)),$(error unknown setting $(firstword $(unknown)); the settings are $(SETTINGS) (make help)))
# A path reaches the shell inside double quotes, where ` $ " and \ are still read: such a path is refused here.
shell_unsafe = $(or $(findstring $$,$(value $(1))),$(findstring `,$(value $(1))),$(findstring ",$(value $(1))),$(findstring \,$(value $(1))))
$(foreach v,DATA IMAGES MODEL UNION TITLES WEIGHTS PREDICTIONS CSV GENRE_TABLE SHARED_DATA SERVE_MODEL,\
	$(if $(filter command line environment,$(origin $(v))),$(if $(call shell_unsafe,$(v)),\
	$(error $(v) holds $(call shell_unsafe,$(v)): a path here may not hold ` $$ " or \, which the shell would read))))
# The built-in backbones, whose feature files make heads and final find for DATA without BACKBONE=.
BUILT_IN := resnet50 efficientnet_lite0 efficientnet_lite1 efficientnet_lite2 efficientnet_lite0_multiscale \
            efficientnet_lite2_multiscale
EXTRACTED = $(strip $(foreach b,$(BUILT_IN),$(if $(wildcard features/$(NAME)-$(b).h5),$(b))))
BACKBONE ?= $(or $(firstword $(EXTRACTED)),resnet50)
WEIGHTS ?=
BATCH ?=
TTA ?= 0
PRECISION ?= fp32
ENGINE ?= auto
SEED ?= 0
MIN_COUNT ?= 5
HEADS ?=
THRESHOLDS ?= global
NEIGHBOURS ?= exact
CV ?=
UNION ?=
SEEDS ?= 0
FREEZE ?= none stage4 stage6
EPOCHS ?=
AUGMENT ?=
TRAIN_ARGS ?=
MODEL ?=
IMAGES ?=
PORT ?= 8000
SERVE_MODEL ?= runs/bench/models/anime-posters-finetune-efficientnet_lite0-freeze-stage5-cached2.safetensors
PREDICTIONS ?= reports/predictions/$(if $(MODEL),$(notdir $(basename $(MODEL))),$(if $(DATA_GIVEN),$(NAME),anime))$(if \
	$(IMAGES),,-test).csv
CSV ?= anime-dataset-2023.csv
CONCURRENCY ?= 4
RATE ?= 4
SHARED_DATA ?= ../shared/data
FULL ?= 0
ALL ?= 0
GENRE_TABLE ?= $(SHARED_DATA)/anime-dataset-2023-genres.csv

# A mistyped setting stops here, in one line, instead of being dropped silently (THRESHOLDS=per_genre, TTA=yes).
allowed = $(if $(filter-out $(2),$($(1))),$(error $(1)=$($(1)) is not one of: $(2)))
$(call allowed,THRESHOLDS,global per-genre)
$(call allowed,TTA,0 1)
$(call allowed,NEIGHBOURS,exact hnsw)
$(call allowed,PRECISION,fp32 auto bf16 fp16)
$(call allowed,ENGINE,auto torch onnxruntime)
$(call allowed,AUGMENT,none light strong)
$(call allowed,FULL,0 1)
$(call allowed,ALL,0 1)
# Without BACKBONE=, the data set's one feature file is used; with two or more, which one must be said.
one_backbone = $(if $(and $(filter file,$(origin BACKBONE)),$(word 2,$(EXTRACTED))),$(error DATA=$(DATA) has \
	features from $(EXTRACTED): say which with BACKBONE=$(firstword $(EXTRACTED)), or another of them))

PYTHON      := .venv/bin/python
POSTERGENRE := .venv/bin/postergenre
# A DATA folder may have spaces in its path; the data set's name has them as underscores (as in Python).
space    := $(subst ,, )
NAME      = $(notdir $(patsubst %/,%,$(subst $(space),_,$(DATA))))
SPLIT    ?= features/$(NAME)-split.json
FEATURES  = features/$(NAME)-$(subst :,-,$(BACKBONE)).h5

DATA_GIVEN = $(filter command line,$(origin DATA))
# MODEL, else DATA's best model, else (neither given) the built-in anime genre model
MODEL_FLAGS = $(if $(MODEL),--model "$(MODEL)",$(if $(DATA_GIVEN),--dataset $(NAME)))
TRAIN     = --data "$(DATA)" --split $(SPLIT) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(AUGMENT),--augment $(AUGMENT)) \
            $(TRAIN_ARGS)

.PHONY: help install demo posters sample split features heads finetune cnn titles final final-ensemble builtin ensemble audit predict \
	export \
	explain serve report test test-fast bench clean
.DELETE_ON_ERROR:

install: .venv/installed
# The project itself, editable (the `postergenre` command and package), at the versions of constraints.txt.
.venv/installed: pyproject.toml constraints.txt
	python3 -m venv .venv
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -c constraints.txt -e .
	touch $@

# Every setting, its default and its values: the comment block at the top of this file.
help:
	@sed -n '/^# DATA /,/^[^#]/s/^# \{0,1\}//p' Makefile

# The whole pipeline on the synthetic sample, with the backbone that works offline.
demo: install
	$(MAKE) sample
	$(MAKE) features heads final report DATA=data/sample BACKBONE=efficientnet_lite0

# Download the posters of a Kaggle CSV: make posters CSV=anime-dataset-2023.csv DATA=data/anime-2023
posters: | install
	$(POSTERGENRE) posters download --csv "$(CSV)" --out-dir "$(DATA)" --concurrency $(CONCURRENCY) --rate $(RATE)

sample: data/sample/covers.csv
data/sample/covers.csv: | install
	$(POSTERGENRE) posters sample --out-dir data/sample

# The split follows its CSV: make split always brings it up to date (every poster keeps its part, new ones are
# drawn from their id and SEED), and every step that reads it makes it again first when the CSV is newer.
MAKE_SPLIT = $(POSTERGENRE) posters split --data "$(DATA)" --out $(SPLIT) --seed $(SEED) --min-count $(MIN_COUNT) \
	$(if $(GROUPS),--grouping $(GROUPS))
split: | install
	$(MAKE_SPLIT)
$(SPLIT): $(subst $(space),\ ,$(wildcard $(subst $(space),\ ,$(DATA))/*.csv)) | install
	$(MAKE_SPLIT)

features: $(SPLIT) | install
	$(POSTERGENRE) features --data "$(DATA)" --split $(SPLIT) --backbone $(BACKBONE) --out $(FEATURES) \
		--precision $(PRECISION) --engine $(ENGINE) $(if $(WEIGHTS),--weights "$(WEIGHTS)") \
		$(if $(BATCH),--batch-size $(BATCH)) $(if $(filter 1,$(TTA)),--tta)

heads: | install
	$(one_backbone)
	$(POSTERGENRE) heads --features $(FEATURES) $(if $(HEADS),--heads $(HEADS)) \
		$(if $(filter per-genre,$(THRESHOLDS)),--per-genre-thresholds) $(if $(CV),--cv $(CV)) \
		--mlknn-neighbours $(NEIGHBOURS) $(if $(UNION),--union "$(UNION)")

# The title as a second input (heads/titles.py): a title head, alone and fused with the picked poster model.
titles: | install
	$(one_backbone)
	$(POSTERGENRE) titles --features $(FEATURES) $(if $(TITLES),--titles "$(TITLES)")

# The head the evaluation chose, refit on every labelled poster: models/<dataset>-final.skops and its model card (.md).
final: | install
	$(one_backbone)
	$(POSTERGENRE) final --features $(FEATURES) $(if $(UNION),--union "$(UNION)") $(if $(TITLES),--titles "$(TITLES)")

# The built-in anime genre model (postergenre/builtin/): the logistic head on Lite0 multi-scale features of the
# anime posters, alone and trained with the AniList covers too (genres they do not label left unknown); the one
# cross-validation picks is refit on every poster, calibrated, and copied into the package with its card. The
# MLP (19 MB with its arrays) and ML-kNN (every poster's features) do not fit the package's 5 MB.
BUILTIN_DATA = $(SHARED_DATA)/anime-posters
BUILTIN_FEATURES = features/anime-posters-efficientnet_lite0_multiscale.h5
BUILTIN_UNION = features/anilist-covers-efficientnet_lite0_multiscale.h5
builtin: | install
	$(MAKE) split DATA=$(BUILTIN_DATA) GROUPS=franchise
	$(MAKE) features DATA=$(SHARED_DATA)/anilist-covers BACKBONE=efficientnet_lite0_multiscale
	$(MAKE) features heads DATA=$(BUILTIN_DATA) BACKBONE=efficientnet_lite0_multiscale CV=5x2 HEADS=logistic
	$(MAKE) heads DATA=$(BUILTIN_DATA) BACKBONE=efficientnet_lite0_multiscale CV=5x2 UNION=$(BUILTIN_UNION)
	$(POSTERGENRE) final --features $(BUILTIN_FEATURES) --union $(BUILTIN_UNION) --heads logistic
	$(POSTERGENRE) builtin --model models/anime-posters-final.skops --recipe "make builtin SHARED_DATA=$(SHARED_DATA)"

# The labelled posters ranked by how likely their genres are wrong: reports/audit/<dataset>.csv, .md and .html.
audit: | install
	$(one_backbone)
	$(POSTERGENRE) audit --features $(FEATURES)

# The evaluated ensemble (make ensemble), every member refit on all labelled posters: models/<dataset>-final.json,
# the members in models/<dataset>-final-members/ (a network member: refit first by its own TRAIN_ARGS=--final).
final-ensemble: | install
	$(one_backbone)
	$(POSTERGENRE) final-ensemble --features $(FEATURES)

# One fine-tuning run per frozen-stage setting and seed, each a row of the report.
finetune: $(SPLIT) | install
	for stage in $(FREEZE); do for seed in $(SEEDS); do \
		$(POSTERGENRE) finetune $(TRAIN) --seed $$seed --backbone $(BACKBONE) --freeze $$stage \
			$(if $(WEIGHTS),--weights "$(WEIGHTS)") || exit 1; \
	done; done

cnn: $(SPLIT) | install
	for seed in $(SEEDS); do $(POSTERGENRE) cnn $(TRAIN) --seed $$seed || exit 1; done

# The models of DATA with saved scores, averaged; members chosen greedily on validation mAP.
ensemble: | install
	$(POSTERGENRE) ensemble --dataset $(NAME)

# New posters (IMAGES), or the test part of DATA, scored by any saved model; CSV + JSON in reports/predictions/.
predict: | install
	$(if $(or $(IMAGES),$(DATA_GIVEN)),,$(error make predict needs IMAGES= (new posters), or DATA= (its test part)))
	$(POSTERGENRE) predict $(MODEL_FLAGS) --out "$(PREDICTIONS)" --engine $(ENGINE) \
		$(if $(IMAGES),--images "$(IMAGES)",--data "$(DATA)" --split $(SPLIT))

# A saved network as an ONNX graph (+ .json: genres, thresholds, input size, mean, std), beside MODEL.
export: | install
	$(if $(MODEL),,$(error make export needs MODEL=models/<dataset>-<network>.safetensors, from make finetune or cnn))
	$(POSTERGENRE) export --model "$(MODEL)" --out "$(basename $(MODEL)).onnx"

# Grad-CAM heatmaps and colour statistics per genre, for the report (MODEL must be a network: finetune or cnn).
explain: | install
	$(if $(MODEL),,$(error make explain needs MODEL=models/<dataset>-<network>.safetensors, from make finetune or cnn))
	$(POSTERGENRE) explain genres --model "$(MODEL)" --data "$(DATA)" --split $(SPLIT) \
		$(if $(wildcard $(FEATURES)),--features $(FEATURES))

# A local page to try posters: http://127.0.0.1:$(PORT)/
serve: | install
	$(POSTERGENRE) serve $(MODEL_FLAGS) --port $(PORT) --engine $(ENGINE)

# With DATA on the command line: that data set alone (ALL=1: every one); without: every data set with results,
# and the Kaggle table.
ONE_DATASET = $(and $(DATA_GIVEN),$(filter-out 1,$(ALL)))
report: | install
	$(POSTERGENRE) report $(if $(ONE_DATASET),--datasets $(NAME),--genre-table $(GENRE_TABLE))

.venv/dev-installed: pyproject.toml constraints.txt .venv/installed
	$(PYTHON) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

test: install .venv/dev-installed
	POSTERGENRE_DATA=$(SHARED_DATA) $(PYTHON) -m pytest -q tests

# The inner loop: what needs no trained model, fitted sample, real posters, browser or torchrun.
test-fast: install .venv/dev-installed
	$(PYTHON) -m pytest -q tests -m "not slow and not browser and not real_data and not distributed"

# The whole comparison on the three real data sets (reports/bench.md), then the speed figures, in an hour;
# FULL=1 runs everything (docs/results.md says what each costs).
bench: install .venv/dev-installed
	$(PYTHON) -m bench --data-root $(SHARED_DATA) --page-model $(SERVE_MODEL) $(if $(filter 1,$(FULL)),--full)

clean:
	rm -rf features/*.h5 features/*.json features/*.parts models results reports runs
