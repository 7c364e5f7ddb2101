//! AF_XDP rings for one worker: a socket on subscriber queue `q` and one on upstream
//! queue `q`, sharing one UMEM, so a frame received on one side is transmitted on the
//! other by passing its descriptor (no copy). Each (netdev, queue) has its own fill and
//! completion ring; xsk-rs creates them for us.
//!
//! Invariants (see docs/architecture.md, "Frame ownership"):
//! * every `FrameDesc` handled here comes from this worker's `Umem` (`take_frames`, RX,
//!   completion) and never from another UMEM;
//! * the worker touches a frame's bytes only while it holds the frame's [`Frame`]
//!   handle (from `take_frames`, RX or completion until fill or TX consumes it): the
//!   types check that, the `unsafe` blocks below rely on it.

use super::io::{Frame, FrameIo, KernelDrops, Side};
use super::settings::{DatapathSettings, ZeroCopy};
use super::xdp::XdpLink;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// What the kernel gave us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeInUse {
    pub native: bool,
    pub zero_copy: bool,
}

impl std::fmt::Display for ModeInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} XDP, {}",
            if self.native { "native" } else { "generic" },
            if self.zero_copy {
                "zero-copy"
            } else {
                "copy mode"
            }
        )
    }
}

/// Why the sockets could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("cannot allocate the UMEM ({frames} frames of {frame_size} B): {source}")]
    Umem {
        frames: u32,
        frame_size: u32,
        source: io::Error,
    },
    #[error("cannot open AF_XDP sockets on {subscriber}/{upstream} queue {queue}: {attempts}")]
    Sockets {
        subscriber: String,
        upstream: String,
        queue: u32,
        attempts: String,
    },
}

/// The errno behind an xsk-rs error (its Display only has a static reason).
pub fn errno_of(e: &(dyn std::error::Error + 'static)) -> io::Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ioe) = err.downcast_ref::<io::Error>() {
            return io::Error::new(ioe.kind(), format!("{e}: {ioe}"));
        }
        cur = err.source();
    }
    io::Error::other(e.to_string())
}

struct XskSide {
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
}

/// [`FrameIo`] over two AF_XDP sockets that share one UMEM.
pub struct XskIo {
    // Field order matters for drop: queues (holding the sockets) before the UMEM.
    sides: [XskSide; 2],
    umem: Umem,
    frames: Option<Vec<FrameDesc>>,
    /// What RX and completion rings are consumed into before the descriptors become
    /// [`Frame`]s (grown once, to the largest request).
    scratch: Vec<FrameDesc>,
    /// Entries of each fill ring ([`DatapathSettings::fill_ring_entries`]).
    fill_size: usize,
}

extern "C" {
    fn libbpf_set_print(f: *const libc::c_void) -> *const libc::c_void;
    fn libxdp_set_print(f: *const libc::c_void) -> *const libc::c_void;
}

/// Silences libbpf/libxdp's own stderr chatter ("skipping unrecognized data section"...)
/// unless `verbose`: errors still reach the operator through our typed errors (errno).
pub fn quiet_libbpf(verbose: bool) {
    if !verbose {
        // SAFETY: a NULL print function is documented to disable libbpf logging.
        unsafe { libbpf_set_print(std::ptr::null()) };
        // SAFETY: same contract for libxdp's print hook.
        unsafe { libxdp_set_print(std::ptr::null()) };
    }
}

/// Kernel >= 6.17: raise the frames sent per copy-mode `sendto` from 32.
pub fn raise_tx_budget(fd: i32, budget: u32) {
    const SOL_XDP: libc::c_int = 283;
    const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
    // SAFETY: `budget` outlives the call and its size is passed; an unknown option on an
    // older kernel fails with ENOPROTOOPT, which we ignore.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&budget as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
}

impl XskIo {
    /// Opens both sockets on the XDP mode of `links` (subscriber, upstream), trying
    /// zero-copy first if the config allows; also returns why the better modes failed
    /// (for the one fallback log line). Registers each socket in its link's map.
    /// Retries EBUSY for up to 2 s ([`retry_busy`]).
    pub fn open(
        subscriber: &str,
        upstream: &str,
        queue: u32,
        opts: &DatapathSettings,
        links: [&XdpLink; 2],
    ) -> Result<(XskIo, ModeInUse, Vec<String>), XskError> {
        let native = links[0].native;
        let zcs: &[bool] = match opts.zero_copy {
            ZeroCopy::Auto => &[true, false],
            ZeroCopy::On => &[true],
            ZeroCopy::Off => &[false],
        };
        let mut attempts = Vec::new();
        for &zc in zcs {
            if zc && !native {
                attempts.push("generic XDP cannot do zero-copy".to_string());
                continue;
            }
            let mode = ModeInUse {
                native,
                zero_copy: zc,
            };
            match retry_busy(|| Self::try_open(subscriber, upstream, queue, opts, mode, links)) {
                Ok(io) => return Ok((io, mode, attempts)),
                Err(OpenError::Umem(source)) => {
                    return Err(XskError::Umem {
                        frames: opts.frame_count(),
                        frame_size: opts.frame_size,
                        source,
                    })
                }
                Err(OpenError::Socket(dev, e)) => {
                    attempts.push(format!("{mode} on {dev}: {e}"));
                }
            }
        }
        Err(XskError::Sockets {
            subscriber: subscriber.into(),
            upstream: upstream.into(),
            queue,
            attempts: attempts.join("; "),
        })
    }

    fn try_open(
        subscriber: &str,
        upstream: &str,
        queue: u32,
        opts: &DatapathSettings,
        mode: ModeInUse,
        links: [&XdpLink; 2],
    ) -> Result<XskIo, OpenError> {
        let q = |n: u32| QueueSize::new(n).expect("config validated ring sizes as powers of two");
        let umem_cfg = UmemConfig::builder()
            .frame_size(
                opts.frame_size
                    .try_into()
                    .expect("config validated the frame size"),
            )
            .fill_queue_size(q(opts.fill_ring_entries()))
            .comp_queue_size(q(opts.completion_ring_entries()))
            .build()
            .map_err(|e| OpenError::Umem(io::Error::other(e.to_string())))?;
        let count = NonZeroU32::new(opts.frame_count()).expect("frame count > 0");
        let (umem, frames) =
            Umem::new(umem_cfg, count, false).map_err(|e| OpenError::Umem(errno_of(&e)))?;
        let mut bind = BindFlags::XDP_USE_NEED_WAKEUP;
        bind |= if mode.zero_copy {
            BindFlags::XDP_ZEROCOPY
        } else {
            BindFlags::XDP_COPY
        };
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(q(opts.ring_size))
            .tx_queue_size(q(opts.ring_size))
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();
        let open = |dev: &str, link: &XdpLink| -> Result<XskSide, OpenError> {
            let ifname: Interface = dev.parse().map_err(|_| {
                OpenError::Socket(dev.into(), io::Error::other("bad interface name"))
            })?;
            // SAFETY: the UMEM is used only by this worker's two sockets, on two
            // different (netdev, queue) pairs, so each gets its own fill/completion ring.
            // libxdp loads no program (INHIBIT): our own, attached through a bpf_link
            // (`xdp.rs`), steers the queue to the socket once it is registered below.
            let (tx, rx, fq_cq) = unsafe { Socket::new(sock_cfg, &umem, &ifname, queue) }
                .map_err(|e| OpenError::Socket(dev.into(), errno_of(&e)))?;
            let (fq, cq) = fq_cq.ok_or_else(|| {
                OpenError::Socket(
                    dev.into(),
                    io::Error::other("no fill/completion ring (same queue bound twice?)"),
                )
            })?;
            raise_tx_budget(tx.fd().as_raw_fd(), 256);
            link.program
                .register(queue, tx.fd().as_raw_fd())
                .map_err(|e| {
                    OpenError::Socket(
                        dev.into(),
                        io::Error::new(
                            e.kind(),
                            format!("cannot add the socket to the XDP map: {e}"),
                        ),
                    )
                })?;
            Ok(XskSide { tx, rx, fq, cq })
        };
        // The first socket's bind flags (copy/zero-copy, need_wakeup) are inherited by
        // the second, which the kernel binds with XDP_SHARED_UMEM only.
        let sub = open(subscriber, links[0])?;
        let up = open(upstream, links[1]).inspect_err(|_| links[0].program.unregister(queue))?;
        Ok(XskIo {
            sides: [sub, up],
            umem,
            frames: Some(frames),
            scratch: Vec::new(),
            fill_size: opts.fill_ring_entries() as usize,
        })
    }

    /// Kernel-side socket statistics (drops, ring-full and fill-empty events), per side.
    pub fn kernel_stats(&self, side: Side) -> Option<xsk_rs::socket::XdpStatistics> {
        self.sides[side.index()].rx.fd().xdp_statistics().ok()
    }
}

/// Why one socket (or its UMEM) could not be opened (shared with the test kit's port).
pub enum OpenError {
    Umem(io::Error),
    /// The device it happened on, and the error (errno kind kept by `errno_of`).
    Socket(String, io::Error),
}

/// Calls `open` again while it fails with EBUSY, for up to 2 s: the kernel releases a
/// queue asynchronously after the last socket on it closes.
pub fn retry_busy<T>(mut open: impl FnMut() -> Result<T, OpenError>) -> Result<T, OpenError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match open() {
            Err(OpenError::Socket(_, e))
                if e.kind() == io::ErrorKind::ResourceBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

impl XskIo {
    /// Consumes up to `max` descriptors from `side`'s RX (`completion == false`) or
    /// completion ring into frames appended to `out`.
    #[inline]
    fn consume(
        &mut self,
        side: Side,
        completion: bool,
        max: usize,
        out: &mut Vec<Frame<FrameDesc>>,
    ) -> usize {
        if self.scratch.len() < max {
            self.scratch.resize(max, FrameDesc::default());
        }
        let buf = &mut self.scratch[..max];
        let s = &mut self.sides[side.index()];
        let n = if completion {
            // SAFETY: the completion ring belongs to this UMEM; `buf` is only written.
            unsafe { s.cq.consume(buf) }
        } else {
            // SAFETY: the RX ring belongs to a socket on this UMEM, so the descriptors it
            // yields are this UMEM's; `buf` is only written.
            unsafe { s.rx.consume(buf) }
        };
        out.extend(buf[..n].iter().copied().map(Frame::from_desc));
        n
    }
}

impl FrameIo for XskIo {
    type Desc = FrameDesc;

    fn take_frames(&mut self) -> Vec<Frame<FrameDesc>> {
        self.frames
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(Frame::from_desc)
            .collect()
    }

    #[inline]
    fn fill_free(&mut self, side: Side, max: usize) -> usize {
        (self.sides[side.index()].fq.nb_free(max as u32) as usize).min(max)
    }

    fn fill_pending(&mut self, side: Side) -> usize {
        let fq = &mut self.sides[side.index()].fq;
        self.fill_size.saturating_sub(fq.nb_free_exact() as usize)
    }

    #[inline]
    fn fill(&mut self, side: Side, frames: &mut Vec<Frame<FrameDesc>>, n: usize) -> usize {
        if n > frames.len() {
            return 0;
        }
        let at = frames.len() - n;
        // SAFETY: the frames are owned by the caller (`Frame` handles, moved out of
        // `frames` below when the ring takes them) and are this UMEM's (module invariant).
        let done = unsafe {
            self.sides[side.index()]
                .fq
                .produce(Frame::descs(&frames[at..]))
        };
        if done == n {
            frames.truncate(at);
        }
        done
    }

    #[inline]
    fn rx(&mut self, side: Side, max: usize, out: &mut Vec<Frame<FrameDesc>>) -> usize {
        self.consume(side, false, max, out)
    }

    #[inline]
    fn tx_free(&mut self, side: Side, max: usize) -> usize {
        (self.sides[side.index()].tx.nb_free(max as u32) as usize).min(max)
    }

    #[inline]
    fn tx(&mut self, side: Side, frames: &mut Vec<Frame<FrameDesc>>, n: usize) -> usize {
        if n > frames.len() {
            return 0;
        }
        // SAFETY: as for `fill`.
        let done = unsafe {
            self.sides[side.index()]
                .tx
                .produce(Frame::descs(&frames[..n]))
        };
        if done == n {
            frames.drain(..n);
        }
        done
    }

    #[inline]
    fn tx_needs_kick(&self, side: Side) -> bool {
        self.sides[side.index()].tx.needs_wakeup()
    }

    #[inline]
    fn kick_tx(&mut self, side: Side) -> io::Result<()> {
        self.sides[side.index()].tx.wakeup()
    }

    #[inline]
    fn completions(&mut self, side: Side, max: usize, out: &mut Vec<Frame<FrameDesc>>) -> usize {
        self.consume(side, true, max, out)
    }

    #[inline]
    fn fill_needs_wakeup(&self, side: Side) -> bool {
        self.sides[side.index()].fq.needs_wakeup()
    }

    fn wake_fill(&mut self, side: Side) -> io::Result<()> {
        let s = &mut self.sides[side.index()];
        s.fq.wakeup(s.rx.fd_mut(), 0)
    }

    fn kernel_drops(&self, side: Side) -> KernelDrops {
        match self.kernel_stats(side) {
            Some(s) => KernelDrops {
                rx_dropped: s.rx_dropped(),
                rx_ring_full: s.rx_ring_full(),
                fill_empty: s.rx_fill_ring_empty_descs(),
            },
            None => Default::default(),
        }
    }

    fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.sides[0].rx.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.sides[1].rx.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    #[inline]
    fn data<'a>(&'a self, f: &'a Frame<FrameDesc>) -> &'a [u8] {
        // SAFETY: `f` is from this UMEM (module invariant) and owned by the caller (a
        // `Frame` handle), so the kernel is not writing the frame.
        unsafe { self.umem.data(f.desc()) }.contents()
    }

    fn build_into(
        &mut self,
        from: &Frame<FrameDesc>,
        into: &mut Frame<FrameDesc>,
        build: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> bool {
        // SAFETY: both frames are this UMEM's and owned by the caller (two `Frame`
        // handles, so two different frames: the views do not overlap, and the kernel
        // touches neither).
        let src = unsafe { self.umem.data(from.desc()) }.contents();
        // SAFETY: as above.
        let mut dst = unsafe { self.umem.data_mut(into.desc_mut()) };
        let cap = {
            let mut c = dst.cursor();
            let cap = c.buf_len();
            c.set_pos(cap);
            cap
        };
        match build(src, dst.contents_mut()) {
            Some(n) if n <= cap => {
                dst.cursor().set_pos(n);
                true
            }
            _ => {
                dst.cursor().set_pos(0);
                false
            }
        }
    }
}
