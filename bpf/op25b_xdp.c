// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// op25b's XDP program: one copy per interface (subscriber side and upstream side), each
// with its own `xsks`, `peer`, `settings` and counters, sharing the policy maps. It is the
// first stage of the same pipeline as the workers. Per frame, one of:
//
//   forward    bpf_redirect_map(&peer, 0)        -> out of the other interface, in the kernel;
//   drop       XDP_DROP                          -> the verdict classify() reaches is a drop;
//   workers    bpf_redirect_map(&xsks, rx_queue) -> the worker's AF_XDP socket, where
//              classify() judges it.
//
// `settings.flags` holds the mode (`datapath.fast_path`, src/datapath/fast_path.rs):
//   * FLAG_KERNEL (mode `kernel`): the program judges every whole TCP segment it fully
//     parses whose destination port is in `settings.ports`, with the policy in the maps
//     below, exactly as Policy::decide would (src/policy/mod.rs `decide_tcp`), and forwards
//     or drops it. To the workers: blocked segments whose class replies (`reject`: the
//     workers build RST/ICMP/SMTP replies and spend the rate budget), every fragment,
//     anything not fully parsed, and every frame while no policy generation is complete;
//   * FLAG_FAST_PATH (mode `unblockable`): only what no class can block is forwarded here;
//     every TCP segment to a port in `ports` goes to the workers;
//   * neither (mode `off`): every frame to the workers.
// In every mode a frame is forwarded here only while the other interface takes redirected
// frames (FLAG_PEER_READY).
//
// Frames forwarded without a policy lookup (in both `kernel` and `unblockable`): not
// IPv4/IPv6 (counted by kind, STAT_NONIP_*), IPv4/IPv6 that is not TCP and not a
// fragment, TCP with a complete header to a port no class blocks in this direction
// (`ports` is the union, written in step with each policy so that it always holds a
// superset of what the policy in force may block).
//
// The policy (src/datapath/kernel.rs compiles it from the same `Policy` the workers use):
// two generations, selected by `active`; a reload fills the inactive one completely,
// then flips `active`, so a frame is judged wholly by the old or wholly by the new policy.
// The subscriber tables and allowed destinations are BPF LPM tries held in
// array-of-maps (one slot per generation); updating a slot waits for every running
// program to finish (synchronize_rcu), so no frame still reads a generation that is
// being rewritten. The runtime overlay (RADIUS, operator, auto-quarantine) is one
// generation-free pair of maps keyed by address, whose values are class counter slots
// (stable by class name), turned into the class ids of each generation by `slotmap`.
// Most specific wins across overlay and file; an IPv4 overlay entry is a /32 and always
// wins; an IPv6 overlay prefix wins a tie with the file's.
//
// The program is stricter than classify(), never looser: tests/fast_path_never_leaks.rs
// (verdict equality) checks on every frame the test suite knows that whenever it forwards,
// classify() forwards, and whenever it drops, classify() drops with a drop action.
//
// Multi-buffer frames (`xdp.frags`, links with an MTU up to 9000): the headers are read
// from the first buffer, lengths are checked against the whole frame. A frame that must go
// to the workers but is larger than a UMEM frame holds is dropped and counted
// (STAT_TOO_BIG), never forwarded unjudged.
//
// No headers but bpf/kernel_abi.h, the kernel ABI it needs spelled out (shared with the
// test kit's programs), so the build needs clang and nothing else.

#include "kernel_abi.h"

// ---- Shared with src/datapath/xdp.rs and src/datapath/kernel.rs: change them together.

#define FLAG_FAST_PATH 1u   // mode unblockable: what no class can block, in the kernel
#define FLAG_PEER_READY 2u  // the other interface takes redirected frames
#define FLAG_KERNEL 4u      // mode kernel: judge what the program can
#define FLAG_INBOUND 8u     // this copy runs on the upstream interface (IP25B direction)
struct settings {
	__u32 flags;
	__u32 generation;       // policy generation `ports` was built for (for status)
	__u32 frame_max;        // the largest frame a worker's UMEM frame takes (bytes; 0: no limit)
	__u32 pad;
	__u8 ports[65536 / 8];  // bit p: TCP to destination port p needs the policy
};

enum stat {
	STAT_FAST = 0,        // frames redirected to the other interface (every forward here)
	STAT_FAST_BYTES,      // their bytes
	STAT_USER_PORT,       // mode unblockable: TCP to a port in `ports`
	STAT_USER_FRAGMENT,   // IPv4/IPv6 fragments
	STAT_USER_UNPARSED,   // headers this program does not fully parse
	STAT_USER_OFF,        // mode off, or the peer cannot take redirected frames
	STAT_FAST_TCP,        // of STAT_FAST, the TCP segments forwarded without a lookup
	STAT_PASSED,          // of all above, handed to the kernel stack instead: no socket
	                      // registered for the queue, or no peer entry
	// Of STAT_FAST, the frames that are not IPv4/IPv6, by kind (the order of NonIpKind in
	// src/classify/mod.rs). PPPoE with a compressed protocol field never takes the fast
	// path (its IP is judged by the workers), so STAT_NONIP_PPPOE_COMPRESSED stays 0.
	STAT_NONIP_ARP,
	STAT_NONIP_MPLS,
	STAT_NONIP_PBB,
	STAT_NONIP_LLC,
	STAT_NONIP_PPPOE_CONTROL,
	STAT_NONIP_PPPOE_COMPRESSED,
	STAT_NONIP_OTHER,
	STAT_USER_REPLY,      // mode kernel: blocked, and the class replies (reject)
	STAT_USER_NO_POLICY,  // mode kernel: no complete policy generation (start-up)
	STAT_TOO_BIG,         // dropped: for the workers, but larger than a UMEM frame
	STAT_COUNT,
};

// Verdicts reached here, in the layout of the workers' counters
// (src/datapath/counters.rs): [action: forward, drop][reason], blocked frames by port slot
// and by class counter slot.
#define REASONS 12
#define REASON_UNMATCHED 4
#define REASON_PORT_OPEN 5
#define REASON_ALLOWED_DESTINATION 6
#define REASON_BLOCKED_PORT 10
#define REASON_INBOUND_SMTP 11
#define PORT_SLOTS 4
#define COUNTER_SLOTS 1024
struct verdicts {
	__u64 n[2][REASONS];
	__u64 blocked_ports[PORT_SLOTS];
	__u64 blocked_classes[COUNTER_SLOTS];
};

// One generation's policy-wide facts (`gpol`, two entries).
struct gpol {
	__u32 valid;            // 1 once the generation is complete
	__u32 unmatched;        // class id + 1 of `unmatched_class`, 0: none
};

#define MAX_CLASSES 256
#define ACTION_DROP 0
#define ACTION_REJECT 1
// One class of one generation (`classes`, key generation * MAX_CLASSES + class id).
struct class_info {
	__u8 valid;
	__u8 action;            // ACTION_DROP or ACTION_REJECT
	__u8 inbound_smtp;      // block_inbound_smtp
	__u8 pad;
	__u32 slot;             // counter slot (Policy::counter_slot)
	__u8 ports[65536 / 8];  // blocked_ports
};

struct key4 {
	__u32 prefixlen;
	__u8 addr[4];
};
struct key6 {
	__u32 prefixlen;
	__u8 addr[16];
};
// A subscriber table's value: class id, and the length of the prefix that matched.
struct hit {
	__u8 class_id;
	__u8 len;
};
// An overlay entry's value: the class's counter slot, the entry's prefix length.
struct over {
	__u16 slot;
	__u8 len;
	__u8 pad;
};

struct okey {
	__u8 addr[16];          // IPv4 as ::ffff:a.b.c.d
};

// The abuse desk's per-source record of blocked attempts (`offenders`, LRU).
struct offender {
	__u64 count;
	__u64 first_ns;         // bpf_ktime_get_ns (CLOCK_MONOTONIC)
	__u64 last_ns;
	__u8 last_dst[16];      // IPv4 as ::ffff:a.b.c.d
	__u32 slot;             // class counter slot
	__u16 port;             // last destination port
	__u16 pad;
};

// ---- Per interface.

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 1); // set to the queue count by the loader
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

// One per-CPU entry holding every counter: one lookup per frame.
struct counters {
	__u64 n[STAT_COUNT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct verdicts);
} verdicts SEC(".maps");

// ---- Shared by both interfaces (the loader reuses the first copy's maps).

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct gpol);
} gpol SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct class_info);
} classes SEC(".maps");

// generation * COUNTER_SLOTS + slot -> class id + 1 in that generation (0: no such class).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u8);
} slotmap SEC(".maps");

// The inner-map templates: the loader creates each generation's tries at their size.
struct lpm4 {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct key4));
	__uint(value_size, sizeof(struct hit));
};
struct lpm6 {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct key6));
	__uint(value_size, sizeof(struct hit));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct lpm4);
} subs4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct lpm6);
} subs6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct lpm4);
} allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct lpm6);
} allow6 SEC(".maps");

// The overlay: IPv4 address -> entry; IPv6 prefix -> entry.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct over);
} over4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct key6);
	__type(value, struct over);
} over6 SEC(".maps");

// Source (IPv4 as ::ffff:a.b.c.d) -> its blocked attempts, drained by the control thread.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct okey);
	__type(value, struct offender);
} offenders SEC(".maps");

// Any array-of-maps update waits for running programs to finish (synchronize_rcu):
// the loader updates this one as a grace-period barrier before it rewrites the
// inactive generation's arrays.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct lpm4);
} barrier SEC(".maps");

// ---- The paths.

INLINE void count(struct counters *c, __u32 key, __u64 n)
{
	if (c && key < STAT_COUNT)
		c->n[key] += n;
}

// One frame: its context and what is looked up once.
struct frame {
	struct xdp_md *ctx;
	struct counters *c;
	const struct settings *s;
	__u64 len;              // the whole frame (all buffers)
};

INLINE int to_user(struct frame *f, __u32 why)
{
	if (f->s && f->s->frame_max && f->len > f->s->frame_max) {
		// A worker's UMEM frame cannot hold it: dropped and counted, never forwarded
		// unjudged.
		count(f->c, STAT_TOO_BIG, 1);
		return XDP_DROP;
	}
	count(f->c, why, 1);
	// A queue without a socket passes the frame to the kernel stack (as before).
	long rc = bpf_redirect_map(&xsks, f->ctx->rx_queue_index, XDP_PASS);
	if (rc == XDP_PASS)
		count(f->c, STAT_PASSED, 1);
	return rc;
}

INLINE int fast(struct frame *f)
{
	count(f->c, STAT_FAST, 1);
	count(f->c, STAT_FAST_BYTES, f->len);
	// No peer entry (the other interface went away): to the kernel stack, as a frame of a
	// queue without socket.
	long rc = bpf_redirect_map(&peer, 0, XDP_PASS);
	if (rc == XDP_PASS)
		count(f->c, STAT_PASSED, 1);
	return rc;
}

// A frame that is not IPv4/IPv6: counted by kind, then the fast path.
INLINE int not_ip(struct frame *f, __u32 kind)
{
	count(f->c, kind, 1);
	return fast(f);
}

INLINE __u16 be16(const __u8 *p)
{
	return (__u16)((p[0] << 8) | p[1]);
}

// ---- The verdict (Policy::decide_tcp for a whole TCP segment with its port).

// The addresses of the segment being judged.
struct addrs {
	int v6;
	const __u8 *src;
	const __u8 *dst;
};

INLINE int forward(struct frame *f, __u32 reason)
{
	__u32 zero = 0;
	struct verdicts *v = bpf_map_lookup_elem(&verdicts, &zero);
	if (v && reason < REASONS)
		v->n[0][reason] += 1;
	return fast(f);
}

INLINE __u32 port_slot(__u16 port)
{
	return port == 25 ? 0 : port == 465 ? 1 : port == 587 ? 2 : 3;
}

INLINE void copy16(__u8 *to, const __u8 *from)
{
#pragma unroll
	for (int i = 0; i < 16; i++)
		to[i] = from[i];
}

INLINE void offender(const struct addrs *a, __u32 slot, __u16 port)
{
	struct okey k = {};
	__u8 *key = k.addr;
	__u8 dst[16] = {};
	if (a->v6) {
		copy16(key, a->src);
		copy16(dst, a->dst);
	} else {
		key[10] = 0xff;
		key[11] = 0xff;
		dst[10] = 0xff;
		dst[11] = 0xff;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			key[12 + i] = a->src[i];
			dst[12 + i] = a->dst[i];
		}
	}
	__u64 now = bpf_ktime_get_ns();
	struct offender *o = bpf_map_lookup_elem(&offenders, &k);
	if (o) {
		__sync_fetch_and_add(&o->count, 1);
		o->last_ns = now;
		copy16(o->last_dst, dst);
		o->slot = slot;
		o->port = port;
		return;
	}
	struct offender n = {.count = 1, .first_ns = now, .last_ns = now, .slot = slot, .port = port};
	copy16(n.last_dst, dst);
	// Another CPU may have inserted it meanwhile: then count on the entry it made.
	if (bpf_map_update_elem(&offenders, &k, &n, BPF_NOEXIST) != 0) {
		o = bpf_map_lookup_elem(&offenders, &k);
		if (o)
			__sync_fetch_and_add(&o->count, 1);
	}
}

INLINE int drop(struct frame *f, const struct addrs *a, __u32 reason, __u32 slot, __u16 port)
{
	__u32 zero = 0;
	struct verdicts *v = bpf_map_lookup_elem(&verdicts, &zero);
	if (v && reason < REASONS) {
		v->n[1][reason] += 1;
		v->blocked_ports[port_slot(port) & (PORT_SLOTS - 1)] += 1;
		v->blocked_classes[slot & (COUNTER_SLOTS - 1)] += 1;
	}
	// The abuse desk's list counts blocked outbound attempts by source.
	if (!(f->s->flags & FLAG_INBOUND))
		offender(a, slot, port);
	return XDP_DROP;
}

// The class id of a slot in generation `g`; -1 if that generation has no such class.
INLINE int slot_class(__u32 g, __u32 slot)
{
	__u32 k = g * COUNTER_SLOTS + (slot & (COUNTER_SLOTS - 1));
	__u8 *id = bpf_map_lookup_elem(&slotmap, &k);
	return id && *id ? (int)*id - 1 : -1;
}

// TCP to `port` with addresses `a`, in mode kernel: Policy::decide_tcp.
INLINE int judge(struct frame *f, const struct addrs *a, __u16 port)
{
	__u32 zero = 0;
	__u32 *act = bpf_map_lookup_elem(&active, &zero);
	if (!act)
		return to_user(f, STAT_USER_NO_POLICY);
	__u32 g = *act & 1;
	struct gpol *gp = bpf_map_lookup_elem(&gpol, &g);
	if (!gp || !gp->valid)
		return to_user(f, STAT_USER_NO_POLICY);
	int inbound = (f->s->flags & FLAG_INBOUND) != 0;
	const __u8 *sub = inbound ? a->dst : a->src;
	int id = -1;
	if (!a->v6) {
		struct key4 k = {.prefixlen = 32};
#pragma unroll
		for (int i = 0; i < 4; i++)
			k.addr[i] = sub[i];
		__u32 addr = 0;
		__builtin_memcpy(&addr, k.addr, 4);
		// An IPv4 overlay entry is a /32: always the most specific match.
		struct over *o = bpf_map_lookup_elem(&over4, &addr);
		if (o) {
			id = slot_class(g, o->slot);
			// A class this generation does not know by that slot (more class
			// names than counter slots, or a reload between its two writes):
			// the workers decide.
			if (id < 0)
				return to_user(f, STAT_USER_NO_POLICY);
		} else {
			void *t = bpf_map_lookup_elem(&subs4, &g);
			if (!t)
				return to_user(f, STAT_USER_NO_POLICY);
			struct hit *h = bpf_map_lookup_elem(t, &k);
			id = h ? (int)h->class_id : (int)gp->unmatched - 1;
		}
	} else {
		struct key6 k = {.prefixlen = 128};
		copy16(k.addr, sub);
		void *t = bpf_map_lookup_elem(&subs6, &g);
		if (!t)
			return to_user(f, STAT_USER_NO_POLICY);
		struct hit *h = bpf_map_lookup_elem(t, &k);
		__u32 file_len = h ? h->len : 0;
		// The overlay's longest match against the file's: the longer wins, the overlay
		// on a tie.
		struct over *o = bpf_map_lookup_elem(&over6, &k);
		if (o && o->len >= file_len) {
			id = slot_class(g, o->slot);
			if (id < 0) // as for IPv4
				return to_user(f, STAT_USER_NO_POLICY);
		} else {
			id = h ? (int)h->class_id : (int)gp->unmatched - 1;
		}
	}
	if (id < 0)
		return forward(f, REASON_UNMATCHED);
	__u32 ck = g * MAX_CLASSES + ((__u32)id & (MAX_CLASSES - 1));
	struct class_info *ci = bpf_map_lookup_elem(&classes, &ck);
	if (!ci || !ci->valid)
		return to_user(f, STAT_USER_NO_POLICY);
	if (inbound) {
		if (ci->inbound_smtp && port == 25)
			return drop(f, a, REASON_INBOUND_SMTP, ci->slot, port);
		return forward(f, REASON_PORT_OPEN);
	}
	if (!(ci->ports[port >> 3] & (1u << (port & 7))))
		return forward(f, REASON_PORT_OPEN);
	int allowed;
	if (!a->v6) {
		struct key4 k = {.prefixlen = 32};
#pragma unroll
		for (int i = 0; i < 4; i++)
			k.addr[i] = a->dst[i];
		void *t = bpf_map_lookup_elem(&allow4, &g);
		if (!t)
			return to_user(f, STAT_USER_NO_POLICY);
		allowed = bpf_map_lookup_elem(t, &k) != 0;
	} else {
		struct key6 k = {.prefixlen = 128};
		copy16(k.addr, a->dst);
		void *t = bpf_map_lookup_elem(&allow6, &g);
		if (!t)
			return to_user(f, STAT_USER_NO_POLICY);
		allowed = bpf_map_lookup_elem(t, &k) != 0;
	}
	if (allowed)
		return forward(f, REASON_ALLOWED_DESTINATION);
	if (ci->action != ACTION_DROP)
		return to_user(f, STAT_USER_REPLY);
	return drop(f, a, REASON_BLOCKED_PORT, ci->slot, port);
}

// ---- The parse.

// TCP whose header starts at `tcp` and whose segment (header + data, as bounded by the IP
// length) is `len` bytes.
INLINE int tcp(struct frame *f, const struct addrs *a, const __u8 *tcp, __u32 len, const void *end)
{
	if ((const void *)(tcp + 20) > end || len < 20)
		return to_user(f, STAT_USER_UNPARSED);
	__u32 doff = (tcp[12] >> 4) * 4;
	if (doff < 20 || doff > len)
		return to_user(f, STAT_USER_UNPARSED);
	__u16 port = be16(tcp + 2);
	if (f->s->ports[port >> 3] & (1u << (port & 7))) {
		if (f->s->flags & FLAG_KERNEL)
			return judge(f, a, port);
		return to_user(f, STAT_USER_PORT);
	}
	count(f->c, STAT_FAST_TCP, 1);
	return fast(f);
}

// `l3` is the offset of the IP header in the frame: its lengths are checked against the
// whole frame (all buffers), its headers read from the first.
INLINE int ipv4(struct frame *f, const __u8 *ip, __u32 l3, const void *end)
{
	if ((const void *)(ip + 20) > end || (ip[0] >> 4) != 4)
		return to_user(f, STAT_USER_UNPARSED);
	__u32 ihl = (ip[0] & 0xf) * 4;
	__u32 total = be16(ip + 2);
	if (ihl < 20 || total < ihl || l3 + total > f->len)
		return to_user(f, STAT_USER_UNPARSED);
	if (be16(ip + 6) & 0x3fff) // more fragments, or an offset
		return to_user(f, STAT_USER_FRAGMENT);
	if (ip[9] != 6)
		return fast(f);
	struct addrs a = {.v6 = 0, .src = ip + 12, .dst = ip + 16};
	return tcp(f, &a, ip + ihl, total - ihl, end);
}

#define MAX_EXT_HEADERS 4

// IPv6 extension headers in the generic format (RFC 6564: next header, length in 8-byte
// units beyond the first 8) that this program walks: hop-by-hop, routing, destination
// options, Mobility, HIP, Shim6 and the two experimental numbers. classify() walks the
// same set (src/classify/mod.rs `generic_extension`); a TCP header behind any of them is
// judged there, so it must never take the fast path here.
INLINE int generic_ext(__u8 next)
{
	return next == 0 || next == 43 || next == 60 || next == 135 || next == 139 ||
	       next == 140 || next == 253 || next == 254;
}

INLINE int ipv6(struct frame *f, const __u8 *ip, __u32 l3, const void *end)
{
	if ((const void *)(ip + 40) > end || (ip[0] >> 4) != 6)
		return to_user(f, STAT_USER_UNPARSED);
	__u32 stop = 40 + be16(ip + 4); // end of the payload, from `ip`
	if (l3 + stop > f->len)
		return to_user(f, STAT_USER_UNPARSED);
	__u8 next = ip[6];
	__u32 off = 40;
#pragma unroll
	for (int i = 0; i < MAX_EXT_HEADERS; i++) {
		if (next == 44)
			return to_user(f, STAT_USER_FRAGMENT);
		if (!generic_ext(next))
			break;
		if (next == 0 && i != 0) // hop-by-hop must come first
			return to_user(f, STAT_USER_UNPARSED);
		const __u8 *h = ip + off;
		if ((const void *)(h + 8) > end)
			return to_user(f, STAT_USER_UNPARSED);
		__u32 len = (h[1] + 1) * 8;
		if (off + len > stop)
			return to_user(f, STAT_USER_UNPARSED);
		next = h[0];
		off += len;
	}
	if (generic_ext(next)) // chain longer than MAX_EXT_HEADERS
		return to_user(f, STAT_USER_UNPARSED);
	struct addrs a = {.v6 = 1, .src = ip + 8, .dst = ip + 24};
	switch (next) {
	case 51: // AH: left to userspace
		return to_user(f, STAT_USER_UNPARSED);
	case 44:
		return to_user(f, STAT_USER_FRAGMENT);
	case 6:
		return tcp(f, &a, ip + off, stop - off, end);
	default:
		return fast(f);
	}
}

SEC("xdp.frags")
int op25b_xdp(struct xdp_md *ctx)
{
	const __u8 *p = (const __u8 *)(long)ctx->data;
	const void *end = (const void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct frame f = {
		.ctx = ctx,
		.c = bpf_map_lookup_elem(&stats, &zero),
		.s = bpf_map_lookup_elem(&settings, &zero),
		.len = bpf_xdp_get_buff_len(ctx),
	};
	if (!f.s || !(f.s->flags & FLAG_PEER_READY) || !(f.s->flags & (FLAG_FAST_PATH | FLAG_KERNEL)))
		return to_user(&f, STAT_USER_OFF);
	if ((const void *)(p + 14) > end)
		return to_user(&f, STAT_USER_UNPARSED);
	__u16 type = be16(p + 12);
	__u32 off = 14;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (type != 0x8100 && type != 0x88a8 && type != 0x9100)
			break;
		if ((const void *)(p + off + 4) > end)
			return to_user(&f, STAT_USER_UNPARSED);
		type = be16(p + off + 2);
		off += 4;
	}
	if (type == 0x8100 || type == 0x88a8 || type == 0x9100) // a third tag
		return to_user(&f, STAT_USER_UNPARSED);
	if (type == 0x8864) { // PPPoE session
		const __u8 *h = p + off;
		if ((const void *)(h + 8) > end || h[0] != 0x11 || h[1] != 0)
			return to_user(&f, STAT_USER_UNPARSED);
		// A compressed (one odd byte, RFC 1661 PFC) protocol field: the workers read
		// the IP behind it.
		if (h[6] & 1)
			return to_user(&f, STAT_USER_UNPARSED);
		__u16 proto = be16(h + 6);
		off += 8;
		if (proto == 0x0021)
			type = 0x0800;
		else if (proto == 0x0057)
			type = 0x86dd;
		else
			return not_ip(&f, STAT_NONIP_PPPOE_CONTROL); // LCP, IPCP, ...
	}
	if (type == 0x0800)
		return ipv4(&f, p + off, off, end);
	if (type == 0x86dd)
		return ipv6(&f, p + off, off, end);
	if (type == 0x0806)
		return not_ip(&f, STAT_NONIP_ARP);
	if (type == 0x8847 || type == 0x8848)
		return not_ip(&f, STAT_NONIP_MPLS);
	if (type == 0x88e7)
		return not_ip(&f, STAT_NONIP_PBB);
	if (type == 0x8863)
		return not_ip(&f, STAT_NONIP_PPPOE_CONTROL);
	if (type < 0x0600)
		return not_ip(&f, STAT_NONIP_LLC);
	return not_ip(&f, STAT_NONIP_OTHER);
}

char _license[] SEC("license") = "Dual MIT/GPL";
