/* fuzz.h — what every libFuzzer harness in fuzz/ shares (docs/FUZZING.md).
 *
 * A harness feeds one input to one parser of outside input and checks, besides what ASan
 * and UBSan catch, the parser's own contract (lengths in range, outputs terminated, results
 * independent of how the input is split). A broken contract aborts: libFuzzer saves the
 * input as a crash. Harnesses are deterministic and free everything they allocate. */
#ifndef VOUCH_FUZZ_H
#define VOUCH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A contract violation: say which and abort (a crash to libFuzzer). */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: contract violated: %s\n", __FILE__, __LINE__,      \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The input as a file with a path, without touching the disk: a memfd, named
 * /proc/self/fd/N in *ret_path (cap ≥ 32). Returns the fd (close it after use) or -1. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *ret_path, size_t cap)
{
	int fd = memfd_create("fuzz-input", MFD_CLOEXEC);
	size_t off = 0;

	if (fd < 0)
		return -1;
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	snprintf(ret_path, cap, "/proc/self/fd/%d", fd);
	return fd;
}

#endif
