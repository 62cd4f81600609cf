# bench/bench.mk — the bench programs, built with the top-level Makefile's flags and
# libraries (bench/run.sh runs: make -f Makefile -f bench/bench.mk BUILD=DIR DIR/bench/NAME).
# Not part of `make test`: benches measure, they never pass or fail on timings.

$(BUILD)/bench/%: bench/%.c $(BUILD)/libvouch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libvouch.a $(LDLIBS)

-include $(wildcard $(BUILD)/bench/*.d)
