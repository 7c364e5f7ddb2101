//! op25b's own XDP program (`bpf/op25b_xdp.c`), loaded through libbpf and attached through
//! a **bpf_link**, one copy per interface.
//!
//! The program sends each frame either to the worker's AF_XDP socket (userspace judges it)
//! or, on the **fast path**, straight out of the other interface through a DEVMAP, when
//! userspace would forward it whatever the policy says: see the program's header comment
//! and docs/architecture.md. Its maps, per interface:
//! * `xsks` (XSKMAP): RX queue -> the worker's socket;
//! * `peer` (DEVMAP): key 0 -> the other interface;
//! * `settings` (ARRAY, one [`Settings`]): fast path on/off, whether the other interface
//!   takes redirected frames, and the TCP destination ports that must go to userspace;
//! * `stats` (PERCPU_ARRAY, one entry of every counter: one lookup per frame): per-CPU
//!   counters of both paths ([`PathStats`]).
//!
//! Why a link rather than libxdp's default program: a bpf_link is owned by a file
//! descriptor, so the kernel detaches the program the moment the last descriptor closes —
//! on a clean exit, a panic, an OOM kill or `kill -9` alike. Nothing is left attached, a
//! restart needs no cleanup, and with `failure_mode: open` frames fall through to the Linux
//! bridge underneath as soon as op25b is gone. A program attached the old way (netlink)
//! stays until someone removes it. The link also refuses to attach over another program
//! (EBUSY) instead of replacing it.
//!
//! The object is compiled by build.rs with clang and embedded in the binary: nothing ships
//! beside it.

use crate::classify::NonIpKind;
use crate::policy::PortSet;
use libbpf_sys as bpf;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The compiled program (build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/op25b_xdp.o"));

const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
/// `NETDEV_XDP_ACT_NDO_XMIT` (include/uapi/linux/netdev.h): the device takes frames
/// redirected to it.
const XDP_ACT_NDO_XMIT: u64 = 1 << 2;
/// `XDP_PASS` and `XDP_REDIRECT`, as BPF_PROG_TEST_RUN reports them.
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// `settings.flags` bits (bpf/op25b_xdp.c).
const FLAG_FAST_PATH: u32 = 1;
const FLAG_PEER_READY: u32 = 2;

/// The `settings` map's value, as the program reads it (`struct settings`).
#[repr(C)]
#[derive(Clone)]
pub struct Settings {
    flags: u32,
    generation: u32,
    ports: [u8; 65536 / 8],
}

impl Settings {
    /// `fast_path`: the configured switch; `peer_ready`: the other interface takes
    /// redirected frames; `ports`: TCP destination ports that must go to userspace.
    pub fn new(fast_path: bool, peer_ready: bool, ports: &PortSet, generation: u64) -> Self {
        let mut s = Settings {
            flags: 0,
            generation: generation as u32,
            ports: [0; 65536 / 8],
        };
        if fast_path {
            s.flags |= FLAG_FAST_PATH;
        }
        if peer_ready {
            s.flags |= FLAG_PEER_READY;
        }
        for p in ports.iter() {
            s.ports[usize::from(p >> 3)] |= 1 << (p & 7);
        }
        s
    }

    /// True when the program may take the fast path.
    pub fn active(&self) -> bool {
        self.flags & (FLAG_FAST_PATH | FLAG_PEER_READY) == FLAG_FAST_PATH | FLAG_PEER_READY
    }
}

/// Per-interface counters of the program, summed over CPUs (`enum stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Frames sent out of the other interface in the kernel.
    pub fast: u64,
    pub fast_bytes: u64,
    /// Frames sent to userspace: TCP to a port in the set.
    pub user_port: u64,
    /// ... IPv4/IPv6 fragments.
    pub user_fragment: u64,
    /// ... headers the program does not fully parse.
    pub user_unparsed: u64,
    /// ... fast path off, or the other interface cannot take redirected frames.
    pub user_off: u64,
    /// Of `fast`, the TCP segments.
    pub fast_tcp: u64,
    /// Of all the above, frames handed to the kernel stack instead: no socket registered
    /// for the RX queue (start-up, shutdown) or no peer entry.
    pub passed: u64,
    /// Of `fast`, the frames that are not IPv4/IPv6, by [`NonIpKind`] index.
    pub non_ip: [u64; NonIpKind::COUNT],
}

/// The `stat` enum of bpf/op25b_xdp.c: eight path counters, then one per [`NonIpKind`].
const STAT_NON_IP: usize = 8;
const STAT_COUNT: u32 = (STAT_NON_IP + NonIpKind::COUNT) as u32;

impl PathStats {
    /// Frames the program sent to userspace.
    pub fn to_user(&self) -> u64 {
        self.user_port + self.user_fragment + self.user_unparsed + self.user_off
    }

    /// Counter-wise `self - earlier` (saturating).
    pub fn since(&self, earlier: &PathStats) -> PathStats {
        PathStats {
            fast: self.fast.saturating_sub(earlier.fast),
            fast_bytes: self.fast_bytes.saturating_sub(earlier.fast_bytes),
            user_port: self.user_port.saturating_sub(earlier.user_port),
            user_fragment: self.user_fragment.saturating_sub(earlier.user_fragment),
            user_unparsed: self.user_unparsed.saturating_sub(earlier.user_unparsed),
            user_off: self.user_off.saturating_sub(earlier.user_off),
            fast_tcp: self.fast_tcp.saturating_sub(earlier.fast_tcp),
            passed: self.passed.saturating_sub(earlier.passed),
            non_ip: std::array::from_fn(|k| self.non_ip[k].saturating_sub(earlier.non_ip[k])),
        }
    }

    /// `(reason, frames)` of the userspace path, for metrics and reports.
    pub fn user_reasons(&self) -> [(&'static str, u64); 4] {
        [
            ("port", self.user_port),
            ("fragment", self.user_fragment),
            ("unparsed", self.user_unparsed),
            ("off", self.user_off),
        ]
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "fast_path_frames": self.fast,
            "fast_path_tcp_frames": self.fast_tcp,
            "fast_path_bytes": self.fast_bytes,
            "passed_to_kernel_stack": self.passed,
            "to_userspace": {
                "port": self.user_port,
                "fragment": self.user_fragment,
                "unparsed": self.user_unparsed,
                "off": self.user_off,
            },
            "fast_path_non_ip": NonIpKind::ALL
                .iter()
                .map(|k| (k.as_str().to_string(), serde_json::json!(self.non_ip[k.index()])))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
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

fn update(fd: &OwnedFd, key: u32, value: *const libc::c_void) -> io::Result<()> {
    // SAFETY: `key` is a live 4-byte value and `value` points at a live value of the map's
    // value size (the callers pass the map's own type).
    let rc =
        unsafe { bpf::bpf_map_update_elem(fd.as_raw_fd(), (&key as *const u32).cast(), value, 0) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(())
}

/// The loaded program and its maps (not attached: see [`XdpLink`]).
#[derive(Debug)]
pub struct Program {
    prog: OwnedFd,
    xsks: OwnedFd,
    peer: OwnedFd,
    settings: OwnedFd,
    stats: StatsMap,
}

/// The `stats` map, readable from any thread (metrics) without holding the program.
#[derive(Debug)]
pub struct StatsMap {
    fd: OwnedFd,
    cpus: usize,
}

impl StatsMap {
    /// Sums every counter over the possible CPUs.
    pub fn read(&self) -> io::Result<PathStats> {
        const N: usize = STAT_COUNT as usize;
        // One entry (`struct counters`, N u64s); a per-CPU lookup writes it once per
        // possible CPU, each copy 8-byte aligned (N * 8 already is).
        let mut per_cpu = vec![[0u64; N]; self.cpus];
        let key = 0u32;
        // SAFETY: `per_cpu` holds one N-u64 value per possible CPU, what the kernel writes.
        let rc = unsafe {
            bpf::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                (&key as *const u32).cast(),
                per_cpu.as_mut_ptr().cast(),
            )
        };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        let mut v = [0u64; N];
        for cpu in &per_cpu {
            for (sum, x) in v.iter_mut().zip(cpu) {
                *sum += x;
            }
        }
        Ok(PathStats {
            fast: v[0],
            fast_bytes: v[1],
            user_port: v[2],
            user_fragment: v[3],
            user_unparsed: v[4],
            user_off: v[5],
            fast_tcp: v[6],
            passed: v[7],
            non_ip: std::array::from_fn(|k| v[STAT_NON_IP + k]),
        })
    }

    /// A second handle on the same map.
    pub fn try_clone(&self) -> io::Result<StatsMap> {
        Ok(StatsMap {
            fd: self.fd.try_clone()?,
            cpus: self.cpus,
        })
    }
}

/// Closes a libbpf object on every path out of [`Program::load`].
struct Object(*mut bpf::bpf_object);

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: the pointer came from bpf_object__open_mem and is closed once, here.
        unsafe { bpf::bpf_object__close(self.0) };
    }
}

impl Program {
    /// Loads the program with a socket map of `queues` slots. The fast path starts off
    /// (every frame to userspace) until [`Program::write_settings`] turns it on.
    pub fn load(queues: u32) -> io::Result<Program> {
        // SAFETY: OBJECT is a static byte slice; libbpf copies what it keeps. NULL opts =
        // defaults.
        let obj = unsafe {
            bpf::bpf_object__open_mem(
                OBJECT.as_ptr().cast(),
                OBJECT.len() as bpf::size_t,
                std::ptr::null(),
            )
        };
        if obj.is_null() {
            return Err(io::Error::last_os_error());
        }
        let obj = Object(obj);
        let map = |name: &str| -> io::Result<*mut bpf::bpf_map> {
            let c = CString::new(name).expect("no NUL");
            // SAFETY: `obj` is open and `c` is NUL-terminated.
            let m = unsafe { bpf::bpf_object__find_map_by_name(obj.0, c.as_ptr()) };
            if m.is_null() {
                Err(io::Error::other(format!("XDP object has no map {name}")))
            } else {
                Ok(m)
            }
        };
        let xsks = map("xsks")?;
        // SAFETY: `xsks` belongs to the open, not yet loaded object.
        let rc = unsafe { bpf::bpf_map__set_max_entries(xsks, queues.max(1)) };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        // SAFETY: `obj` is open; load creates the maps and verifies the program.
        let rc = unsafe { bpf::bpf_object__load(obj.0) };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        let pname = CString::new("op25b_xdp").expect("no NUL");
        // SAFETY: `obj` is loaded and `pname` is NUL-terminated.
        let prog = unsafe { bpf::bpf_object__find_program_by_name(obj.0, pname.as_ptr()) };
        if prog.is_null() {
            return Err(io::Error::other("XDP object has no program op25b_xdp"));
        }
        let fd_of = |name: &str| -> io::Result<OwnedFd> {
            // SAFETY: the map belongs to the loaded object, which is still open.
            dup(unsafe { bpf::bpf_map__fd(map(name)?) }, name)
        };
        // SAFETY: `prog` belongs to the loaded object, which is still open.
        let prog_fd = dup(unsafe { bpf::bpf_program__fd(prog) }, "op25b_xdp")?;
        // SAFETY: no arguments; reads /sys/devices/system/cpu/possible once.
        let cpus = unsafe { bpf::libbpf_num_possible_cpus() };
        if cpus <= 0 {
            return Err(io::Error::from_raw_os_error(-cpus));
        }
        Ok(Program {
            prog: prog_fd,
            xsks: fd_of("xsks")?,
            peer: fd_of("peer")?,
            settings: fd_of("settings")?,
            stats: StatsMap {
                fd: fd_of("stats")?,
                cpus: cpus as usize,
            },
        })
        // `obj` closes here: the kernel objects live on through our descriptors.
    }

    /// The fast path's target: frames it takes leave through `ifindex`.
    pub fn set_peer(&self, ifindex: u32) -> io::Result<()> {
        update(&self.peer, 0, (&ifindex as *const u32).cast())
    }

    /// Replaces the settings in one map update (the program reads them per frame).
    pub fn write_settings(&self, s: &Settings) -> io::Result<()> {
        update(&self.settings, 0, (s as *const Settings).cast())
    }

    /// Steers RX queue `queue` to the AF_XDP socket `xsk_fd`.
    pub fn register(&self, queue: u32, xsk_fd: libc::c_int) -> io::Result<()> {
        let fd = xsk_fd as u32;
        update(&self.xsks, queue, (&fd as *const u32).cast())
    }

    /// Stops steering `queue` (its frames then go to the kernel stack).
    pub fn unregister(&self, queue: u32) {
        // SAFETY: the key points at a live 4-byte value.
        let _ = unsafe {
            bpf::bpf_map_delete_elem(self.xsks.as_raw_fd(), (&queue as *const u32).cast())
        };
    }

    pub fn stats(&self) -> &StatsMap {
        &self.stats
    }

    /// Second handles on the program and its maps (for the control thread; the program
    /// stays attached only as long as its [`XdpLink`]).
    pub fn try_clone(&self) -> io::Result<Program> {
        Ok(Program {
            prog: self.prog.try_clone()?,
            xsks: self.xsks.try_clone()?,
            peer: self.peer.try_clone()?,
            settings: self.settings.try_clone()?,
            stats: self.stats.try_clone()?,
        })
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN, nothing is sent) and returns
    /// its action (`XDP_PASS`, `XDP_REDIRECT`, ...). The program reads its maps as in
    /// service: a test tells the two paths apart by the `stats` counters.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        // SAFETY: all-zero is a valid bpf_test_run_opts (no buffers, no context).
        let mut opts: bpf::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<bpf::bpf_test_run_opts>() as bpf::size_t;
        opts.data_in = frame.as_ptr().cast();
        opts.data_size_in = frame.len() as u32;
        opts.repeat = 1;
        // SAFETY: `opts` and the frame it points at outlive the call; no output buffers.
        let rc = unsafe { bpf::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(opts.retval)
    }
}

/// Whether `ifindex` takes frames redirected to it (`NETDEV_XDP_ACT_NDO_XMIT`). A veth
/// takes them only while its peer has an XDP program or GRO on. `None`: the kernel (< 6.3)
/// does not say.
pub fn takes_redirects(ifindex: u32) -> io::Result<Option<bool>> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    takes_redirects_on(ifindex, reports_xdp_features(&release))
}

/// Kernels from 6.3 report each device's XDP features (none is an answer: `lo`, a
/// device without XDP); before, the flags are always zero.
fn reports_xdp_features(release: &str) -> bool {
    let mut it = release.trim().split(['.', '-']);
    let major: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 3)
}

fn takes_redirects_on(ifindex: u32, reported: bool) -> io::Result<Option<bool>> {
    // SAFETY: all-zero is a valid bpf_xdp_query_opts.
    let mut opts: bpf::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_xdp_query_opts>() as bpf::size_t;
    // SAFETY: `opts` outlives the call and its `sz` is set.
    let rc = unsafe { bpf::bpf_xdp_query(ifindex as libc::c_int, 0, &mut opts) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    if opts.feature_flags == 0 && !reported {
        return Ok(None);
    }
    Ok(Some(opts.feature_flags & XDP_ACT_NDO_XMIT != 0))
}

/// An attached program: the link (detaches on drop) and the program with its maps.
#[derive(Debug)]
pub struct XdpLink {
    // Drop order: the link first (detach), then the program and map references.
    _link: OwnedFd,
    pub program: Program,
    pub ifindex: u32,
    pub native: bool,
}

impl XdpLink {
    /// Attaches `program` (loaded, its settings written) to `ifindex` in native (driver)
    /// or generic (SKB) mode.
    pub fn attach(program: &Program, ifindex: u32, native: bool) -> io::Result<XdpLink> {
        let program = program.try_clone()?;
        // SAFETY: all-zero is a valid bpf_link_create_opts (no iterator, no cookie).
        let mut opts: bpf::bpf_link_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<bpf::bpf_link_create_opts>() as bpf::size_t;
        opts.flags = if native {
            XDP_FLAGS_DRV_MODE
        } else {
            XDP_FLAGS_SKB_MODE
        };
        // SAFETY: `opts` is valid for the call and its `sz` covers it.
        let link = owned(unsafe {
            bpf::bpf_link_create(
                program.prog.as_raw_fd(),
                ifindex as libc::c_int,
                bpf::BPF_XDP,
                &opts,
            )
        })?;
        Ok(XdpLink {
            _link: link,
            program,
            ifindex,
            native,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_layout_matches_the_program() {
        // struct settings: u32 flags, u32 generation, u8 ports[8192].
        assert_eq!(std::mem::size_of::<Settings>(), 8 + 8192);
        let mut ports = PortSet::new();
        for p in [25, 465, 587, 0, 65535] {
            ports.insert(p);
        }
        let s = Settings::new(true, true, &ports, 7);
        assert!(s.active());
        assert_eq!(s.flags, 3);
        assert_eq!(s.generation, 7);
        assert_eq!(s.ports[25 / 8], 1 << (25 % 8));
        assert_eq!(s.ports[0], 1); // port 0
        assert_eq!(s.ports[8191], 0x80);
        let set: usize = s.ports.iter().map(|b| b.count_ones() as usize).sum();
        assert_eq!(set, 5);
        assert!(!Settings::new(true, false, &ports, 1).active());
        assert!(!Settings::new(false, true, &ports, 1).active());
    }

    #[test]
    fn xdp_features_from_6_3() {
        for (r, want) in [
            ("6.18.44", true),
            ("6.3.0-1-amd64", true),
            ("6.2.16", false),
            ("5.15.0-91-generic", false),
            ("10.1", true),
            ("garbage", false),
        ] {
            assert_eq!(reports_xdp_features(r), want, "{r}");
        }
    }

    #[test]
    fn object_has_the_program_and_maps() {
        // The embedded object is an ELF for BPF with the sections the loader looks up.
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        let has = |s: &[u8]| OBJECT.windows(s.len()).any(|w| w == s);
        for name in [
            "op25b_xdp",
            "xsks",
            "peer",
            "settings",
            "stats",
            ".maps",
            "license",
        ] {
            assert!(has(name.as_bytes()), "object lacks {name}");
        }
    }
}
