//! Captures for `op25b classify`: classic pcap and pcapng (pcap-file), Ethernet only.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// Frames from a capture, whatever its format.
pub enum Capture {
    Pcap(pcap_file::pcap::PcapReader<std::io::BufReader<std::fs::File>>),
    PcapNg(pcap_file::pcapng::PcapNgReader<std::io::BufReader<std::fs::File>>),
}

/// Why a capture cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}: cannot open: {1}")]
    Open(PathBuf, std::io::Error),
    #[error("{0}: not a pcap or pcapng file (magic {1:02x?})")]
    Magic(PathBuf, Vec<u8>),
    #[error("{0}: {1}")]
    Format(PathBuf, String),
    #[error("{0}: link type {1} is not supported; expected Ethernet (1)")]
    LinkType(PathBuf, String),
}

impl Capture {
    /// Opens `path` as classic pcap or pcapng (by its magic); Ethernet link type only.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| CaptureError::Open(path.into(), e))?;
        let mut magic = [0u8; 4];
        let n = f
            .read(&mut magic)
            .map_err(|e| CaptureError::Open(path.into(), e))?;
        drop(f);
        let f = std::fs::File::open(path).map_err(|e| CaptureError::Open(path.into(), e))?;
        let r = std::io::BufReader::new(f);
        let fmt = |e: pcap_file::PcapError| CaptureError::Format(path.into(), e.to_string());
        match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => Ok(Capture::PcapNg(
                pcap_file::pcapng::PcapNgReader::new(r).map_err(fmt)?,
            )),
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                let rd = pcap_file::pcap::PcapReader::new(r).map_err(fmt)?;
                // The upper 16 bits may carry FCS flags (pcap spec); tcpdump masks them.
                let link = u32::from(rd.header().datalink) & 0xffff;
                if link != 1 {
                    return Err(CaptureError::LinkType(path.into(), link.to_string()));
                }
                Ok(Capture::Pcap(rd))
            }
            _ => Err(CaptureError::Magic(path.into(), magic[..n].to_vec())),
        }
    }

    /// The next Ethernet frame; `Err` on a damaged file.
    pub fn next(&mut self, path: &Path) -> Option<Result<Vec<u8>, CaptureError>> {
        let fmt = |e: pcap_file::PcapError| CaptureError::Format(path.into(), e.to_string());
        match self {
            // Raw records: tcpdump accepts orig_len > snaplen (and so do we); only a record
            // cut short by the end of the file is an error.
            Capture::Pcap(r) => r
                .next_raw_packet()
                .map(|p| p.map(|p| p.data.into_owned()).map_err(fmt)),
            Capture::PcapNg(r) => loop {
                let block = match r.next_block()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(fmt(e))),
                };
                use pcap_file::pcapng::Block;
                let (iface, data) = match block {
                    Block::EnhancedPacket(p) => (Some(p.interface_id), p.data.into_owned()),
                    Block::SimplePacket(p) => (Some(0), p.data.into_owned()),
                    _ => continue,
                };
                if let Some(i) = iface {
                    let lt = r.interfaces().get(i as usize).map(|d| d.linktype);
                    if lt != Some(pcap_file::DataLink::ETHERNET) {
                        return Some(Err(CaptureError::LinkType(path.into(), format!("{lt:?}"))));
                    }
                }
                return Some(Ok(data));
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use std::time::Duration;

    fn write_pcap(path: &Path, datalink: pcap_file::DataLink, frames: &[&[u8]]) {
        let f = std::fs::File::create(path).unwrap();
        let header = PcapHeader {
            datalink,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(f, header).unwrap();
        for (i, fr) in frames.iter().enumerate() {
            w.write_packet(&PcapPacket::new(
                Duration::from_secs(i as u64),
                fr.len() as u32,
                fr,
            ))
            .unwrap();
        }
    }

    #[test]
    fn reads_every_frame_of_an_ethernet_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pcap");
        write_pcap(&p, pcap_file::DataLink::ETHERNET, &[&[1; 60], &[2; 64]]);
        let mut c = Capture::open(&p).unwrap();
        let got: Vec<Vec<u8>> = std::iter::from_fn(|| c.next(&p))
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, vec![vec![1; 60], vec![2; 64]]);
    }

    #[test]
    fn refuses_other_link_types_bad_magic_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("raw.pcap");
        write_pcap(&p, pcap_file::DataLink::RAW, &[&[0x45; 40]]);
        assert!(matches!(Capture::open(&p), Err(CaptureError::LinkType(..))));
        let q = dir.path().join("text.pcap");
        std::fs::write(&q, b"hello").unwrap();
        assert!(matches!(Capture::open(&q), Err(CaptureError::Magic(..))));
        let r = dir.path().join("missing.pcap");
        assert!(matches!(Capture::open(&r), Err(CaptureError::Open(..))));
    }

    #[test]
    fn a_record_cut_short_is_an_error_after_the_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.pcap");
        write_pcap(&p, pcap_file::DataLink::ETHERNET, &[&[1; 60], &[2; 64]]);
        let len = std::fs::metadata(&p).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 10).unwrap();
        let mut c = Capture::open(&p).unwrap();
        assert_eq!(c.next(&p).unwrap().unwrap(), vec![1; 60]);
        assert!(matches!(c.next(&p), Some(Err(CaptureError::Format(..)))));
    }
}
