/* lmchat: a loramesh node in one C file, for firmware authors.
 *
 * It links libloramesh statically (libloramesh.a from `make cross`), holds
 * one identity (a seed file, or a key in a TPM), and talks to one contact
 * over UDP through the messenger engine: lines typed on stdin are sent,
 * messages received are printed, every character the peer chose escaped.
 * The peer can be the Python CLI (`loramesh`): the protocol is the same.
 *
 *   lmchat --seed node.seed --state state --card-out me.card \
 *          --bind 0.0.0.0:7001 --peer alice --peer-card alice.card \
 *          --peer-addr 192.0.2.7:7000
 *
 * The engine does no I/O and reads no clock (capi/loramesh.h, "Messenger
 * engine"): this program owns the socket and the time, hands the engine
 * what arrives, transmits what it asks for, and sleeps in select() until
 * input comes or the engine's next deadline.
 *
 * Build (README.md, "Field devices"):
 *   cc -std=c11 -O2 -o lmchat examples/c/lmchat.c \
 *      $(PKG_CONFIG_PATH=build/linux-amd64 pkg-config --cflags --libs loramesh-static)
 *
 * Exit status: 0 when everything sent was delivered, 6 when a message failed
 * or was still undelivered when --linger ran out after the end of input,
 * 1 on an error, 2 on a usage error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loramesh.h"

#define LINK "udp"         /* the Python daemon's name for its UDP link */
#define MAX_TEXT (16 << 10) /* lm_engine_send's limit */

static const char *prog = "lmchat";

static void die(const char *what, int rc) {
	char msg[256];
	size_t n = sizeof msg;
	if (lm_last_error(msg, &n) != LM_OK || !msg[0])
		snprintf(msg, sizeof msg, "%s", lm_strerror(rc));
	fprintf(stderr, "%s: %s: %s\n", prog, what, msg);
	exit(1);
}

/* CALL(what, expr): expr must return LM_OK, else the program ends with the
 * library's message. */
#define CALL(what, expr)                      \
	do {                                  \
		int rc_ = (expr);             \
		if (rc_ != LM_OK)             \
			die((what), rc_);     \
	} while (0)

static void fail(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static int64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- text a peer chose ---------------------------------------------------
 * Printable ASCII is shown as it is; everything else becomes a visible
 * escape: control bytes and bytes that are not UTF-8 as \xHH, other
 * characters as \uHHHH, so no byte from a peer can drive the terminal or
 * reorder what is shown (bidirectional overrides are \u202e, not magic). */
static void put_escaped(FILE *f, const uint8_t *s, size_t n) {
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i];
		if (c >= 0x20 && c < 0x7f) {
			if (c == '\\')
				fputs("\\\\", f);
			else
				fputc(c, f);
			i++;
			continue;
		}
		/* A UTF-8 sequence: its length from the lead byte, then checks. */
		size_t len = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
		uint32_t cp = len == 4 ? c & 0x07u : len == 3 ? c & 0x0fu : c & 0x1fu;
		size_t k = 1;
		for (; len && k < len && i + k < n && (s[i + k] & 0xc0) == 0x80; k++)
			cp = cp << 6 | (s[i + k] & 0x3fu);
		int valid = len && k == len && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
			    !(cp >= 0xd800 && cp <= 0xdfff);
		if (!valid) {
			fprintf(f, "\\x%02x", c);
			i++;
		} else {
			fprintf(f, cp > 0xffff ? "\\U%08x" : "\\u%04x", (unsigned)cp);
			i += len;
		}
	}
}

/* A message shown line by line, each under its sender, so no line of it can
 * pose as another contact's. */
static void show_message(const lm_event *ev, const uint8_t *text, size_t n) {
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || text[i] == '\n') {
			printf("%s%s: ", ev->contact, ev->verified ? "" : "?");
			put_escaped(stdout, text + start, i - start);
			putchar('\n');
			start = i + 1;
		}
	}
}

/* ---- files -------------------------------------------------------------- */

/* Reads at most cap bytes of path into buf; returns the length. */
static size_t read_file(const char *path, uint8_t *buf, size_t cap) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("%s: %s", path, strerror(errno));
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("%s: %s", path, strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) {
			uint8_t extra;
			if (read(fd, &extra, 1) > 0)
				fail("%s: longer than %zu bytes", path, cap);
			break;
		}
	}
	close(fd);
	return n;
}

static void write_file(const char *path, const uint8_t *buf, size_t n, mode_t mode, int excl) {
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), mode);
	if (fd < 0)
		fail("%s: %s", path, strerror(errno));
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			fail("%s: %s", path, strerror(errno));
		off += (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0)
		fail("%s: %s", path, strerror(errno));
}

/* ---- identity ------------------------------------------------------------ */

/* A software identity from a LM_SEED_SIZE-byte seed file, made (mode 0600,
 * from the kernel's random source) when it does not exist yet. The seed is
 * the identity: keep the file like a private key. */
static uint64_t identity_from_seed_file(const char *path) {
	uint8_t seed[LM_SEED_SIZE + 1];
	uint64_t id = 0;
	if (access(path, F_OK) != 0) {
		if (getrandom(seed, LM_SEED_SIZE, 0) != LM_SEED_SIZE)
			fail("getrandom: %s", strerror(errno));
		write_file(path, seed, LM_SEED_SIZE, 0600, 1);
		fprintf(stderr, "%s: new identity: seed written to %s (keep it secret)\n", prog, path);
	} else if (read_file(path, seed, sizeof seed) != LM_SEED_SIZE) {
		lm_secure_wipe(seed, sizeof seed);
		fail("%s: a seed file holds exactly %d bytes", path, LM_SEED_SIZE);
	}
	int rc = lm_identity_from_seed(seed, LM_SEED_SIZE, &id);
	lm_secure_wipe(seed, sizeof seed); /* the library keeps its own, locked, copy */
	if (rc != LM_OK)
		die("lm_identity_from_seed", rc);
	return id;
}

/* A TPM identity: identity name's key file in key_dir, generated in the TPM
 * on first use. The keystore stays open as long as the identity (a TPM key
 * with an auth value asks its keystore for it again after a reload). */
static uint64_t identity_from_tpm(const char *device, const char *key_dir, const char *auth_file, const char *name,
				  uint64_t *keystore) {
	uint8_t auth[64] = {0};
	size_t auth_len = 0;
	if (auth_file) {
		auth_len = read_file(auth_file, auth, sizeof auth);
		while (auth_len && (auth[auth_len - 1] == '\n' || auth[auth_len - 1] == '\r'))
			auth_len--;
	}
	int rc = lm_keystore_open_tpm(device, key_dir, auth_len ? auth : NULL, auth_len, keystore);
	lm_secure_wipe(auth, sizeof auth);
	if (rc != LM_OK)
		die("lm_keystore_open_tpm", rc);
	uint64_t id = 0;
	rc = lm_keystore_load(*keystore, name, &id);
	if (rc == LM_ERR_NOT_FOUND) {
		CALL("lm_keystore_generate", lm_keystore_generate(*keystore, name, 0, &id));
		fprintf(stderr, "%s: new identity %s generated in the TPM\n", prog, name);
	} else if (rc != LM_OK) {
		die("lm_keystore_load", rc);
	}
	return id;
}

static void fingerprint(const uint8_t *card, size_t n, char out[20]) {
	uint64_t h = 0;
	size_t len = 20;
	CALL("lm_card_parse", lm_card_parse(card, n, &h));
	CALL("lm_card_fingerprint", lm_card_fingerprint(h, out, &len));
	lm_card_close(h);
}

/* ---- UDP ------------------------------------------------------------------ */

/* "A.B.C.D:PORT" (numeric IPv4, as the engine and the Python daemon write
 * addresses) to a sockaddr; 0 if it is not one. */
static int parse_addr(const char *s, struct sockaddr_in *sa) {
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];
	char *end;
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return 0;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	long port = strtol(colon + 1, &end, 10);
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return *end == 0 && port > 0 && port < 65536 && inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

static void format_addr(const struct sockaddr_in *sa, char *out, size_t cap) {
	char host[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa->sin_addr, host, sizeof host);
	snprintf(out, cap, "%s:%u", host, (unsigned)ntohs(sa->sin_port));
}

/* ---- the engine's output ---------------------------------------------------- */

static uint8_t packet[1 << 16];
static uint8_t *data;
static size_t data_cap = 1 << 16;
static int pending; /* messages sent that are neither delivered nor failed */
static int failed;

/* Transmits every packet the engine has, then shows every event. */
static void drain(uint64_t e, int sock) {
	for (;;) {
		char link[LM_LINK_MAX + 1], addr[LM_ADDR_MAX + 1];
		size_t nl = sizeof link, na = sizeof addr, np = sizeof packet;
		int have = 0;
		CALL("lm_engine_next_packet", lm_engine_next_packet(e, link, &nl, addr, &na, packet, &np, &have));
		if (!have)
			break;
		struct sockaddr_in to;
		if (strcmp(link, LINK) != 0 || !parse_addr(addr, &to)) {
			fprintf(stderr, "%s: cannot send to %s/%s\n", prog, link, addr);
			continue;
		}
		if (sendto(sock, packet, np, 0, (struct sockaddr *)&to, sizeof to) < 0)
			fprintf(stderr, "%s: sendto %s: %s\n", prog, addr, strerror(errno));
	}
	for (;;) {
		lm_event ev;
		size_t nd = data_cap;
		int have = 0;
		int rc = lm_engine_next_event(e, &ev, data, &nd, &have);
		if (rc == LM_ERR_BUFFER_TOO_SMALL) { /* nothing was taken: grow, ask again */
			uint8_t *bigger = realloc(data, nd);
			if (!bigger)
				fail("out of memory");
			data = bigger, data_cap = nd;
			continue;
		}
		if (rc != LM_OK)
			die("lm_engine_next_event", rc);
		if (!have)
			break;
		switch (ev.kind) {
		case LM_EVENT_MESSAGE:
			show_message(&ev, data, nd);
			break;
		case LM_EVENT_DELIVERY:
			if (ev.state == LM_DELIVERY_DELIVERED) {
				printf("* message %llu delivered\n", (unsigned long long)ev.msg_id);
				pending--;
			} else if (ev.state == LM_DELIVERY_FAILED) {
				printf("* message %llu to %s failed: ", (unsigned long long)ev.msg_id, ev.contact);
				put_escaped(stdout, data, nd);
				putchar('\n');
				pending--, failed++;
			}
			break;
		case LM_EVENT_SESSION:
			printf("* secure session with %s%s\n", ev.contact, ev.verified ? "" : "? (not verified)");
			break;
		case LM_EVENT_STRANGER:
			printf("! an unknown key %s tried to reach us from %s/", ev.fingerprint, ev.link);
			put_escaped(stdout, (const uint8_t *)ev.addr, strlen(ev.addr));
			printf(" (not answered)\n");
			break;
		case LM_EVENT_ADDRESS:
			printf("* %s is now at %s/%s\n", ev.contact, ev.link, ev.addr);
			break;
		default: /* LM_EVENT_DROPPED and kinds added later: nothing lost */
			break;
		}
	}
	fflush(stdout);
}

/* ---- main ------------------------------------------------------------------- */

static void usage(void) {
	fprintf(stderr,
		"usage: %s (--seed FILE | --tpm DEVICE [--tpm-keys DIR] [--tpm-auth-file FILE] [--identity NAME])\n"
		"       --state DIR --bind A.B.C.D:PORT [--name TEXT] [--card-out FILE]\n"
		"       [--peer NAME --peer-card FILE --peer-addr A.B.C.D:PORT] [--linger SECONDS]\n",
		prog);
	exit(2);
}

int main(int argc, char **argv) {
	const char *seed_file = NULL, *tpm = NULL, *tpm_keys = NULL, *tpm_auth = NULL, *identity = "node";
	const char *state = NULL, *bind_addr = NULL, *name = "firmware", *card_out = NULL;
	const char *peer = NULL, *peer_card = NULL, *peer_addr = NULL;
	double linger = 30;
	static const struct option opts[] = {
	    {"seed", 1, 0, 's'},      {"tpm", 1, 0, 't'},        {"tpm-keys", 1, 0, 'k'}, {"tpm-auth-file", 1, 0, 'a'},
	    {"identity", 1, 0, 'i'},  {"state", 1, 0, 'd'},      {"bind", 1, 0, 'b'},     {"name", 1, 0, 'n'},
	    {"card-out", 1, 0, 'o'},  {"peer", 1, 0, 'p'},       {"peer-card", 1, 0, 'c'}, {"peer-addr", 1, 0, 'r'},
	    {"linger", 1, 0, 'l'},    {0, 0, 0, 0}};
	for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
		switch (c) {
		case 's': seed_file = optarg; break;
		case 't': tpm = optarg; break;
		case 'k': tpm_keys = optarg; break;
		case 'a': tpm_auth = optarg; break;
		case 'i': identity = optarg; break;
		case 'd': state = optarg; break;
		case 'b': bind_addr = optarg; break;
		case 'n': name = optarg; break;
		case 'o': card_out = optarg; break;
		case 'p': peer = optarg; break;
		case 'c': peer_card = optarg; break;
		case 'r': peer_addr = optarg; break;
		case 'l': linger = atof(optarg); break;
		default: usage();
		}
	}
	if (optind != argc || !state || !bind_addr || !seed_file == !tpm || (peer || peer_card || peer_addr) != (peer && peer_card && peer_addr))
		usage();
	signal(SIGPIPE, SIG_IGN);

	/* What this build guarantees, before any secret is touched: on 32-bit
	 * ARM runtime/secret does not exist and the library says so. */
	uint32_t features = 0;
	CALL("lm_features", lm_features(&features));
	if (lm_abi_version() != LM_ABI_VERSION)
		fail("libloramesh ABI %d, this program was built for %d", lm_abi_version(), LM_ABI_VERSION);
	printf("libloramesh %s, %s\n", lm_version(), lm_features_string());
	if (!(features & LM_FEATURE_ERASE))
		fprintf(stderr, "%s: warning: this build does not erase the temporaries of key operations "
				"(registers, stacks, freed heap); see README.md\n", prog);
	if (!(features & LM_FEATURE_MLOCK))
		fail("secrets would not be in locked memory: refusing to run");

	uint64_t keystore = 0, id;
	if (seed_file) {
		id = identity_from_seed_file(seed_file);
	} else {
		char dir[4096];
		if (!tpm_keys) {
			snprintf(dir, sizeof dir, "%s/tpm-keys", state);
			tpm_keys = dir;
		}
		id = identity_from_tpm(tpm, tpm_keys, tpm_auth, identity, &keystore);
	}

	uint8_t card[4096];
	size_t card_len = sizeof card;
	char fp[20];
	CALL("lm_card_create", lm_card_create(id, name, card, &card_len));
	fingerprint(card, card_len, fp);
	printf("identity %s (%s)\n", fp, seed_file ? "seed file" : "TPM");
	if (card_out) {
		write_file(card_out, card, card_len, 0644, 0);
		printf("card written to %s\n", card_out);
	}

	uint64_t e = 0;
	CALL("lm_engine_open", lm_engine_open(id, state, now_ms(), &e));
	CALL("lm_engine_add_link", lm_engine_add_link(e, LINK, LM_LINK_UDP, 0));
	if (peer) {
		size_t n = read_file(peer_card, card, sizeof card);
		int result = 0;
		CALL("lm_engine_contact_add", lm_engine_contact_add(e, peer, card, n, 0, &result));
		fingerprint(card, n, fp);
		printf("contact %s: fingerprint %s (%s); compare it out of band\n", peer, fp,
		       result == LM_IMPORT_NEW ? "new" : "unchanged");
		struct sockaddr_in check;
		if (!parse_addr(peer_addr, &check))
			fail("--peer-addr %s: not A.B.C.D:PORT", peer_addr);
		CALL("lm_engine_contact_set_addr", lm_engine_contact_set_addr(e, peer, LINK, peer_addr));
	}

	struct sockaddr_in local;
	if (!parse_addr(bind_addr, &local))
		fail("--bind %s: not A.B.C.D:PORT", bind_addr);
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sock < 0 || bind(sock, (struct sockaddr *)&local, sizeof local) != 0)
		fail("UDP %s: %s", bind_addr, strerror(errno));
	if (!(data = malloc(data_cap)))
		fail("out of memory");
	printf("ready: UDP %s%s%s\n", bind_addr, peer ? ", lines typed go to " : "", peer ? peer : "");
	fflush(stdout);

	static char line[MAX_TEXT + 1];
	size_t line_len = 0;
	int eof = !peer; /* without a contact there is nobody to send to */
	int64_t linger_end = 0;
	for (;;) {
		drain(e, sock);
		int64_t now = now_ms();
		if (eof && peer && (pending <= 0 || now >= linger_end))
			break;
		int64_t deadline = -1;
		CALL("lm_engine_deadline", lm_engine_deadline(e, &deadline));
		int64_t wait = deadline < 0 ? 60000 : deadline > now ? deadline - now : 0;
		if (eof && peer && linger_end - now < wait)
			wait = linger_end > now ? linger_end - now : 0;
		fd_set rd;
		FD_ZERO(&rd);
		FD_SET(sock, &rd);
		if (!eof)
			FD_SET(0, &rd);
		struct timeval tv = {.tv_sec = (time_t)(wait / 1000), .tv_usec = (suseconds_t)(wait % 1000) * 1000};
		if (select(sock + 1, &rd, NULL, NULL, &tv) < 0 && errno != EINTR)
			fail("select: %s", strerror(errno));
		now = now_ms();
		if (FD_ISSET(sock, &rd)) {
			for (;;) {
				struct sockaddr_in from;
				socklen_t fl = sizeof from;
				ssize_t n = recvfrom(sock, packet, sizeof packet, 0, (struct sockaddr *)&from, &fl);
				if (n < 0)
					break; /* EAGAIN, or an ICMP error for an earlier send */
				char addr[LM_ADDR_MAX + 1];
				format_addr(&from, addr, sizeof addr);
				/* Never fails for what the packet holds: bad ones are dropped. */
				CALL("lm_engine_receive", lm_engine_receive(e, now, LINK, addr, packet, (size_t)n));
			}
		}
		if (!eof && FD_ISSET(0, &rd)) {
			ssize_t n = read(0, line + line_len, sizeof line - 1 - line_len);
			if (n <= 0 && !(n < 0 && errno == EINTR)) {
				eof = 1;
				linger_end = now + (int64_t)(linger * 1000);
			}
			line_len += n > 0 ? (size_t)n : 0;
			/* Send each complete line (and what is left at the end of input). */
			for (;;) {
				char *nl = memchr(line, '\n', line_len);
				size_t len = nl ? (size_t)(nl - line) : line_len;
				if (!nl && !eof && line_len < sizeof line - 1)
					break;
				if (len > 0) {
					uint64_t mid = 0;
					int rc = lm_engine_send(e, now, peer, (const uint8_t *)line, len, &mid);
					if (rc == LM_OK) {
						pending++;
						printf("me -> %s: message %llu queued\n", peer, (unsigned long long)mid);
					} else {
						char what[64];
						snprintf(what, sizeof what, "sending to %s", peer);
						char msg[256];
						size_t ml = sizeof msg;
						lm_last_error(msg, &ml);
						fprintf(stderr, "%s: %s: %s\n", prog, what, msg);
						failed++;
					}
				}
				size_t used = nl ? len + 1 : line_len;
				memmove(line, line + used, line_len - used);
				line_len -= used;
				if (!nl)
					break;
			}
		}
		if (deadline >= 0 && now >= deadline)
			CALL("lm_engine_tick", lm_engine_tick(e, now));
	}
	drain(e, sock);
	CALL("lm_engine_close", lm_engine_close(e));
	CALL("lm_identity_close", lm_identity_close(id));
	if (keystore)
		CALL("lm_keystore_close", lm_keystore_close(keystore));
	close(sock);
	free(data);
	if (pending > 0)
		fprintf(stderr, "%s: %d message(s) not delivered yet when --linger ran out\n", prog, pending);
	return failed || pending > 0 ? 6 : 0;
}
