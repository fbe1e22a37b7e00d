/*
 * medsentry_ratelimit: a Mosquitto 2.0 plugin that bounds what one client may
 * publish, so that one client certificate (a stolen device key) can never
 * flood the collector's receive path and delay other devices' records
 * (issue 11). Mosquitto 2.0 has no per-client rate limit of its own.
 *
 * Every PUBLISH a client sends passes the broker's ACL check (MOSQ_ACL_WRITE)
 * before it is routed; this plugin is consulted there. Per client id (= the
 * certificate CN: use_identity_as_username + use_username_as_clientid) it
 * keeps a token bucket: `rate` messages per second, up to `burst` at once.
 * Within the bucket it defers (the ACL file decides as before); beyond it the
 * message is denied, i.e. dropped before any subscriber sees it (a QoS 1
 * message is still acknowledged to the sender: MQTT 3.1.1 has no refusal).
 * What it drops is counted per client and reported, once a second from the
 * broker's loop (MOSQ_EVT_TICK) for each client that dropped more since its
 * last report, as a broker message on `notify_topic` (JSON: client, shed =
 * running total, rate, burst), which the collector turns into the
 * telemetry_flood alert, and in the broker log.
 *
 * Options (mosquitto.conf, after `plugin <path to this .so>`):
 *   plugin_opt_rate N          messages per second per client (default 500)
 *   plugin_opt_burst N         bucket size (default 2000)
 *   plugin_opt_notify_topic T  where drops are reported (default medsentry/broker/shed)
 *   plugin_opt_max_clients N   clients tracked (default 32768); beyond that all
 *                              further clients share one bucket (fail closed)
 *
 * Written by hand (no library offers this for Mosquitto 2.0); built by
 * host_tools/broker/plugin.py with the system C compiler against the Debian
 * mosquitto-dev headers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define ID_MAX 128

struct bucket {
	char id[ID_MAX];
	double tokens;
	double last;          /* monotonic seconds of the last refill */
	unsigned long long shed;      /* messages dropped, in all */
	unsigned long long reported;  /* shed as of the last report */
	int used;
	int dirty;            /* in the dirty list: shed more since the last report */
};

static mosquitto_plugin_id_t *plugin_id;
static struct bucket *table;
static struct bucket overflow;
static size_t capacity = 32768;
static double rate = 500.0;
static double burst = 2000.0;
static char notify_topic[256] = "medsentry/broker/shed";
#define DIRTY_MAX 4096
static struct bucket *dirty[DIRTY_MAX];
static size_t n_dirty;
static double last_flush;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long fnv1a(const char *s)
{
	unsigned long long h = 1469598103934665603ULL;
	while(*s){
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct bucket *bucket_for(const char *id, double t)
{
	size_t i, n;
	struct bucket *b;

	if(strlen(id) >= ID_MAX){
		return &overflow;
	}
	i = (size_t)(fnv1a(id) % capacity);
	for(n = 0; n < capacity; n++){
		b = &table[(i + n) % capacity];
		if(!b->used){
			b->used = 1;
			strcpy(b->id, id);
			b->tokens = burst;
			b->last = t;
			return b;
		}
		if(!strcmp(b->id, id)){
			return b;
		}
	}
	return &overflow;
}

static void report(struct bucket *b)
{
	char msg[ID_MAX + 160];
	const char *id = b == &overflow ? "*" : b->id;
	int len;

	len = snprintf(msg, sizeof(msg), "{\"client\":\"%s\",\"shed\":%llu,\"rate\":%.0f,\"burst\":%.0f}",
			id, b->shed, rate, burst);
	if(len <= 0 || (size_t)len >= sizeof(msg)){
		return;
	}
	mosquitto_log_printf(MOSQ_LOG_WARNING, "medsentry_ratelimit: client %s over %.0f msg/s: %llu dropped in all",
			id, rate, b->shed);
	if(mosquitto_broker_publish_copy(NULL, notify_topic, len, msg, 1, false, NULL) == MOSQ_ERR_SUCCESS){
		b->reported = b->shed;
	}
}

static void mark_dirty(struct bucket *b)
{
	if(b->dirty){
		return;
	}
	/* More than DIRTY_MAX clients shedding within one second: the others
	 * are marked when they drop again after the next report. */
	if(n_dirty < DIRTY_MAX){
		b->dirty = 1;
		dirty[n_dirty++] = b;
	}
}

static int on_tick(int event, void *event_data, void *userdata)
{
	size_t i, keep = 0;
	double t = now_s();

	(void)event;
	(void)event_data;
	(void)userdata;
	if(n_dirty == 0 || t - last_flush < 1.0){
		return MOSQ_ERR_SUCCESS;
	}
	last_flush = t;
	for(i = 0; i < n_dirty; i++){
		report(dirty[i]);
		if(dirty[i]->reported != dirty[i]->shed){
			dirty[keep++] = dirty[i];  /* not published (out of memory): next tick */
		}else{
			dirty[i]->dirty = 0;
		}
	}
	n_dirty = keep;
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *id;
	struct bucket *b;
	double t;

	(void)event;
	(void)userdata;
	if(ed->access != MOSQ_ACL_WRITE){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	id = mosquitto_client_id(ed->client);
	if(id == NULL){
		return MOSQ_ERR_ACL_DENIED;
	}
	t = now_s();
	b = bucket_for(id, t);
	b->tokens += (t - b->last) * rate;
	if(b->tokens > burst){
		b->tokens = burst;
	}
	b->last = t;
	if(b->tokens >= 1.0){
		b->tokens -= 1.0;
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	b->shed++;
	mark_dirty(b);
	return MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

static int positive(const char *key, const char *value, double *out)
{
	char *end;
	double v = strtod(value, &end);

	if(*value == '\0' || *end != '\0' || !(v >= 1.0) || v > 1e9){
		mosquitto_log_printf(MOSQ_LOG_ERR, "medsentry_ratelimit: %s must be a number >= 1, not \"%s\"", key, value);
		return 0;
	}
	*out = v;
	return 1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	int i;
	double v;

	(void)userdata;
	for(i = 0; i < opt_count; i++){
		if(!strcmp(opts[i].key, "rate")){
			if(!positive(opts[i].key, opts[i].value, &rate)) return MOSQ_ERR_INVAL;
		}else if(!strcmp(opts[i].key, "burst")){
			if(!positive(opts[i].key, opts[i].value, &burst)) return MOSQ_ERR_INVAL;
		}else if(!strcmp(opts[i].key, "max_clients")){
			if(!positive(opts[i].key, opts[i].value, &v)) return MOSQ_ERR_INVAL;
			capacity = (size_t)v;
		}else if(!strcmp(opts[i].key, "notify_topic")){
			if(strlen(opts[i].value) == 0 || strlen(opts[i].value) >= sizeof(notify_topic)
					|| strpbrk(opts[i].value, "+#")){
				mosquitto_log_printf(MOSQ_LOG_ERR, "medsentry_ratelimit: bad notify_topic");
				return MOSQ_ERR_INVAL;
			}
			strcpy(notify_topic, opts[i].value);
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "medsentry_ratelimit: unknown option %s", opts[i].key);
			return MOSQ_ERR_INVAL;
		}
	}
	table = calloc(capacity, sizeof(*table));
	if(table == NULL){
		return MOSQ_ERR_NOMEM;
	}
	overflow.tokens = burst;
	overflow.last = now_s();
	plugin_id = identifier;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "medsentry_ratelimit: %.0f msg/s per client, burst %.0f, drops on %s",
			rate, burst, notify_topic);
	last_flush = now_s();
	if(mosquitto_callback_register(plugin_id, MOSQ_EVT_TICK, on_tick, NULL, NULL) != MOSQ_ERR_SUCCESS){
		return MOSQ_ERR_UNKNOWN;
	}
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_TICK, on_tick, NULL);
	free(table);
	table = NULL;
	return MOSQ_ERR_SUCCESS;
}
