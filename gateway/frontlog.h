/*
 * gateway/frontlog.h: installs the gateway's log and metrics sink for the
 * delivery front's per-recipient records. Call once at start, before any
 * worker runs.
 */
#ifndef POSTERN_FRONTLOG_H
#define POSTERN_FRONTLOG_H

void gw_frontlog_install(void);

#endif
