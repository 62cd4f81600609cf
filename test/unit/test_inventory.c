/* Unit tests for src/registry/inventory: counting per access path, first/last use, the
 * denial reasons, the bounded table (full: reported once, dropped counted), concurrent
 * updates, and the file: a round trip, a save that fails half-way, and hostile or corrupt
 * files (each refused whole, the table left empty). */
#include "common/statefile.h"
#include "registry/inventory.h"
#include "tap.h"
#include "tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64], file[128];

static const struct inventory_key K_NODE = {"spiffe://t/demo/node", "node", "default/src", "api"};
static const struct inventory_key K_CURL = {"spiffe://t/demo/curl", NULL, NULL, "api"};
static const struct inventory_key K_ANON = {NULL, NULL, NULL, NULL};

/* Every row rendered as one line, in table order, into a buffer (for comparisons). */
struct dump {
	char text[16384];
	size_t n, rows;
};

static void dump_row(void *ctx, const struct inventory_row *r)
{
	struct dump *d = ctx;
	int w =
	    snprintf(d->text + d->n, sizeof(d->text) - d->n, "%s|%s|%s|%s|%lld|%lld|%llu|%llu|",
		     r->key.workload ? r->key.workload : "-", r->key.binding ? r->key.binding : "-",
		     r->key.source ? r->key.source : "-", r->key.service ? r->key.service : "-",
		     (long long)r->first_use, (long long)r->last_use,
		     (unsigned long long)r->injected, (unsigned long long)r->denied);
	d->n += (size_t)w;
	for (size_t i = 0; i < r->n_reasons; i++)
		d->n += (size_t)snprintf(d->text + d->n, sizeof(d->text) - d->n, "%s=%llu,",
					 r->reasons[i].name, (unsigned long long)r->reasons[i].n);
	if (r->usage_responses)
		d->n += (size_t)snprintf(d->text + d->n, sizeof(d->text) - d->n, "u=%llu/%llu/%llu",
					 (unsigned long long)r->usage_responses,
					 (unsigned long long)r->input_tokens,
					 (unsigned long long)r->output_tokens);
	d->n += (size_t)snprintf(d->text + d->n, sizeof(d->text) - d->n, "\n");
	d->rows++;
}

static void dump(struct inventory *inv, struct dump *d)
{
	memset(d, 0, sizeof(*d));
	inventory_foreach(inv, dump_row, d);
}

static void write_file(const char *text)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text),
	   "wrote the test file");
	close(fd);
}

/* A fresh table loading text: the result, and the table must be empty on failure. */
static int load_text(const char *text, char *err, size_t cap, size_t *ret_rows)
{
	struct inventory *inv = NULL;
	struct dump d;
	int r;

	write_file(text);
	inventory_new(8, &inv);
	r = inventory_load(inv, file, err, cap);
	dump(inv, &d);
	*ret_rows = d.rows;
	inventory_free(inv);
	return r;
}

static int fail_rename(enum statefile_step step, const char *tmp)
{
	(void)tmp;
	return step == STATEFILE_RENAME ? -EIO : 0;
}

struct hammer {
	struct inventory *inv;
	int id;
};

static void *hammer(void *arg)
{
	struct hammer *h = arg;
	char w[64];

	snprintf(w, sizeof(w), "spiffe://t/w%d", h->id % 4);
	for (int i = 0; i < 20000; i++)
		inventory_record(h->inv, &(struct inventory_key){w, "b", "s", "svc"}, i % 5 == 0,
				 "no_binding", 1000 + i);
	return NULL;
}

int main(void)
{
	struct inventory *inv = NULL, *back = NULL;
	struct inventory_stats st;
	struct dump d, d2;
	char err[256];
	size_t rows;

	snprintf(dir, sizeof(dir), "/tmp/vouch-inventory-XXXXXX");
	ok(mkdtemp(dir) != NULL, "scratch dir");
	snprintf(file, sizeof(file), "%s/inventory.json", dir);

	ok(inventory_new(INVENTORY_CAP_MAX + 1, &inv) == -EINVAL, "cap above the maximum: -EINVAL");
	ok(inventory_new(4, &inv) == 0, "a table of 4 paths");

	/* counting */
	ok(inventory_record(inv, &K_NODE, false, NULL, 2000) == 0, "inject on node");
	inventory_record(inv, &K_NODE, false, NULL, 1000); /* a clock step back */
	inventory_record(inv, &K_NODE, false, NULL, 3000);
	inventory_record(inv, &K_NODE, true, "revoked", 3500);
	inventory_record(inv, &K_CURL, true, "no_binding", 2500);
	inventory_record(inv, &K_CURL, true, "no_binding", 2600);
	inventory_record(inv, &K_ANON, true, "unidentified", 2700);
	dump(inv, &d);
	ok(strcmp(d.text, "spiffe://t/demo/node|node|default/src|api|1000|3500|3|1|revoked=1,\n"
			  "spiffe://t/demo/curl|-|-|api|2500|2600|0|2|no_binding=2,\n"
			  "-|-|-|-|2700|2700|0|1|unidentified=1,\n") == 0,
	   "rows: first = earliest, last = latest, counts and reasons, in order of first use:\n%s",
	   d.text);
	inventory_record(inv, &(struct inventory_key){"spiffe://t/demo/curl", "-", "-", "api"},
			 true, NULL, 1);
	dump(inv, &d);
	ok(d.rows == 4 && strstr(d.text, "spiffe://t/demo/curl|-|-|api|1|1|0|1|other=1,"),
	   "a name \"-\" is not the same path as no name; a NULL reason is \"other\"");

	/* Claude usage per path, counted with the injection it belongs to */
	ok(inventory_record_use(inv, &K_NODE, false, NULL, &(struct inventory_use){100, 20},
				3000) == 0,
	   "an injection with usage on node");
	ok(inventory_record_use(inv, &K_NODE, false, NULL, &(struct inventory_use){-1, 5}, 3000) ==
	       0,
	   "usage with unknown input tokens");
	ok(inventory_record_use(inv, &K_CURL, true, "no_binding", &(struct inventory_use){7, 7},
				2600) == 0,
	   "a denial with usage given");
	dump(inv, &d);
	ok(strstr(d.text, "spiffe://t/demo/node|node|default/src|api|1000|3500|5|1|revoked=1,u=2/"
			  "100/25\n") != NULL &&
	       strstr(d.text, "spiffe://t/demo/curl|-|-|api|2500|2600|0|3|no_binding=3,\n") &&
	       d.rows == 4,
	   "usage: 2 responses, 100 in (unknown not added), 25 out; a denial carries none:\n%s",
	   d.text);

	/* bounded */
	ok(inventory_record(inv, &(struct inventory_key){"spiffe://t/new", "b", "s", "api"}, false,
			    NULL, 5) == 1,
	   "the table is full: reported once (1)");
	ok(inventory_record(inv, &(struct inventory_key){"spiffe://t/new2", "b", "s", "api"}, false,
			    NULL, 5) == -E2BIG,
	   "then -E2BIG, not reported again");
	ok(inventory_record(inv, &K_NODE, false, NULL, 4000) == 0, "known paths still count");
	inventory_get_stats(inv, &st);
	ok(st.full && st.dropped == 2 && st.paths == 4 && st.cap == 4 && st.dirty,
	   "stats: full, 2 dropped, 4 paths, dirty");
	/* (the over-long name below is dropped too: 3) */
	char longname[INVENTORY_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ok(inventory_record(inv, &(struct inventory_key){longname, NULL, NULL, NULL}, true, NULL,
			    1) == -E2BIG,
	   "a name over INVENTORY_NAME_MAX: -E2BIG");

	/* reasons: at most INVENTORY_REASONS, the rest as "other" */
	struct inventory *rs = NULL;
	inventory_new(0, &rs);
	const char *labels[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
	for (size_t i = 0; i < 10; i++)
		inventory_record(rs, &K_NODE, true, labels[i], 1);
	inventory_record(rs, &K_NODE, true, "a", 1);
	inventory_record(rs, &K_NODE, true, "this_label_is_far_too_long_to_be_a_reason", 1);
	dump(rs, &d);
	ok(strstr(d.text, "|0|12|a=2,b=1,c=1,d=1,e=1,f=1,g=1,other=4,\n") != NULL,
	   "seven reasons and \"other\" for the rest: %s", d.text);
	inventory_free(rs);

	/* the file: a round trip */
	ok(inventory_save(inv, file) == 0, "save");
	inventory_get_stats(inv, &st);
	ok(!st.dirty, "saved: not dirty");
	ok(inventory_new(4, &back) == 0 && inventory_load(back, file, err, sizeof(err)) == 0,
	   "load (%s)", err);
	dump(inv, &d);
	dump(back, &d2);
	ok(strcmp(d.text, d2.text) == 0, "the same rows, counts, times and reasons:\n%s", d2.text);
	inventory_get_stats(back, &st);
	ok(st.full && st.dropped == 3 && !st.dirty,
	   "full and dropped survive; a loaded table is clean (%llu)",
	   (unsigned long long)st.dropped);
	ok(inventory_record(back, &(struct inventory_key){"spiffe://t/x", "b", "s", "a"}, false,
			    NULL, 1) == -E2BIG,
	   "a table full before the restart is not reported again");
	ok(inventory_load(back, file, err, sizeof(err)) == -EBUSY,
	   "loading into a used table: -EBUSY");
	inventory_free(back);
	back = NULL;
	inventory_new(2, &back);
	ok(inventory_load(back, file, err, sizeof(err)) == 0, "load into a smaller table");
	dump(back, &d2);
	inventory_get_stats(back, &st);
	ok(d2.rows == 2 && st.full && st.dropped == 3 + 1 + 1,
	   "the first 2 paths; the rest counted as dropped (%llu)", (unsigned long long)st.dropped);
	inventory_free(back);
	back = NULL;

	/* a save that fails half-way leaves the previous file, still loadable */
	inventory_record(inv, &K_NODE, false, NULL, 9000);
	statefile_test_hook = fail_rename;
	ok(inventory_save(inv, file) == -EIO, "a save failing at the rename: -EIO");
	statefile_test_hook = NULL;
	inventory_get_stats(inv, &st);
	ok(st.dirty, "still dirty: the next tick saves again");
	inventory_new(4, &back);
	ok(inventory_load(back, file, err, sizeof(err)) == 0, "the previous file loads (%s)", err);
	dump(back, &d2);
	ok(strstr(d2.text, "spiffe://t/demo/node|node|default/src|api|1000|4000|6|1|") != NULL,
	   "with the previous counts");
	inventory_free(back);
	back = NULL;
	ok(inventory_save(inv, file) == 0, "the next save");
	inventory_new(4, &back);
	inventory_load(back, file, err, sizeof(err));
	dump(back, &d2);
	ok(strstr(d2.text, "spiffe://t/demo/node|node|default/src|api|1000|9000|7|1|") != NULL,
	   "has the new counts");
	inventory_free(back);
	back = NULL;

	/* hostile and corrupt files: refused whole, nothing kept */
	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"", "empty"},
	    {"{\"version\":1,\"paths\":[{\"workload\":", "truncated"},
	    {"[]", "not an object"},
	    {"{\"version\":2,\"paths\":[]}", "unknown version"},
	    {"{\"version\":1}", "no paths"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":-1,\"denied\":1,"
	     "\"reasons\":{}}]}",
	     "a negative count"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":7,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{}}]}",
	     "first use after last use"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":0,\"denied\":1,"
	     "\"reasons\":{\"no_binding\":2}}]}",
	     "reasons adding up to more than denied"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":0,\"denied\":1,"
	     "\"reasons\":{\"No Binding\":1}}]}",
	     "a reason label that is not [a-z0-9_]"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\\u001b[2J\",\"binding\":null,\"source\":"
	     "null,\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{}}]}",
	     "a control character in a name"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\\u0000x\",\"binding\":null,\"source\":"
	     "null,\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{}}]}",
	     "a NUL in a name"},
	    {"{\"version\":1,\"paths\":[{\"workload\":5,\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{}}]}",
	     "a name that is a number"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{}},{\"workload\":\"w\",\"binding\":null,\"source\":null,\"service\":"
	     "null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,\"reasons\":{}}]}",
	     "the same path twice"},
	    {"{\"version\":1,\"version\":1,\"paths\":[]}", "a duplicate key"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{},\"usage_responses\":2}]}",
	     "more usage responses than injected requests"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{},\"usage_responses\":1,\"input_tokens\":-3}]}",
	     "negative token count"},
	    {"{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":null,"
	     "\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":0,"
	     "\"reasons\":{},\"output_tokens\":\"7\"}]}",
	     "token count as a string"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = load_text(bad[i].text, err, sizeof(err), &rows);
		ok(r == -EINVAL && rows == 0 && err[0], "corrupt (%s): -EINVAL, empty, \"%s\"",
		   bad[i].why, err);
	}
	/* a valid first row and a bad second one: nothing of the first is kept */
	ok(load_text(
	       "{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":"
	       "null,\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,\"denied\":"
	       "0,\"reasons\":{}},{}]}",
	       err, sizeof(err), &rows) == -EINVAL &&
	       rows == 0,
	   "all or nothing");
	ok(load_text("{\"version\":1,\"paths\":[]}", err, sizeof(err), &rows) == 0 && rows == 0,
	   "an empty inventory loads");
	ok(load_text("{\"version\":1,\"paths\":[{\"workload\":\"w\",\"binding\":null,\"source\":"
		     "null,\"service\":null,\"first_use\":5,\"last_use\":6,\"injected\":1,"
		     "\"denied\":0,\"reasons\":{}}]}",
		     err, sizeof(err), &rows) == 0 &&
	       rows == 1,
	   "a file written before the usage fields existed loads (%s)", err);
	unlink(file);
	back = NULL;
	inventory_new(0, &back);
	ok(inventory_load(back, file, err, sizeof(err)) == -ENOENT, "no file: -ENOENT");
	ok(symlink("/etc/passwd", file) == 0 &&
	       inventory_load(back, file, err, sizeof(err)) == -ELOOP,
	   "a symlink is not followed");
	unlink(file);
	inventory_free(back);

	/* concurrent updates: nothing lost */
	struct inventory *hv = NULL;
	pthread_t th[8];
	struct hammer hs[8];
	inventory_new(0, &hv);
	for (int i = 0; i < 8; i++) {
		hs[i] = (struct hammer){hv, i};
		pthread_create(&th[i], NULL, hammer, &hs[i]);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	dump(hv, &d);
	ok(d.rows == 4 &&
	       strstr(d.text, "spiffe://t/w0|b|s|svc|1000|20999|32000|8000|no_binding=8000,"),
	   "8 threads x 20000 records on 4 paths: exact counts\n%s", d.text);
	inventory_free(hv);

	inventory_free(inv);
	inventory_free(NULL);
	ok(tmpdir_remove(dir) == 0, "cleanup");
	return tap_done();
}
