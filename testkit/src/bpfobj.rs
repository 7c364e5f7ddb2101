//! The test kit's side of loading its two BPF engines, the generator ([`crate::xdpgen`])
//! and the sink ([`crate::xdpsink`]), through op25b's libbpf loader
//! (`op25b::datapath::xdp::BpfObject`, which holds the `unsafe`): what each step was
//! doing, in its errors.
#![forbid(unsafe_code)]

use op25b::datapath::xdp::BpfObject;
use std::io;

/// Adds what failed to an error (its kind stays).
pub(crate) fn context(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Opens `object` (an ELF compiled by testkit/build.rs), sets the entry count of each
/// map named in `sizes`, and loads it into the kernel.
pub(crate) fn load(
    object: &'static [u8],
    name: &'static str,
    sizes: &[(&str, u32)],
) -> io::Result<BpfObject> {
    let obj = BpfObject::open(object, name)?;
    for (map, n) in sizes {
        obj.set_max_entries(map, *n)
            .map_err(context(&format!("sizing map {map} of {name}")))?;
    }
    obj.load().map_err(context(&format!(
        "loading the XDP program {name} (needs root, kernel >= 5.18)"
    )))?;
    Ok(obj)
}

/// The interface's index in the current network namespace.
pub(crate) fn ifindex(name: &str) -> io::Result<u32> {
    op25b::datapath::nic::ifindex(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name} in this network namespace"),
        )
    })
}

/// Reads a map value's fields in order (native byte order, as the program wrote them);
/// a value too short reads as zeros past its end.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_ne_bytes(self.take())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take())
    }
}

/// Checks that map `name` holds values of `size` bytes, the size of the Rust mirror of
/// its C type.
pub(crate) fn value_size(map: &op25b::datapath::xdp::Map, size: usize) -> io::Result<()> {
    let (_, v) = map.sizes();
    if v != size {
        return Err(io::Error::other(format!(
            "map {} has values of {v} B, the test kit reads {size} B (its C and Rust layouts disagree)",
            map.name()
        )));
    }
    Ok(())
}
