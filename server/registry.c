/* Live sessions' volumes for the admin API: see registry.h. */
#include <pthread.h>
#include <string.h>

#include "registry.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct mirror_live *head;

void registry_add(struct mirror_live *l, const struct vol_status *st)
{
	pthread_mutex_lock(&mu);
	l->st = *st;
	l->next = head;
	head = l;
	pthread_mutex_unlock(&mu);
}

void registry_remove(struct mirror_live *l)
{
	pthread_mutex_lock(&mu);
	for (struct mirror_live **p = &head; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			break;
		}
	pthread_mutex_unlock(&mu);
}

void registry_update(struct mirror_live *l, const struct vol_status *st)
{
	pthread_mutex_lock(&mu);
	l->st = *st;
	pthread_mutex_unlock(&mu);
}

bool registry_get(const char *volume, struct vol_status *out)
{
	bool found = false;
	pthread_mutex_lock(&mu);
	for (struct mirror_live *l = head; l && !found; l = l->next)
		if (strcmp(l->st.name, volume) == 0) {
			*out = l->st;
			found = true;
		}
	pthread_mutex_unlock(&mu);
	return found;
}

bool registry_fence(const char *volume, const struct fence_order *o)
{
	bool found = false;
	pthread_mutex_lock(&mu);
	for (struct mirror_live *l = head; l && !found; l = l->next)
		if (strcmp(l->st.name, volume) == 0) {
			l->order = *o;
			__atomic_store_n(&l->fence, true, __ATOMIC_RELEASE);
			found = true;
		}
	pthread_mutex_unlock(&mu);
	return found;
}

bool registry_fence_taken(struct mirror_live *l, struct fence_order *o)
{
	/* Checked at every step of the session: no lock until an order is there. */
	if (!__atomic_load_n(&l->fence, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&mu);
	*o = l->order;
	l->fence = false;
	pthread_mutex_unlock(&mu);
	return true;
}
