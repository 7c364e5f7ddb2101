//! One AF_XDP socket with its own UMEM on one (netdev, queue): the transmit side of the
//! benchmark generator and the receive side of the verifying sink (`op25b bench`).
//!
//! Same ownership rules as `xsk.rs`: a descriptor is ours between coming off the free
//! list / RX / completion ring and going onto TX / fill; frame bytes are touched only
//! then. The public API is safe: callers see frames as byte slices inside closures.

use op25b::datapath::settings::XdpMode;
use op25b::datapath::xsk::{errno_of, raise_tx_budget, retry_busy, ModeInUse, OpenError, XskError};
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use xsk_rs::config::{
    BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

/// What the port is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRole {
    /// Transmit only: no XDP program is loaded, so the interface's own receive path is
    /// left to the kernel.
    Transmit,
    /// Receive only: libxdp's default program redirects the queue to the socket.
    Receive,
}

/// Sizes and mode of a port.
#[derive(Clone, Copy, Debug)]
pub struct PortOptions {
    pub frame_size: u32,
    pub ring_size: u32,
    pub frame_count: u32,
    pub xdp_mode: XdpMode,
    /// Copy-mode frames sent per kick (XDP_MAX_TX_SKB_BUDGET, kernel >= 6.17; 32
    /// before). Above a veth peer's 256-frame ring the peer drops frames.
    pub tx_budget: u32,
}

impl Default for PortOptions {
    fn default() -> Self {
        Self {
            frame_size: 2048,
            ring_size: 2048,
            frame_count: 8192,
            xdp_mode: XdpMode::Auto,
            tx_budget: 128,
        }
    }
}

/// Kernel counters of the socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PortStats {
    pub rx_dropped: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty: u64,
    pub tx_invalid: u64,
    pub tx_ring_empty: u64,
}

/// One AF_XDP socket and its UMEM.
pub struct XskPort {
    // Drop order: rings (holding the socket) before the UMEM.
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    umem: Umem,
    /// Frames we own and have not put on a ring.
    free: Vec<FrameDesc>,
    /// Frames on the TX ring, not yet completed.
    in_flight: usize,
    scratch: Vec<FrameDesc>,
    role: PortRole,
    mode: ModeInUse,
}

impl XskPort {
    /// Opens a socket on `ifname` queue `queue`: native XDP first (unless the options say
    /// generic), copy mode, need_wakeup. Retries EBUSY for 2 s.
    pub fn open(
        ifname: &str,
        queue: u32,
        role: PortRole,
        opts: &PortOptions,
    ) -> Result<XskPort, XskError> {
        let natives: &[bool] = match opts.xdp_mode {
            XdpMode::Auto => &[true, false],
            XdpMode::Native => &[true],
            XdpMode::Generic => &[false],
        };
        let mut attempts = Vec::new();
        for &native in natives {
            match retry_busy(|| Self::try_open(ifname, queue, role, opts, native)) {
                Ok(p) => return Ok(p),
                Err(OpenError::Umem(source)) => {
                    return Err(XskError::Umem {
                        frames: opts.frame_count,
                        frame_size: opts.frame_size,
                        source,
                    })
                }
                Err(OpenError::Socket(_, e)) => attempts.push(format!(
                    "{} XDP: {e}",
                    if native { "native" } else { "generic" }
                )),
            }
        }
        Err(XskError::Sockets {
            subscriber: ifname.into(),
            upstream: "-".into(),
            queue,
            attempts: attempts.join("; "),
        })
    }

    fn try_open(
        ifname: &str,
        queue: u32,
        role: PortRole,
        opts: &PortOptions,
        native: bool,
    ) -> Result<XskPort, OpenError> {
        let q = |n: u32| {
            QueueSize::new(n).map_err(|e| OpenError::Umem(io::Error::other(e.to_string())))
        };
        let umem_cfg = UmemConfig::builder()
            .frame_size(opts.frame_size.try_into().map_err(
                |e: xsk_rs::config::FrameSizeError| {
                    OpenError::Umem(io::Error::other(e.to_string()))
                },
            )?)
            .fill_queue_size(q(opts.ring_size * 2)?)
            .comp_queue_size(q(opts.ring_size * 2)?)
            .build()
            .map_err(|e| OpenError::Umem(io::Error::other(e.to_string())))?;
        let count = NonZeroU32::new(opts.frame_count.max(1)).expect("max(1)");
        let (umem, frames) =
            Umem::new(umem_cfg, count, false).map_err(|e| OpenError::Umem(errno_of(&e)))?;
        let mut sock = SocketConfig::builder();
        sock.rx_queue_size(q(opts.ring_size)?)
            .tx_queue_size(q(opts.ring_size)?)
            .xdp_flags(if native {
                XdpFlags::XDP_FLAGS_DRV_MODE
            } else {
                XdpFlags::XDP_FLAGS_SKB_MODE
            })
            .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP | BindFlags::XDP_COPY);
        if role == PortRole::Transmit {
            sock.libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD);
        }
        let sock = sock.build();
        let iface: Interface = ifname.parse().map_err(|_| {
            OpenError::Socket(ifname.into(), io::Error::other("bad interface name"))
        })?;
        // SAFETY: the UMEM is used by this one socket only.
        let (tx, rx, fq_cq) = unsafe { xsk_rs::Socket::new(sock, &umem, &iface, queue) }
            .map_err(|e| OpenError::Socket(ifname.into(), errno_of(&e)))?;
        let (fq, cq) = fq_cq
            .ok_or_else(|| OpenError::Socket(ifname.into(), io::Error::other("no fill ring")))?;
        raise_tx_budget(tx.fd().as_raw_fd(), opts.tx_budget);
        Ok(XskPort {
            tx,
            rx,
            fq,
            cq,
            umem,
            scratch: vec![FrameDesc::default(); opts.ring_size as usize * 2],
            free: frames,
            in_flight: 0,
            role,
            mode: ModeInUse {
                native,
                zero_copy: false,
            },
        })
    }

    /// The XDP mode the socket got.
    pub fn mode(&self) -> ModeInUse {
        self.mode
    }

    /// Frames on the TX ring not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Takes completed transmissions back; returns how many completed.
    pub fn reap(&mut self) -> usize {
        let n = {
            // SAFETY: the completion ring is this UMEM's; `scratch` is only written.
            unsafe { self.cq.consume(&mut self.scratch) }
        };
        self.free.extend_from_slice(&self.scratch[..n]);
        self.in_flight -= n;
        n
    }

    /// Queues up to `max` frames for transmission; `make(i, frame)` writes frame `i` of
    /// the batch with [`FrameBuf::put`]. Returns how many were queued.
    pub fn send(&mut self, max: usize, mut make: impl FnMut(usize, &mut FrameBuf<'_>)) -> usize {
        let n = max
            .min(self.free.len())
            .min(self.tx.nb_free(max as u32) as usize);
        if n == 0 {
            return 0;
        }
        let start = self.free.len() - n;
        for (i, d) in self.free[start..].iter_mut().enumerate() {
            // SAFETY: `d` is on our free list, so neither ring holds it.
            let mut data = unsafe { self.umem.data_mut(d) };
            let mut cur = data.cursor();
            cur.set_pos(0);
            make(i, &mut FrameBuf(cur));
        }
        // SAFETY: the descriptors are ours (free list) and from this UMEM.
        let queued = unsafe { self.tx.produce(&self.free[start..]) };
        if queued == n {
            self.free.truncate(start);
            self.in_flight += n;
        }
        queued
    }

    /// Kicks the kernel to transmit (copy mode sends at most a budget per kick, so call
    /// this while anything is in flight). EAGAIN/EBUSY/ENOBUFS are not errors here.
    pub fn kick(&mut self) -> io::Result<()> {
        if self.in_flight == 0 {
            return Ok(());
        }
        match self.tx.wakeup() {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Gives every free frame to the fill ring (receive role).
    pub fn prime_fill(&mut self) {
        let n = (self.fq.nb_free(self.free.len() as u32) as usize).min(self.free.len());
        if n == 0 {
            return;
        }
        let start = self.free.len() - n;
        // SAFETY: free-list descriptors are ours and from this UMEM.
        let done = unsafe { self.fq.produce(&self.free[start..]) };
        if done == n {
            self.free.truncate(start);
        }
    }

    /// Receives up to `max` frames, calls `seen` on each one's bytes, and gives them
    /// back to the fill ring. Returns how many were received.
    pub fn recv(&mut self, max: usize, mut seen: impl FnMut(&[u8])) -> usize {
        debug_assert_eq!(self.role, PortRole::Receive);
        let max = max.min(self.scratch.len());
        // SAFETY: the RX ring is this UMEM's; `scratch` is only written.
        let n = unsafe { self.rx.consume(&mut self.scratch[..max]) };
        for d in &self.scratch[..n] {
            // SAFETY: received descriptors are ours until they go back to the fill ring.
            seen(unsafe { self.umem.data(d) }.contents());
        }
        self.free.extend_from_slice(&self.scratch[..n]);
        self.prime_fill();
        n
    }

    /// Sleeps until frames arrive or `timeout_ms` passes (also wakes the fill ring).
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        match self.rx.poll(timeout_ms) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The socket's kernel counters.
    pub fn stats(&self) -> PortStats {
        match self.rx.fd().xdp_statistics() {
            Ok(s) => PortStats {
                rx_dropped: s.rx_dropped(),
                rx_ring_full: s.rx_ring_full(),
                rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
                tx_invalid: s.tx_invalid_descs(),
                tx_ring_empty: s.tx_ring_empty_descs(),
            },
            Err(_) => PortStats::default(),
        }
    }
}

/// A UMEM frame being written by [`XskPort::send`].
pub struct FrameBuf<'a>(xsk_rs::umem::frame::Cursor<'a>);

impl FrameBuf<'_> {
    /// Appends `bytes`; false (frame unchanged past what fitted) if the frame is full.
    #[inline]
    pub fn put(&mut self, bytes: &[u8]) -> bool {
        self.0.write_all(bytes).is_ok()
    }
}
