//! libbpf, once: open an embedded BPF object, size its maps, load it, hand out owned
//! descriptors of its programs and maps, run a program (BPF_PROG_TEST_RUN) and attach it
//! to an interface through a bpf_link. op25b's own program ([`super::Program`]) and the
//! test kit's generator and sink (op25b-testkit's `xdpgen`, `xdpsink`) load through it.
//!
//! Errors are the kernel's (`io::Error::raw_os_error` holds the errno): the caller adds
//! what it was doing.

use super::Map;
use libbpf_sys as bpf;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
/// `BPF_F_TEST_XDP_LIVE_FRAMES` (kernel >= 5.18): the run's XDP_TX and XDP_REDIRECT
/// frames leave for real.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `rc` (a negative errno from libbpf, or a descriptor) as a result.
pub(super) fn errno(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}

/// A fresh descriptor returned by libbpf or the kernel (`rc` >= 0), or its errno.
pub(super) fn owned(rc: libc::c_int) -> io::Result<OwnedFd> {
    errno(rc)?;
    // SAFETY: a non-negative return is a fresh descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// A descriptor of our own for one that libbpf owns (it closes its copy with the object).
fn dup(fd: libc::c_int, what: &str) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::other(format!("{what}: no descriptor")));
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor libbpf holds open; no memory involved.
    let rc = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from fcntl that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

/// An opened BPF object (an ELF compiled by a build script and embedded with
/// `include_bytes!`): size or share its maps, then [`BpfObject::load`] it and take
/// descriptors of its programs and maps. Closed on drop; the kernel objects live on
/// through the descriptors taken.
pub struct BpfObject {
    obj: *mut bpf::bpf_object,
    name: &'static str,
}

impl Drop for BpfObject {
    fn drop(&mut self) {
        // SAFETY: the pointer came from bpf_object__open_mem and is closed once, here.
        unsafe { bpf::bpf_object__close(self.obj) };
    }
}

impl BpfObject {
    /// Opens `elf`; `name` names it in errors.
    pub fn open(elf: &'static [u8], name: &'static str) -> io::Result<BpfObject> {
        // SAFETY: `elf` is a static byte slice; libbpf copies what it keeps. NULL opts =
        // defaults.
        let obj = unsafe {
            bpf::bpf_object__open_mem(
                elf.as_ptr().cast(),
                elf.len() as bpf::size_t,
                std::ptr::null(),
            )
        };
        if obj.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(BpfObject { obj, name })
    }

    fn find_map(&self, name: &str) -> io::Result<*mut bpf::bpf_map> {
        let c = CString::new(name).map_err(|_| io::Error::other("map name with a NUL"))?;
        // SAFETY: the object is open and `c` is NUL-terminated.
        let m = unsafe { bpf::bpf_object__find_map_by_name(self.obj, c.as_ptr()) };
        if m.is_null() {
            return Err(io::Error::other(format!(
                "BPF object {} has no map {name}",
                self.name
            )));
        }
        Ok(m)
    }

    /// Sets the entry count of map `map` (before [`BpfObject::load`]; at least 1).
    pub fn set_max_entries(&self, map: &str, n: u32) -> io::Result<()> {
        let m = self.find_map(map)?;
        // SAFETY: the map belongs to the open, not yet loaded object.
        errno(unsafe { bpf::bpf_map__set_max_entries(m, n.max(1)) })
    }

    /// Makes map `map` the existing map `with` instead of a new one (before
    /// [`BpfObject::load`]).
    pub fn reuse_map(&self, map: &str, with: &Map) -> io::Result<()> {
        let m = self.find_map(map)?;
        // SAFETY: the map belongs to the open object; libbpf dups the descriptor.
        errno(unsafe { bpf::bpf_map__reuse_fd(m, with.fd.as_raw_fd()) })
    }

    /// Creates the maps and loads the programs (the verifier runs here).
    pub fn load(&self) -> io::Result<()> {
        // SAFETY: the object is open; load creates the maps and verifies the programs.
        errno(unsafe { bpf::bpf_object__load(self.obj) })
    }

    /// The loaded program `name`.
    pub fn program(&self, name: &str) -> io::Result<BpfProgram> {
        let c = CString::new(name).map_err(|_| io::Error::other("program name with a NUL"))?;
        // SAFETY: the object is loaded and `c` is NUL-terminated.
        let p = unsafe { bpf::bpf_object__find_program_by_name(self.obj, c.as_ptr()) };
        if p.is_null() {
            return Err(io::Error::other(format!(
                "BPF object {} has no program {name}",
                self.name
            )));
        }
        // SAFETY: `p` belongs to the loaded object, which is still open.
        Ok(BpfProgram(dup(unsafe { bpf::bpf_program__fd(p) }, name)?))
    }

    /// The loaded map `name`, with its key and value sizes.
    pub fn map(&self, name: &'static str) -> io::Result<Map> {
        let m = self.find_map(name)?;
        // SAFETY: the map belongs to the loaded object, which is still open.
        let (k, v, fd) = unsafe {
            (
                bpf::bpf_map__key_size(m),
                bpf::bpf_map__value_size(m),
                bpf::bpf_map__fd(m),
            )
        };
        Ok(Map {
            fd: dup(fd, name)?,
            key_size: k as usize,
            value_size: v as usize,
            name,
        })
    }
}

/// One BPF_PROG_TEST_RUN call ([`BpfProgram::test_run`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRun<'a> {
    /// The frame the program starts with.
    pub frame: &'a [u8],
    /// `struct xdp_md` (data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    /// egress_ifindex), or none.
    pub ctx: Option<&'a [u32; 6]>,
    /// Runs in the kernel (at least 1).
    pub repeat: u32,
    /// Live frames: what the program transmits (XDP_TX, XDP_REDIRECT) leaves for real.
    pub live_frames: bool,
    /// Frames per batch in live-frames mode (0: the kernel's default).
    pub batch: u32,
}

/// A loaded program's descriptor.
#[derive(Debug)]
pub struct BpfProgram(OwnedFd);

impl BpfProgram {
    /// Runs the program (BPF_PROG_TEST_RUN); returns its last action and the kernel's
    /// mean run time in nanoseconds.
    pub fn test_run(&self, run: &TestRun) -> io::Result<(u32, u32)> {
        // SAFETY: all-zero is a valid bpf_test_run_opts (no buffers, no context).
        let mut opts: bpf::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<bpf::bpf_test_run_opts>() as bpf::size_t;
        opts.data_in = run.frame.as_ptr().cast();
        opts.data_size_in = run.frame.len() as u32;
        if let Some(ctx) = run.ctx {
            opts.ctx_in = ctx.as_ptr().cast();
            opts.ctx_size_in = std::mem::size_of_val(ctx) as u32;
        }
        opts.repeat = run.repeat.clamp(1, i32::MAX as u32) as _;
        if run.live_frames {
            opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
        }
        opts.batch_size = run.batch;
        // SAFETY: `opts` and the frame and context it points at outlive the call; the
        // kernel reads data_in and ctx_in and writes nothing back (no output buffers).
        errno(unsafe { bpf::bpf_prog_test_run_opts(self.0.as_raw_fd(), &mut opts) })?;
        Ok((opts.retval, opts.duration))
    }

    /// Attaches the program to `ifindex` in native (driver) or generic (SKB) mode
    /// through a bpf_link: detached when the returned descriptor closes (also when the
    /// process is killed). The link refuses to replace another program (EBUSY).
    pub fn attach_xdp(&self, ifindex: u32, native: bool) -> io::Result<OwnedFd> {
        // SAFETY: all-zero is a valid bpf_link_create_opts (no iterator, no cookie).
        let mut opts: bpf::bpf_link_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<bpf::bpf_link_create_opts>() as bpf::size_t;
        opts.flags = if native {
            XDP_FLAGS_DRV_MODE
        } else {
            XDP_FLAGS_SKB_MODE
        };
        // SAFETY: `opts` is valid for the call and its `sz` covers it.
        owned(unsafe {
            bpf::bpf_link_create(
                self.0.as_raw_fd(),
                ifindex as libc::c_int,
                bpf::BPF_XDP,
                &opts,
            )
        })
    }

    /// A second handle on the program.
    pub fn try_clone(&self) -> io::Result<BpfProgram> {
        Ok(BpfProgram(self.0.try_clone()?))
    }
}

/// CPUs a per-CPU map holds a value for.
pub fn possible_cpus() -> io::Result<usize> {
    // SAFETY: no arguments; reads /sys/devices/system/cpu/possible once.
    let n = unsafe { bpf::libbpf_num_possible_cpus() };
    errno(n)?;
    if n == 0 {
        return Err(io::Error::other("libbpf counts no possible CPU"));
    }
    Ok(n as usize)
}

/// CLOCK_MONOTONIC in nanoseconds: what a program's `bpf_ktime_get_ns()` reads.
pub fn ktime_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer for the call; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
