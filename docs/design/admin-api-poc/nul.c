#include <stdio.h>
#include <string.h>
#include "frep/admin/v1/admin.pb-c.h"
int main(void)
{
	const uint8_t wire[] = { 0x0a, 4, 'd', 'b', 0, 'x' }; /* StatusRequest{volume: "db\0x"} */
	Frep__Admin__V1__StatusRequest *r = frep__admin__v1__status_request__unpack(NULL, sizeof(wire), wire);
	printf("unpack %s, volume='%s' (strlen %zu), repacked %zu of %zu bytes\n", r ? "ok" : "refused",
	       r ? r->volume : "", r ? strlen(r->volume) : 0, r ? protobuf_c_message_get_packed_size(&r->base) : 0,
	       sizeof(wire));
	frep__admin__v1__status_request__free_unpacked(r, NULL);
	return 0;
}
