//! libbpf plumbing shared by the test kit's two BPF engines, the generator
//! ([`crate::xdpgen`]) and the sink ([`crate::xdpsink`]): open and load an embedded object,
//! take owned descriptors of its program and maps, read and write array maps.

use libbpf_sys as bpf;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `rc` (a negative errno from libbpf) as an error that says what failed.
pub(crate) fn os_err(what: &str, rc: i32) -> io::Error {
    let e = io::Error::from_raw_os_error(rc.unsigned_abs() as i32);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A loaded BPF object; closed on drop (the descriptors [`Loaded::prog`] and
/// [`Loaded::map`] hand out are duplicates and stay valid).
pub(crate) struct Loaded {
    obj: *mut bpf::bpf_object,
    name: &'static str,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: the pointer came from bpf_object__open_mem and is closed once, here.
        unsafe { bpf::bpf_object__close(self.obj) };
    }
}

impl Loaded {
    /// Opens `object` (an ELF compiled by testkit/build.rs), sets the entry count of each
    /// map named in `sizes`, and loads it into the kernel.
    pub(crate) fn load(
        object: &'static [u8],
        name: &'static str,
        sizes: &[(&str, u32)],
    ) -> io::Result<Loaded> {
        // SAFETY: `object` is a static byte slice; libbpf copies what it keeps.
        let obj = unsafe {
            bpf::bpf_object__open_mem(
                object.as_ptr().cast(),
                object.len() as bpf::size_t,
                std::ptr::null(),
            )
        };
        if obj.is_null() {
            return Err(io::Error::last_os_error());
        }
        let loaded = Loaded { obj, name };
        for (map, n) in sizes {
            let m = loaded.find_map(map)?;
            // SAFETY: the map belongs to the open, not yet loaded object.
            let rc = unsafe { bpf::bpf_map__set_max_entries(m, (*n).max(1)) };
            if rc < 0 {
                return Err(os_err(&format!("sizing map {map} of {name}"), rc));
            }
        }
        // SAFETY: the object is open; load creates the maps and verifies the programs.
        let rc = unsafe { bpf::bpf_object__load(loaded.obj) };
        if rc < 0 {
            return Err(os_err(
                &format!("loading the XDP program {name} (needs root, kernel >= 5.18)"),
                rc,
            ));
        }
        Ok(loaded)
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

    /// An owned descriptor of the program `name`.
    pub(crate) fn prog(&self, name: &str) -> io::Result<OwnedFd> {
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
        dup(unsafe { bpf::bpf_program__fd(p) }, name)
    }

    /// An owned descriptor of the map `name`.
    pub(crate) fn map(&self, name: &str) -> io::Result<OwnedFd> {
        let m = self.find_map(name)?;
        // SAFETY: `m` belongs to the loaded object, which is still open.
        dup(unsafe { bpf::bpf_map__fd(m) }, name)
    }
}

fn dup(fd: i32, what: &str) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(os_err(what, fd));
    }
    // SAFETY: `fd` is a descriptor libbpf owns and keeps open for this call; F_DUPFD_CLOEXEC
    // makes a new one we own.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `d` was just returned by fcntl and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

/// Plain data a map value can be read into: every bit pattern is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` structs of integers (or integers) whose size is the
/// map's value size, with no padding the kernel would not write.
pub(crate) unsafe trait Pod: Copy {}
// SAFETY: an integer.
unsafe impl Pod for u64 {}

/// Writes `value` (the map's value type) at `key` of an array map.
pub(crate) fn update<T: Pod>(map: &OwnedFd, key: u32, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: key and value point at live values; `T: Pod` has the map's value size.
    let rc = unsafe {
        bpf::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            (value as *const T).cast(),
            0,
        )
    };
    if rc < 0 {
        return Err(os_err(what, rc));
    }
    Ok(())
}

/// Reads the value at `key` of an array map.
pub(crate) fn lookup<T: Pod + Default>(map: &OwnedFd, key: u32, what: &str) -> io::Result<T> {
    let mut v = T::default();
    // SAFETY: the value buffer has the map's value size (`T: Pod`).
    let rc = unsafe {
        bpf::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            (&mut v as *mut T).cast(),
        )
    };
    if rc < 0 {
        return Err(os_err(what, rc));
    }
    Ok(v)
}

/// CPUs a per-CPU map holds a value for.
pub(crate) fn possible_cpus() -> io::Result<usize> {
    // SAFETY: no arguments; reads /sys/devices/system/cpu/possible.
    let n = unsafe { bpf::libbpf_num_possible_cpus() };
    if n <= 0 {
        return Err(os_err("counting the possible CPUs", n));
    }
    Ok(n as usize)
}

/// Reads the per-CPU values at `key` of a per-CPU array map (one per possible CPU).
pub(crate) fn lookup_percpu<T: Pod + Default>(
    map: &OwnedFd,
    key: u32,
    cpus: usize,
    what: &str,
) -> io::Result<Vec<T>> {
    // The kernel lays per-CPU values out 8-byte aligned; the types used here are whole
    // u64s, so a Vec<T> is that layout.
    if !std::mem::size_of::<T>().is_multiple_of(8) {
        return Err(io::Error::other(format!(
            "{what}: per-CPU value of {} bytes is not a multiple of 8",
            std::mem::size_of::<T>()
        )));
    }
    let mut v = vec![T::default(); cpus];
    // SAFETY: the buffer holds `cpus` (the possible CPU count) values of the map's value
    // size, back to back with 8-byte alignment, which is what the kernel writes.
    let rc = unsafe {
        bpf::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            v.as_mut_ptr().cast(),
        )
    };
    if rc < 0 {
        return Err(os_err(what, rc));
    }
    Ok(v)
}

/// CLOCK_MONOTONIC in nanoseconds: what a program's bpf_ktime_get_ns() reads.
pub(crate) fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer for the call; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The interface's index in the current network namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::other("interface name with a NUL"))?;
    // SAFETY: `c` is NUL-terminated.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name} in this network namespace"),
        ));
    }
    Ok(i)
}
