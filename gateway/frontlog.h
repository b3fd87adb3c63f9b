/*
 * gateway/frontlog.h: installs the gateway's log and metrics sinks in the
 * protocol fronts (state traces, per-recipient delivery records). Call once
 * at start, before any worker runs.
 */
#ifndef POSTERN_FRONTLOG_H
#define POSTERN_FRONTLOG_H

void gw_frontlog_install(void);

#endif
