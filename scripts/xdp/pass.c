// SPDX-License-Identifier: GPL-2.0
/*
 * pass.c - a trivial XDP program that passes every frame to the stack.
 *
 * Attach it to the receiving peer of a veth that is the target of an
 * XDP_REDIRECT (see redirect.c): a veth drops redirected frames unless its
 * peer has an XDP program.
 *
 * Build: clang -O2 -g -target bpf -I/usr/include/$(gcc -dumpmachine) \
 *          -c pass.c -o pass.o
 */
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp")
int xdp_pass_all(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
