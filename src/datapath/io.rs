//! The frame I/O seam between the worker loop and the rings (STYLE.md, convention 11).
//!
//! [`FrameIo`] is what a worker needs from "two NIC queues sharing one frame area":
//! per side a fill ring, an RX ring, a TX ring and a completion ring. The AF_XDP
//! implementation lives in `xsk.rs`; [`MemIo`] is an in-memory one that tests (and the
//! worker-loop benchmark) drive without a NIC, including a stalled peer and full rings.
//!
//! Ownership is in the types: a [`Frame`] is a handle that only a `FrameIo`
//! implementation can make. It is neither `Copy` nor `Clone`; `take_frames`, `rx` and
//! `completions` hand frames out, `fill` and `tx` take them back (the vector they are
//! moved out of no longer holds them), and `data` / `build_into` need the handle. So the
//! worker can touch a frame's bytes only while it owns it, and cannot submit one frame
//! twice; the compiler checks what was a convention. What the types do not check: a
//! frame goes back to the `FrameIo` that made it (each worker has exactly one; no frame
//! crosses workers), written down in docs/architecture.md, "Frame ownership".

use std::collections::VecDeque;
use std::io;

/// Which side of the bump a ring belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The subscriber-facing NIC: frames received here travel outbound.
    Subscriber = 0,
    /// The upstream NIC: frames received here travel inbound.
    Upstream = 1,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Subscriber, Side::Upstream];

    /// The other side (where a forwarded frame goes).
    #[inline]
    pub fn other(self) -> Side {
        match self {
            Side::Subscriber => Side::Upstream,
            Side::Upstream => Side::Subscriber,
        }
    }

    /// crate::policy::Direction of a frame received on this side.
    #[inline]
    pub fn rx_direction(self) -> crate::policy::Direction {
        match self {
            Side::Subscriber => crate::policy::Direction::Outbound,
            Side::Upstream => crate::policy::Direction::Inbound,
        }
    }

    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Subscriber => "subscriber",
            Side::Upstream => "upstream",
        }
    }
}

/// Frames lost in the kernel before the worker saw them (AF_XDP `XDP_STATISTICS`,
/// cumulative per socket): the worker did not keep up or the fill ring ran dry.
///
/// The three overlap: in copy mode the kernel counts a frame it had no fill entry for
/// in `rx_dropped` *and* in `fill_empty` (`__xsk_rcv`: `xsk_buff_alloc` fails, which
/// counts the empty fill ring, then `rx_dropped++`); in zero-copy mode `fill_empty`
/// counts the times the driver found the fill ring empty, and what the NIC then drops
/// shows in its own counters (`ethtool -S`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelDrops {
    /// Dropped by the socket: no fill entry (copy mode), or a frame larger than the
    /// UMEM frame.
    pub rx_dropped: u64,
    /// The socket's RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring had no frame to receive into (not a frame count).
    pub fill_empty: u64,
}

impl KernelDrops {
    /// Frames the socket dropped (`fill_empty` is already inside `rx_dropped`).
    pub fn total(&self) -> u64 {
        self.rx_dropped + self.rx_ring_full
    }
}

/// A frame the holder owns: the handle to one frame of a [`FrameIo`]'s area, while it is
/// in no ring. Not `Copy`, not `Clone`; only the datapath's `FrameIo` implementations
/// make one (from a descriptor the kernel or the area gave back). `repr(transparent)`,
/// so a slice of frames is a slice of descriptors for the ring calls.
///
/// A frame cannot be used after it was given away (this does not compile):
///
/// ```compile_fail,E0382
/// use op25b::datapath::io::{FrameIo, MemIo, Side};
/// let mut io = MemIo::new(4, 2048, 4);
/// let mut free = io.take_frames();
/// let f = free.pop().unwrap();
/// let mut batch = vec![f];
/// io.tx(Side::Upstream, &mut batch, 1);
/// let _again = io.data(&f); // `f` moved into the TX batch
/// ```
#[must_use = "a frame must go back to a ring or the free list"]
#[repr(transparent)]
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<D>(D);

impl<D> Frame<D> {
    /// Wraps a descriptor the implementation owns (from its area, RX or completion
    /// ring).
    #[inline]
    pub(in crate::datapath) fn from_desc(d: D) -> Self {
        Frame(d)
    }

    #[inline]
    pub(in crate::datapath) fn desc(&self) -> &D {
        &self.0
    }

    #[inline]
    pub(in crate::datapath) fn desc_mut(&mut self) -> &mut D {
        &mut self.0
    }

    /// The descriptors of `frames` (same layout: `repr(transparent)`).
    #[inline]
    pub(in crate::datapath) fn descs(frames: &[Frame<D>]) -> &[D] {
        // SAFETY: `Frame<D>` is `repr(transparent)` over `D`, so `[Frame<D>]` and `[D]`
        // have the same layout; the borrow keeps the frames alive and unchanged.
        unsafe { std::slice::from_raw_parts(frames.as_ptr().cast::<D>(), frames.len()) }
    }
}

/// Rings of two NIC queues (subscriber side and upstream side) over one frame area.
pub trait FrameIo {
    /// The ring descriptor inside a [`Frame`] (address + length).
    type Desc;

    /// All frames of the shared area, handed to the worker once at start-up.
    fn take_frames(&mut self) -> Vec<Frame<Self::Desc>>;

    /// Free slots in `side`'s fill ring (at most `max`).
    fn fill_free(&mut self, side: Side, max: usize) -> usize;

    /// Entries in `side`'s fill ring that the kernel has not taken yet (exact: reads the
    /// kernel's consumer position). The frames given to the fill ring less these are
    /// the receive backlog: received, waiting in the RX ring.
    fn fill_pending(&mut self, side: Side) -> usize;

    /// Gives the last `n` frames of `frames` to the kernel to receive into, all or
    /// nothing: returns `n` (and they have left `frames`) or 0 (and `frames` is as it
    /// was).
    fn fill(&mut self, side: Side, frames: &mut Vec<Frame<Self::Desc>>, n: usize) -> usize;

    /// Appends up to `max` received frames to `out`; returns how many.
    fn rx(&mut self, side: Side, max: usize, out: &mut Vec<Frame<Self::Desc>>) -> usize;

    /// Free slots in `side`'s TX ring (at most `max`).
    fn tx_free(&mut self, side: Side, max: usize) -> usize;

    /// Queues the first `n` frames of `frames` for transmission on `side`, in order,
    /// all or nothing: returns `n` (and they have left `frames`) or 0.
    fn tx(&mut self, side: Side, frames: &mut Vec<Frame<Self::Desc>>, n: usize) -> usize;

    /// True when the kernel must be kicked to transmit what is queued on `side`.
    fn tx_needs_kick(&self, side: Side) -> bool;

    /// Kicks transmission on `side` (a `sendto` for AF_XDP).
    fn kick_tx(&mut self, side: Side) -> io::Result<()>;

    /// Appends up to `max` transmitted frames to `out`; returns how many.
    fn completions(&mut self, side: Side, max: usize, out: &mut Vec<Frame<Self::Desc>>) -> usize;

    /// True when the kernel wants a wakeup to refill from `side`'s fill ring.
    fn fill_needs_wakeup(&self, side: Side) -> bool;

    /// Wakes the kernel for `side`'s fill ring without blocking.
    fn wake_fill(&mut self, side: Side) -> io::Result<()>;

    /// The kernel's drop counters for `side`'s socket (zero where there is no kernel).
    fn kernel_drops(&self, _side: Side) -> KernelDrops {
        KernelDrops::default()
    }

    /// Sleeps until either RX ring has frames or `timeout_ms` passes.
    fn wait(&mut self, timeout_ms: i32) -> io::Result<()>;

    /// The frame's bytes.
    fn data<'a>(&'a self, f: &'a Frame<Self::Desc>) -> &'a [u8];

    /// Builds new contents for `into` (a free frame) straight in its buffer: `build` gets
    /// `from`'s bytes and `into`'s whole buffer and returns the length it wrote, or
    /// `None`. False (and `into` empty) when it returns `None` or more than the buffer.
    fn build_into(
        &mut self,
        from: &Frame<Self::Desc>,
        into: &mut Frame<Self::Desc>,
        build: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> bool;
}

/// Descriptor of [`MemIo`]: frame index and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemDesc {
    pub index: u32,
    pub len: u32,
}

#[derive(Debug, Default)]
struct MemSide {
    fill: VecDeque<MemDesc>,
    rx: VecDeque<MemDesc>,
    tx: VecDeque<MemDesc>,
    comp: VecDeque<MemDesc>,
    /// When set, the "wire" takes nothing from the TX ring (a stalled peer).
    stalled: bool,
    /// Frames the "kernel" could not receive: the RX ring was full, the frame too big.
    rx_dropped_other: u64,
    /// Frames the "kernel" could not receive because the fill ring was empty.
    rx_dropped_no_fill: u64,
}

/// In-memory [`FrameIo`]: rings are bounded queues, frames are byte vectors. A test
/// plays the kernel: [`MemIo::inject`] receives a frame on a side (consuming a fill
/// descriptor, as the NIC would), [`MemIo::wire`] transmits what a side queued.
#[derive(Debug)]
pub struct MemIo {
    frames: Vec<Vec<u8>>,
    frame_size: usize,
    ring: usize,
    sides: [MemSide; 2],
    taken: bool,
    /// While set, [`FrameIo::wait`] does not return: a worker wedged in a syscall.
    hang: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl MemIo {
    /// `frame_count` frames of `frame_size` bytes; every ring holds `ring` descriptors.
    pub fn new(frame_count: usize, frame_size: usize, ring: usize) -> Self {
        Self {
            frames: vec![vec![0; frame_size]; frame_count],
            frame_size,
            ring,
            sides: Default::default(),
            taken: false,
            hang: None,
        }
    }

    /// From now on, `wait` blocks for as long as `gate` is set (a worker stuck in
    /// poll(), as with a wedged driver): the watchdog tests stall a real worker loop.
    pub fn hang_in_wait(&mut self, gate: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.hang = Some(gate);
    }

    /// The NIC receives `bytes` on `side`; false (and counted) if no fill descriptor
    /// or RX slot was available, as the kernel would drop it.
    pub fn inject(&mut self, side: Side, bytes: &[u8]) -> bool {
        let s = &mut self.sides[side.index()];
        if s.rx.len() >= self.ring || bytes.len() > self.frame_size {
            s.rx_dropped_other += 1;
            return false;
        }
        let Some(mut d) = s.fill.pop_front() else {
            s.rx_dropped_no_fill += 1;
            return false;
        };
        let f = &mut self.frames[d.index as usize];
        f[..bytes.len()].copy_from_slice(bytes);
        d.len = bytes.len() as u32;
        s.rx.push_back(d);
        true
    }

    /// Transmits up to `max` queued frames of `side` (unless stalled): returns their
    /// bytes and moves their descriptors to the completion ring.
    pub fn wire(&mut self, side: Side, max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let s = &mut self.sides[side.index()];
        if s.stalled {
            return out;
        }
        while out.len() < max && s.comp.len() < self.ring {
            let Some(d) = s.tx.pop_front() else { break };
            out.push(self.frames[d.index as usize][..d.len as usize].to_vec());
            s.comp.push_back(d);
        }
        out
    }

    /// Like [`MemIo::wire`] without copying the frames out: returns how many left.
    pub fn discard(&mut self, side: Side, max: usize) -> usize {
        let s = &mut self.sides[side.index()];
        if s.stalled {
            return 0;
        }
        let n = max.min(s.tx.len()).min(self.ring - s.comp.len());
        for _ in 0..n {
            let d = s.tx.pop_front().expect("counted");
            s.comp.push_back(d);
        }
        n
    }

    /// Stops (or resumes) the peer of `side` from taking frames off the TX ring.
    pub fn set_stalled(&mut self, side: Side, stalled: bool) {
        self.sides[side.index()].stalled = stalled;
    }

    /// Frames the "NIC" dropped on `side`: no fill descriptor, no RX slot, too big.
    pub fn rx_dropped(&self, side: Side) -> u64 {
        let s = &self.sides[side.index()];
        s.rx_dropped_no_fill + s.rx_dropped_other
    }

    /// Descriptors sitting in each ring of `side`: (fill, rx, tx, completion).
    pub fn ring_levels(&self, side: Side) -> (usize, usize, usize, usize) {
        let s = &self.sides[side.index()];
        (s.fill.len(), s.rx.len(), s.tx.len(), s.comp.len())
    }

    /// Total frames (for conservation checks).
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }
}

impl FrameIo for MemIo {
    type Desc = MemDesc;

    fn take_frames(&mut self) -> Vec<Frame<MemDesc>> {
        assert!(!self.taken, "frames handed out twice");
        self.taken = true;
        (0..self.frames.len() as u32)
            .map(|index| Frame::from_desc(MemDesc { index, len: 0 }))
            .collect()
    }

    fn fill_free(&mut self, side: Side, max: usize) -> usize {
        (self.ring - self.sides[side.index()].fill.len()).min(max)
    }

    fn fill_pending(&mut self, side: Side) -> usize {
        self.sides[side.index()].fill.len()
    }

    fn fill(&mut self, side: Side, frames: &mut Vec<Frame<MemDesc>>, n: usize) -> usize {
        let s = &mut self.sides[side.index()];
        if n > frames.len() || s.fill.len() + n > self.ring {
            return 0;
        }
        let at = frames.len() - n;
        s.fill.extend(frames.drain(at..).map(|f| MemDesc {
            index: f.0.index,
            len: 0,
        }));
        n
    }

    fn rx(&mut self, side: Side, max: usize, out: &mut Vec<Frame<MemDesc>>) -> usize {
        let s = &mut self.sides[side.index()];
        let n = max.min(s.rx.len());
        out.extend(s.rx.drain(..n).map(Frame::from_desc));
        n
    }

    fn tx_free(&mut self, side: Side, max: usize) -> usize {
        (self.ring - self.sides[side.index()].tx.len()).min(max)
    }

    fn tx(&mut self, side: Side, frames: &mut Vec<Frame<MemDesc>>, n: usize) -> usize {
        let s = &mut self.sides[side.index()];
        if n > frames.len() || s.tx.len() + n > self.ring {
            return 0;
        }
        s.tx.extend(frames.drain(..n).map(|f| f.0));
        n
    }

    fn tx_needs_kick(&self, side: Side) -> bool {
        !self.sides[side.index()].tx.is_empty()
    }

    fn kick_tx(&mut self, _side: Side) -> io::Result<()> {
        Ok(())
    }

    fn completions(&mut self, side: Side, max: usize, out: &mut Vec<Frame<MemDesc>>) -> usize {
        let s = &mut self.sides[side.index()];
        let n = max.min(s.comp.len());
        out.extend(s.comp.drain(..n).map(Frame::from_desc));
        n
    }

    fn fill_needs_wakeup(&self, _side: Side) -> bool {
        false
    }

    fn wake_fill(&mut self, _side: Side) -> io::Result<()> {
        Ok(())
    }

    fn kernel_drops(&self, side: Side) -> KernelDrops {
        let s = &self.sides[side.index()];
        KernelDrops {
            rx_dropped: s.rx_dropped_other,
            rx_ring_full: 0,
            fill_empty: s.rx_dropped_no_fill,
        }
    }

    fn wait(&mut self, _timeout_ms: i32) -> io::Result<()> {
        if let Some(gate) = &self.hang {
            while gate.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(())
    }

    fn data<'a>(&'a self, f: &'a Frame<MemDesc>) -> &'a [u8] {
        &self.frames[f.0.index as usize][..f.0.len as usize]
    }

    fn build_into(
        &mut self,
        from: &Frame<MemDesc>,
        into: &mut Frame<MemDesc>,
        build: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> bool {
        let (a, b) = (from.0.index as usize, into.0.index as usize);
        // Two handles never name one frame; the split below relies on it.
        assert_ne!(a, b, "one frame behind two handles");
        let (src, dst) = if a < b {
            let (lo, hi) = self.frames.split_at_mut(b);
            (&lo[a][..from.0.len as usize], &mut hi[0])
        } else {
            let (lo, hi) = self.frames.split_at_mut(a);
            (&hi[0][..from.0.len as usize], &mut lo[b])
        };
        let cap = dst.len();
        match build(src, &mut dst[..]) {
            Some(n) if n <= cap => {
                into.0.len = n as u32;
                true
            }
            _ => {
                into.0.len = 0;
                false
            }
        }
    }
}
