//! Dropping capabilities once the datapath is up: the syscalls (`capget`/`capset`,
//! `prctl` for the ambient and bounding sets). Capabilities are per thread in Linux:
//! each worker drops all of its own when it starts ([`drop_all_in_this_thread`]), and
//! the main thread drops what the running process does not use ([`keep_only`]) before
//! it starts the control threads, which inherit its sets.
//!
//! What the running process uses (measured, docs/operations.md "Privileges"):
//! * nothing for the AF_XDP sockets, the UMEM, promiscuous mode and the XDP links: they
//!   are descriptors opened at start; closing them (the kernel detaches the programs)
//!   needs none;
//! * `bpf()`: every publish of a policy (each reload) creates the XDP program's new LPM
//!   tries, and BPF_MAP_CREATE needs CAP_BPF on every kernel (on the maps already open,
//!   settings and counters, kernels before 6.5 with `kernel.unprivileged_bpf_disabled`
//!   set check it for every command too): kept in the effective set;
//! * `failure_mode: open` runs `nft` at every reload: CAP_NET_ADMIN for those children,
//!   kept in the permitted, inheritable and ambient sets (not the effective one).

use std::io;

/// Capability numbers (linux/capability.h).
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_IPC_LOCK: u32 = 14;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The bit of capability `cap` in a set.
pub const fn bit(cap: u32) -> u64 {
    1 << cap
}

/// A set's capability names, lowest first (`CAP_NET_ADMIN`, or `cap_40` for one this
/// build does not name); "none" when empty.
pub fn names(set: u64) -> String {
    const NAMED: [(u32, &str); 7] = [
        (CAP_SETPCAP, "CAP_SETPCAP"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
        (CAP_IPC_LOCK, "CAP_IPC_LOCK"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_BPF, "CAP_BPF"),
    ];
    let list: Vec<String> = (0..64)
        .filter(|c| set & bit(*c) != 0)
        .map(|c| match NAMED.iter().find(|(n, _)| *n == c) {
            Some((_, name)) => name.to_string(),
            None => format!("cap_{c}"),
        })
        .collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(" ")
    }
}

/// The calling thread's effective, permitted and inheritable sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

const VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The calling thread's sets (`capget`).
pub fn get() -> io::Result<Sets> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: `h` and `d` are live for the call; version 3 writes two Data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok(Sets {
        effective: join(d[0].effective, d[1].effective),
        permitted: join(d[0].permitted, d[1].permitted),
        inheritable: join(d[0].inheritable, d[1].inheritable),
    })
}

/// Sets the calling thread's sets (`capset`): only ever lowers the permitted set.
pub fn set(s: Sets) -> io::Result<()> {
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(s.effective);
    let (p0, p1) = split(s.permitted);
    let (i0, i1) = split(s.inheritable);
    let d = [
        Data {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        Data {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: `h` and `d` are live for the call; version 3 reads two Data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl operations used here take integer arguments only.
    let rc = unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// The highest capability this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Drops every capability of the calling thread (a worker: it uses only descriptors it
/// already holds).
pub fn drop_all_in_this_thread() -> io::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    set(Sets::default())
}

/// What [`keep_only`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub sets: Sets,
    pub ambient: u64,
    /// Whether the bounding set was lowered too (it needs CAP_SETPCAP).
    pub bounding_lowered: bool,
}

/// Lowers the calling thread to `effective` for itself and `ambient` for the programs
/// it runs (both within what it has): permitted = effective | ambient, inheritable =
/// ambient, the ambient set = `ambient`, and, if CAP_SETPCAP allows, the bounding set
/// to the same. Threads started afterwards inherit these sets.
pub fn keep_only(effective: u64, ambient: u64) -> io::Result<Kept> {
    let before = get()?;
    let keep = (effective | ambient) & before.permitted;
    let (effective, ambient) = (effective & keep, ambient & keep);
    // The bounding set first: dropping from it needs CAP_SETPCAP in the effective set.
    // Best effort: the sets below are what matters, NoNewPrivileges covers the rest.
    let bounding_lowered = before.effective & bit(CAP_SETPCAP) != 0
        && (0..=last_cap())
            .filter(|c| keep & bit(*c) == 0)
            .all(|c| prctl(libc::PR_CAPBSET_DROP, c.into(), 0).is_ok());
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    )?;
    let sets = Sets {
        effective,
        permitted: keep,
        inheritable: ambient,
    };
    set(sets)?;
    for c in 0..64 {
        if ambient & bit(c) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                c.into(),
            )?;
        }
    }
    Ok(Kept {
        sets,
        ambient,
        bounding_lowered,
    })
}

/// The calling thread's ambient set, from /proc.
pub fn ambient() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapAmb:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_list_the_set() {
        assert_eq!(names(0), "none");
        assert_eq!(
            names(bit(CAP_NET_ADMIN) | bit(CAP_BPF) | bit(40)),
            "CAP_NET_ADMIN CAP_BPF cap_40"
        );
    }

    /// In a thread of its own (capabilities are per thread), so other tests keep theirs.
    #[test]
    fn a_thread_drops_to_what_it_keeps_and_cannot_get_the_rest_back() {
        std::thread::spawn(|| {
            let before = get().unwrap();
            let want = bit(CAP_NET_RAW) & before.permitted;
            let k = keep_only(want, 0).unwrap();
            assert_eq!(k.sets.effective, want);
            let now = get().unwrap();
            assert_eq!(now, k.sets);
            assert_eq!(now.permitted, want);
            assert_eq!(ambient(), 0);
            // Gone for good: raising a dropped one fails.
            if before.permitted & bit(CAP_NET_ADMIN) != 0 {
                assert!(set(Sets {
                    effective: want | bit(CAP_NET_ADMIN),
                    ..now
                })
                .is_err());
            }
            drop_all_in_this_thread().unwrap();
            assert_eq!(get().unwrap(), Sets::default());
        })
        .join()
        .unwrap();
    }
}
