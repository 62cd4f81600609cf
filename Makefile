# vouch — one Makefile (STYLE.md §17). Generated files go to build/ only.
#   make            build/vouchd, build/vouch
#   make test       unit + integration tiers (test/run), summary "N passed, N failed"
#   make check      the same tiers built with ASan+UBSan (build/asan/)
#   make demo       install deps, build, run the end-to-end demo against the local Claude stand-in
#   make deps       install missing Debian and npm dependencies (scripts/install-deps.sh)
#   make fuzz       build the libFuzzer harnesses (fuzz/, clang, ASan+UBSan, build/fuzz/) and
#                   run each for FUZZ_SECONDS (default 30), FUZZ_JOBS (2) at a time; fails on
#                   any crash, leak, timeout or UB report (docs/FUZZING.md)

BUILD   ?= build
CC      ?= cc
PKGS    := openssl yaml-0.1 jansson libnghttp2 libprotobuf-c libseccomp libcap
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
           -Wimplicit-fallthrough -Wvla -Werror
HARDEN  := -fstack-protector-strong -fPIE
CFLAGS  ?= -O2 -g
# Sanitizer flags live in their own variable: a CFLAGS given on the command line (as
# `make check` does) must not drop them.
SAN_FLAGS :=
ifeq ($(SANITIZE),1)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),fuzz)
# libFuzzer build (make fuzz): coverage for the fuzzer in every library object, any UB fatal.
SAN_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=all
else
HARDEN  += -D_FORTIFY_SOURCE=3
endif
CPPFLAGS += -std=c17 -D_GNU_SOURCE -Isrc $(PKG_CFLAGS) -MMD -MP
ALL_CFLAGS = $(CPPFLAGS) $(WARN) $(HARDEN) $(CFLAGS) $(SAN_FLAGS)
LDLIBS  += $(PKG_LIBS) -lpthread -lresolv -lm
LDFLAGS += -pie -Wl,-z,relro,-z,now

LIB_SRC := $(sort $(wildcard src/common/*.c src/config/*.c src/registry/*.c src/attest/*.c \
             src/ca/*.c src/oidc/*.c src/broker/*.c src/proxy/*.c src/audit/*.c \
             src/intercept/*.c src/workload/*.c src/scan/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
AGENT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard src/agent/*.c))
CLI_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard src/cli/*.c))
UNIT_SRC := $(wildcard test/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:test/unit/%.c=$(BUILD)/test/%)

# ---- BPF (src/intercept; STYLE §17, §21) ----
# CO-RE programs built with clang -target bpf against $(BUILD)/vmlinux.h, generated from
# the running kernel's BTF; bpftool turns the object into a skeleton header that
# intercept.c includes (the object is embedded in libvouch.a). Never sanitized.
.DEFAULT_GOAL := all
BPF_CLANG  ?= clang
LLVM_STRIP ?= llvm-strip
BPFTOOL    ?= $(shell command -v bpftool 2>/dev/null || echo /usr/sbin/bpftool)
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
BPF_ARCH   := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' -e 's/ppc64le/powerpc/' \
                -e 's/s390x/s390/' -e 's/riscv64/riscv/' -e 's/loongarch64/loongarch/')
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -D__BPF__ -Wall -Werror \
              -I$(BUILD) -Isrc
BPF_SRC    := $(wildcard src/intercept/*.bpf.c src/attest/*.bpf.c)
LIB_SRC    := $(filter-out %.bpf.c,$(LIB_SRC))
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CPPFLAGS   += -I$(BUILD)
PKG_CFLAGS += $(shell pkg-config --cflags libbpf 2>/dev/null)
LDLIBS     += $(shell pkg-config --libs libbpf 2>/dev/null || echo -lbpf) -lelf -lz

$(BUILD)/vmlinux.h:
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp
	@mv $@.tmp $@

$(BUILD)/intercept.bpf.o: src/intercept/intercept.bpf.c src/intercept/intercept_types.h $(BUILD)/vmlinux.h
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(LLVM_STRIP) -g $@.tmp
	@mv $@.tmp $@

$(BUILD)/intercept.skel.h: $(BUILD)/intercept.bpf.o
	$(BPFTOOL) gen skeleton $< name intercept_bpf > $@.tmp
	@mv $@.tmp $@

$(BUILD)/obj/src/intercept/intercept.o: $(BUILD)/intercept.skel.h

# attest/peer.bpf.c: the socket-holder iterator peer.c uses (falls back to /proc without BPF)
$(BUILD)/peer.bpf.o: src/attest/peer.bpf.c src/attest/peer_types.h $(BUILD)/vmlinux.h
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(LLVM_STRIP) -g $@.tmp
	@mv $@.tmp $@

$(BUILD)/peer.skel.h: $(BUILD)/peer.bpf.o
	$(BPFTOOL) gen skeleton $< name peer_bpf > $@.tmp
	@mv $@.tmp $@

$(BUILD)/obj/src/attest/peer.o: $(BUILD)/peer.skel.h

# ---- protobuf (src/workload/workload.proto; STYLE §17) ----
# protoc-c generates the Workload API messages into $(BUILD)/gen, and google.protobuf.Struct
# (ValidateJWTSVIDResponse.claims) from the .proto Debian ships in libprotobuf-dev. Generated
# code is compiled without our -W flags (it is not ours to fix) and goes into libvouch.a.
PROTOC_C   ?= protoc-c
PROTO_INC  ?= /usr/include
GEN        := $(BUILD)/gen
GEN_SRC    := $(GEN)/workload.pb-c.c $(GEN)/google/protobuf/struct.pb-c.c
GEN_HDR    := $(GEN_SRC:.c=.h)
GEN_OBJ    := $(GEN_SRC:$(BUILD)/%.c=$(BUILD)/obj/%.o)
LIB_OBJ    += $(GEN_OBJ)
CPPFLAGS   += -I$(GEN)

$(GEN)/workload.pb-c.c: src/workload/workload.proto
	@mkdir -p $(GEN)
	$(PROTOC_C) -Isrc/workload -I$(PROTO_INC) --c_out=$(GEN) workload.proto google/protobuf/struct.proto
$(GEN)/workload.pb-c.h $(GEN)/google/protobuf/struct.pb-c.c $(GEN)/google/protobuf/struct.pb-c.h: $(GEN)/workload.pb-c.c

$(BUILD)/obj/gen/%.o: $(GEN)/%.c $(GEN_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -w $(HARDEN) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

# Every object of ours may include the generated headers.
$(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(AGENT_OBJ) $(CLI_OBJ) $(UNIT_BIN): | $(GEN_HDR)

.PHONY: all test check demo deps clean format unit bench fuzz fuzz-build fuzzers fuzz-seeds
all: $(BUILD)/vouchd $(BUILD)/vouch

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libvouch.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The dashboard's static files (web/dashboard) are compiled into vouchd.
DASH_FILES := $(sort $(wildcard web/dashboard/*.html web/dashboard/*.js web/dashboard/*.css))
$(GEN)/dashboard_assets.c: $(DASH_FILES) scripts/embed-assets.sh
	@mkdir -p $(GEN)
	scripts/embed-assets.sh $@ $(DASH_FILES)
$(BUILD)/obj/gen/dashboard_assets.o: $(GEN)/dashboard_assets.c src/agent/dashboard.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/vouchd: $(AGENT_OBJ) $(BUILD)/obj/gen/dashboard_assets.o $(BUILD)/libvouch.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/vouch: $(CLI_OBJ) $(BUILD)/libvouch.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test/%: test/unit/%.c $(BUILD)/libvouch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itest/unit $(LDFLAGS) -o $@ $< $(BUILD)/libvouch.a $(LDLIBS)

unit: $(UNIT_BIN)

test: all unit
	@test/run $(BUILD)

check:
	$(MAKE) BUILD=build/asan SANITIZE=1 CFLAGS="-O1 -g" all unit
	@# seccomp logs instead of killing here: LeakSanitizer clones and ptraces at exit
	@VOUCH_SECCOMP=log ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 test/run build/asan

# ---- fuzz (STYLE.md §20; docs/FUZZING.md) ----
# One libFuzzer harness per parser of outside input: fuzz/fuzz_<name>.c, seeds in
# fuzz/corpus/<name>/. The library is rebuilt with clang under build/fuzz so the normal
# build is untouched; the harnesses link against that libvouch.a.
FUZZ_BUILD   ?= build/fuzz
FUZZ_SECONDS ?= 30
FUZZ_JOBS    ?= 2
FUZZ_NAMES   := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c $(BUILD)/libvouch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -Ifuzz -Itest/unit $(LDFLAGS) -o $@ $< $(BUILD)/libvouch.a $(LDLIBS)

fuzzers: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang SANITIZE=fuzz CFLAGS="-O1 -g" fuzzers

fuzz: fuzz-build
	@fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_NAMES)

# Re-record the protocol seeds of fuzz/corpus/grpc and fuzz/corpus/wlapi (committed).
fuzz-seeds: $(BUILD)/libvouch.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $(BUILD)/gen_seeds fuzz/gen_seeds.c $(BUILD)/libvouch.a $(LDLIBS)
	$(BUILD)/gen_seeds fuzz/corpus/grpc fuzz/corpus/wlapi

bench: all
	@bench/run.sh $(BUILD)

deps:
	@scripts/install-deps.sh

demo: deps
	@$(MAKE) all
	@demo/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'test/unit/*.[ch]')

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(AGENT_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(UNIT_BIN:=.d) \
	 $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%.d)
