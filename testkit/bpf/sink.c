// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// The benchmark sink's XDP program (`op25b-bench sink --engine xdp`, testkit/src/xdpsink.rs),
// attached to the sink's veth end. It checks every frame's tag in the receive path, as
// traffic::SinkTally::record does in userspace (magic, one's-complement sum, the verdict
// bit, per-stream order, one-way latency), counts it in per-CPU maps and drops it.
//
// Why: the AF_XDP sink costs the tester's CPU a copy-mode receive (an XDP buffer copied
// into the socket's UMEM) plus the userspace tally for every frame the DUT forwards, and
// that CPU also runs the generator, so the overload curve could not offer 2x the DUT's
// saturation rate. Here a frame costs the XDP run and a few map updates.
//
// Kernel types and helpers: bpf/kernel_abi.h (shared with op25b's own program); the tag:
// tag.h.

#include "tag.h"

// Shared with testkit/src/xdpsink.rs: change both together.
#define STREAMS 128
// Latency buckets, microseconds: exact below 256, then 128 per power of two up to 2^24
// (under 0.8% wide), the top bucket taking everything above.
#define EXACT 256
#define SUB_BITS 7
#define BUCKETS (EXACT + (24 - 8) * (1 << SUB_BITS))

struct stats {
	__u64 received;     // every frame
	__u64 bytes;
	__u64 foreign;      // no valid tag
	__u64 passed;       // tagged, the policy lets it through
	__u64 leaked;       // tagged, the policy blocks it: must stay 0
	__u64 out_of_order; // behind the last sequence number of its stream
	__u64 first_ns;     // first and last tagged frame (CLOCK_MONOTONIC)
	__u64 last_ns;
	__u64 max_gap_ns;   // longest time between two tagged frames on this CPU
	__u64 max_delay_us; // largest one-way latency
};

struct stream {
	__u64 received;
	__u32 last_seq;
	__u32 seen;
	__u64 out_of_order;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STREAMS);
	__type(key, __u32);
	__type(value, struct stream);
} streams SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BUCKETS);
	__type(key, __u32);
	__type(value, __u64);
} latency SEC(".maps");

// The bucket of a latency of `us` microseconds (xdpsink::bucket_of is the same).
INLINE __u32 bucket_of(__u32 us)
{
	if (us < EXACT)
		return us;
	if (us > TAG_WRAP_MASK)
		us = TAG_WRAP_MASK;
	__u32 e = 0, v = us;
	if (v >> 16) { v >>= 16; e += 16; }
	if (v >> 8) { v >>= 8; e += 8; }
	if (v >> 4) { v >>= 4; e += 4; }
	if (v >> 2) { v >>= 2; e += 2; }
	if (v >> 1) { e += 1; }
	// e = floor(log2(us)), 8..23
	return EXACT + (e - 8) * (1 << SUB_BITS) + ((us >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1));
}

SEC("xdp")
int op25b_sink(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct stats *s = bpf_map_lookup_elem(&stats, &zero);
	if (!s)
		return XDP_DROP;
	__u64 now = bpf_ktime_get_ns();
	__u32 len = (__u32)bpf_xdp_get_buff_len(ctx);
	s->received += 1;
	s->bytes += len;
	__u8 t[TAG_LEN];
	if (len < TAG_LEN || bpf_xdp_load_bytes(ctx, len - TAG_LEN, t, TAG_LEN) < 0)
		goto foreign;
	if (t[0] != TAG_MAGIC)
		goto foreign;
	__u32 sum = ((__u32)t[0] << 8 | t[1]) + ((__u32)t[2] << 8 | t[3]) +
		    ((__u32)t[4] << 8 | t[5]) + ((__u32)t[6] << 8 | t[7]) +
		    ((__u32)t[8] << 8 | t[9]);
	if (fold(sum) != 0xffff)
		goto foreign;
	if (t[1] & 1)
		s->leaked += 1;
	else
		s->passed += 1;
	if (s->first_ns == 0)
		s->first_ns = now;
	else if (now - s->last_ns > s->max_gap_ns)
		s->max_gap_ns = now - s->last_ns;
	s->last_ns = now;

	__u32 sid = t[1] >> 1;
	__u32 seq = (__u32)t[2] << 16 | (__u32)t[3] << 8 | t[4];
	struct stream *st = bpf_map_lookup_elem(&streams, &sid);
	if (st) {
		st->received += 1;
		// Behind the last one, modulo 2^24: reordered (the last one stays).
		if (st->seen && seq != st->last_seq &&
		    ((seq - st->last_seq) & TAG_WRAP_MASK) >= (1u << 23)) {
			st->out_of_order += 1;
			s->out_of_order += 1;
		} else {
			st->last_seq = seq;
			st->seen = 1;
		}
	}

	// A delay just below zero (clock read before the frame was stamped: cannot happen
	// here, but the userspace sink's rule is kept) counts as 0.
	__u32 sent = (__u32)t[5] << 16 | (__u32)t[6] << 8 | t[7];
	__u32 delay = ((__u32)(now / 1000) - sent) & TAG_WRAP_MASK;
	if (delay >= (1u << 23))
		delay = 0;
	if (delay > s->max_delay_us)
		s->max_delay_us = delay;
	__u32 b = bucket_of(delay);
	__u64 *c = bpf_map_lookup_elem(&latency, &b);
	if (c)
		*c += 1;
	return XDP_DROP;
foreign:
	s->foreign += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
