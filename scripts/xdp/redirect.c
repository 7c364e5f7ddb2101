// SPDX-License-Identifier: GPL-2.0
/*
 * redirect.c - the "in-kernel ceiling" baseline for the op25b benchmark.
 *
 * An XDP program that does nothing but XDP_REDIRECT every frame arriving on
 * the interface it is attached to (d0) to one fixed interface (d1), chosen
 * at compile time with -DTARGET_IFINDEX=<n>.  Interface indexes are per
 * network namespace: resolve <n> inside the namespace that holds d1 (see
 * redirect.sh, which compiles this file at run time).
 *
 * Self-contained: no libbpf headers (libbpf-dev is not required).  Only
 * <linux/bpf.h> from linux-libc-dev is used; SEC() and the bpf_redirect
 * helper are declared here.
 *
 * NOTE: XDP_REDIRECT into a veth only delivers frames if the *receiving
 * peer* of the target veth (for d0 -> d1, the peer of d1 in the other
 * namespace) has an XDP program attached; otherwise the redirected frames
 * are silently dropped.  In the benchmark the sink's AF_XDP program on that
 * peer satisfies this; a plain XDP_PASS program (pass.c) does too.
 *
 * Build: clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) \
 *          -DTARGET_IFINDEX=<n> -c redirect.c -o redirect.o
 */
#include <linux/bpf.h>

#ifndef TARGET_IFINDEX
#error "define TARGET_IFINDEX: -DTARGET_IFINDEX=<ifindex of the output interface>"
#endif

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;

SEC("xdp")
int xdp_redirect_all(struct xdp_md *ctx)
{
	(void)ctx;
	return (int)bpf_redirect(TARGET_IFINDEX, 0);
}

char _license[] SEC("license") = "GPL";
