//! op25b's own XDP program (`bpf/op25b_xdp.c`), loaded through libbpf and attached through
//! a **bpf_link**, one copy per interface.
//!
//! The program sends each frame either to the worker's AF_XDP socket (userspace judges it)
//! or, on the **fast path**, straight out of the other interface through a DEVMAP, when
//! userspace would forward it whatever the policy says: see the program's header comment
//! and docs/architecture.md. Its maps, per interface:
//! * `xsks` (XSKMAP): RX queue -> the worker's socket;
//! * `peer` (DEVMAP): key 0 -> the other interface;
//! * `settings` (ARRAY, one [`XdpProgramSettings`]): fast path on/off, whether the other interface
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
//! beside it. It is loaded through [`object`], the libbpf plumbing the test kit's programs
//! load through too.

use super::counters::{Snapshot, PORT_SLOTS};
use super::settings::FastPathMode;
use crate::classify::NonIpKind;
use crate::policy::PortSet;
use crate::policy::{Action, Reason, COUNTER_SLOTS};
use libbpf_sys as bpf;
use object::{errno, owned};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

mod object;
pub use object::{ktime_ns, possible_cpus, BpfObject, BpfProgram, TestRun};

/// The compiled program (build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/op25b_xdp.o"));

/// `NETDEV_XDP_ACT_NDO_XMIT` (include/uapi/linux/netdev.h): the device takes frames
/// redirected to it.
const XDP_ACT_NDO_XMIT: u64 = 1 << 2;
/// `XDP_DROP`, `XDP_PASS` and `XDP_REDIRECT`, as BPF_PROG_TEST_RUN reports them.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// `settings.flags` bits (bpf/op25b_xdp.c).
const FLAG_FAST_PATH: u32 = 1;
const FLAG_PEER_READY: u32 = 2;
const FLAG_KERNEL: u32 = 4;
const FLAG_INBOUND: u32 = 8;

/// The `settings` map's value, as the program reads it (`struct settings`).
#[repr(C)]
#[derive(Clone)]
pub struct XdpProgramSettings {
    flags: u32,
    generation: u32,
    frame_max: u32,
    pad: u32,
    ports: [u8; 65536 / 8],
}

impl XdpProgramSettings {
    /// `mode`: `datapath.fast_path`; `peer_ready`: the other interface takes redirected
    /// frames; `inbound`: this copy runs on the upstream interface; `frame_max`: the
    /// largest frame a worker takes (0: no limit); `ports`: the TCP destination ports
    /// that need the policy (judged here in mode kernel, by the workers in mode
    /// unblockable).
    pub fn new(
        mode: FastPathMode,
        peer_ready: bool,
        inbound: bool,
        frame_max: u32,
        ports: &PortSet,
        generation: u64,
    ) -> Self {
        let mut s = XdpProgramSettings {
            flags: 0,
            generation: generation as u32,
            frame_max,
            pad: 0,
            ports: [0; 65536 / 8],
        };
        s.flags |= match mode {
            FastPathMode::Kernel => FLAG_KERNEL,
            FastPathMode::Unblockable => FLAG_FAST_PATH,
            FastPathMode::Off => 0,
        };
        if peer_ready {
            s.flags |= FLAG_PEER_READY;
        }
        if inbound {
            s.flags |= FLAG_INBOUND;
        }
        for p in ports.iter() {
            s.ports[usize::from(p >> 3)] |= 1 << (p & 7);
        }
        s
    }

    /// True when the program may decide anything in the kernel (forward or drop).
    pub fn active(&self) -> bool {
        self.flags & FLAG_PEER_READY != 0 && self.flags & (FLAG_FAST_PATH | FLAG_KERNEL) != 0
    }

    /// True when the program judges in the kernel (mode kernel, peer ready).
    pub fn judges(&self) -> bool {
        self.active() && self.flags & FLAG_KERNEL != 0
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
    /// Sent to userspace in mode kernel: blocked, and the class replies (reject).
    pub user_reply: u64,
    /// ... in mode kernel while no complete policy generation is in the maps.
    pub user_no_policy: u64,
    /// Dropped: for the workers, but larger than a worker's UMEM frame.
    pub too_big: u64,
}

/// The `stat` enum of bpf/op25b_xdp.c: eight path counters, one per [`NonIpKind`], then
/// the three of mode kernel.
const STAT_NON_IP: usize = 8;
const STAT_USER_REPLY: usize = STAT_NON_IP + NonIpKind::COUNT;
const STAT_COUNT: u32 = (STAT_USER_REPLY + 3) as u32;

impl PathStats {
    /// Frames the program sent to userspace.
    pub fn to_user(&self) -> u64 {
        self.user_port
            + self.user_fragment
            + self.user_unparsed
            + self.user_off
            + self.user_reply
            + self.user_no_policy
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
            user_reply: self.user_reply.saturating_sub(earlier.user_reply),
            user_no_policy: self.user_no_policy.saturating_sub(earlier.user_no_policy),
            too_big: self.too_big.saturating_sub(earlier.too_big),
        }
    }

    /// `(reason, frames)` of the userspace path, for metrics and reports.
    pub fn user_reasons(&self) -> [(&'static str, u64); 6] {
        [
            ("port", self.user_port),
            ("fragment", self.user_fragment),
            ("unparsed", self.user_unparsed),
            ("off", self.user_off),
            ("reply", self.user_reply),
            ("no_policy", self.user_no_policy),
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
                "reply": self.user_reply,
                "no_policy": self.user_no_policy,
            },
            "dropped_too_big": self.too_big,
            "fast_path_non_ip": NonIpKind::ALL
                .iter()
                .map(|k| (k.as_str().to_string(), serde_json::json!(self.non_ip[k.index()])))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn update(fd: &OwnedFd, key: u32, value: *const libc::c_void) -> io::Result<()> {
    // SAFETY: `key` is a live 4-byte value and `value` points at a live value of the map's
    // value size (the callers pass the map's own type).
    errno(unsafe {
        bpf::bpf_map_update_elem(fd.as_raw_fd(), (&key as *const u32).cast(), value, 0)
    })
}

/// A BPF map of fixed key and value sizes, read and written as bytes (the layouts are
/// `repr(C)` mirrors of bpf/op25b_xdp.c, built in [`super::kernel`]).
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
    name: &'static str,
}

impl Map {
    fn sized(&self, key: &[u8], value: Option<usize>) -> io::Result<()> {
        if key.len() != self.key_size || value.is_some_and(|v| v != self.value_size) {
            return Err(io::Error::other(format!(
                "map {}: key of {} B / value of {:?} B given, the map has {} / {}",
                self.name,
                key.len(),
                value,
                self.key_size,
                self.value_size
            )));
        }
        Ok(())
    }

    /// The map's name in bpf/op25b_xdp.c (for errors).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Inserts or replaces `key`.
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.sized(key, Some(value.len()))?;
        // SAFETY: both buffers are live and of the map's key and value sizes (checked).
        errno(unsafe {
            bpf::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                key.as_ptr().cast(),
                value.as_ptr().cast(),
                0,
            )
        })
    }

    /// Deletes `key`; false when it was not there.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.sized(key, None)?;
        // SAFETY: `key` is live and of the map's key size (checked).
        match errno(unsafe { bpf::bpf_map_delete_elem(self.fd.as_raw_fd(), key.as_ptr().cast()) }) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads `key` into `value` (of the map's value size, times the possible CPUs for a
    /// per-CPU map); false when it is not there.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        self.sized(key, None)?;
        if value.len() < self.value_size {
            return Err(io::Error::other(format!(
                "map {}: value buffer too small",
                self.name
            )));
        }
        // SAFETY: `key` is of the key size; `value` holds at least what the kernel writes
        // (the caller sizes it for per-CPU maps).
        match errno(unsafe {
            bpf::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                key.as_ptr().cast(),
                value.as_mut_ptr().cast(),
            )
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads `key` of a per-CPU map: one value per possible CPU (`cpus`), each padded to
    /// 8 bytes as the kernel lays them out; all zero when the key is not there.
    pub fn lookup_per_cpu(&self, key: &[u8], cpus: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.value_size.next_multiple_of(8) * cpus];
        self.lookup(key, &mut buf)?;
        Ok(buf)
    }

    /// Reads `key` of a per-CPU map whose value is u64 counters, summed over CPUs.
    pub fn sum_per_cpu(&self, key: &[u8], cpus: usize) -> io::Result<Vec<u64>> {
        if !self.value_size.is_multiple_of(8) {
            return Err(io::Error::other(format!(
                "map {}: a value of {} B is not u64 counters",
                self.name, self.value_size
            )));
        }
        let buf = self.lookup_per_cpu(key, cpus)?;
        let mut sum = vec![0u64; self.value_size / 8];
        for cpu in buf.chunks_exact(self.value_size) {
            for (s, w) in sum.iter_mut().zip(cpu.chunks_exact(8)) {
                *s += u64::from_ne_bytes(w.try_into().expect("8 bytes"));
            }
        }
        Ok(sum)
    }

    /// The key after `key` (the first with `None`) into `next`; false at the end.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
        if let Some(k) = key {
            self.sized(k, None)?;
        }
        if next.len() != self.key_size {
            return Err(io::Error::other(format!(
                "map {}: key buffer size",
                self.name
            )));
        }
        let kp = key.map_or(std::ptr::null(), |k| k.as_ptr().cast());
        // SAFETY: `kp` is NULL or a live key; `next` is of the key size.
        match errno(unsafe {
            bpf::bpf_map_get_next_key(self.fd.as_raw_fd(), kp, next.as_mut_ptr().cast())
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads and deletes up to `keys.len() / key size` entries of a hash map in one
    /// call (BPF_MAP_LOOKUP_AND_DELETE_BATCH), continuing the sweep at `cursor` (`None`:
    /// from the first bucket). `keys` and `values` receive the entries back to back.
    /// Returns how many were read (whole buckets only: maybe fewer than asked), and true
    /// once the sweep reached the end of the map (`cursor` is then `None` again).
    pub fn lookup_and_delete_batch(
        &self,
        cursor: &mut Option<Vec<u8>>,
        keys: &mut [u8],
        values: &mut [u8],
    ) -> io::Result<(usize, bool)> {
        let n = (keys.len() / self.key_size).min(values.len() / self.value_size);
        if n == 0 {
            return Err(io::Error::other(format!(
                "map {}: batch buffers hold no entry",
                self.name
            )));
        }
        let mut count = n as u32;
        // The batch token: a bucket index for hash maps; libbpf asks for at least a key's
        // worth of memory.
        let mut out = vec![0u8; self.key_size.max(8)];
        if let Some(c) = cursor.as_mut() {
            c.resize(out.len(), 0);
        }
        let in_batch = cursor
            .as_mut()
            .map_or(std::ptr::null_mut(), |c| c.as_mut_ptr().cast());
        // SAFETY: all-zero is a valid bpf_map_batch_opts (no flags).
        let mut opts: bpf::bpf_map_batch_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<bpf::bpf_map_batch_opts>() as bpf::size_t;
        // SAFETY: `in_batch` is NULL or a live token buffer of `out`'s size, `out` is
        // live; `keys` and `values` hold `count` entries of the map's key and value sizes
        // (checked above); `opts` outlives the call.
        let rc = unsafe {
            bpf::bpf_map_lookup_and_delete_batch(
                self.fd.as_raw_fd(),
                in_batch,
                out.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let got = (count as usize).min(n);
        match errno(rc) {
            Ok(()) => {
                *cursor = Some(out);
                Ok((got, false))
            }
            // The end of the map: what was read before it is in the buffers.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                *cursor = None;
                Ok((got, true))
            }
            // ENOSPC: the next bucket holds more entries than the buffers take (nothing
            // was read; `cursor` stays).
            Err(e) => Err(e),
        }
    }

    /// Key and value sizes (bytes).
    pub fn sizes(&self) -> (usize, usize) {
        (self.key_size, self.value_size)
    }

    /// A new LPM trie of `max_entries` (an inner map of one generation).
    pub fn new_lpm_trie(
        name: &'static str,
        key_size: usize,
        value_size: usize,
        max_entries: u32,
    ) -> io::Result<Map> {
        // SAFETY: all-zero is a valid bpf_map_create_opts.
        let mut opts: bpf::bpf_map_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<bpf::bpf_map_create_opts>() as bpf::size_t;
        opts.map_flags = bpf::BPF_F_NO_PREALLOC;
        let cname = CString::new(name).expect("no NUL");
        // SAFETY: `cname` and `opts` outlive the call.
        let fd = owned(unsafe {
            bpf::bpf_map_create(
                bpf::BPF_MAP_TYPE_LPM_TRIE,
                cname.as_ptr(),
                key_size as u32,
                value_size as u32,
                max_entries.max(1),
                &opts,
            )
        })?;
        Ok(Map {
            fd,
            key_size,
            value_size,
            name,
        })
    }

    /// The descriptor as a map-in-map value (4 bytes).
    pub fn fd_value(&self) -> [u8; 4] {
        (self.fd.as_raw_fd() as u32).to_ne_bytes()
    }

    pub fn try_clone(&self) -> io::Result<Map> {
        Ok(Map {
            fd: self.fd.try_clone()?,
            key_size: self.key_size,
            value_size: self.value_size,
            name: self.name,
        })
    }
}

/// The maps both interfaces' programs share: the policy's two generations, the overlay
/// and the abuse desk's list (bpf/op25b_xdp.c). [`super::kernel::KernelPolicy`] writes
/// them.
#[derive(Debug)]
pub struct SharedMaps {
    pub active: Map,
    pub gpol: Map,
    pub classes: Map,
    pub slotmap: Map,
    pub subs4: Map,
    pub subs6: Map,
    pub allow4: Map,
    pub allow6: Map,
    pub over4: Map,
    pub over6: Map,
    pub offenders: Map,
    pub barrier: Map,
}

/// The names of [`SharedMaps`] in the object, in field order.
const SHARED: [&str; 12] = [
    "active",
    "gpol",
    "classes",
    "slotmap",
    "subs4",
    "subs6",
    "allow4",
    "allow6",
    "over4",
    "over6",
    "offenders",
    "barrier",
];

impl SharedMaps {
    fn all(&self) -> [&Map; 12] {
        [
            &self.active,
            &self.gpol,
            &self.classes,
            &self.slotmap,
            &self.subs4,
            &self.subs6,
            &self.allow4,
            &self.allow6,
            &self.over4,
            &self.over6,
            &self.offenders,
            &self.barrier,
        ]
    }

    pub fn try_clone(&self) -> io::Result<SharedMaps> {
        let [active, gpol, classes, slotmap, subs4, subs6, allow4, allow6, over4, over6, offenders, barrier] =
            self.all().map(Map::try_clone);
        Ok(SharedMaps {
            active: active?,
            gpol: gpol?,
            classes: classes?,
            slotmap: slotmap?,
            subs4: subs4?,
            subs6: subs6?,
            allow4: allow4?,
            allow6: allow6?,
            over4: over4?,
            over6: over6?,
            offenders: offenders?,
            barrier: barrier?,
        })
    }
}

/// What the program decided in the kernel (mode kernel), in the layout of the workers'
/// counters (`struct verdicts`, summed over CPUs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelVerdicts {
    /// [action: forward, drop][reason].
    pub verdicts: [[u64; Reason::COUNT]; 2],
    /// Blocked frames per port slot (`counters::port_slot`).
    pub blocked_ports: [u64; PORT_SLOTS],
    /// Blocked frames per class counter slot.
    pub blocked_classes: Vec<u64>,
}

impl Default for KernelVerdicts {
    fn default() -> Self {
        KernelVerdicts {
            verdicts: [[0; Reason::COUNT]; 2],
            blocked_ports: [0; PORT_SLOTS],
            blocked_classes: vec![0; COUNTER_SLOTS],
        }
    }
}

/// Kept beside [`KernelVerdicts`]: the counters know nothing of the XDP program.
impl Snapshot {
    /// The verdicts the XDP programs reached in the kernel (subscriber side, upstream
    /// side), as a snapshot: added to the workers' ([`Snapshot::merge`]), every counter a
    /// verdict feeds (verdicts, blocked ports, blocked classes) holds one total.
    pub fn from_kernel(v: &[KernelVerdicts; 2]) -> Snapshot {
        let mut s = Snapshot::default();
        for (i, k) in v.iter().enumerate() {
            // The kernel forwards or drops; a reject goes to the workers.
            for action in [Action::Forward, Action::Drop] {
                s.verdicts[i][action.index()] = k.verdicts[action.index()];
            }
            s.blocked_ports[i] = k.blocked_ports;
            s.xdp_judged[i] = k.verdicts.iter().flatten().sum();
            if s.blocked_classes.len() < k.blocked_classes.len() {
                s.blocked_classes.resize(k.blocked_classes.len(), 0);
            }
            for (sum, n) in s.blocked_classes.iter_mut().zip(&k.blocked_classes) {
                *sum += n;
            }
        }
        s
    }
}

impl KernelVerdicts {
    /// The verdicts reached, `action/reason` -> frames (those counted only), as in the
    /// final report's `received_on.<side>.verdicts`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        // The kernel forwards or drops; a reject goes to the workers.
        for action in [Action::Forward, Action::Drop] {
            for r in Reason::ALL {
                let n = self.verdicts[action.index()][r.index()];
                if n > 0 {
                    m.insert(format!("{}/{}", action.as_str(), r.as_str()), n.into());
                }
            }
        }
        serde_json::Value::Object(m)
    }
}

/// u64s in `struct verdicts`.
const VERDICT_WORDS: usize = 2 * Reason::COUNT + PORT_SLOTS + COUNTER_SLOTS;

/// The `verdicts` map, readable from any thread (metrics).
#[derive(Debug)]
pub struct VerdictsMap {
    map: Map,
    cpus: usize,
}

impl VerdictsMap {
    /// Sums every counter over the possible CPUs.
    pub fn read(&self) -> io::Result<KernelVerdicts> {
        let v = self.map.sum_per_cpu(&0u32.to_ne_bytes(), self.cpus)?;
        if v.len() != VERDICT_WORDS {
            return Err(io::Error::other(format!(
                "map verdicts holds {} counters, op25b reads {VERDICT_WORDS} (bpf/op25b_xdp.c and src/datapath/xdp.rs disagree)",
                v.len()
            )));
        }
        let mut k = KernelVerdicts::default();
        for a in 0..2 {
            k.verdicts[a].copy_from_slice(&v[a * Reason::COUNT..(a + 1) * Reason::COUNT]);
        }
        let at = 2 * Reason::COUNT;
        k.blocked_ports.copy_from_slice(&v[at..at + PORT_SLOTS]);
        k.blocked_classes = v[at + PORT_SLOTS..].to_vec();
        Ok(k)
    }

    pub fn try_clone(&self) -> io::Result<VerdictsMap> {
        Ok(VerdictsMap {
            map: self.map.try_clone()?,
            cpus: self.cpus,
        })
    }
}

/// The loaded program and its maps (not attached: see [`XdpLink`]).
#[derive(Debug)]
pub struct Program {
    prog: BpfProgram,
    xsks: OwnedFd,
    peer: OwnedFd,
    settings: OwnedFd,
    stats: StatsMap,
    verdicts: VerdictsMap,
    shared: SharedMaps,
}

/// The `stats` map, readable from any thread (metrics) without holding the program.
#[derive(Debug)]
pub struct StatsMap {
    map: Map,
    cpus: usize,
}

impl StatsMap {
    /// Sums every counter over the possible CPUs.
    pub fn read(&self) -> io::Result<PathStats> {
        let v = self.map.sum_per_cpu(&0u32.to_ne_bytes(), self.cpus)?;
        if v.len() != STAT_COUNT as usize {
            return Err(io::Error::other(format!(
                "map stats holds {} counters, op25b reads {STAT_COUNT} (bpf/op25b_xdp.c and src/datapath/xdp.rs disagree)",
                v.len()
            )));
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
            user_reply: v[STAT_USER_REPLY],
            user_no_policy: v[STAT_USER_REPLY + 1],
            too_big: v[STAT_USER_REPLY + 2],
        })
    }

    /// A second handle on the same map.
    pub fn try_clone(&self) -> io::Result<StatsMap> {
        Ok(StatsMap {
            map: self.map.try_clone()?,
            cpus: self.cpus,
        })
    }
}

impl Program {
    /// Loads the program with a socket map of `queues` slots and maps of its own. The
    /// fast path starts off (every frame to userspace) until [`Program::write_settings`]
    /// turns it on.
    pub fn load(queues: u32) -> io::Result<Program> {
        Self::load_sharing(queues, None)
    }

    /// [`Program::load`], sharing the policy maps of `with` (the other interface's copy)
    /// when given.
    pub fn load_sharing(queues: u32, with: Option<&SharedMaps>) -> io::Result<Program> {
        let obj = BpfObject::open(OBJECT, "op25b_xdp")?;
        obj.set_max_entries("xsks", queues)?;
        if let Some(with) = with {
            for (name, m) in SHARED.iter().zip(with.all()) {
                obj.reuse_map(name, m)?;
            }
        }
        obj.load()?;
        let prog = obj.program("op25b_xdp")?;
        let cpus = possible_cpus()?;
        let fd_of = |name: &'static str| obj.map(name).map(|m| m.fd);
        let [active, gpol, classes, slotmap, subs4, subs6, allow4, allow6, over4, over6, offenders, barrier] =
            SHARED.map(|name| obj.map(name));
        Ok(Program {
            prog,
            xsks: fd_of("xsks")?,
            peer: fd_of("peer")?,
            settings: fd_of("settings")?,
            stats: StatsMap {
                map: obj.map("stats")?,
                cpus,
            },
            verdicts: VerdictsMap {
                map: obj.map("verdicts")?,
                cpus,
            },
            shared: SharedMaps {
                active: active?,
                gpol: gpol?,
                classes: classes?,
                slotmap: slotmap?,
                subs4: subs4?,
                subs6: subs6?,
                allow4: allow4?,
                allow6: allow6?,
                over4: over4?,
                over6: over6?,
                offenders: offenders?,
                barrier: barrier?,
            },
        })
        // `obj` closes here: the kernel objects live on through our descriptors.
    }

    /// The fast path's target: frames it takes leave through `ifindex`.
    pub fn set_peer(&self, ifindex: u32) -> io::Result<()> {
        update(&self.peer, 0, (&ifindex as *const u32).cast())
    }

    /// Replaces the settings in one map update (the program reads them per frame).
    pub fn write_settings(&self, s: &XdpProgramSettings) -> io::Result<()> {
        update(&self.settings, 0, (s as *const XdpProgramSettings).cast())
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

    /// The counters of what this copy decided in the kernel.
    pub fn verdicts(&self) -> &VerdictsMap {
        &self.verdicts
    }

    /// The maps both copies share (the policy, the overlay, the abuse desk's list).
    pub fn shared(&self) -> &SharedMaps {
        &self.shared
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
            verdicts: self.verdicts.try_clone()?,
            shared: self.shared.try_clone()?,
        })
    }

    /// Runs the program once over `frame` (BPF_PROG_TEST_RUN, nothing is sent) and returns
    /// its action (`XDP_PASS`, `XDP_REDIRECT`, ...). The program reads its maps as in
    /// service: a test tells the two paths apart by the `stats` counters.
    pub fn test_run(&self, frame: &[u8]) -> io::Result<u32> {
        self.test_run_repeat(frame, 1).map(|(action, _)| action)
    }

    /// [`Program::test_run`] `repeat` times in the kernel; returns the action and the
    /// kernel's mean run time in nanoseconds (for measuring the lookups).
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
        self.prog.test_run(&TestRun {
            frame,
            repeat,
            ..TestRun::default()
        })
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
    let flags = xdp_feature_flags(ifindex)?;
    if flags == 0 && !reported {
        return Ok(None);
    }
    Ok(Some(flags & XDP_ACT_NDO_XMIT != 0))
}

/// The XDP features the kernel reports for `ifindex` (`NETDEV_XDP_ACT_*`; always 0
/// before 6.3).
pub fn xdp_feature_flags(ifindex: u32) -> io::Result<u64> {
    // SAFETY: all-zero is a valid bpf_xdp_query_opts.
    let mut opts: bpf::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<bpf::bpf_xdp_query_opts>() as bpf::size_t;
    // SAFETY: `opts` outlives the call and its `sz` is set.
    let rc = unsafe { bpf::bpf_xdp_query(ifindex as libc::c_int, 0, &mut opts) };
    if rc < 0 {
        return Err(io::Error::from_raw_os_error(-rc));
    }
    Ok(opts.feature_flags)
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
        let link = program.prog.attach_xdp(ifindex, native)?;
        Ok(XdpLink {
            _link: link,
            program,
            ifindex,
            native,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The kernel's verdicts add to the workers' under the same counters, and every
    /// frame still has exactly one verdict.
    #[test]
    fn kernel_verdicts_join_the_workers_totals() {
        use crate::datapath::counters::{port_slot, WorkerCounters};
        use crate::datapath::io::Side;
        use crate::policy::Verdict;
        let w = WorkerCounters::new();
        let reject = Verdict::Reject(Reason::BlockedPort, crate::policy::ReplyKind::TcpReset);
        w.rx(Side::Subscriber, 2, 120);
        w.verdict(Side::Subscriber, reject, Some(0), Some(25));
        w.verdict(
            Side::Subscriber,
            Verdict::Forward(Reason::PortOpen),
            None,
            Some(587),
        );
        let mut k = [KernelVerdicts::default(), KernelVerdicts::default()];
        // Outbound: 3 drops of class slot 2 to 587, one forward; inbound: one IP25B drop.
        k[0].verdicts[1][Reason::BlockedPort.index()] = 3;
        k[0].blocked_ports[port_slot(Some(587))] = 3;
        k[0].blocked_classes[2] = 3;
        k[0].verdicts[0][Reason::AllowedDestination.index()] = 1;
        k[1].verdicts[1][Reason::InboundSmtp.index()] = 1;
        k[1].blocked_ports[port_slot(Some(25))] = 1;
        k[1].blocked_classes[0] = 1;
        let mut sum = w.snapshot();
        sum.merge(&Snapshot::from_kernel(&k));
        assert_eq!(sum.xdp_judged, [4, 1]);
        assert_eq!(sum.judged(Side::Subscriber), 6);
        assert_eq!(sum.rx_frames, [2, 0], "the workers' frames stay theirs");
        assert_eq!(sum.action_total(Side::Subscriber, Action::Drop), 3);
        assert_eq!(sum.action_total(Side::Subscriber, Action::Reject), 1);
        assert_eq!(sum.blocked_ports[0], [1, 0, 3, 0]);
        assert_eq!(sum.blocked_ports[1], [1, 0, 0, 0]);
        assert_eq!(&sum.blocked_classes[..3], &[2, 0, 3]);
        assert!(sum.verdicts_account_for_rx());
        let j = sum.to_json(&[(0, "dynamic".into()), (2, "quarantine".into())]);
        assert_eq!(j["received_on"]["subscriber"]["judged_in_xdp"], 4);
        assert_eq!(
            j["received_on"]["subscriber"]["verdicts"]["drop/blocked_port"],
            3
        );
        assert_eq!(
            j["received_on"]["upstream"]["verdicts"]["drop/inbound_smtp"],
            1
        );
        assert_eq!(j["blocked_by_class"]["quarantine"], 3);
        assert_eq!(j["blocked_by_class"]["dynamic"], 2);
        assert_eq!(j["verdicts_account_for_rx"], true);
        // A verdict without its frame breaks the account.
        sum.xdp_judged[1] = 0;
        assert!(!sum.verdicts_account_for_rx());
    }

    #[test]
    fn settings_layout_matches_the_program() {
        // struct settings: u32 flags, generation, frame_max, pad; u8 ports[8192].
        assert_eq!(std::mem::size_of::<XdpProgramSettings>(), 16 + 8192);
        let mut ports = PortSet::new();
        for p in [25, 465, 587, 0, 65535] {
            ports.insert(p);
        }
        let s = XdpProgramSettings::new(FastPathMode::Unblockable, true, false, 1792, &ports, 7);
        assert!(s.active());
        assert!(!s.judges());
        assert_eq!(s.flags, 3);
        assert_eq!(s.generation, 7);
        assert_eq!(s.frame_max, 1792);
        let k = XdpProgramSettings::new(FastPathMode::Kernel, true, true, 0, &ports, 7);
        assert!(k.active() && k.judges());
        assert_eq!(k.flags, FLAG_KERNEL | FLAG_PEER_READY | FLAG_INBOUND);
        assert_eq!(s.ports[25 / 8], 1 << (25 % 8));
        assert_eq!(s.ports[0], 1); // port 0
        assert_eq!(s.ports[8191], 0x80);
        let set: usize = s.ports.iter().map(|b| b.count_ones() as usize).sum();
        assert_eq!(set, 5);
        assert!(
            !XdpProgramSettings::new(FastPathMode::Unblockable, false, false, 0, &ports, 1)
                .active()
        );
        assert!(
            !XdpProgramSettings::new(FastPathMode::Kernel, false, false, 0, &ports, 1).active()
        );
        assert!(!XdpProgramSettings::new(FastPathMode::Off, true, false, 0, &ports, 1).active());
    }

    /// bpf/op25b_xdp.c's source, to read the constants Rust mirrors.
    pub(in crate::datapath) mod c_source {
        pub const TEXT: &str = include_str!("../../bpf/op25b_xdp.c");

        /// The value of `#define NAME value` (a `u` suffix allowed).
        pub fn define(name: &str) -> u64 {
            TEXT.lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("#define") && w.next() == Some(name))
                        .then(|| w.next().expect("a value"))
                })
                .unwrap_or_else(|| panic!("bpf/op25b_xdp.c defines no {name}"))
                .trim_end_matches('u')
                .parse()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        }

        /// The names of `enum NAME { ... }`, in order.
        pub fn enum_names(name: &str) -> Vec<String> {
            let start = TEXT
                .find(&format!("enum {name} {{"))
                .unwrap_or_else(|| panic!("bpf/op25b_xdp.c has no enum {name}"));
            let body = &TEXT[start..];
            let body = &body[body.find('{').expect("{") + 1..body.find("};").expect("};")];
            body.lines()
                .map(|l| l.split("//").next().unwrap_or("").trim())
                .filter_map(|l| l.strip_suffix(','))
                .map(|l| l.split('=').next().unwrap_or(l).trim().to_string())
                .collect()
        }
    }

    #[test]
    fn constants_equal_the_programs() {
        use c_source::{define, enum_names};
        for (name, rust) in [
            ("FLAG_FAST_PATH", FLAG_FAST_PATH),
            ("FLAG_PEER_READY", FLAG_PEER_READY),
            ("FLAG_KERNEL", FLAG_KERNEL),
            ("FLAG_INBOUND", FLAG_INBOUND),
        ] {
            assert_eq!(define(name), u64::from(rust), "{name}");
        }
        // enum stat: the path counters, one per NonIpKind in its order, the three of
        // mode kernel, STAT_COUNT.
        let stat = enum_names("stat");
        let at = |n: &str| stat.iter().position(|x| x == n).expect(n);
        for k in NonIpKind::ALL {
            let n = format!("STAT_NONIP_{}", k.as_str().to_uppercase());
            assert_eq!(at(&n), STAT_NON_IP + k.index(), "{n}");
        }
        assert_eq!(at("STAT_USER_REPLY"), STAT_USER_REPLY);
        assert_eq!(at("STAT_COUNT") as u32, STAT_COUNT);
        // struct verdicts: [action][reason], the port slots, the class counter slots.
        assert_eq!(define("REASONS") as usize, Reason::COUNT);
        for r in [
            Reason::Unmatched,
            Reason::PortOpen,
            Reason::AllowedDestination,
            Reason::BlockedPort,
            Reason::InboundSmtp,
        ] {
            let n = format!("REASON_{}", r.as_str().to_uppercase());
            assert_eq!(define(&n) as usize, r.index(), "{n}");
        }
        assert_eq!(define("PORT_SLOTS") as usize, PORT_SLOTS);
        assert_eq!(define("COUNTER_SLOTS") as usize, COUNTER_SLOTS);
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
