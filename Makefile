# msgwire - one non-recursive Makefile.
#
#   make            library (static + shared) and examples, optimised
#   make test       install missing Debian packages, then build and run every
#                   test under ASan + UBSan
#   make demo       pingpong demo (a Svc and a Clt, latency percentiles)
#   make bench      raw-socket baselines beside msgwire, ratios printed
#   make bench-serdes
#   make soak-sessions [SOAK_SECONDS=300]   the sessions chaos test, longer, random fault times
#   make install PREFIX=/usr/local [DESTDIR=]   (runs ldconfig as root without DESTDIR)
#   make uninstall PREFIX=/usr/local [DESTDIR=] removes exactly what install put
#   V=1             show full commands
#
# Layers see only the include paths below them (core <- serdes <- clt, svc),
# so an upward #include fails to compile.

.DEFAULT_GOAL := all

V ?= 0
Q := $(if $(filter 1,$(V)),,@)
E := $(if $(filter 1,$(V)),@true,@printf '  %-7s %s\n')

CC ?= cc
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
B := build

# Debian packages the build, the tests and the demo need.
DEB_PKGS := gcc g++ make pkg-config libevent-dev libssl-dev libmsgpack-dev libcmocka-dev \
            openssl python3 python3-msgpack python3-websockets chromium
# Commands installed from Debian only when the machine has none (node and npm
# may come from elsewhere, e.g. a nodejs package that bundles npm).
DEB_CMDS := node:nodejs npm:npm
# The web blotter's browser test (tests/test_web.c): npm's playwright-core,
# pinned by tests/web/package-lock.json, drives Debian's chromium (no browser
# download). Installed into tests/web/node_modules by `make deps`.
WEB_DIR := tests/web

MSGPACK_PC := $(shell pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
DEP_PCS := libevent libevent_pthreads openssl $(MSGPACK_PC)
DEP_CFLAGS := $(shell pkg-config --cflags $(DEP_PCS) 2>/dev/null)
DEP_LIBS := $(shell pkg-config --libs $(DEP_PCS) 2>/dev/null) -lpthread -lm
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wpointer-arith -Wvla -Wstrict-prototypes \
        -Wmissing-prototypes -Wno-missing-field-initializers
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -fPIC $(WARN) $(DEP_CFLAGS) -MMD -MP
OPT_CFLAGS := -O2 -g
SAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined -DMW_SANITIZED=1
SAN_LDFLAGS := -fsanitize=address,undefined
CFLAGS ?=
LDFLAGS ?=

INC_core := -Icore
# The library's own objects hide every symbol but the MW_API ones (core/mw_api.h):
# libmsgwire.so exports exactly what the installed headers declare. Programs
# (tests, examples) keep default visibility: the sanitizer runtime looks up
# hooks such as __asan_default_options in them.
VIS_core := -fvisibility=hidden
VIS_serdes := $(VIS_core)
VIS_clt := $(VIS_core)
VIS_svc := $(VIS_core)
INC_serdes := -Icore -Iserdes
INC_clt := -Icore -Iserdes -Iclt
INC_svc := -Icore -Iserdes -Isvc
INC_all := -Icore -Iserdes -Iclt -Isvc -Itests/util -Iexamples/common

LIB_SRCS := $(wildcard core/*.c) $(wildcard serdes/*.c) $(wildcard clt/*.c) $(wildcard svc/*.c)
PUB_HDRS := $(wildcard core/mw_*.h serdes/mw_*.h clt/mw_*.h svc/mw_*.h)
layer = $(firstword $(subst /, ,$(1)))

# ---- release objects, libraries ------------------------------------------
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
# Objects depend on the Makefile too: a flag change (-fvisibility) rebuilds them.
$(B)/obj/%.o: %.c Makefile
	$(E) CC $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(BASE_CFLAGS) $(OPT_CFLAGS) $(INC_$(call layer,$<)) $(VIS_$(call layer,$<)) $(CFLAGS) -c $< -o $@

$(B)/libmsgwire.a: $(LIB_OBJS)
	$(E) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/libmsgwire.so: $(LIB_OBJS)
	$(E) LD $@
	$(Q)$(CC) -shared -Wl,-soname,libmsgwire.so.0 -o $@ $^ $(DEP_LIBS) $(LDFLAGS)

# ---- sanitizer objects, library ------------------------------------------
SAN_LIB_OBJS := $(LIB_SRCS:%.c=$(B)/san/obj/%.o)
$(B)/san/obj/%.o: %.c Makefile
	$(E) CC-SAN $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(BASE_CFLAGS) $(SAN_CFLAGS) $(INC_$(call layer,$<)) $(VIS_$(call layer,$<)) $(CFLAGS) -c $< -o $@
$(B)/san/libmsgwire.a: $(SAN_LIB_OBJS)
	$(E) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^

# ---- examples (examples/*.c are programs; examples/common/*.c shared) -----
EX_SRCS := $(wildcard examples/*.c)
EX_BINS := $(EX_SRCS:examples/%.c=$(B)/examples/%)
EX_COMMON := $(wildcard examples/common/*.c)
EX_COMMON_OBJS := $(EX_COMMON:%.c=$(B)/obj/%.o)
INC_examples := $(INC_all)
$(B)/examples/%: $(B)/obj/examples/%.o $(EX_COMMON_OBJS) $(B)/libmsgwire.a
	$(E) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) -o $@ $< $(EX_COMMON_OBJS) $(B)/libmsgwire.a $(DEP_LIBS) $(LDFLAGS)

# ---- benchmarks (tests/bench/*.c are programs) ------------------------------
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRCS:tests/bench/%.c=$(B)/bench/%)
INC_tests := $(INC_all)
$(B)/bench/%: $(B)/obj/tests/bench/%.o $(EX_COMMON_OBJS) $(B)/libmsgwire.a
	$(E) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) -o $@ $< $(EX_COMMON_OBJS) $(B)/libmsgwire.a $(DEP_LIBS) $(LDFLAGS)

# ---- tests: tests/test_*.c, one cmocka binary each, under ASan + UBSan ------
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(B)/san/tests/%)
TEST_UTIL := $(wildcard tests/util/*.c)
TEST_UTIL_OBJS := $(TEST_UTIL:%.c=$(B)/san/obj/%.o)
SAN_EX_COMMON_OBJS := $(EX_COMMON:%.c=$(B)/san/obj/%.o)
TEST_DEFS := -DMW_SRC_ROOT='"$(CURDIR)"' -DMW_BUILD_DIR='"$(CURDIR)/$(B)"' -DMW_CC='"$(CC)"' \
             -DMW_CXX='"$(CXX)"' -DMW_DEP_LIBS='"$(DEP_LIBS)"'
$(B)/san/obj/tests/%.o: CFLAGS += $(TEST_DEFS)
$(B)/san/tests/%: $(B)/san/obj/tests/%.o $(TEST_UTIL_OBJS) $(SAN_EX_COMMON_OBJS) $(B)/san/libmsgwire.a
	$(E) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(SAN_LDFLAGS) -o $@ $< $(TEST_UTIL_OBJS) $(SAN_EX_COMMON_OBJS) \
	    $(B)/san/libmsgwire.a $(CMOCKA_LIBS) $(DEP_LIBS) $(LDFLAGS)

# ---- ThreadSanitizer: make tsan [TSAN_TESTS="test_onelock test_svc"] -------
# The library and the chosen tests under -fsanitize=thread (MW_SANITIZED
# keeps the per-thread lock counter of lock_impl.h); the tests that send
# from several threads at once by default.
TSAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread -DMW_SANITIZED=1
TSAN_TESTS ?= test_onelock test_lock test_clt test_svc
TSAN_LIB_OBJS := $(LIB_SRCS:%.c=$(B)/tsan/obj/%.o)
$(B)/tsan/obj/%.o: %.c Makefile
	$(E) CC-TSAN $<
	@mkdir -p $(@D)
	$(Q)$(CC) $(BASE_CFLAGS) $(TSAN_CFLAGS) $(INC_$(call layer,$<)) $(VIS_$(call layer,$<)) $(CFLAGS) -c $< -o $@
$(B)/tsan/libmsgwire.a: $(TSAN_LIB_OBJS)
	$(E) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/tsan/obj/tests/%.o: CFLAGS += $(TEST_DEFS)
$(B)/tsan/tests/%: $(B)/tsan/obj/tests/%.o $(TEST_UTIL:%.c=$(B)/tsan/obj/%.o) $(EX_COMMON:%.c=$(B)/tsan/obj/%.o) \
                   $(B)/tsan/libmsgwire.a
	$(E) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) -fsanitize=thread -o $@ $^ $(CMOCKA_LIBS) $(DEP_LIBS) $(LDFLAGS)
.PHONY: tsan
tsan: $(TSAN_TESTS:%=$(B)/tsan/tests/%)
	$(Q)for t in $(TSAN_TESTS); do echo "== tsan $$t"; \
	    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./$(B)/tsan/tests/$$t || exit 1; done

# ---- top-level targets -----------------------------------------------------
.PHONY: all lib examples bench-bins tests deps check test demo bench bench-serdes \
        install uninstall clean
all: lib examples
lib: $(B)/libmsgwire.a $(B)/libmsgwire.so
examples: $(EX_BINS)
bench-bins: $(BENCH_BINS) $(EX_BINS)
tests: $(TEST_BINS) $(EX_BINS) $(BENCH_BINS) $(B)/libmsgwire.so

# deps: install missing Debian packages (root) or print the exact command.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	for pc in $(DEB_CMDS); do \
	    command -v $${pc%%:*} >/dev/null 2>&1 || missing="$$missing $${pc#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	        || { echo "deps: apt-get install failed"; exit 1; }; \
	else \
	    echo "deps: missing Debian packages. Run:"; \
	    echo "    sudo apt-get install -y$$missing"; exit 1; \
	fi
	@if [ ! -f $(WEB_DIR)/node_modules/.package-lock.json ] || \
	    [ $(WEB_DIR)/package-lock.json -nt $(WEB_DIR)/node_modules/.package-lock.json ]; then \
	    echo "deps: npm ci in $(WEB_DIR) (playwright-core, no browser download)"; \
	    (cd $(WEB_DIR) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null) \
	        || { echo "deps: npm ci in $(WEB_DIR) failed"; exit 1; }; \
	fi

# The test and demo entry points first make sure the packages are there, then
# re-read this Makefile (pkg-config flags are computed at parse time).
test: deps
	$(Q)$(MAKE) --no-print-directory check
check: tests
	$(Q)MW_BUILD_DIR=$(CURDIR)/$(B) sh tests/run.sh $(TEST_BINS)

demo: deps
	$(Q)$(MAKE) --no-print-directory examples
	$(Q)./$(B)/examples/pingpong demo

bench: deps
	$(Q)$(MAKE) --no-print-directory bench-bins
	$(Q)sh tests/bench/run_bench.sh

bench-serdes: deps
	$(Q)$(MAKE) --no-print-directory $(B)/bench/bench_serdes
	$(Q)taskset -c 1 ./$(B)/bench/bench_serdes

# install/uninstall into the live system (no DESTDIR) as root refresh the
# dynamic loader's cache, so a program linked against a system prefix starts
# (LDCONFIG= to skip, or another command for tests). A staged install
# (DESTDIR=...) or a user's own prefix does not need it: see the README for
# running a program against a custom prefix.
LDCONFIG ?= ldconfig
LIVE_LDCONFIG = $(if $(strip $(LDCONFIG)),if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then $(LDCONFIG); fi,:)
# everything install puts, so uninstall removes exactly that
INST_LIBS := libmsgwire.a libmsgwire.so.0 libmsgwire.so

install: lib
	$(E) INSTALL $(DESTDIR)$(PREFIX)
	$(Q)install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/msgwire
	$(Q)install -m 644 $(B)/libmsgwire.a $(DESTDIR)$(LIBDIR)/
	$(Q)install -m 755 $(B)/libmsgwire.so $(DESTDIR)$(LIBDIR)/libmsgwire.so.0
	$(Q)ln -sf libmsgwire.so.0 $(DESTDIR)$(LIBDIR)/libmsgwire.so
	$(Q)install -m 644 $(PUB_HDRS) $(DESTDIR)$(INCDIR)/msgwire/
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCDIR)' '' \
	    'Name: msgwire' 'Description: low-latency typed messaging over TCP, TLS and WebSocket' \
	    'Version: 0.1.0' 'Requires.private: $(DEP_PCS)' \
	    'Cflags: -I$${includedir} -I$${includedir}/msgwire' 'Libs: -L$${libdir} -lmsgwire' \
	    'Libs.private: -lpthread -lm' > $(DESTDIR)$(LIBDIR)/pkgconfig/msgwire.pc
	$(Q)$(LIVE_LDCONFIG)

# The include/msgwire directory is msgwire's own; the lib, lib/pkgconfig and
# include directories may hold other packages' files and stay.
uninstall:
	$(E) UNINSTALL $(DESTDIR)$(PREFIX)
	$(Q)rm -f $(addprefix $(DESTDIR)$(LIBDIR)/,$(INST_LIBS)) $(DESTDIR)$(LIBDIR)/pkgconfig/msgwire.pc
	$(Q)rm -rf $(DESTDIR)$(INCDIR)/msgwire
	$(Q)$(LIVE_LDCONFIG)

clean:
	rm -rf $(B)

# ---- bench-peers: ZeroMQ, nng, libwebsockets and raw OpenSSL beside msgwire --
# The peers' libraries are installed by this target only (not by `make deps`);
# tests/bench/peers/*.c are standalone programs that do not link msgwire.
PEER_PKGS := libzmq3-dev libnng-dev libwebsockets-dev libssl-dev openssl
PEER_BINS := $(patsubst tests/bench/peers/%.c,$(B)/bench/peers/%,$(wildcard tests/bench/peers/peer_*.c))
PEER_LIBS_peer_zmq := -lzmq
PEER_LIBS_peer_nng := -lnng -lpthread
PEER_LIBS_peer_lws := -lwebsockets
PEER_LIBS_peer_tls := -lssl -lcrypto
$(B)/bench/peers/%: tests/bench/peers/%.c tests/bench/peers/peer_common.h tests/bench/raw_common.h
	$(E) CC $@
	@mkdir -p $(@D)
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(OPT_CFLAGS) $(CFLAGS) -o $@ $< $(PEER_LIBS_$*) $(LDFLAGS)

.PHONY: bench-peers bench-peers-deps
bench-peers-deps: deps
	$(Q)$(MAKE) --no-print-directory deps DEB_PKGS="$(PEER_PKGS)"
bench-peers: bench-peers-deps
	$(Q)$(MAKE) --no-print-directory bench-bins $(PEER_BINS)
	$(Q)/usr/bin/python3 tests/bench/peers/run_peers.py --json $(B)/bench/peers.json

# ---- fuzzing: tests/fuzz/fuzz_<name>.c are libFuzzer targets -------------------
#   make fuzz [FUZZ_SECONDS=30]   every target under clang libFuzzer + ASan/UBSan
#                                 for FUZZ_SECONDS each (installs clang if missing);
#                                 seeds from tests/fuzz/corpus/<name>, new inputs
#                                 kept in build/fuzz/corpus/<name>, crashes in
#                                 build/fuzz/artifacts
#   make fuzz-seeds               rewrites the seed-* inputs (tests/fuzz/make_seeds.c)
#   make fuzz-replay              replays the committed corpora (also part of
#                                 make test): built with $(CC) + ASan/UBSan and
#                                 tests/fuzz/replay_main.c, no clang needed
.PHONY: fuzz fuzz-replay fuzz-bins fuzz-seeds
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRCS:tests/fuzz/fuzz_%.c=%)
FUZZ_REPLAY_BINS := $(FUZZ_NAMES:%=$(B)/san/fuzz/fuzz_%)
FUZZ_BINS := $(FUZZ_NAMES:%=$(B)/fuzz/fuzz_%)
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 30
FUZZ_DEB_PKGS := clang libclang-rt-dev
FUZZ_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
               -fno-sanitize-recover=undefined -DMW_SANITIZED=1 -DMW_FUZZING=1
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(B)/fuzz/obj/%.o)

$(B)/fuzz/obj/%.o: %.c
	$(E) CC-FUZZ $<
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) $(BASE_CFLAGS) $(FUZZ_CFLAGS) $(INC_$(call layer,$<)) $(VIS_$(call layer,$<)) $(CFLAGS) -c $< -o $@
$(B)/fuzz/libmsgwire.a: $(FUZZ_LIB_OBJS)
	$(E) AR $@
	$(Q)rm -f $@ && ar rcs $@ $^
$(B)/fuzz/fuzz_%: $(B)/fuzz/obj/tests/fuzz/fuzz_%.o $(B)/fuzz/libmsgwire.a
	$(E) LD $@
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $< $(B)/fuzz/libmsgwire.a $(DEP_LIBS) $(LDFLAGS)
$(B)/san/fuzz/fuzz_%: $(B)/san/obj/tests/fuzz/fuzz_%.o $(B)/san/obj/tests/fuzz/replay_main.o $(B)/san/libmsgwire.a
	$(E) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(SAN_LDFLAGS) -o $@ $< $(B)/san/obj/tests/fuzz/replay_main.o $(B)/san/libmsgwire.a \
	    $(DEP_LIBS) $(LDFLAGS)

# make test replays every corpus: each replay binary is one test for run.sh.
TEST_BINS += $(FUZZ_REPLAY_BINS)
tests: $(FUZZ_REPLAY_BINS)
fuzz-replay: $(FUZZ_REPLAY_BINS)
	$(Q)sh tests/run.sh $(FUZZ_REPLAY_BINS)
fuzz-bins: $(FUZZ_BINS)
# Rewrites the seed-* files of the corpora (regress-* files are kept).
$(B)/san/fuzz/make_seeds: $(B)/san/obj/tests/fuzz/make_seeds.o $(B)/san/obj/tests/util/test_msgs.o $(B)/san/libmsgwire.a
	$(E) LD $@
	@mkdir -p $(@D)
	$(Q)$(CC) $(SAN_LDFLAGS) -o $@ $^ $(DEP_LIBS) $(LDFLAGS)
fuzz-seeds: $(B)/san/fuzz/make_seeds
	$(Q)rm -f tests/fuzz/corpus/*/seed-*
	$(Q)./$(B)/san/fuzz/make_seeds tests/fuzz/corpus
fuzz: deps
	$(Q)$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_DEB_PKGS)"
	$(Q)$(MAKE) --no-print-directory fuzz-bins
	$(Q)sh tests/fuzz/run_fuzz.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)

# ---- bench-scale: many connections, msgwire's event Svc beside a raw epoll
# echo server (tests/bench/scale_load.c drives both; README "Scale"). The
# servers run on SCALE_SVC_CPU, the load generator on SCALE_CPU.
.PHONY: bench-scale
SCALE_CONNS ?= 1000,5000,10000
SCALE_SECS ?= 3
SCALE_ROUNDS ?= 3
SCALE_THREADS ?= 1
SCALE_CPU ?= 1
SCALE_SVC_CPU ?= 0
bench-scale: deps
	$(Q)$(MAKE) --no-print-directory $(B)/bench/scale_load $(B)/bench/scale_svc $(B)/bench/raw_echo
	$(Q)./$(B)/bench/scale_load --conns $(SCALE_CONNS) --secs $(SCALE_SECS) --rounds $(SCALE_ROUNDS) --threads $(SCALE_THREADS) \
	    --cpu $(SCALE_CPU) \
	    --server "raw=taskset -c $(SCALE_SVC_CPU) ./$(B)/bench/raw_echo" \
	    --server "svc-1w=taskset -c $(SCALE_SVC_CPU) ./$(B)/bench/scale_svc --workers 1" \
	    --server "svc-2w=taskset -c $(SCALE_SVC_CPU) ./$(B)/bench/scale_svc --workers 2"

# ---- soak: the long fault tests (tests/test_faults.c with MW_SOAK=1; README
# "Fault and soak tests"). SOAK_SECONDS is shared between its five long groups;
# each stops by itself once its share has passed (the whole run takes about
# SOAK_SECONDS plus set-up), under a timeout of SOAK_SECONDS + 600 s.
.PHONY: soak
SOAK_SECONDS ?= 300
soak: deps
	$(Q)$(MAKE) --no-print-directory $(B)/san/tests/test_faults
	$(Q)MW_SOAK=1 SOAK_SECONDS=$(SOAK_SECONDS) TEST_TIMEOUT=$$(($(SOAK_SECONDS) + 600)) \
	    MW_BUILD_DIR=$(CURDIR)/$(B) sh tests/run.sh $(B)/san/tests/test_faults

# ---- soak-sessions: the chaos test of sessions (tests/test_chaos.c) for
# SOAK_SECONDS (default 300) with faults at random times: the gateway and
# three traders (tcp spin, tls blocking, ws event), connections closed and
# cut mid-frame, both kill -9'd and restarted from their journals; every ack
# and fill checked once and in order, the book against a fault-free run.
.PHONY: soak-sessions
soak-sessions: deps
	$(Q)$(MAKE) --no-print-directory $(B)/san/tests/test_chaos $(B)/examples/gateway $(B)/examples/trader
	$(Q)MW_SOAK=1 SOAK_SECONDS=$(SOAK_SECONDS) TEST_TIMEOUT=$$((3 * $(SOAK_SECONDS) + 600)) \
	    MW_BUILD_DIR=$(CURDIR)/$(B) sh tests/run.sh $(B)/san/tests/test_chaos
