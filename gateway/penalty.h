/*
 * gateway/penalty.h: failed-login delay per client IP (Dovecot's shape:
 * initial delay, doubling per failure, capped; forgotten after a quiet
 * period). One process-wide table of bounded size, under a mutex; when full,
 * the stalest entry is replaced.
 */
#ifndef POSTERN_PENALTY_H
#define POSTERN_PENALTY_H

struct gw_penalty_conf {
	unsigned initial_ms;
	unsigned max_ms;
	unsigned forget_s;
};

/* Records a failed login from ip and returns the delay (ms) to wait before
 * answering it: initial_ms for the first failure, doubled for each further
 * one within forget_s, at most max_ms. */
unsigned gw_penalty_fail(const char *ip, const struct gw_penalty_conf *conf);

/* Current penalty for ip without recording anything (0 when none). */
unsigned gw_penalty_peek(const char *ip, const struct gw_penalty_conf *conf);

#endif
