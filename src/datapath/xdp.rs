//! op25b's own XDP program, attached through a **bpf_link**.
//!
//! The program is five instructions (six slots): redirect every frame to the AF_XDP socket of its
//! RX queue (`bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)`); a queue with no
//! socket passes the frame to the kernel stack.
//!
//! Why our own program and a link rather than libxdp's default program: a bpf_link is
//! owned by a file descriptor, so the kernel detaches the program the moment the last
//! descriptor closes — on a clean exit, a panic, an OOM kill or `kill -9` alike. Nothing
//! is left attached, a restart needs no cleanup, and with `failure_mode: open` frames
//! fall through to the Linux bridge underneath as soon as op25b is gone. A program
//! attached the old way (netlink) stays until someone removes it. The link also refuses
//! to attach over another program (EBUSY) instead of replacing it.
//!
//! The program is hand-assembled (no clang at run time, nothing to ship beside the
//! binary); `tests` check the encoding.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// libbpf is linked statically through xsk-rs -> libxdp-sys -> libbpf-sys.
extern "C" {
    fn bpf_map_create(
        map_type: u32,
        name: *const libc::c_char,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        opts: *const libc::c_void,
    ) -> libc::c_int;
    fn bpf_prog_load(
        prog_type: u32,
        name: *const libc::c_char,
        license: *const libc::c_char,
        insns: *const Insn,
        insn_cnt: libc::size_t,
        opts: *mut libc::c_void,
    ) -> libc::c_int;
    fn bpf_map_update_elem(
        fd: libc::c_int,
        key: *const libc::c_void,
        value: *const libc::c_void,
        flags: u64,
    ) -> libc::c_int;
    fn bpf_map_delete_elem(fd: libc::c_int, key: *const libc::c_void) -> libc::c_int;
    fn bpf_link_create(
        prog_fd: libc::c_int,
        target_fd: libc::c_int,
        attach_type: u32,
        opts: *const LinkCreateOpts,
    ) -> libc::c_int;
}

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program, with `map_fd` patched into the map load.
fn program(map_fd: i32) -> [Insn; 6] {
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    [
        // r2 = *(u32 *)(r1 + 16): xdp_md.rx_queue_index
        insn(0x61, 2, 1, 16, 0),
        // r1 = map (64-bit immediate, two slots)
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: the action when the queue has no socket
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // return r0
        insn(0x95, 0, 0, 0, 0),
    ]
}

/// libbpf's `struct bpf_link_create_opts`, up to `flags` (libbpf reads only the fields
/// `sz` covers).
#[repr(C)]
struct LinkCreateOpts {
    sz: libc::size_t,
    flags: u32,
    _pad: u32,
}

/// An attached program: the link (detaches on drop) and the socket map.
#[derive(Debug)]
pub struct XdpLink {
    // Drop order: the link first (detach), then the program and map references.
    _link: OwnedFd,
    _prog: OwnedFd,
    map: OwnedFd,
    pub ifindex: u32,
    pub native: bool,
}

fn owned(rc: libc::c_int) -> io::Result<OwnedFd> {
    if rc < 0 {
        // libbpf returns -errno.
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        // SAFETY: a non-negative return is a fresh descriptor that nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(rc) })
    }
}

impl XdpLink {
    /// Loads the program with a socket map of `queues` slots and attaches it to
    /// `ifindex` in native (driver) or generic (SKB) mode.
    pub fn attach(ifindex: u32, queues: u32, native: bool) -> io::Result<XdpLink> {
        let name = CString::new("op25b_xsks").expect("no NUL");
        // SAFETY: `name` is NUL-terminated and outlives the call; NULL opts = defaults.
        let map = owned(unsafe {
            bpf_map_create(
                BPF_MAP_TYPE_XSKMAP,
                name.as_ptr(),
                4,
                4,
                queues.max(1),
                std::ptr::null(),
            )
        })?;
        let insns = program(map.as_raw_fd());
        let pname = CString::new("op25b_redirect").expect("no NUL");
        let license = CString::new("GPL").expect("no NUL");
        // SAFETY: `insns` is a valid array of `insns.len()` instructions, the strings are
        // NUL-terminated; all outlive the call. NULL opts = defaults.
        let prog = owned(unsafe {
            bpf_prog_load(
                BPF_PROG_TYPE_XDP,
                pname.as_ptr(),
                license.as_ptr(),
                insns.as_ptr(),
                insns.len(),
                std::ptr::null_mut(),
            )
        })?;
        let opts = LinkCreateOpts {
            sz: std::mem::size_of::<LinkCreateOpts>(),
            flags: if native {
                XDP_FLAGS_DRV_MODE
            } else {
                XDP_FLAGS_SKB_MODE
            },
            _pad: 0,
        };
        // SAFETY: `opts` is valid for the call and its `sz` covers only fields we set.
        let link = owned(unsafe {
            bpf_link_create(prog.as_raw_fd(), ifindex as libc::c_int, BPF_XDP, &opts)
        })?;
        Ok(XdpLink {
            _link: link,
            _prog: prog,
            map,
            ifindex,
            native,
        })
    }

    /// Steers RX queue `queue` to the AF_XDP socket `xsk_fd`.
    pub fn register(&self, queue: u32, xsk_fd: RawFd) -> io::Result<()> {
        let fd = xsk_fd as u32;
        // SAFETY: key and value point at live 4-byte values, the map's sizes.
        let rc = unsafe {
            bpf_map_update_elem(
                self.map.as_raw_fd(),
                (&queue as *const u32).cast(),
                (&fd as *const u32).cast(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(())
    }

    /// Stops steering `queue` (its frames then go to the kernel stack).
    pub fn unregister(&self, queue: u32) {
        // SAFETY: the key points at a live 4-byte value.
        let _ = unsafe { bpf_map_delete_elem(self.map.as_raw_fd(), (&queue as *const u32).cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding() {
        let p = program(7);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // ldxw r2, [r1+16]
        assert_eq!((p[0].code, p[0].regs, p[0].off), (0x61, 0x12, 16));
        // lddw r1, map_fd 7 (src = BPF_PSEUDO_MAP_FD)
        assert_eq!((p[1].code, p[1].regs, p[1].imm), (0x18, 0x11, 7));
        assert_eq!(p[2], insn(0, 0, 0, 0, 0));
        // mov r3, XDP_PASS; call bpf_redirect_map; exit
        assert_eq!((p[3].code, p[3].regs, p[3].imm), (0xb7, 0x03, 2));
        assert_eq!((p[4].code, p[4].imm), (0x85, 51));
        assert_eq!(p[5].code, 0x95);
        assert_eq!(std::mem::size_of::<LinkCreateOpts>(), 16);
    }
}
