//! The frame I/O seam between the worker loop and the rings (STYLE.md, convention 11).
//!
//! [`FrameIo`] is what a worker needs from "two NIC queues sharing one frame area":
//! per side a fill ring, an RX ring, a TX ring and a completion ring. The AF_XDP
//! implementation lives in `xsk.rs`; [`MemIo`] is an in-memory one that tests (and the
//! worker-loop benchmark) drive without a NIC, including a stalled peer and full rings.
//!
//! Ownership contract (the reason the descriptor-taking methods are `unsafe`): a
//! descriptor is *owned by the worker* from the moment `take_frames`, `rx` or
//! `completions` hands it out until the worker passes it to `fill` or `tx`. The worker
//! may read or write a frame only while it owns it, and must never submit the same
//! descriptor twice. With AF_XDP, breaking this lets the kernel and the worker touch
//! the same memory at once.

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

/// Rings of two NIC queues (subscriber side and upstream side) over one frame area.
pub trait FrameIo {
    /// A frame descriptor (address + length). `Copy` because the rings copy them; the
    /// ownership contract above is what keeps copies from being used twice.
    type Desc: Copy + Default;

    /// All frames of the shared area, handed to the worker once at start-up.
    fn take_frames(&mut self) -> Vec<Self::Desc>;

    /// Free slots in `side`'s fill ring (at most `max`).
    fn fill_free(&mut self, side: Side, max: usize) -> usize;

    /// Gives frames to the kernel to receive into. All or nothing: returns
    /// `descs.len()` or 0.
    ///
    /// # Safety
    /// The caller owns every descriptor and gives up ownership when this returns
    /// `descs.len()`.
    unsafe fn fill(&mut self, side: Side, descs: &[Self::Desc]) -> usize;

    /// Takes up to `out.len()` received frames; the caller owns them afterwards.
    fn rx(&mut self, side: Side, out: &mut [Self::Desc]) -> usize;

    /// Free slots in `side`'s TX ring (at most `max`).
    fn tx_free(&mut self, side: Side, max: usize) -> usize;

    /// Queues frames for transmission on `side`. All or nothing.
    ///
    /// # Safety
    /// As for [`FrameIo::fill`].
    unsafe fn tx(&mut self, side: Side, descs: &[Self::Desc]) -> usize;

    /// True when the kernel must be kicked to transmit what is queued on `side`.
    fn tx_needs_kick(&self, side: Side) -> bool;

    /// Kicks transmission on `side` (a `sendto` for AF_XDP).
    fn kick_tx(&mut self, side: Side) -> io::Result<()>;

    /// Takes up to `out.len()` transmitted frames back; the caller owns them afterwards.
    fn completions(&mut self, side: Side, out: &mut [Self::Desc]) -> usize;

    /// True when the kernel wants a wakeup to refill from `side`'s fill ring.
    fn fill_needs_wakeup(&self, side: Side) -> bool;

    /// Wakes the kernel for `side`'s fill ring without blocking.
    fn wake_fill(&mut self, side: Side) -> io::Result<()>;

    /// The kernel's drop counters for `side`'s socket (zero where there is no kernel).
    fn kernel_drops(&self, _side: Side) -> super::counters::KernelDrops {
        super::counters::KernelDrops::default()
    }

    /// Sleeps until either RX ring has frames or `timeout_ms` passes.
    fn wait(&mut self, timeout_ms: i32) -> io::Result<()>;

    /// The frame's bytes.
    ///
    /// # Safety
    /// The caller owns `d`.
    unsafe fn data(&self, d: &Self::Desc) -> &[u8];

    /// Replaces the frame's contents with `bytes`; false if they do not fit.
    ///
    /// # Safety
    /// The caller owns `d`.
    unsafe fn write(&mut self, d: &mut Self::Desc, bytes: &[u8]) -> bool;
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
    /// Frames the "kernel" could not receive because the fill ring was empty.
    rx_dropped_no_fill: u64,
    kicks: u64,
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
            s.rx_dropped_no_fill += 1;
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

    /// Frames the "NIC" dropped on `side` for lack of a fill descriptor.
    pub fn rx_dropped(&self, side: Side) -> u64 {
        self.sides[side.index()].rx_dropped_no_fill
    }

    /// TX kicks the worker made on `side`.
    pub fn kicks(&self, side: Side) -> u64 {
        self.sides[side.index()].kicks
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

    fn take_frames(&mut self) -> Vec<MemDesc> {
        assert!(!self.taken, "frames handed out twice");
        self.taken = true;
        (0..self.frames.len() as u32)
            .map(|index| MemDesc { index, len: 0 })
            .collect()
    }

    fn fill_free(&mut self, side: Side, max: usize) -> usize {
        (self.ring - self.sides[side.index()].fill.len()).min(max)
    }

    unsafe fn fill(&mut self, side: Side, descs: &[MemDesc]) -> usize {
        let s = &mut self.sides[side.index()];
        if s.fill.len() + descs.len() > self.ring {
            return 0;
        }
        s.fill.extend(descs.iter().map(|d| MemDesc {
            index: d.index,
            len: 0,
        }));
        descs.len()
    }

    fn rx(&mut self, side: Side, out: &mut [MemDesc]) -> usize {
        let s = &mut self.sides[side.index()];
        let n = out.len().min(s.rx.len());
        for (slot, d) in out.iter_mut().zip(s.rx.drain(..n)) {
            *slot = d;
        }
        n
    }

    fn tx_free(&mut self, side: Side, max: usize) -> usize {
        (self.ring - self.sides[side.index()].tx.len()).min(max)
    }

    unsafe fn tx(&mut self, side: Side, descs: &[MemDesc]) -> usize {
        let s = &mut self.sides[side.index()];
        if s.tx.len() + descs.len() > self.ring {
            return 0;
        }
        s.tx.extend(descs.iter().copied());
        descs.len()
    }

    fn tx_needs_kick(&self, side: Side) -> bool {
        !self.sides[side.index()].tx.is_empty()
    }

    fn kick_tx(&mut self, side: Side) -> io::Result<()> {
        self.sides[side.index()].kicks += 1;
        Ok(())
    }

    fn completions(&mut self, side: Side, out: &mut [MemDesc]) -> usize {
        let s = &mut self.sides[side.index()];
        let n = out.len().min(s.comp.len());
        for (slot, d) in out.iter_mut().zip(s.comp.drain(..n)) {
            *slot = d;
        }
        n
    }

    fn fill_needs_wakeup(&self, _side: Side) -> bool {
        false
    }

    fn wake_fill(&mut self, _side: Side) -> io::Result<()> {
        Ok(())
    }

    fn wait(&mut self, _timeout_ms: i32) -> io::Result<()> {
        if let Some(gate) = &self.hang {
            while gate.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(())
    }

    unsafe fn data(&self, d: &MemDesc) -> &[u8] {
        &self.frames[d.index as usize][..d.len as usize]
    }

    unsafe fn write(&mut self, d: &mut MemDesc, bytes: &[u8]) -> bool {
        if bytes.len() > self.frame_size {
            return false;
        }
        self.frames[d.index as usize][..bytes.len()].copy_from_slice(bytes);
        d.len = bytes.len() as u32;
        true
    }
}
