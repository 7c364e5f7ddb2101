// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// What the test kit's XDP programs (gen.c, sink.c) share: the kernel types and helper
// numbers they use, written out instead of taken from kernel headers (like
// bpf/op25b_xdp.c: no headers, so clang alone builds them), and the tag's checksum fold.

#ifndef OP25B_TESTKIT_COMMON_H
#define OP25B_TESTKIT_COMMON_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};
enum { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
enum { BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_PERCPU_ARRAY = 6 };

// Helpers, by their number in the kernel's enum bpf_func_id.
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *ctx, int delta) = (void *)65;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) =
	(void *)181;
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)188;
static long (*bpf_xdp_load_bytes)(struct xdp_md *ctx, __u32 off, void *buf, __u32 len) =
	(void *)189;
static long (*bpf_xdp_store_bytes)(struct xdp_md *ctx, __u32 off, void *from, __u32 len) =
	(void *)190;

// The tag at the end of every generated frame (traffic::Tag): change with it.
#define TAG_LEN 10
#define TAG_MAGIC 0xb5
#define TAG_WRAP_MASK 0xffffff

// A 32-bit sum of 16-bit words folded to 16 bits (one's complement).
static inline __attribute__((always_inline)) __u32 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

#endif
