/* The messenger engine from C: two engines in one process, a message each
 * way with its delivery events, and every wrong input. argv[1] is a
 * temporary directory for the two state directories. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

static int64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct node {
	const char *name;
	uint64_t id, e;
	int messages, delivered;
	char last_text[256];
};

/* Moves every waiting packet to the engine its address names, and reads
 * every event; returns how many packets moved. */
static int pump(struct node *n, int count, int64_t t) {
	int moved = 0;
	for (int i = 0; i < count; i++) {
		for (;;) {
			char link[LM_LINK_MAX + 1], addr[LM_ADDR_MAX + 1];
			uint8_t pkt[2048];
			size_t nl = sizeof link, na = sizeof addr, np = sizeof pkt;
			int have = 0;
			OK(lm_engine_next_packet(n[i].e, link, &nl, addr, &na, pkt, &np, &have));
			if (!have)
				break;
			REQUIRE(strcmp(link, "udp") == 0 && np > 0 && np <= 1200);
			for (int j = 0; j < count; j++)
				if (strcmp(n[j].name, addr) == 0) {
					OK(lm_engine_receive(n[j].e, t, "udp", n[i].name, pkt, np));
					moved++;
				}
		}
		for (;;) {
			lm_event ev;
			uint8_t data[512];
			size_t nd = sizeof data;
			int have = 0;
			OK(lm_engine_next_event(n[i].e, &ev, data, &nd, &have));
			if (!have)
				break;
			REQUIRE(memchr(ev.contact, 0, sizeof ev.contact) != NULL);
			if (ev.kind == LM_EVENT_MESSAGE) {
				REQUIRE(nd < sizeof n[i].last_text);
				memcpy(n[i].last_text, data, nd);
				n[i].last_text[nd] = 0;
				REQUIRE(ev.sent_ms > 0 && ev.sent_ms <= ev.time_ms + 1000);
				n[i].messages++;
			}
			if (ev.kind == LM_EVENT_DELIVERY && ev.state == LM_DELIVERY_DELIVERED)
				n[i].delivered++;
		}
	}
	return moved;
}

int main(int argc, char **argv) {
	REQUIRE(argc == 2);
	char dir[2][512];
	struct node n[2] = {{.name = "alice"}, {.name = "bob"}};
	uint8_t card[2][512];
	size_t cl[2];
	uint8_t seed[LM_SEED_SIZE];
	memset(seed, 0x5a, sizeof seed);
	for (int i = 0; i < 2; i++) {
		snprintf(dir[i], sizeof dir[i], "%s/%s", argv[1], n[i].name);
		if (i == 0)
			OK(lm_identity_from_seed(seed, sizeof seed, &n[i].id));
		else
			OK(lm_identity_generate(&n[i].id));
		OK(lm_engine_open(n[i].id, dir[i], now_ms(), &n[i].e));
		OK(lm_engine_add_link(n[i].e, "udp", LM_LINK_UDP, 0));
		cl[i] = sizeof card[i];
		OK(lm_card_create(n[i].id, n[i].name, card[i], &cl[i]));
	}
	int result = 0;
	OK(lm_engine_contact_add(n[0].e, "bob", card[1], cl[1], 0, &result));
	REQUIRE(result == LM_IMPORT_NEW);
	OK(lm_engine_contact_add(n[1].e, "alice", card[0], cl[0], 0, &result));
	OK(lm_engine_contact_add(n[1].e, "alice", card[0], cl[0], 0, &result));
	REQUIRE(result == LM_IMPORT_UNCHANGED);
	OK(lm_engine_contact_set_addr(n[0].e, "bob", "udp", "bob"));
	OK(lm_engine_contact_set_addr(n[1].e, "alice", "udp", "alice"));

	/* A second engine on the same directory: LM_ERR_IN_USE. */
	uint64_t again = 0;
	CHECK(lm_engine_open(n[0].id, dir[0], now_ms(), &again), LM_ERR_IN_USE);
	REQUIRE(again == 0 && strstr(last_error(), "process") != NULL);

	uint64_t mid = 0;
	const char *text = "hello from C";
	OK(lm_engine_send(n[0].e, now_ms(), "bob", (const uint8_t *)text, strlen(text), &mid));
	REQUIRE(mid != 0);
	for (int round = 0; round < 50 && (n[1].messages < 1 || n[0].delivered < 1); round++) {
		pump(n, 2, now_ms());
		int64_t d = 0;
		OK(lm_engine_deadline(n[0].e, &d));
		struct timespec sl = {0, 5 * 1000 * 1000};
		nanosleep(&sl, NULL);
		for (int i = 0; i < 2; i++)
			OK(lm_engine_tick(n[i].e, now_ms()));
	}
	REQUIRE(n[1].messages == 1 && strcmp(n[1].last_text, text) == 0);
	REQUIRE(n[0].delivered == 1);

	/* The contact list: tab-separated lines. */
	char list[1024];
	size_t ll = 8;
	CHECK(lm_engine_contacts(n[0].e, list, &ll), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(ll > 8);
	ll = sizeof list;
	OK(lm_engine_contacts(n[0].e, list, &ll));
	REQUIRE(strncmp(list, "bob\tbob\t", 8) == 0 && strchr(list, '\n') != NULL);

	/* A too-small packet buffer takes nothing: the packet waits. */
	OK(lm_engine_send(n[1].e, now_ms(), "alice", (const uint8_t *)"back", 4, &mid));
	char link[LM_LINK_MAX + 1], addr[LM_ADDR_MAX + 1];
	uint8_t small[4];
	size_t nl = sizeof link, na = sizeof addr, np = sizeof small;
	int have = -1;
	CHECK(lm_engine_next_packet(n[1].e, link, &nl, addr, &na, small, &np, &have), LM_ERR_BUFFER_TOO_SMALL);
	REQUIRE(np > sizeof small);
	for (int round = 0; round < 50 && n[0].messages < 1; round++) {
		pump(n, 2, now_ms());
		struct timespec sl = {0, 5 * 1000 * 1000};
		nanosleep(&sl, NULL);
		for (int i = 0; i < 2; i++)
			OK(lm_engine_tick(n[i].e, now_ms()));
	}
	REQUIRE(n[0].messages == 1 && strcmp(n[0].last_text, "back") == 0);

	/* Several addresses: a second link, a list back, a failure reported. */
	OK(lm_engine_add_link(n[0].e, "tor", LM_LINK_STREAM, 0));
	OK(lm_engine_link_deadline(n[0].e, "tor", 60000));
	CHECK(lm_engine_link_deadline(n[0].e, "nolink", 60000), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_link_deadline(n[0].e, "tor", 0), LM_ERR_INVALID_ARG);
	const char *links[] = {"udp", "tor"};
	const char *places[] = {"bob", "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"};
	OK(lm_engine_contact_set_addrs(n[0].e, "bob", links, places, 2));
	char addrs[512];
	size_t al = sizeof addrs;
	OK(lm_engine_contact_addrs(n[0].e, "bob", addrs, &al));
	REQUIRE(strcmp(addrs, "udp\tbob\ntor\t2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion\n") == 0);
	REQUIRE(al == strlen(addrs) + 1);
	const char *nolink[] = {"udp", "radio"};
	CHECK(lm_engine_contact_set_addrs(n[0].e, "bob", nolink, places, 2), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_contact_set_addrs(n[0].e, "bob", NULL, places, 2), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_contact_set_addrs(n[0].e, "bob", links, places, 17), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_contact_addrs(n[0].e, "nobody", addrs, &al), LM_ERR_NOT_FOUND);
	/* bob was last heard at udp:bob: reported unreachable, alice forgets it. */
	OK(lm_engine_unreachable(n[0].e, now_ms(), "udp", "bob", "connection refused"));
	ll = sizeof list;
	OK(lm_engine_contacts(n[0].e, list, &ll));
	REQUIRE(strstr(list, "\tudp\tbob\n") == NULL);
	CHECK(lm_engine_unreachable(n[0].e, now_ms(), "udp", "bob", "two\nlines"), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_unreachable(n[0].e, now_ms(), "udp", "bob", NULL), LM_ERR_INVALID_ARG);
	OK(lm_engine_contact_set_addrs(n[0].e, "bob", links, places, 1));

	/* Wrong inputs. */
	CHECK(lm_engine_open(n[0].id, NULL, 0, &again), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_open(12345, dir[0], 0, &again), LM_ERR_HANDLE);
	CHECK(lm_engine_add_link(n[0].e, "x", 99, 0), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_add_link(n[0].e, "bad\tname", LM_LINK_UDP, 0), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_contact_add(n[0].e, "../etc", card[1], cl[1], 0, &result), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_contact_add(n[0].e, "me", card[0], cl[0], 0, &result), LM_ERR_CONFLICT);
	uint8_t junk[] = {0x83, 0x05, 0x00};
	CHECK(lm_engine_contact_add(n[0].e, "junk", junk, sizeof junk, 0, &result), LM_ERR_BAD_CARD);
	CHECK(lm_engine_contact_add(n[0].e, "x", card[1], cl[1], 7, &result), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_contact_verify(n[0].e, "bob", "AAAA-BBBB-CCCC-DDDD"), LM_ERR_AUTH);
	CHECK(lm_engine_send(n[0].e, now_ms(), "nobody", (const uint8_t *)"x", 1, &mid), LM_ERR_NOT_FOUND);
	CHECK(lm_engine_send(n[0].e, now_ms(), "bob", NULL, 5, &mid), LM_ERR_INVALID_ARG);
	static uint8_t huge[20000];
	CHECK(lm_engine_send(n[0].e, now_ms(), "bob", huge, sizeof huge, &mid), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_receive(n[0].e, now_ms(), "udp", "x\n", junk, sizeof junk), LM_ERR_INVALID_ARG);
	OK(lm_engine_receive(n[0].e, now_ms(), "udp", "mallory", junk, sizeof junk)); /* dropped, not an error */
	OK(lm_engine_receive(n[0].e, now_ms(), "nolink", "mallory", junk, sizeof junk));
	CHECK(lm_engine_next_event(n[0].e, NULL, NULL, &nl, &have), LM_ERR_INVALID_ARG);
	CHECK(lm_engine_deadline(n[0].e, NULL), LM_ERR_INVALID_ARG);

	for (int i = 0; i < 2; i++) {
		OK(lm_engine_close(n[i].e));
		CHECK(lm_engine_close(n[i].e), LM_ERR_HANDLE);
		CHECK(lm_engine_tick(n[i].e, now_ms()), LM_ERR_HANDLE);
		OK(lm_identity_close(n[i].id));
	}
	/* The state is alice's: another identity cannot open it. */
	OK(lm_identity_generate(&n[0].id));
	CHECK(lm_engine_open(n[0].id, dir[0], now_ms(), &n[0].e), LM_ERR_CONFLICT);
	OK(lm_identity_close(n[0].id));
	/* The state survived: reopened by alice, bob is still a contact. */
	OK(lm_identity_from_seed(seed, sizeof seed, &n[0].id));
	OK(lm_engine_open(n[0].id, dir[0], now_ms(), &n[0].e));
	ll = sizeof list;
	OK(lm_engine_contacts(n[0].e, list, &ll));
	REQUIRE(strncmp(list, "bob\t", 4) == 0);
	al = sizeof addrs;
	OK(lm_engine_contact_addrs(n[0].e, "bob", addrs, &al));
	REQUIRE(strcmp(addrs, "udp\tbob\n") == 0);
	OK(lm_engine_close(n[0].e));
	OK(lm_identity_close(n[0].id));
	printf("engine: ok\n");
	return 0;
}
