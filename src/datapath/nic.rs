//! Network interface facts and settings the datapath needs before it binds: existence,
//! index, MTU, queue count, attached XDP program, promiscuous mode, privileges.
//!
//! All values come from the *current* network namespace (if_nametoindex, ioctl, libbpf
//! netlink queries); `/sys/class/net` is only read for the queue count and MTU, after
//! checking that its ifindex agrees (an `ip netns exec` remounts /sys, a bare setns does
//! not).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What we know about one interface.
#[derive(Clone, Debug)]
pub struct Nic {
    pub name: String,
    pub ifindex: u32,
    pub mtu: u32,
    pub rx_queues: u32,
    pub tx_queues: u32,
    pub up: bool,
}

/// Why an interface cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    #[error("interface {0:?} does not exist in this network namespace (check `ip link`)")]
    Missing(String),
    #[error("interface {0:?}: {1}")]
    Io(String, io::Error),
}

/// The index of interface `name` in the current namespace; `None` when there is none.
pub fn ifindex(name: &str) -> Option<u32> {
    let cname = CString::new(name).ok()?;
    // SAFETY: `cname` is a valid NUL-terminated string; the call only reads it.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    (ifindex != 0).then_some(ifindex)
}

/// Looks an interface up by name in the current namespace.
pub fn inspect(name: &str) -> Result<Nic, NicError> {
    let ifindex = ifindex(name).ok_or_else(|| NicError::Missing(name.into()))?;
    let sys = format!("/sys/class/net/{name}");
    let sys_index: Option<u32> = std::fs::read_to_string(format!("{sys}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let count = |prefix: &str| -> u32 {
        std::fs::read_dir(format!("{sys}/queues"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .count() as u32
            })
            .unwrap_or(0)
    };
    let (rx_queues, tx_queues) = if sys_index == Some(ifindex) {
        (count("rx-").max(1), count("tx-").max(1))
    } else {
        // /sys belongs to another namespace: we cannot count queues; assume one.
        (1, 1)
    };
    let flags = get_flags(name).map_err(|e| NicError::Io(name.into(), e))?;
    let mtu = get_mtu(name).map_err(|e| NicError::Io(name.into(), e))?;
    Ok(Nic {
        name: name.into(),
        ifindex,
        mtu,
        rx_queues,
        tx_queues,
        up: flags & libc::IFF_UP as libc::c_short != 0,
    })
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in r
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    r
}

fn get_flags(name: &str) -> io::Result<libc::c_short> {
    let s = ctl_socket()?;
    let mut r = ifreq(name);
    // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of `r`, which lives
    // for the call.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the flags member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_flags })
}

fn get_mtu(name: &str) -> io::Result<u32> {
    let s = ctl_socket()?;
    let mut r = ifreq(name);
    // SAFETY: SIOCGIFMTU reads the name and writes ifru_mtu of `r`.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFMTU, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the mtu member of the union.
    Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
}

/// The interface's driver name (`veth`, `ixgbe`, `mlx5_core`...), from ETHTOOL_GDRVINFO.
pub fn driver(name: &str) -> io::Result<String> {
    /// `struct ethtool_drvinfo` (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let s = ctl_socket()?;
    // SAFETY: DrvInfo is plain old data; all-zero is a valid value.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut r = ifreq(name);
    r.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO writes at most size_of::<DrvInfo>()
    // bytes through ifru_data, which points at `info`; both live for the call.
    if unsafe { libc::ioctl(s.as_raw_fd(), SIOCETHTOOL, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Drop counters of an interface's driver (`/sys/class/net/DEV/statistics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkDrops {
    /// Frames the driver dropped on receive (e.g. its RX ring was full).
    pub rx_dropped: u64,
    /// Frames the driver took for transmit and then dropped (on a veth: its peer's
    /// receive ring was full).
    pub tx_dropped: u64,
}

impl LinkDrops {
    /// Counts since `before`.
    pub fn since(self, before: LinkDrops) -> LinkDrops {
        LinkDrops {
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            tx_dropped: self.tx_dropped.saturating_sub(before.tx_dropped),
        }
    }
}

/// The driver's drop counters of `nic`, or `None` when `/sys` belongs to another
/// network namespace (its ifindex differs) and they cannot be read.
pub fn link_drops(nic: &Nic) -> Option<LinkDrops> {
    let sys = format!("/sys/class/net/{}", nic.name);
    let read = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("{sys}/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if read("ifindex")? != u64::from(nic.ifindex) {
        return None;
    }
    Some(LinkDrops {
        rx_dropped: read("statistics/rx_dropped")?,
        tx_dropped: read("statistics/tx_dropped")?,
    })
}

/// What a veth must have on its peer (host) end for op25b to forward its frames: the
/// one start-up warning line for each veth interface.
pub fn veth_warning(name: &str) -> String {
    format!(
        "interface {name} is a veth: on its peer (the host end), turn TX checksum offload off \
         (`ethtool -K PEER tx off`), or every TCP connection through op25b fails (the host \
         sends partial checksums; op25b forwards frames, not skbs)"
    )
}

/// Promiscuous mode held through a packet-socket membership: the kernel drops it when
/// the descriptor closes, so even a crashed op25b leaves the interface as it was.
#[derive(Debug)]
pub struct Promisc {
    _fd: OwnedFd,
}

/// Puts `ifindex` into promiscuous mode for as long as the returned guard lives.
pub fn promiscuous(ifindex: u32) -> io::Result<Promisc> {
    // Protocol 0: the socket receives no frames at all; it only holds the membership.
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as libc::c_int,
        mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: `mreq` is a valid packet_mreq and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Promisc { _fd: fd })
}

// libbpf is linked statically through xsk-rs -> libxdp-sys -> libbpf-sys.
extern "C" {
    fn bpf_xdp_query_id(ifindex: libc::c_int, flags: libc::c_int, prog_id: *mut u32)
        -> libc::c_int;
    fn bpf_xdp_detach(ifindex: libc::c_int, flags: u32, opts: *const libc::c_void) -> libc::c_int;
}

const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// The id of the XDP program attached to `ifindex` (native or generic), if any.
pub fn xdp_program(ifindex: u32) -> io::Result<Option<u32>> {
    for flags in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
        let mut id = 0u32;
        // SAFETY: `id` is a valid out-pointer for the duration of the call.
        let rc = unsafe { bpf_xdp_query_id(ifindex as libc::c_int, flags as libc::c_int, &mut id) };
        if rc < 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        if id != 0 {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Detaches any XDP program (native and generic) from `ifindex`. Idempotent.
pub fn detach_xdp(ifindex: u32) -> io::Result<()> {
    for flags in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
        // SAFETY: a NULL opts pointer is allowed by libbpf (defaults).
        let rc = unsafe { bpf_xdp_detach(ifindex as libc::c_int, flags, std::ptr::null()) };
        if rc < 0 && -rc != libc::ENOENT && -rc != libc::EINVAL {
            return Err(io::Error::from_raw_os_error(-rc));
        }
    }
    Ok(())
}

/// Effective capabilities missing for `op25b run`, by name.
pub fn missing_capabilities() -> Vec<&'static str> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    const NET_ADMIN: u32 = 12;
    const NET_RAW: u32 = 13;
    const IPC_LOCK: u32 = 14;
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    let mut missing = Vec::new();
    if !has(NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if !has(BPF) && !has(SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    // The verifier allows packet-pointer arithmetic with a variable offset (IPv4 options,
    // IPv6 extension headers) only with Spectre v1 mitigations bypassed: CAP_PERFMON.
    if !has(PERFMON) && !has(SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(IPC_LOCK) && !memlock_unlimited() {
        missing.push("CAP_IPC_LOCK (or an unlimited RLIMIT_MEMLOCK)");
    }
    missing
}

fn memlock_unlimited() -> bool {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid out-pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0 && r.rlim_cur == libc::RLIM_INFINITY
    }
}

/// Locks every page the process has mapped now (UMEM, rings, worker state, code) into
/// memory and faults in any that are not yet resident, so that no frame waits for a
/// page fault or a swap-in. Returns the locked size in KiB (VmLck).
pub fn lock_memory() -> io::Result<u64> {
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmLck:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0))
}

/// Lifts RLIMIT_MEMLOCK (UMEM pages are pinned); harmless when already unlimited.
pub fn raise_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `r` is a valid rlimit; failure is fine (CAP_IPC_LOCK also covers pinning).
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) };
}

/// Sends `sig` to process `pid` (the control plane's `op25b reload`).
pub fn send_signal(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) takes plain integers; no memory is involved.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Clock ticks per second of /proc's CPU times (`_SC_CLK_TCK`, 100 on Linux).
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf(3) reads a constant; no memory is involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// True when the NIC strips 802.1Q tags on receive (`rx-vlan-offload`, ethtool's legacy
/// ETH_FLAG_RXVLAN): XDP and the workers then see frames without their tag.
pub fn rx_vlan_offload(name: &str) -> io::Result<bool> {
    /// `struct ethtool_value` (linux/ethtool.h).
    #[repr(C)]
    struct Value {
        cmd: u32,
        data: u32,
    }
    const ETHTOOL_GFLAGS: u32 = 0x0000_0025;
    const ETH_FLAG_RXVLAN: u32 = 1 << 8;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let s = ctl_socket()?;
    let mut v = Value {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    let mut r = ifreq(name);
    r.ifr_ifru.ifru_data = (&mut v as *mut Value).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GFLAGS writes one ethtool_value through
    // ifru_data, which points at `v`; both live for the call.
    if unsafe { libc::ioctl(s.as_raw_fd(), SIOCETHTOOL, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data & ETH_FLAG_RXVLAN != 0)
}

/// The memory page size (`_SC_PAGESIZE`; /proc reports RSS in pages).
pub fn page_size() -> u64 {
    // SAFETY: sysconf(3) reads a constant; no memory is involved.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}
