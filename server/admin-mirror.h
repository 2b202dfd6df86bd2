/* frep-server's side of the admin API: admin_ops over the data dir (ctx: struct mirror_server). */
#ifndef FREP_ADMIN_MIRROR_H
#define FREP_ADMIN_MIRROR_H

#include "admin.h"
#include "session.h"

extern const struct admin_ops admin_mirror_ops;

#endif
