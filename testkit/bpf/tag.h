// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// What the test kit's XDP programs (gen.c, sink.c) share beyond the kernel ABI
// (bpf/kernel_abi.h, which op25b's own program includes too): the tag at the end of every
// generated frame and its checksum fold.

#ifndef OP25B_TESTKIT_TAG_H
#define OP25B_TESTKIT_TAG_H

#include "kernel_abi.h"

// The tag at the end of every generated frame (traffic::Tag): change with it.
#define TAG_LEN 10
#define TAG_MAGIC 0xb5
#define TAG_WRAP_MASK 0xffffff

// A 32-bit sum of 16-bit words folded to 16 bits (one's complement).
INLINE __u32 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s;
}

#endif
