// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// op25b's XDP program: one copy per interface (subscriber side and upstream side), each
// with its own maps. Per frame it decides between two paths:
//
//   userspace  bpf_redirect_map(&xsks, rx_queue)  -> the worker's AF_XDP socket, where
//              classify() judges it (forward, drop or reject);
//   fast path  bpf_redirect_map(&peer, 0)         -> straight out of the other interface,
//              in the kernel, never seen by the worker.
//
// The fast path is taken only for frames that userspace would forward whatever the policy
// says, given the TCP destination ports in `settings.ports` (the union of the ports any
// class blocks in this direction; src/datapath/xdp.rs fills it in step with each policy):
//   * not IPv4/IPv6 (ARP, LLDP, PPP control, MPLS, PBB, LLC, ...): classify() forwards
//     every such frame; counted by kind (STAT_NONIP_*);
//   * IPv4/IPv6 that is not TCP, and not a fragment;
//   * TCP with a complete header whose destination port is not in `ports`.
// Everything else goes to userspace: TCP to a port in `ports`, every IPv4/IPv6 fragment,
// and anything this program does not fully parse (cut-short or malformed headers, a third
// VLAN tag, a PPPoE header that is not session data or whose PPP protocol field is
// compressed, IPv6 AH or more than four extension headers). Every IPv6 fragment goes to
// userspace whatever its Next Header, so the first fragment whose chain does not reach
// the TCP header is judged there (`fragments.tiny_first`), as classify() decides it.
// The program is stricter than classify(), never looser: tests/fast_path_never_leaks.rs
// checks that on every frame the test suite knows.
//
// No headers: the few kernel ABI definitions it needs are spelled out below, so the build
// needs clang and nothing else (no kernel or libbpf headers, no multiarch include path).

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name
#define INLINE static inline __attribute__((always_inline))

// include/uapi/linux/bpf.h
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};
enum { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
enum {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_DEVMAP = 14,
	BPF_MAP_TYPE_XSKMAP = 17,
};
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;
// Kernel >= 5.18. `data_end - data` would be pointer arithmetic, which the verifier
// refuses without CAP_PERFMON; op25b runs with CAP_BPF and CAP_NET_ADMIN only.
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)188;

// Shared with src/datapath/xdp.rs (`Settings`, `Stat`): change both together.
#define FLAG_FAST_PATH 1u   // datapath.fast_path: on
#define FLAG_PEER_READY 2u  // the other interface takes redirected frames
struct settings {
	__u32 flags;
	__u32 generation;       // policy generation `ports` was built for (for status)
	__u8 ports[65536 / 8];  // bit p: TCP to destination port p goes to userspace
};

enum stat {
	STAT_FAST = 0,        // frames redirected to the other interface
	STAT_FAST_BYTES,      // their bytes
	STAT_USER_PORT,       // TCP to a port in `ports`
	STAT_USER_FRAGMENT,   // IPv4/IPv6 fragments
	STAT_USER_UNPARSED,   // headers this program does not fully parse
	STAT_USER_OFF,        // fast path off, or the peer cannot take redirected frames
	STAT_FAST_TCP,        // of STAT_FAST, the TCP segments
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
	STAT_COUNT,
};

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

INLINE void count(struct counters *c, __u32 key, __u64 n)
{
	if (c && key < STAT_COUNT)
		c->n[key] += n;
}

INLINE int to_user(struct xdp_md *ctx, struct counters *c, __u32 why)
{
	count(c, why, 1);
	// A queue without a socket passes the frame to the kernel stack (as before).
	long rc = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (rc == XDP_PASS)
		count(c, STAT_PASSED, 1);
	return rc;
}

INLINE int fast(struct xdp_md *ctx, struct counters *c)
{
	count(c, STAT_FAST, 1);
	count(c, STAT_FAST_BYTES, bpf_xdp_get_buff_len(ctx));
	// No peer entry (the other interface went away): to the kernel stack, as a frame of a
	// queue without socket.
	long rc = bpf_redirect_map(&peer, 0, XDP_PASS);
	if (rc == XDP_PASS)
		count(c, STAT_PASSED, 1);
	return rc;
}

// A frame that is not IPv4/IPv6: counted by kind, then the fast path.
INLINE int not_ip(struct xdp_md *ctx, struct counters *c, __u32 kind)
{
	count(c, kind, 1);
	return fast(ctx, c);
}

INLINE __u16 be16(const __u8 *p)
{
	return (__u16)((p[0] << 8) | p[1]);
}

// TCP whose header starts at `tcp` and whose segment (header + data, as bounded by the IP
// length) is `len` bytes.
INLINE int tcp(struct xdp_md *ctx, struct counters *c, const struct settings *s, const __u8 *tcp, __u32 len,
	       const void *end)
{
	if ((const void *)(tcp + 20) > end || len < 20)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	__u32 doff = (tcp[12] >> 4) * 4;
	if (doff < 20 || doff > len)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	__u16 port = be16(tcp + 2);
	if (s->ports[port >> 3] & (1u << (port & 7)))
		return to_user(ctx, c, STAT_USER_PORT);
	count(c, STAT_FAST_TCP, 1);
	return fast(ctx, c);
}

INLINE int ipv4(struct xdp_md *ctx, struct counters *c, const struct settings *s, const __u8 *ip, const void *end)
{
	if ((const void *)(ip + 20) > end || (ip[0] >> 4) != 4)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	__u32 ihl = (ip[0] & 0xf) * 4;
	__u32 total = be16(ip + 2);
	if (ihl < 20 || total < ihl || (const void *)(ip + total) > end)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	if (be16(ip + 6) & 0x3fff) // more fragments, or an offset
		return to_user(ctx, c, STAT_USER_FRAGMENT);
	if (ip[9] != 6)
		return fast(ctx, c);
	return tcp(ctx, c, s, ip + ihl, total - ihl, end);
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

INLINE int ipv6(struct xdp_md *ctx, struct counters *c, const struct settings *s, const __u8 *ip, const void *end)
{
	if ((const void *)(ip + 40) > end || (ip[0] >> 4) != 6)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	__u32 stop = 40 + be16(ip + 4); // end of the payload, from `ip`
	if ((const void *)(ip + stop) > end)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	__u8 next = ip[6];
	__u32 off = 40;
#pragma unroll
	for (int i = 0; i < MAX_EXT_HEADERS; i++) {
		if (next == 44)
			return to_user(ctx, c, STAT_USER_FRAGMENT);
		if (!generic_ext(next))
			break;
		if (next == 0 && i != 0) // hop-by-hop must come first
			return to_user(ctx, c, STAT_USER_UNPARSED);
		const __u8 *h = ip + off;
		if ((const void *)(h + 8) > end)
			return to_user(ctx, c, STAT_USER_UNPARSED);
		__u32 len = (h[1] + 1) * 8;
		if (off + len > stop)
			return to_user(ctx, c, STAT_USER_UNPARSED);
		next = h[0];
		off += len;
	}
	if (generic_ext(next)) // chain longer than MAX_EXT_HEADERS
		return to_user(ctx, c, STAT_USER_UNPARSED);
	switch (next) {
	case 51: // AH: left to userspace
		return to_user(ctx, c, STAT_USER_UNPARSED);
	case 44:
		return to_user(ctx, c, STAT_USER_FRAGMENT);
	case 6:
		return tcp(ctx, c, s, ip + off, stop - off, end);
	default:
		return fast(ctx, c);
	}
}

SEC("xdp")
int op25b_xdp(struct xdp_md *ctx)
{
	const __u8 *p = (const __u8 *)(long)ctx->data;
	const void *end = (const void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&stats, &zero);
	const struct settings *s = bpf_map_lookup_elem(&settings, &zero);
	if (!s || (s->flags & (FLAG_FAST_PATH | FLAG_PEER_READY)) !=
			  (FLAG_FAST_PATH | FLAG_PEER_READY))
		return to_user(ctx, c, STAT_USER_OFF);
	if ((const void *)(p + 14) > end)
		return to_user(ctx, c, STAT_USER_UNPARSED);
	__u16 type = be16(p + 12);
	__u32 off = 14;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (type != 0x8100 && type != 0x88a8 && type != 0x9100)
			break;
		if ((const void *)(p + off + 4) > end)
			return to_user(ctx, c, STAT_USER_UNPARSED);
		type = be16(p + off + 2);
		off += 4;
	}
	if (type == 0x8100 || type == 0x88a8 || type == 0x9100) // a third tag
		return to_user(ctx, c, STAT_USER_UNPARSED);
	if (type == 0x8864) { // PPPoE session
		const __u8 *h = p + off;
		if ((const void *)(h + 8) > end || h[0] != 0x11 || h[1] != 0)
			return to_user(ctx, c, STAT_USER_UNPARSED);
		// A compressed (one odd byte, RFC 1661 PFC) protocol field: the workers read
		// the IP behind it.
		if (h[6] & 1)
			return to_user(ctx, c, STAT_USER_UNPARSED);
		__u16 proto = be16(h + 6);
		off += 8;
		if (proto == 0x0021)
			type = 0x0800;
		else if (proto == 0x0057)
			type = 0x86dd;
		else
			return not_ip(ctx, c, STAT_NONIP_PPPOE_CONTROL); // LCP, IPCP, ...
	}
	if (type == 0x0800)
		return ipv4(ctx, c, s, p + off, end);
	if (type == 0x86dd)
		return ipv6(ctx, c, s, p + off, end);
	if (type == 0x0806)
		return not_ip(ctx, c, STAT_NONIP_ARP);
	if (type == 0x8847 || type == 0x8848)
		return not_ip(ctx, c, STAT_NONIP_MPLS);
	if (type == 0x88e7)
		return not_ip(ctx, c, STAT_NONIP_PBB);
	if (type == 0x8863)
		return not_ip(ctx, c, STAT_NONIP_PPPOE_CONTROL);
	if (type < 0x0600)
		return not_ip(ctx, c, STAT_NONIP_LLC);
	return not_ip(ctx, c, STAT_NONIP_OTHER);
}

char _license[] SEC("license") = "Dual MIT/GPL";
