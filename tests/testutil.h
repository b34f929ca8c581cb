/* Minimal test harness shared by every test executable.
 *
 *   TEST_CHECK(cond, "fmt", ...)   counts a check; prints the message on failure
 *   kt_allclose(name, got, ref, n, atol, rtol)  element-wise |got-ref| <= atol + rtol·|ref|,
 *                                  prints max abs / rel error, counts one check
 *   kt_skip("what (why)", ...)     a part that did not run: prints "SKIP: what (why)", counts a skip
 *   return kt_finish("suite");     prints "suite: N passed, N failed, N skipped" and returns the exit
 *                                  code: 1 if a check failed or if no check ran at all (a suite that
 *                                  verified nothing must not pass); KT_SKIP_CODE (77, ctest's
 *                                  SKIP_RETURN_CODE in tests/CMakeLists.txt) if no check ran because
 *                                  every part was skipped with kt_skip; else 0
 */
#ifndef KD_TESTUTIL_H
#define KD_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

extern int kt_passed, kt_failed, kt_skipped;

/* Exit code of a suite that skipped everything; tests/CMakeLists.txt sets it as SKIP_RETURN_CODE. */
#define KT_SKIP_CODE 77

void kt_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define TEST_CHECK(cond, ...) kt_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* A part of the suite that does not run here (a missing ../shared file, binary, ...): prints
 * "SKIP: <message>" — say what is skipped and why, e.g. kt_skip("OpenAI .gz parity (%s is absent)", p). */
void kt_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Returns 1 if all close. Also records the max errors for the summary. */
int kt_allclose(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol);

/* Largest |x| over the array (to express tolerances relative to an output's range). */
double kt_max_abs(const float *x, size_t n);

/* Path of a fixture: $KD_TEST_DATA/<rel> (default "tests/data/<rel>"). Static buffer. */
const char *kt_data_path(const char *rel);
/* Path under ../shared: $KD_SHARED/<rel>; NULL if the shared folder is absent. */
const char *kt_shared_path(const char *rel);
/* Writable scratch directory for a test (created): $KD_BUILD_DIR/test-tmp/<name>. Static buffer. */
const char *kt_tmp_dir(const char *name);

int kt_finish(const char *suite);

/* Whole file as a NUL-terminated string (malloc'd), NULL if unreadable (io/file.c's reader). */
char *kt_read_text(const char *path);
/* The same, with its length in *len (it may contain NUL bytes). */
char *kt_read_file(const char *path, size_t *len);
/* Monotonic clock in seconds. */
double kt_now(void);

struct kd_st_file;
/* Tensor "case<i>.<what>" of a pipeline fixture file (its data, F32), NULL if absent. */
/* The F32 tensor `name` of a fixture file (NULL if absent or not F32; f may be NULL); *n = its numel. */
const float *kt_f32_tensor(const struct kd_st_file *f, const char *name, size_t *n);
const float *kt_case_tensor(const struct kd_st_file *f, int i, const char *what, size_t *n);

/* Simple deterministic RNG for tests that need random inputs (not torch-compatible). */
uint64_t kt_rand_u64(uint64_t *state);
float kt_rand_uniform(uint64_t *state); /* [-1, 1) */

/* Code point → UTF-8 into o (up to 4 bytes); returns the byte count. */
size_t kt_put_utf8(uint32_t c, char *o);
/* One JSON string literal (as json.dumps(ensure_ascii=True) writes it, quotes included) → a malloc'd
 * UTF-8 buffer that keeps \u0000 (cJSON would cut there). Returns 0 on a malformed literal. */
int kt_json_string(const char *s, size_t n, char **out, size_t *out_len);
/* A file of JSON string literals, one per line → L (0 on a read or parse failure, L empty). */
typedef struct kt_lines {
    int n;
    char **s;
    size_t *len;
} kt_lines;
int kt_read_json_lines(const char *path, kt_lines *L);
void kt_free_lines(kt_lines *L);

#endif
