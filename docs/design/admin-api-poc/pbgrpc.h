/* PoC glue between protobuf-c messages and gRPC core byte buffers. */
#ifndef PBGRPC_H
#define PBGRPC_H

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <string.h>

#include "frep/admin/v1/admin.pb-c.h"

/* One slice holding the packed message; the byte buffer takes its own ref. */
static inline grpc_byte_buffer *pb_to_bb(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	grpc_slice s = grpc_slice_malloc(n);
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* NULL on a missing or malformed message. readall also undoes gRPC compression. */
static inline ProtobufCMessage *bb_to_pb(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
					 size_t *wire_len)
{
	grpc_byte_buffer_reader r;
	if (!bb || !grpc_byte_buffer_reader_init(&r, bb))
		return NULL;
	grpc_slice s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	if (wire_len)
		*wire_len = GRPC_SLICE_LENGTH(s);
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return m;
}

/* "/frep.admin.v1.Admin/Status" from the protoc-c service descriptor, so the
 * paths come from the .proto rather than from hand-typed strings. */
static inline void method_path(char *out, size_t len, unsigned i)
{
	const ProtobufCServiceDescriptor *sd = &frep__admin__v1__admin__descriptor;
	snprintf(out, len, "/%s/%s", sd->name, sd->methods[i].name);
}

#endif
