/* log — process-level diagnostics to stderr (STYLE.md §10: only process-level code logs).
 * Never pass a secret to these functions; log secret_fingerprint() instead. */
#ifndef VOUCH_LOG_H
#define VOUCH_LOG_H

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };

/* Messages below lvl are dropped. Default: LOG_LVL_INFO. */
void log_set_level(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)

#endif
