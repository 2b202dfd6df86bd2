/*
 * frepctl --json: any protobuf-c message to json-c by walking its descriptor,
 * so a field added to admin.proto shows up in the JSON without a line here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frepctl.h"

/*
 * A double in 15 significant digits, always with a point or an exponent, so
 * 0.4 prints as 0.4 (json-c's default, %.17g, prints 0.40000000000000002) and
 * a whole number stays a JSON float (1.0). JSON has no NaN or infinity: null.
 */
static struct json_object *number(double d)
{
	char buf[64];
	if (!isfinite(d))
		return NULL;
	int n = snprintf(buf, sizeof(buf), "%.15g", d);
	if (!strpbrk(buf, ".e"))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ".0");
	return json_object_new_double_s(d, buf);
}

static struct json_object *scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return json_object_new_int(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return json_object_new_int64(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return json_object_new_int64(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		/* Exact: TXIDs and byte counts go past 2^53, where doubles round. */
		return json_object_new_uint64(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT:
		return number(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return number(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return json_object_new_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		/* A value newer than this frepctl: its number, as proto3 JSON does. */
		return ev ? json_object_new_string(ev->name) : json_object_new_int(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return json_object_new_string(s ? s : "");
	}
	case PROTOBUF_C_TYPE_BYTES: {
		/* Hex: admin.proto has no bytes field today; this keeps the walk total. */
		const ProtobufCBinaryData *b = p;
		char *hex = malloc(b->len * 2 + 1);
		for (size_t i = 0; i < b->len; i++)
			snprintf(hex + 2 * i, 3, "%02x", b->data[i]);
		hex[b->len * 2] = '\0';
		struct json_object *o = json_object_new_string(hex);
		free(hex);
		return o;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		return pb_to_json(*(const ProtobufCMessage *const *)p);
	}
	return NULL;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
		return 4;
	case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(void *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	}
	return 0;
}

/* Whether a singular field is set: oneof cases, sub-messages, proto2 has_ flags; proto3 scalars
 * always are. */
static bool present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)m;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
	if (f->type == PROTOBUF_C_TYPE_MESSAGE) /* absent: left out, rather than null */
		return *(void *const *)(base + f->offset) != NULL;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
	    f->type != PROTOBUF_C_TYPE_STRING)
		return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
	return true;
}

struct json_object *pb_to_json(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	struct json_object *o = json_object_new_object();
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		struct json_object *v;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *elems = *(const char *const *)(base + f->offset);
			v = json_object_new_array_ext((int)n);
			for (size_t k = 0; k < n; k++)
				json_object_array_add(v, scalar(f, elems + k * elem_size(f)));
		} else {
			if (!present(m, f))
				continue;
			v = scalar(f, base + f->offset);
		}
		json_object_object_add(o, f->name, v); /* NULL: null */
	}
	return o;
}
