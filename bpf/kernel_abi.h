// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// The kernel ABI every BPF program of op25b uses, written out once: the appliance's XDP
// program (bpf/op25b_xdp.c) and the test kit's (testkit/bpf/gen.c, testkit/bpf/sink.c)
// include it. Spelled out instead of taken from kernel or libbpf headers, so clang alone
// builds them (no kernel headers, no libbpf headers, no multiarch include path). Values
// from include/uapi/linux/bpf.h; helpers by their number in its enum bpf_func_id.

#ifndef OP25B_KERNEL_ABI_H
#define OP25B_KERNEL_ABI_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

// libbpf's map and section notation (bpf_helpers.h).
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name
#define __array(name, val) __typeof__(val) *name[]
#define INLINE static inline __attribute__((always_inline))

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
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_ARRAY_OF_MAPS = 12,
	BPF_MAP_TYPE_DEVMAP = 14,
	BPF_MAP_TYPE_XSKMAP = 17,
};
#define BPF_F_NO_PREALLOC 1u
#define BPF_ANY 0
#define BPF_NOEXIST 1

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) =
	(void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;
static long (*bpf_xdp_adjust_tail)(struct xdp_md *ctx, int delta) = (void *)65;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) =
	(void *)181;
// Kernel >= 5.18. `data_end - data` would be pointer arithmetic, which the verifier
// refuses without CAP_PERFMON; op25b runs with CAP_BPF and CAP_NET_ADMIN only.
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)188;
static long (*bpf_xdp_load_bytes)(struct xdp_md *ctx, __u32 off, void *buf, __u32 len) =
	(void *)189;
static long (*bpf_xdp_store_bytes)(struct xdp_md *ctx, __u32 off, void *from, __u32 len) =
	(void *)190;

#endif
