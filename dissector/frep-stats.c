/*
 * Statistics over frep frames: a tap named "frep" with one record per frame,
 * and a stats tree on it (tshark -z frep,tree; Statistics > frep in the GUI):
 *
 *   Messages by type        frames per type; average, min and max frame size
 *   KiB by type             header, body and trailer bytes per type
 *   Acknowledgement latency TX -> TX_ACK, copy record -> COPY_ACK, heartbeat
 *                           round trip: one value per request, in ms
 *   Trailers                frames with a trailer; how many went compressed, and
 *                           the KiB of trailer on the wire and of data they carry
 *
 * Stats tree counters are 32-bit: bytes would wrap after 2 GiB of copy data,
 * so the byte totals are kept here, per tree, and shown in KiB.
 */
#include "frep-stats.h"

#include <epan/stats_tree.h>
#include <epan/tap.h>

#include "wire.h"

struct tap_rec {
	guint8 type;
	guint32 bytes;
	guint32 trailer_bytes; /* on the wire */
	guint32 data_bytes;    /* the trailer's data, decompressed */
	gboolean compressed;
	struct frep_latencies lat;
};

/* Byte totals of one open tree. */
struct totals {
	guint64 by_type[FREP_MSG__MAX + 1];
	guint64 trailer, data;
};

static int frep_tap = -1;

static const char st_messages[] = "Messages by type";
static const char st_kib[] = "KiB by type";
static const char st_latency[] = "Acknowledgement latency (ms)";
static const char st_trailers[] = "Trailers";
static const char st_compressed[] = "compressed";
static const char st_wire_kib[] = "KiB on the wire";
static const char st_data_kib[] = "KiB of data";
static const char *const st_lat_names[] = {
	[FREP_LAT_TX] = "TX -> TX_ACK",
	[FREP_LAT_COPY] = "COPY_DATA/COPY_HOLE -> COPY_ACK",
	[FREP_LAT_HEARTBEAT] = "HEARTBEAT -> echo (round trip)",
	[FREP_LAT_VERIFY] = "VERIFY -> VERIFY_RESULT",
};

/* Byte totals of each open tree: stats_tree * -> struct totals. */
static GHashTable *byte_totals;

static void tree_init(stats_tree *st)
{
	int messages = stats_tree_create_node(st, st_messages, 0, STAT_DT_INT, TRUE);
	int kib = stats_tree_create_node(st, st_kib, 0, STAT_DT_INT, TRUE);
	int latency = stats_tree_create_node(st, st_latency, 0, STAT_DT_INT, TRUE);
	int trailers = stats_tree_create_node(st, st_trailers, 0, STAT_DT_INT, TRUE);

	/* Every type and latency listed, even at 0, so a missing one is visible. */
	for (unsigned t = 1; t <= FREP_MSG__MAX; t++) {
		stats_tree_create_node(st, frep_msg_name(t), messages, STAT_DT_INT, FALSE);
		stats_tree_create_node(st, frep_msg_name(t), kib, STAT_DT_INT, FALSE);
	}
	for (unsigned k = FREP_LAT_TX; k <= FREP_LAT_VERIFY; k++)
		stats_tree_create_node(st, st_lat_names[k], latency, STAT_DT_FLOAT, FALSE);
	stats_tree_create_node(st, st_compressed, trailers, STAT_DT_INT, FALSE);
	stats_tree_create_node(st, st_wire_kib, trailers, STAT_DT_INT, FALSE);
	stats_tree_create_node(st, st_data_kib, trailers, STAT_DT_INT, FALSE);
	if (!byte_totals)
		byte_totals = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
	g_hash_table_insert(byte_totals, st, g_new0(struct totals, 1));
}

static void tree_cleanup(stats_tree *st)
{
	if (byte_totals)
		g_hash_table_remove(byte_totals, st);
}

static gint kib(guint64 bytes)
{
	return (gint)MIN(bytes >> 10, (guint64)G_MAXINT);
}

static tap_packet_status tree_packet(stats_tree *st, packet_info *pinfo, epan_dissect_t *edt,
				     const void *data, tap_flags_t flags)
{
	const struct tap_rec *r = data;
	struct totals *totals = byte_totals ? g_hash_table_lookup(byte_totals, st) : NULL;
	const char *name = frep_msg_name(r->type);
	unsigned t = r->type <= FREP_MSG__MAX ? r->type : 0;
	int node;

	node = tick_stat_node(st, st_messages, 0, TRUE);
	avg_stat_node_add_value_int(st, name, node, FALSE, (gint)MIN(r->bytes, (guint32)G_MAXINT));
	if (totals) {
		guint64 all = 0;

		totals->by_type[t] += r->bytes;
		for (unsigned i = 0; i <= FREP_MSG__MAX; i++)
			all += totals->by_type[i];
		node = set_stat_node(st, st_kib, 0, TRUE, kib(all));
		set_stat_node(st, name, node, FALSE, kib(totals->by_type[t]));
	}
	if (r->trailer_bytes) {
		node = tick_stat_node(st, st_trailers, 0, TRUE);
		if (r->compressed)
			tick_stat_node(st, st_compressed, node, FALSE);
		if (totals) {
			totals->trailer += r->trailer_bytes;
			totals->data += r->data_bytes;
			set_stat_node(st, st_wire_kib, node, FALSE, kib(totals->trailer));
			set_stat_node(st, st_data_kib, node, FALSE, kib(totals->data));
		}
	}
	if (r->lat.kind != FREP_LAT_NONE) {
		node = increase_stat_node(st, st_latency, 0, TRUE, (gint)r->lat.n);
		for (unsigned i = 0; i < r->lat.n; i++)
			avg_stat_node_add_value_float(st, st_lat_names[r->lat.kind], node, FALSE,
						      (gfloat)nstime_to_msec(&r->lat.t[i]));
	}
	return TAP_PACKET_REDRAW;
}

void frep_stats_register(void)
{
	frep_tap = register_tap("frep");
	stats_tree_register_plugin("frep", "frep", "frep", 0, tree_packet, tree_init, tree_cleanup);
}

void frep_stats_tap(packet_info *pinfo, unsigned type, guint32 frame_bytes,
		    const struct frep_trailer *tr, const struct frep_latencies *lat)
{
	struct tap_rec *r;

	if (!have_tap_listener(frep_tap))
		return;
	r = wmem_new(pinfo->pool, struct tap_rec);
	r->type = (guint8)type;
	r->bytes = frame_bytes;
	r->compressed = tr->compressed;
	/* The data a trailer carries; what was sent, for one that could not be decompressed. */
	r->trailer_bytes = tr->trailer_len;
	r->data_bytes = tr->data_known ? tr->data_len : tr->trailer_len;
	r->lat = *lat;
	tap_queue_packet(frep_tap, pinfo, r);
}
