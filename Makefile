# liblora and the .lora tools. See README.md.
#   make            library (static + shared) and tools
#   make test       unit tests, spec vectors, command-line tests; then all again under ASan+UBSan
#   make setup      install missing Debian build dependencies
#   make install    PREFIX=/usr/local DESTDIR=
#   make vectors    regenerate spec/vectors (deterministic)
#   make demo       generate a small model and adapter, convert, verify, merge and check the merge
#   make clean

PREFIX  ?= /usr/local
DESTDIR ?=
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man

VERSION := 0.1.0
SOMAJOR := 0

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wcast-qual -Wstrict-prototypes -Wmissing-prototypes \
           -Wvla -Wformat=2 -Wundef -Wpointer-arith -Wswitch-enum
SAN     ?=
BASECFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -fPIC $(SAN) -Ilib -Iformat
CFLAGS  ?=
LDFLAGS ?=
ALL_CFLAGS := $(BASECFLAGS) $(CFLAGS)

# ISA-specific kernel files get their own flags; everything else is baseline x86-64.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c

LIB_SRC := $(wildcard format/*.c lib/common/*.c lib/read/*.c lib/write/*.c lib/kernels/*.c \
                      lib/kernels/ref/*.c lib/kernels/x86/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB_LIBS := -lxxhash -lz -lm -lpthread

# liblora-ops: foreign formats (safetensors, GGUF, PEFT configs) and the
# operations (convert, merge, prune, quantize). Separate from liblora so that a
# runtime which only reads .lora files never links jansson or OpenBLAS.
OPS_SRC := $(wildcard lib/io/*.c lib/ops/*.c)
OPS_OBJ := $(OPS_SRC:%.c=$(BUILD)/%.o)
OPS_STATIC := $(BUILD)/liblora-ops.a
OPS_LIBS := -ljansson -llapacke -lopenblas

TOOLS := lora-info lora-verify lora-convert lora-quantize lora-prune lora-merge
TOOL_COMMON_SRC := $(wildcard tools/common/*.c)
TOOL_COMMON_OBJ := $(TOOL_COMMON_SRC:%.c=$(BUILD)/%.o)
TOOL_LIBS := -lyaml

TEST_SRC  := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/unit/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)

GEN_BINS := $(BUILD)/gen_vectors $(BUILD)/make_sample $(BUILD)/make_tricky $(BUILD)/flip_check $(BUILD)/merge_demo \
            $(BUILD)/make_killdata

STATIC := $(BUILD)/liblora.a
SHARED := $(BUILD)/liblora.so.$(VERSION)
SONAME := liblora.so.$(SOMAJOR)

.PHONY: all lib tools tests test bench test-unit test-vectors test-cli test-san setup install uninstall \
        clean vectors demo check-vectors

all: lib tools

lib: $(STATIC) $(SHARED) $(OPS_STATIC)

$(OPS_STATIC): $(OPS_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^
tools: $(TOOLS:%=$(BUILD)/%)
tests: $(TEST_BINS) $(GEN_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DLORA_BUILDING_LIBRARY -fvisibility=hidden -MMD -MP -c $< -o $@

$(BUILD)/lib/kernels/x86/%_avx2.o: lib/kernels/x86/%_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX2_FLAGS) -DLORA_BUILDING_LIBRARY -fvisibility=hidden -MMD -MP -c $< -o $@

$(BUILD)/lib/kernels/x86/%_avx512.o: lib/kernels/x86/%_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX512_FLAGS) -DLORA_BUILDING_LIBRARY -fvisibility=hidden -MMD -MP -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(SAN) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)
	ln -sf liblora.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/liblora.so

# Tools use only the public header (tools/common is theirs).
$(BUILD)/tools/%.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/lora-%: $(BUILD)/tools/lora_%.o $(TOOL_COMMON_OBJ) $(OPS_STATIC) $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(TOOL_LIBS) $(OPS_LIBS) $(LIB_LIBS)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(TEST_SUPPORT_OBJ) $(OPS_STATIC) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o,$^) $(OPS_STATIC) $(STATIC) -lcmocka $(OPS_LIBS) $(LIB_LIBS)

$(BUILD)/gen_vectors: $(BUILD)/tests/gen/gen_vectors.o $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(STATIC) $(LIB_LIBS)

# Every bit flip and truncation of the small valid vectors, in-process (tests/vectors.sh).
$(BUILD)/flip_check: $(BUILD)/tests/gen/flip_check.o $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(STATIC) $(LIB_LIBS)

# The demo's model and its float64 check: no liblora on purpose (tests/gen/merge_demo.c).
$(BUILD)/merge_demo: $(BUILD)/tests/gen/merge_demo.o
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< -lm

$(BUILD)/make_%: $(BUILD)/tests/gen/make_%.o $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(STATIC) $(LIB_LIBS)

BENCH_SRC  := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRC:bench/%.c=$(BUILD)/%)

$(BUILD)/bench/%.o: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@

# bench_prune runs lora_prune: liblora-ops and LAPACKE.
$(BUILD)/bench_prune: $(BUILD)/bench/bench_prune.o $(OPS_STATIC) $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(OPS_STATIC) $(STATIC) $(OPS_LIBS) $(LIB_LIBS)

$(BUILD)/bench_%: $(BUILD)/bench/bench_%.o $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(STATIC) $(LIB_LIBS)

# Throughput figures, each a ratio against a baseline measured in the same run.
# bench/bench_merge.sh runs bench_merge_kernels itself, beside the whole-file merge.
bench: $(BENCH_BINS) $(BUILD)/gen_merge_model $(BUILD)/lora-merge
	@for b in $(filter-out $(BUILD)/bench_merge_kernels,$(BENCH_BINS)); do echo "== $$b"; $$b || exit 1; done
	@echo "== bench/bench_merge.sh"; sh bench/bench_merge.sh $(BUILD)

$(BUILD)/gen_merge_model: $(BUILD)/bench/gen_merge_model.o $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(STATIC) $(LIB_LIBS)

# ---- tests -------------------------------------------------------------------

test:
	$(MAKE) --no-print-directory test-plain
	$(MAKE) --no-print-directory test-san

test-plain:
	$(MAKE) --no-print-directory -j2 all tests
	$(MAKE) --no-print-directory check-vectors
	BUILD=$(BUILD) sh tests/run_all.sh

test-san:
	LORA_SKIP_INSTALL_CHECK=1 $(MAKE) --no-print-directory BUILD=build-san OPT='-O1 -g -fno-omit-frame-pointer' \
	    SAN='-fsanitize=address,undefined -fno-sanitize-recover=all' test-plain

vectors: $(BUILD)/gen_vectors
	$(BUILD)/gen_vectors spec/vectors

# The checked-in vectors must be exactly what the generator writes today.
check-vectors: $(BUILD)/gen_vectors
	@rm -rf $(BUILD)/vectors-check && mkdir -p $(BUILD)/vectors-check
	@$(BUILD)/gen_vectors $(BUILD)/vectors-check >/dev/null
	@diff -r spec/vectors $(BUILD)/vectors-check && echo "check-vectors: spec/vectors match the generator"

# Generate a llama-shaped model and a PEFT adapter, convert, verify, merge,
# and check the merge against a float64 reference (tests/demo.sh).
demo: all $(BUILD)/lora-convert $(BUILD)/merge_demo
	sh tests/demo.sh $(BUILD)

# ---- fuzzing (fuzz/README.md) --------------------------------------------------
# A harness is fuzz/fuzz_<name>.c plus a line in fuzz/targets.txt. Each is
# linked with an engine: the replay driver fuzz/regression.c by default (so
# `make tests` builds them with gcc and tests/run_all.sh replays the
# corpora), libFuzzer for `make fuzz`, AFL++'s driver for `make fuzz-afl`.
#   make fuzz SECONDS=N         N seconds per harness (clang, ASan+UBSan)
#   make fuzz-regression        replay corpus/ and crashers/ under gcc ASan+UBSan
#   make fuzz-merge             minimise fuzz/corpus/* with what make fuzz found
#   make fuzz-afl NAME=x [SECONDS=N]
#   make fuzz-coverage          llvm-cov line coverage of the checked-in corpora
FUZZ_TARGETS := $(shell sed -n 's/^\([a-z0-9_]*\)[[:space:]].*/\1/p' fuzz/targets.txt)
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzzers/fuzz_%)
FUZZ_SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard fuzz/support/*.c))
FUZZ_ENGINE ?= $(BUILD)/fuzz/regression.o
FUZZ_BUILD ?= build-fuzz
SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OPT := -O1 -g -fno-omit-frame-pointer

$(BUILD)/fuzz/%.o: fuzz/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Ifuzz -MMD -MP -c $< -o $@

$(BUILD)/fuzzers/fuzz_%: $(BUILD)/fuzz/fuzz_%.o $(FUZZ_SUPPORT_OBJ) $(filter %.o %.a,$(FUZZ_ENGINE)) \
                         $(OPS_STATIC) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter-out %.o,$(FUZZ_ENGINE)) $(OPS_STATIC) $(STATIC) \
	    $(OPS_LIBS) $(LIB_LIBS)

# Seeds for the harnesses without a checked-in start (fuzz/gen_seeds.c), and
# the spec vectors for the .lora ones; make fuzz reads them from $(FUZZ_BUILD)/seeds.
$(BUILD)/fuzz/gen_seeds: $(BUILD)/fuzz/gen_seeds.o $(OPS_STATIC) $(STATIC)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $< $(OPS_STATIC) $(STATIC) $(OPS_LIBS) $(LIB_LIBS)

.PHONY: fuzz fuzz-bins fuzz-seeds fuzz-regression fuzz-merge fuzz-afl fuzz-coverage
fuzz-bins: $(FUZZ_BINS)
fuzz-seeds: $(BUILD)/fuzz/gen_seeds
	rm -rf $(BUILD)/seeds
	$(BUILD)/fuzz/gen_seeds $(BUILD)/seeds
	for h in format reader; do mkdir -p $(BUILD)/seeds/$$h && cp spec/vectors/*/*.lora $(BUILD)/seeds/$$h/; done
# make test replays every corpus with these (tests/run_all.sh, fuzz/replay.sh).
tests: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%.o) $(FUZZ_SUPPORT_OBJ) $(BUILD)/fuzz/gen_seeds.o \
            $(BUILD)/fuzz/regression.o

fuzz:
	$(MAKE) --no-print-directory -j2 BUILD=$(FUZZ_BUILD) CC=clang OPT='$(FUZZ_OPT)' \
	    SAN='-fsanitize=fuzzer-no-link $(FUZZ_SAN)' FUZZ_ENGINE=-fsanitize=fuzzer fuzz-bins fuzz-seeds
	sh fuzz/fuzz.sh run $(FUZZ_BUILD) $(SECONDS) $(FUZZ_TARGETS)

fuzz-merge:
	sh fuzz/fuzz.sh merge $(FUZZ_BUILD) 0 $(FUZZ_TARGETS)

fuzz-regression:
	$(MAKE) --no-print-directory -j2 BUILD=build-fuzz-reg OPT='$(FUZZ_OPT)' SAN='$(FUZZ_SAN)' fuzz-bins
	sh fuzz/replay.sh build-fuzz-reg $(FUZZ_TARGETS)

fuzz-coverage:
	$(MAKE) --no-print-directory -j2 BUILD=build-fuzz-cov CC=clang OPT='-O1 -g' \
	    SAN='-fprofile-instr-generate -fcoverage-mapping' fuzz-bins
	sh fuzz/coverage.sh build-fuzz-cov $(FUZZ_TARGETS)

fuzz-afl:
	@test -n "$(NAME)" || { echo "usage: make fuzz-afl NAME=<harness> [SECONDS=N]" >&2; exit 2; }
	AFL_USE_ASAN=1 AFL_USE_UBSAN=1 $(MAKE) --no-print-directory -j2 BUILD=build-fuzz-afl CC=afl-clang-fast \
	    OPT='$(FUZZ_OPT)' SAN= FUZZ_ENGINE=-fsanitize=fuzzer build-fuzz-afl/fuzzers/fuzz_$(NAME)
	sh fuzz/afl.sh build-fuzz-afl $(NAME) $(SECONDS)

# ---- setup / install ---------------------------------------------------------

DEB_PACKAGES := build-essential pkg-config zlib1g-dev libyaml-dev libxxhash-dev libjansson-dev \
                libopenblas-dev liblapacke-dev libcmocka-dev clang libclang-rt-14-dev

setup:
	@sh scripts/setup.sh $(DEB_PACKAGES)

install: all
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 lib/lora.h lib/lora_errors.h lib/lora_ops.h $(DESTDIR)$(INCDIR)/
	install -m 644 $(STATIC) $(OPS_STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf liblora.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/liblora.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' liblora.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/liblora.pc
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' liblora-ops.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/liblora-ops.pc
	install -m 755 $(TOOLS:%=$(BUILD)/%) $(DESTDIR)$(BINDIR)/
	install -m 644 $(TOOLS:%=man/%.1) $(DESTDIR)$(MANDIR)/man1/

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/lora.h $(DESTDIR)$(INCDIR)/lora_errors.h $(DESTDIR)$(INCDIR)/lora_ops.h
	rm -f $(DESTDIR)$(LIBDIR)/liblora.a $(DESTDIR)$(LIBDIR)/liblora-ops.a $(DESTDIR)$(LIBDIR)/liblora.so*
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/liblora.pc $(DESTDIR)$(LIBDIR)/pkgconfig/liblora-ops.pc
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(TOOLS:%=$(DESTDIR)$(MANDIR)/man1/%.1)

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
