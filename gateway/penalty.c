/*
 * gateway/penalty.c: failed-login delays per client IP.
 */
#include "gateway/penalty.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PENALTY_SLOTS 4096
#define PENALTY_PROBE 8
#define PENALTY_IP_MAX 46

struct penalty_entry {
	char ip[PENALTY_IP_MAX];
	unsigned failures;
	time_t last;
};

static struct penalty_entry slots[PENALTY_SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint32_t hash_ip(const char *ip)
{
	uint32_t h = 2166136261u;   /* FNV-1a */
	for (; *ip != '\0'; ip++)
		h = (h ^ (unsigned char)*ip) * 16777619u;
	return h;
}

static time_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1;   /* never 0: 0 marks a free slot */
}

static unsigned delay_for(unsigned failures, const struct gw_penalty_conf *conf)
{
	unsigned ms = conf->initial_ms;
	for (unsigned i = 1; i < failures && ms < conf->max_ms; i++)
		ms = ms > conf->max_ms / 2 ? conf->max_ms : ms * 2;
	return ms < conf->max_ms ? ms : conf->max_ms;
}

/* Finds ip's slot, or the best slot to take for it (free, expired or
 * stalest within the probe window). Called with the lock held. */
static struct penalty_entry *find_slot(const char *ip, time_t now,
				       const struct gw_penalty_conf *conf, int *found_r)
{
	uint32_t h = hash_ip(ip);
	struct penalty_entry *victim = NULL;

	for (unsigned i = 0; i < PENALTY_PROBE; i++) {
		struct penalty_entry *e = &slots[(h + i) % PENALTY_SLOTS];
		int live = e->last != 0 && now - e->last < (time_t)conf->forget_s;
		if (live && strcmp(e->ip, ip) == 0) {
			*found_r = 1;
			return e;
		}
		if (!live) {
			if (victim == NULL || victim->last != 0)
				victim = e;
		} else if (victim == NULL || (victim->last != 0 && e->last < victim->last)) {
			victim = e;
		}
	}
	*found_r = 0;
	return victim;
}

unsigned gw_penalty_fail(const char *ip, const struct gw_penalty_conf *conf)
{
	time_t now = now_s();
	struct penalty_entry *e;
	unsigned ms;
	int found;

	if (conf->initial_ms == 0)
		return 0;
	pthread_mutex_lock(&lock);
	e = find_slot(ip, now, conf, &found);
	if (!found) {
		snprintf(e->ip, sizeof(e->ip), "%s", ip);
		e->failures = 0;
	}
	if (e->failures < 64)
		e->failures++;
	e->last = now;
	ms = delay_for(e->failures, conf);
	pthread_mutex_unlock(&lock);
	return ms;
}

unsigned gw_penalty_peek(const char *ip, const struct gw_penalty_conf *conf)
{
	struct penalty_entry *e;
	unsigned ms = 0;
	int found;

	if (conf->initial_ms == 0)
		return 0;
	pthread_mutex_lock(&lock);
	e = find_slot(ip, now_s(), conf, &found);
	if (found)
		ms = delay_for(e->failures, conf);
	pthread_mutex_unlock(&lock);
	return ms;
}
