/*
 * The one status model of a volume, in plain C: filled by each daemon's admin
 * binding (client/admin-master.c, server/admin-mirror.c) from a snapshot taken
 * under the volume's lock, then turned into the admin API's protobuf
 * (common/admin-pb.c), Prometheus text (common/metrics.c) and events. Status,
 * Watch and /metrics therefore report the same figures by construction.
 *
 * Mirrors proto/frep/admin/v1/admin.proto's VolumeStatus; enums hold that
 * file's values (frep.admin.v1.State, Role, Mode, OnBufferFull).
 */
#ifndef FREP_STATUS_H
#define FREP_STATUS_H

#include <stdbool.h>
#include <stdint.h>

enum status_limits {
	STATUS_NAME_MAX = 65,	  /* volume names: at most 64 bytes (spec) */
	STATUS_TEXT_MAX = 256,	  /* identities, addresses, ciphers */
	STATUS_ERROR_MAX = 1024,
};

struct status_progress {
	bool active;		/* a copy (or verify) runs: the fields below mean something */
	uint64_t done_bytes, total_bytes, rate_bps, eta_seconds;
};

struct status_peer {
	bool connected;
	char address[STATUS_TEXT_MAX];
	char identity[STATUS_TEXT_MAX];
	char cipher[STATUS_TEXT_MAX];
	uint32_t lanes;
	double compression_ratio;
	char compression[8];	 /* the algorithm the session negotiated: "none", "zstd", "lz4" */
	uint32_t protocol;	 /* the session's protocol version */
	uint64_t data_bytes, wire_bytes; /* copied and TX data sent, before and after compression */
};

struct status_error {
	bool set;
	char code[32];
	char message[STATUS_ERROR_MAX];
	int64_t time_unix_ms;
};

struct status_verify {
	uint64_t verify_id; /* 0: none since the daemon started */
	bool running, repair;
	struct status_progress progress;
	uint64_t mismatched_regions, repaired_regions;
	int64_t started_unix_ms, finished_unix_ms;
	char outcome[STATUS_TEXT_MAX];
};

/* A master fenced by a promotion elsewhere (admin.proto Fenced); set false otherwise. */
struct status_fenced {
	bool set;
	uint64_t epoch, txid;
	int64_t unix_ms, since_unix_ms;
	char message[STATUS_TEXT_MAX];
	uint64_t discard_tx, discard_bytes;
	bool serving;
};

/* A mirror copy promoted to primary (admin.proto Promotion); set false otherwise. */
struct status_promotion {
	bool set;
	uint64_t epoch, txid;
	int64_t unix_ms;
	char source[64];
	bool forced;
	uint64_t recovery_txid;
	int64_t recovery_unix_ms;
	char master_mode[8];
	char loss[STATUS_TEXT_MAX];
	char disconnected_master[STATUS_TEXT_MAX];
};

struct status_master {
	uint64_t committed_txid, acked_txid, applied_txid;
	uint64_t lag_tx, lag_bytes;
	double lag_seconds;
	uint64_t buffer_used_bytes, buffer_free_bytes;
	uint64_t write_rate_bps, send_rate_bps;
	struct status_progress copy;
	bool resync_full;
	uint64_t dirty_bytes;
	int mode, on_buffer_full; /* frep.admin.v1.Mode, OnBufferFull */
	bool degraded;
	struct status_peer peer;
	bool paused;
	uint64_t max_rate_bps;
	uint64_t full_waits, journal_appends, journal_syncs, cracks;
	uint64_t volume_size_bytes;
	bool outrun;
	uint64_t epoch;
	struct status_fenced fenced;
};

struct status_mirror {
	char owner_identity[STATUS_TEXT_MAX];
	bool consistent;
	uint64_t consistent_txid;
	int64_t consistent_unix_ms;
	uint64_t last_applied_txid;
	uint64_t journal_used_bytes, journal_size_bytes;
	struct status_peer connected_master;
	uint64_t volume_size_bytes;
	struct status_progress copy;
	uint32_t snapshots, snapshots_invalid, exports;
	uint64_t snapshot_bytes;
	char preallocate[8]; /* "full" or "sparse" */
	uint64_t epoch;
	struct status_promotion promotion;
};

/* A snapshot of a mirror volume (admin.proto Snapshot; kind is Snapshot.Kind). */
struct status_snapshot {
	char volume[STATUS_NAME_MAX];
	char name[STATUS_NAME_MAX];
	int kind;
	uint64_t txid;
	int64_t created_unix_ms;
	uint64_t used_bytes;
	bool valid;
	char invalid_reason[STATUS_TEXT_MAX];
	int64_t invalidated_unix_ms;
	bool exported;
	char export_nbd[STATUS_TEXT_MAX];
	char export_name[2 * STATUS_NAME_MAX];
	int64_t export_since_unix_ms;
	uint32_t export_pid;
};

struct vol_status {
	char name[STATUS_NAME_MAX];
	int role;  /* frep.admin.v1.Role */
	int state; /* frep.admin.v1.State */
	int64_t state_since_unix_ms;
	struct status_error last_error;
	struct status_verify verify;
	union {
		struct status_master master; /* role MASTER */
		struct status_mirror mirror; /* role MIRROR */
	};
};

#endif
