/* cli — the vouch command's shared context and its client of vouchd's admin socket. */
#ifndef VOUCH_CLI_H
#define VOUCH_CLI_H

#include "config/agentconf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct cli {
	const char *conf_path;
	const char *admin_socket;
	struct agentconf cfg;
	bool json;
};

/* One request line to the agent's admin socket (path): the parsed answer object (the
 * caller owns it; it may be {"error": ...}), or NULL with a printable cause in err.
 * Answers are capped at 4 MiB; waits at most 10 s for each read. */
json_t *cli_admin_call(const char *path, json_t *req, char *err, size_t err_cap);

/* Subcommands: argv[0..argc) are the arguments after the command word; the return value
 * is the process exit status (0 ok, 1 failure, 2 usage). */
int cli_run(struct cli *c, int argc, char **argv);	  /* vouch run */
int cli_trust(struct cli *c, int argc, char **argv);	  /* vouch trust install|uninstall */
int cli_token_file(struct cli *c, int argc, char **argv); /* vouch token-file */
int cli_status(struct cli *c, int argc, char **argv);	  /* vouch status */
int cli_usage(struct cli *c, int argc, char **argv);	  /* vouch usage */
int cli_scan(struct cli *c, int argc, char **argv);	  /* vouch scan (scan.c) */
int cli_inventory(struct cli *c, int argc, char **argv);  /* vouch inventory */
/* vouch revoke (revoke) / vouch unrevoke (!revoke) */
int cli_revoke(struct cli *c, bool revoke, int argc, char **argv);

/* Table cells (status.c). Strings from the agent, and partly from workloads, must not
 * drive the terminal: cli_cell writes s (NULL: "-") into out with control characters
 * (C0, DEL, C1) as '?', cut to cap columns with "…" (cap <= 0: as long as out holds),
 * and returns its width in columns (UTF-8 continuation bytes take none). cli_put_cell
 * prints such a cell of width columns to stdout, padded to width when pad. */
#define CLI_CELL_MAX 1024
int cli_cell(const char *s, int cap, char out[static CLI_CELL_MAX]);
void cli_put_cell(const char *s, int width, bool pad);
/* A count ("-" when v is not an integer), and a duration in seconds, short ("59s",
 * "12m05s", "3h07m"; zero_text when not positive, "-" when not an integer). */
void cli_fmt_int(json_t *v, char *buf, size_t cap);
void cli_fmt_secs(json_t *v, char *buf, size_t cap, const char *zero_text);

#endif
