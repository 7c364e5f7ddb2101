// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// The benchmark generator's XDP program, run by BPF_PROG_RUN in "live frames" mode
// (BPF_F_TEST_XDP_LIVE_FRAMES, kernel >= 5.18) from `op25b-bench gen --engine xdp`
// (testkit/src/xdpgen.rs). Each run takes the next template of the profile, writes it
// into the frame, stamps its tag (sequence number, CLOCK_MONOTONIC microseconds, and the
// word that keeps the tag's one's-complement sum constant, as traffic::Tag::encode does)
// and returns XDP_TX: the kernel turns that into a redirect out of the interface given
// as the run's ingress_ifindex (the generator's veth end), i.e. ndo_xdp_xmit straight
// into the peer's ring. No skb, no socket, no copy-mode transmit path: the tester's CPU
// spends ~0.1-0.2 us per frame instead of the ~1 us an AF_XDP copy-mode send costs, so the
// generator can overload a DUT on the other CPU.
//
// Kernel types and helpers: bpf/kernel_abi.h (shared with op25b's own program); the tag:
// tag.h.

#include "tag.h"

// Shared with testkit/src/xdpgen.rs: change both together.
#define MAX_FRAME 3072  // live frames fit a 4 KiB page with headroom and tailroom
#define MIN_FRAME 14   // live frames are at least an Ethernet header
#define FLAG_TAGGED 1u

struct template {
	__u32 len;    // frame bytes, MIN_FRAME..MAX_FRAME
	__u32 flags;  // FLAG_TAGGED: stamp the last TAG_LEN bytes
	__u8 data[MAX_FRAME];
};

// Pacing is done here, not by the caller: every BPF_PROG_RUN call ends with a page-pool
// teardown that waits for an RCU grace period (20-40 ms without a frame, measured here),
// so the caller makes a few long calls, and runs that are not due yet return XDP_DROP
// without producing a frame (the tester's CPU spins in the kernel meanwhile).
struct state {
	__u64 seq;          // frames produced so far (the next template is seq % count)
	__u32 count;        // templates in use
	__u32 stream;       // the tag's stream byte, already shifted (stream << 1)
	__u64 errors;       // runs that could not build their frame (dropped, not sent)
	__u64 limit;        // produce no frame once seq reaches this (--count)
	__u64 stop_ns;      // ... or once CLOCK_MONOTONIC passes this (--duration)
	__u64 interval_ns;  // 0: as fast as possible; else one frame per interval (--rate)
	__u64 next_ns;      // when the next frame is due
	__u64 max_lag_ns;   // a schedule further behind than this restarts from now: a
	                    // delayed generator sends at most that much in one burst
	__u64 idle;         // runs that produced nothing (not due, or done)
	__u64 first_ns;     // when the first and the last frame were produced
	__u64 last_ns;
	__u32 group;        // with interval_ns: frames released together (one burst)
	__u32 credit;       // frames of the current burst still to send
	__u64 gate_ns;      // no burst before this: a generator that fell behind (its
	                    // CPU taken by the sink) catches up at twice the set rate,
	                    // not in one back-to-back flood into the DUT's ring
	__u64 restarts;     // times the schedule was more than max_lag_ns behind and
	                    // restarted from now (frames the set rate did not get)
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); // set to the template count by the loader
	__type(key, __u32);
	__type(value, struct template);
} templates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct state);
} state SEC(".maps");

// A burst due within this long is waited for inside the run (bpf_loop over the clock)
// instead of with runs that produce nothing: every BPF_PROG_RUN run, idle or not, takes
// and returns a page of the run's page pool, and the returns contend with the DUT's CPU
// returning the pages of the frames it received (measured with op25b as the DUT, 1.14 M
// frames/s set: 9% of the tester's CPU in the pool's spin lock and 0.73-0.75 M frames/s
// sent; with the wait, no lock time and 0.76-0.78 M/s; the rest of the gap is the
// sink's receive work on the same CPU). Short, because the run holds preemption off
// meanwhile.
#define SPIN_MAX_NS 20000
#define SPIN_LOOPS 8192

struct spin {
	__u64 until;
	__u64 now;
};

static long spin_step(__u32 i __attribute__((unused)), void *data)
{
	struct spin *w = data;
	w->now = bpf_ktime_get_ns();
	return w->now >= w->until ? 1 : 0;
}

SEC("xdp")
int op25b_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct state *st = bpf_map_lookup_elem(&state, &zero);
	if (!st || st->count == 0)
		return XDP_DROP;
	__u64 seq = st->seq;
	__u64 now = bpf_ktime_get_ns();
	if (seq >= st->limit || now >= st->stop_ns)
		goto idle;
	if (st->interval_ns) {
		// Bursts of `group` frames, like a socket generator's sendto(): one frame per
		// interval would make every frame its own flush and wake-up of the peer's NAPI.
		if (st->credit == 0) {
			__u64 due = st->next_ns > st->gate_ns ? st->next_ns : st->gate_ns;
			if (now < due) {
				if (due - now > SPIN_MAX_NS)
					goto idle;
				struct spin w = { .until = due, .now = now };
				bpf_loop(SPIN_LOOPS, spin_step, &w, 0);
				now = w.now;
				if (now < due)
					goto idle;
			}
			__u64 slot = st->interval_ns * st->group;
			__u64 next = st->next_ns + slot;
			if (next + st->max_lag_ns < now) {
				next = now;
				st->restarts += 1;
			}
			st->next_ns = next;
			st->gate_ns = now + slot / 2;
			st->credit = st->group;
		}
		st->credit -= 1;
	}
	__u32 idx = (__u32)(seq % st->count);
	struct template *t = bpf_map_lookup_elem(&templates, &idx);
	if (!t)
		goto bad;
	__u32 len = t->len;
	if (len < MIN_FRAME || len > MAX_FRAME)
		goto bad;
	// The run's frame is the largest template (the loader passes one that size); the
	// kernel resets the length between runs.
	int delta = (int)len - (int)bpf_xdp_get_buff_len(ctx);
	if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta) < 0)
		goto bad;
	if (t->flags & FLAG_TAGGED) {
		__u32 us = (__u32)(now / 1000) & 0xffffff;
		__u32 s24 = (__u32)seq & 0xffffff;
		__u32 off = len - TAG_LEN;
		if (off > MAX_FRAME - TAG_LEN)
			goto bad;
		__u8 *tag = &t->data[off];
		// tag[0] (magic) and tag[1] (stream << 1 | block) come with the template.
		tag[1] = (__u8)((tag[1] & 1) | st->stream);
		tag[2] = s24 >> 16;
		tag[3] = s24 >> 8;
		tag[4] = s24;
		tag[5] = us >> 16;
		tag[6] = us >> 8;
		tag[7] = us;
		__u32 sum = ((__u32)tag[0] << 8 | tag[1]) + ((__u32)tag[2] << 8 | tag[3]) +
			    ((__u32)tag[4] << 8 | tag[5]) + ((__u32)tag[6] << 8 | tag[7]);
		__u32 c = ~fold(sum) & 0xffff;
		tag[8] = c >> 8;
		tag[9] = c;
	}
	if (bpf_xdp_store_bytes(ctx, 0, t->data, len) < 0)
		goto bad;
	st->seq = seq + 1;
	if (seq == 0)
		st->first_ns = now;
	st->last_ns = now;
	return XDP_TX;
idle:
	st->idle += 1;
	return XDP_DROP;
bad:
	st->errors += 1;
	st->seq = seq + 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
