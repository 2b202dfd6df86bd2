/*
 * The status model (status.h) as admin API messages. A struct pb_vol holds
 * every sub-message of one VolumeStatus; its strings point into the struct
 * vol_status it was made from, which must outlive the packing.
 */
#ifndef FREP_ADMIN_PB_H
#define FREP_ADMIN_PB_H

#include "frep/admin/v1/admin.pb-c.h"
#include "status.h"

struct pb_vol {
	Frep__Admin__V1__VolumeStatus vs;
	Frep__Admin__V1__Error error;
	Frep__Admin__V1__VerifyStatus verify;
	Frep__Admin__V1__Progress verify_progress, copy;
	Frep__Admin__V1__MasterStatus master;
	Frep__Admin__V1__MirrorStatus mirror;
	Frep__Admin__V1__Peer peer;
	Frep__Admin__V1__Fenced fenced;
	Frep__Admin__V1__Promotion promotion;
};

/* Fills p from v and returns &p->vs. */
Frep__Admin__V1__VolumeStatus *status_to_pb(const struct vol_status *v, struct pb_vol *p);
void verify_to_pb(const struct status_verify *v, Frep__Admin__V1__VerifyStatus *out,
		  Frep__Admin__V1__Progress *progress);

struct pb_snapshot {
	Frep__Admin__V1__Snapshot snap;
	Frep__Admin__V1__SnapshotExport exp;
};

/* Fills p from s (whose strings it points to) and returns &p->snap. */
Frep__Admin__V1__Snapshot *snapshot_to_pb(const struct status_snapshot *s, struct pb_snapshot *p);

#endif
