/* frep-client's side of the admin API: admin_ops over one struct master (ctx). */
#ifndef FREP_ADMIN_MASTER_H
#define FREP_ADMIN_MASTER_H

#include "admin.h"
#include "master.h"

extern const struct admin_ops admin_master_ops;

/* The volume's status, copied under m->lock (Status, Watch and metrics share it). */
void master_status(struct master *m, struct vol_status *v);

#endif
