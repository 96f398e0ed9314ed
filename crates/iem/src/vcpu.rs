//! The interpreter vCPU: sup's `Vcpu` implemented by the block-execution loop.

use crate::cpu::{vec, Cpu, Fault, MmioAccess, Stop, R};
use crate::event::{class, has_error_code, Class, Ev};
use crate::flags::fl;
use crate::icache::{self, Block, BlockCache};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use sup::{CpuidEntry, Recall, StateMask, Vcpu, VcpuState, VmExit};

/// Instructions executed per `run` before it returns `Recalled`, so the VMM loop can
/// deliver timer interrupts even when the guest never exits.
pub const SLICE_INSTRUCTIONS: u64 = 200_000;

/// The recall flag of one interpreter vCPU.
#[derive(Debug, Default)]
pub struct RecallFlag(AtomicBool);

impl Recall for RecallFlag {
    fn recall(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Counters for performance measurement.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Instructions retired.
    pub instructions: u64,
    /// Blocks decoded (cache misses).
    pub blocks_decoded: u64,
    /// Exceptions and interrupts delivered.
    pub events: u64,
    /// Blocks executed.
    pub blocks_run: u64,
    /// Blocks found by translating the fetch address and looking the cache up, because the
    /// previous block had no link to them (indirect branches, returns, first runs) and
    /// the jump cache did not know them either.
    pub lookups: u64,
    /// Blocks found in the jump cache after the previous block's links missed.
    pub jump_hits: u64,
}

/// A vCPU executed by the interpreter.
pub struct IemVcpu {
    cpu: Cpu,
    cache: BlockCache,
    recall: Arc<RecallFlag>,
    irq_window: bool,
    last_io: bool,
    stats: Stats,
    slice: u64,
    /// The last block ran fast paths only and ended normally: nothing that decides event
    /// delivery or the fetch context (RFLAGS.IF, the interrupt shadow, pending events,
    /// paging, CS, CPL) can have changed since the checks before it. (The fast CLI only
    /// clears IF, which cannot make an event deliverable, so it leaves a block clean.)
    clean: bool,
    /// The last block lookup translated its fetch through a global page.
    fetch_global: bool,
}

enum Flow {
    Continue,
    Exit(VmExit),
}

impl IemVcpu {
    /// A vCPU in the given (engine-neutral) state over `memory`: how a running VM moves a
    /// vCPU from the KVM backend to the interpreter.
    pub fn from_state(id: u32, memory: Arc<pgm::GuestMemory>, state: VcpuState) -> Self {
        let mut cpu = Cpu::new(id, memory, state);
        for e in cpu.cpuid.iter_mut() {
            if e.function == 1 {
                e.ebx = (e.ebx & 0x00ff_ffff) | (id << 24);
            }
        }
        IemVcpu {
            cpu,
            cache: BlockCache::default(),
            recall: Arc::new(RecallFlag::default()),
            irq_window: false,
            last_io: false,
            stats: Stats::default(),
            slice: SLICE_INSTRUCTIONS,
            clean: false,
            fetch_global: false,
        }
    }

    /// The complete current state (for moving the vCPU to another engine or saving it).
    pub fn to_state(&mut self) -> VcpuState {
        self.cpu.export_state();
        self.cpu.s
    }

    /// Set the guest TSC frequency in Hz (default [`crate::DEFAULT_TSC_HZ`]); the TSC keeps
    /// its current value.
    pub fn set_tsc_frequency(&mut self, hz: u64) {
        let now = self.cpu.read_tsc();
        self.cpu.tsc.hz = hz.max(1);
        self.cpu.set_tsc(now);
    }

    /// Set the guest TSC value now.
    pub fn set_tsc(&mut self, value: u64) {
        self.cpu.set_tsc(value);
    }

    /// Instructions per `run` slice before returning `Recalled`.
    pub fn set_slice(&mut self, instructions: u64) {
        self.slice = instructions.max(1);
    }

    /// Performance counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of decoded blocks in the cache.
    pub fn cached_blocks(&self) -> usize {
        self.cache.len()
    }

    fn sync_in(&mut self) {
        if self.cpu.exported {
            self.cpu.exported = false;
            let before = self.cpu.seen_paging;
            self.cpu.import_state();
            if before != self.cpu.seen_paging {
                self.cache.clear();
            }
        }
    }

    /// Deliver an exception with the double/triple-fault rules. Returns an exit when the
    /// vCPU shuts down.
    fn raise(&mut self, f: Fault) -> Option<VmExit> {
        let c = &mut self.cpu;
        let mut cur = f;
        self.stats.events += 1;
        for _ in 0..3 {
            let code = if has_error_code(cur.vector) {
                Some(u32::from(cur.code.unwrap_or(0)))
            } else {
                None
            };
            let ret = c.s.rip;
            tracing::trace!(
                vector = cur.vector,
                ?code,
                rip = ret,
                cr2 = c.s.cr2,
                "iem: exception"
            );
            match c.deliver(cur.vector, Ev::Exc, code, ret) {
                Ok(()) => return None,
                Err(Stop::Fault(nf)) => {
                    tracing::debug!(
                        vector = cur.vector,
                        nested = nf.vector,
                        nested_code = ?nf.code,
                        rip = ret,
                        "iem: fault while delivering an exception"
                    );
                    if cur.vector == vec::DF {
                        return Some(VmExit::Shutdown);
                    }
                    let (a, b) = (class(cur.vector), class(nf.vector));
                    cur = if (a == Class::Contributory && b == Class::Contributory)
                        || (a == Class::PageFault && b != Class::Benign)
                    {
                        Fault {
                            vector: vec::DF,
                            code: Some(0),
                        }
                    } else {
                        nf
                    };
                }
                Err(Stop::Exit) => {
                    c.exit = None;
                    return Some(VmExit::Unhandled(
                        "event delivery touched MMIO (IDT/stack not in RAM)".into(),
                    ));
                }
            }
        }
        Some(VmExit::Shutdown)
    }

    /// Deliver an external interrupt or NMI.
    fn deliver_ext(&mut self, v: u8) -> Option<VmExit> {
        self.stats.events += 1;
        let ret = self.cpu.s.rip;
        match self.cpu.deliver(v, Ev::Ext, None, ret) {
            Ok(()) => None,
            Err(Stop::Fault(f)) => self.raise(f),
            Err(Stop::Exit) => Some(VmExit::Unhandled("interrupt delivery touched MMIO".into())),
        }
    }

    /// True while an instruction waits to be completed with I/O or MMIO data.
    fn resuming(&self) -> bool {
        self.cpu.pending_in.is_some() || !self.cpu.mmio_replay.is_empty()
    }

    /// [`Self::block_key`], counted.
    fn lookup(&mut self) -> Result<u32, Flow> {
        self.stats.lookups += 1;
        self.block_key()
    }

    /// Fetch (decode if needed) the block at the current RIP; returns its cache slot.
    fn block_key(&mut self) -> Result<u32, Flow> {
        let c = &mut self.cpu;
        let lin = c.s.cs.base.wrapping_add(c.s.rip);
        let lin = if c.long64() { lin } else { lin & 0xffff_ffff };
        let off = match c.fetch_xlate(lin) {
            Ok(Some((o, global))) => {
                self.fetch_global = global;
                o
            }
            Ok(None) => {
                return Err(Flow::Exit(VmExit::Unhandled(format!(
                    "instruction fetch from MMIO at linear {lin:#x}"
                ))))
            }
            Err(Stop::Fault(f)) => {
                return Err(match self.raise(f) {
                    Some(e) => Flow::Exit(e),
                    None => Flow::Continue,
                })
            }
            Err(Stop::Exit) => return Err(Flow::Continue),
        };
        let k = icache::key(off, c.bits);
        c.code_page = off >> 12;
        if let Some(slot) = self.cache.get(k, &c.mem) {
            return Ok(slot);
        }
        // Decode: watch the page first so a write racing with the read bumps the generation.
        let page = off & !0xfff;
        let gen = c.mem.watch_code_page(page);
        let in_page = (4096 - (off & 0xfff)) as usize;
        let mut bytes = vec![0u8; in_page + 15];
        if c.mem.backing_read(off, &mut bytes[..in_page]).is_err() {
            return Err(Flow::Exit(VmExit::Unhandled(format!(
                "instruction fetch outside the backing at {off:#x}"
            ))));
        }
        let ip = lin & 0xfff;
        let (mut instrs, mut straddle, ran_out) =
            icache::decode_block(c.bits, &bytes[..in_page], in_page, ip);
        let next_lin = (lin | 0xfff).wrapping_add(1);
        let mut next = None;
        if ran_out {
            // The last instruction continues on the next page: fetch it only now, so
            // pages are not touched (accessed bits, faults) unless code really crosses.
            let saved_cr2 = c.s.cr2;
            match c.fetch_xlate(next_lin) {
                Ok(Some((n, _))) if c.mem.backing_read(n, &mut bytes[in_page..]).is_ok() => {
                    next = Some(n);
                    let (i2, s2, _) = icache::decode_block(c.bits, &bytes, in_page, ip);
                    instrs = i2;
                    straddle = s2;
                }
                Err(Stop::Fault(f)) if instrs.is_empty() => {
                    return Err(match self.raise(f) {
                        Some(e) => Flow::Exit(e),
                        None => Flow::Continue,
                    });
                }
                _ => c.s.cr2 = saved_cr2,
            }
        }
        if instrs.is_empty() {
            return Err(Flow::Exit(VmExit::Unhandled(format!(
                "instruction at {lin:#x} crosses into MMIO"
            ))));
        }
        let page2 = if straddle {
            next.map(|n| {
                let p = n & !0xfff;
                (p, c.mem.watch_code_page(p))
            })
        } else {
            None
        };
        self.stats.blocks_decoded += 1;
        let mut ops: Vec<_> = instrs
            .iter()
            .map(|i| crate::exec::fast::compile(i, c.bits))
            .collect();
        // A block ending in a compare and a Jcc runs the pair as one op (the block's ops
        // are then one shorter than its instructions).
        if let [.., a, b] = instrs.as_slice() {
            if let Some(f) = crate::exec::fast::compile_fused(a, b, c.bits) {
                ops.pop();
                if let Some(last) = ops.last_mut() {
                    *last = f;
                }
            }
        }
        Ok(self.cache.insert(
            k,
            Block {
                instrs,
                ops: icache::Ops::default(),
                page,
                gen,
                page2,
                links: [icache::NO_LINK; 2],
            },
            &ops,
        ))
    }

    /// Execute one block (or one instruction when an interrupt shadow is active).
    fn exec_block(&mut self, t: icache::Target, budget: &mut u64) -> Flow {
        // `block_key` or the link just validated the block against the code-page
        // generations; its header is needed only for slow ops.
        self.cache.prefetch_successors(t.slot);
        let c = &mut self.cpu;
        c.code_page = u64::from(t.page);
        // Completing an I/O or MMIO exit, or in an interrupt shadow: one instruction, with
        // the full bookkeeping.
        let single =
            c.s.events.interrupt_shadow || !c.mmio_replay.is_empty() || c.pending_in.is_some();
        let ops = self.cache.ops(t.ops);
        let ops = if single {
            ops.get(..1).unwrap_or(ops)
        } else {
            ops
        };
        let mut n = 0u64;
        let mut flow = Flow::Continue;
        let mut clean = !single;
        let ip_mask = c.ip_mask();
        // Phase 1 (64-bit code, no single-stepping): run the leading fast instructions with
        // the least bookkeeping. Only the last instruction of a block can branch (decoding
        // ends a block after any control transfer), and fast handlers other than branches
        // do not read RIP, so these need neither RIP nor `delta` updated per instruction:
        // `delta` is the same for the whole block (RIP cannot wrap in 64-bit mode) and RIP
        // is set once, for the instruction phase 2 continues with.
        let mut start = 0usize;
        let mut pending: Option<R<()>> = None;
        if !single && ip_mask == u64::MAX {
            if let Some(first) = ops.first() {
                let delta = c.s.rip.wrapping_sub(u64::from(first.ip));
                c.delta = delta;
                let last = ops.len() - 1;
                while start < last {
                    let op = &ops[start];
                    let Some(f) = op.handler() else {
                        break;
                    };
                    let r = f(c, op);
                    if r.is_err() || c.smc {
                        // Completed (or failed) by phase 2 below, without running it again.
                        pending = Some(r);
                        break;
                    }
                    start += 1;
                }
                n = start as u64;
                c.s.rip = u64::from(ops[start].ip).wrapping_add(delta);
            }
        }
        // Phase 2: the rest, one instruction at a time with RIP maintained.
        for (i, op) in ops.iter().enumerate().skip(start) {
            let rip = c.s.rip;
            c.delta = rip.wrapping_sub(u64::from(op.ip));
            let next = rip.wrapping_add(u64::from(op.len())) & ip_mask;
            c.s.rip = next;
            let (r, wq) = match op.handler() {
                // Phase 1 ran this one already; fast paths queue MMIO writes only when they
                // succeed.
                _ if pending.is_some() => {
                    c.start_rip = rip;
                    c.next_rip = next;
                    (pending.take().unwrap_or(Ok(())), c.mmio_wq.len())
                }
                // A fast path sets no exit, shadow or end-of-block request, and reports a
                // code write or a queued MMIO write in `smc`: the common case needs one check.
                // Fast paths find the next instruction's address in `c.s.rip` on entry and
                // do not need `start_rip`/`next_rip` (set below when the slow end runs).
                Some(f) if !single => {
                    let r = f(c, op);
                    if r.is_ok() && !c.smc {
                        n += 1;
                        if c.s.rip == next {
                            continue;
                        }
                        // A taken branch: the block ends here, nothing else to complete.
                        break;
                    }
                    c.start_rip = rip;
                    c.next_rip = next;
                    // Fast paths queue MMIO writes only when they succeed.
                    (r, c.mmio_wq.len())
                }
                h => {
                    c.start_rip = rip;
                    c.next_rip = next;
                    c.replay_cursor = 0;
                    let wq = c.mmio_wq.len();
                    let ins = self.cache.block(t.slot).and_then(|b| b.instrs.get(i));
                    let r = match (h, ins) {
                        (Some(f), _) => f(c, op),
                        (None, Some(ins)) => crate::exec::step(c, ins),
                        (None, None) => break,
                    };
                    (r, wq)
                }
            };
            clean = false;
            match r {
                Ok(()) => {
                    n += 1;
                    if !c.mmio_replay.is_empty() {
                        c.commit_point();
                    }
                    if c.set_shadow || c.s.events.interrupt_shadow {
                        c.s.events.interrupt_shadow = c.set_shadow;
                        c.set_shadow = false;
                    }
                    if !c.mmio_wq.is_empty() {
                        if let Some(w) = c.mmio_wq.pop_front() {
                            flow = Flow::Exit(c.mmio_write_exit(w));
                            break;
                        }
                    }
                    if c.exit.is_some() {
                        if let Some(e) = c.exit.take() {
                            flow = Flow::Exit(e);
                            break;
                        }
                    }
                    if c.end_block || c.smc || c.s.rip != next {
                        c.end_block = false;
                        c.smc = false;
                        break;
                    }
                }
                Err(Stop::Exit) => {
                    c.s.rip = c.start_rip;
                    c.mmio_wq.truncate(wq);
                    c.end_block = false;
                    c.set_shadow = false;
                    let e = c.exit.take().unwrap_or(VmExit::Recalled);
                    flow = Flow::Exit(e);
                    break;
                }
                Err(Stop::Fault(f)) => {
                    tracing::trace!(ins = ?self.cache.block(t.slot).and_then(|b| b.instrs.get(i)).map(|i| i.to_string()), ?f, rip = c.start_rip, "iem: instruction faulted");
                    c.smc = false;
                    c.s.rip = c.start_rip;
                    c.mmio_wq.truncate(wq);
                    c.mmio_replay.clear();
                    c.pending_in = None;
                    c.end_block = false;
                    c.set_shadow = false;
                    c.exit = None;
                    c.s.events.interrupt_shadow = false;
                    n += std::mem::take(&mut c.retired_extra);
                    self.stats.instructions += n;
                    self.clean = false;
                    *budget = budget.saturating_sub(n);
                    return match self.raise(f) {
                        Some(e) => Flow::Exit(e),
                        None => Flow::Continue,
                    };
                }
            }
        }
        c.end_block = false;
        c.smc = false;
        n += std::mem::take(&mut c.retired_extra);
        self.stats.instructions += n;
        self.clean = clean && matches!(flow, Flow::Continue);
        *budget = budget.saturating_sub(n.max(1));
        flow
    }
}

impl Cpu {
    /// Forget MMIO data used by a completed instruction or REP iteration.
    #[inline]
    pub(crate) fn commit_point(&mut self) {
        self.mmio_replay.clear();
        self.replay_cursor = 0;
    }

    fn mmio_write_exit(&mut self, w: MmioAccess) -> VmExit {
        self.mmio_buf = w.data;
        self.mmio_len = usize::from(w.len);
        VmExit::Mmio {
            gpa: w.gpa,
            len: w.len,
            write: true,
        }
    }
}

impl Vcpu for IemVcpu {
    fn id(&self) -> u32 {
        self.cpu.id
    }

    fn run(&mut self) -> sup::Result<VmExit> {
        self.sync_in();
        let c = &mut self.cpu;
        // Complete the exit we returned last time.
        if let Some(p) = c.pending_in.as_mut() {
            p.ready = true;
        }
        if let Some((gpa, len)) = c.mmio_read_pending.take() {
            c.mmio_replay.push(MmioAccess {
                gpa,
                len,
                data: c.mmio_buf,
            });
        }
        self.last_io = false;
        c.mmio_len = 0;
        if let Some(w) = c.mmio_wq.pop_front() {
            return Ok(c.mmio_write_exit(w));
        }
        c.exit = None;
        let mut budget = self.slice;
        // The block run last (slot, cache generation): its links find the next one.
        let mut prev: Option<(u32, u64)> = None;
        self.clean = false;
        let (mut ctx, mut gctx) = (0, 0);
        loop {
            // A plain load first: an atomic swap on every block is measurably slow.
            if budget == 0
                || (self.recall.0.load(Ordering::Relaxed)
                    && self.recall.0.swap(false, Ordering::AcqRel))
            {
                return Ok(VmExit::Recalled);
            }
            let g = self.cpu.mem.map_generation();
            if g != self.cpu.map_gen {
                self.cpu.map_gen = g;
                self.cpu.tlb.flush_all();
                self.clean = false;
            }
            let clean = std::mem::replace(&mut self.clean, false);
            if !clean && !self.resuming() {
                let c = &mut self.cpu;
                let can_irq = c.s.rflags & fl::IF != 0 && !c.s.events.interrupt_shadow;
                if c.nmi_pending && !c.s.events.nmi_masked && !c.s.events.interrupt_shadow {
                    c.nmi_pending = false;
                    c.s.events.nmi_masked = true;
                    if let Some(e) = self.deliver_ext(vec::NMI) {
                        return Ok(e);
                    }
                } else if can_irq {
                    if let Some(v) = c.pending_irq.take() {
                        if let Some(e) = self.deliver_ext(v) {
                            return Ok(e);
                        }
                    } else if self.irq_window {
                        return Ok(VmExit::InterruptWindow);
                    }
                }
            }
            // Follow the previous block's link when it remembers this address; else
            // translate the fetch and look the block up (decoding it on a miss).
            let c = &mut self.cpu;
            let lin = c.s.cs.base.wrapping_add(c.s.rip);
            let lin = if c.long64() { lin } else { lin & 0xffff_ffff };
            if !clean {
                ctx = icache::fetch_ctx(c.tlb.epoch, c.bits, c.cpl());
                gctx = icache::global_fetch_ctx(c.tlb.gepoch, c.bits, c.cpl());
            }
            debug_assert_eq!(ctx, icache::fetch_ctx(c.tlb.epoch, c.bits, c.cpl()));
            let cache_gen = self.cache.generation();
            let linked = match prev {
                Some((p, g)) if g == cache_gen => self.cache.follow(p, lin, ctx, gctx, &c.mem),
                _ => None,
            };
            self.stats.blocks_run += 1;
            let jumped = match linked {
                Some(_) => None,
                None => self.cache.jump_find(lin, ctx, gctx, &self.cpu.mem),
            };
            let t = match (linked, jumped) {
                (Some(t), _) => t,
                (None, Some((t, link_ctx))) => {
                    self.stats.jump_hits += 1;
                    self.cache.link_from(prev, lin, link_ctx, t.slot);
                    t
                }
                (None, None) => match self.lookup() {
                    Ok(k) => {
                        // Only link when nothing changed the fetch context on the way. Code
                        // reached through a global page (on one page) is linked in the
                        // global context, which address-space switches leave alone.
                        let c = &mut self.cpu;
                        if ctx == icache::fetch_ctx(c.tlb.epoch, c.bits, c.cpl()) {
                            let global = self.fetch_global
                                && self.cache.block(k).is_some_and(|b| b.page2.is_none());
                            let link_ctx = if global {
                                c.tlb.note_global_link(lin);
                                gctx
                            } else {
                                ctx
                            };
                            self.cache.link_from(prev, lin, link_ctx, k);
                            self.cache.jump_remember(lin, link_ctx, k);
                        }
                        match self.cache.target(k) {
                            Some(t) => t,
                            None => continue,
                        }
                    }
                    Err(Flow::Continue) => {
                        prev = None;
                        budget = budget.saturating_sub(1);
                        continue;
                    }
                    Err(Flow::Exit(e)) => return Ok(self.finish(e)),
                },
            };
            prev = Some((t.slot, self.cache.generation()));
            if let Flow::Exit(e) = self.exec_block(t, &mut budget) {
                return Ok(self.finish(e));
            }
        }
    }

    fn state(&mut self, _need: StateMask) -> sup::Result<&mut VcpuState> {
        self.cpu.export_state();
        self.cpu.exported = true;
        Ok(&mut self.cpu.s)
    }

    fn mark_dirty(&mut self, _changed: StateMask) {
        // All state is always valid here; `state` already arranged a resync.
        self.cpu.exported = true;
    }

    fn io_data(&mut self) -> &mut [u8] {
        if self.last_io {
            &mut self.cpu.io_buf
        } else {
            &mut []
        }
    }

    fn mmio_data(&mut self) -> &mut [u8] {
        let n = self.cpu.mmio_len;
        &mut self.cpu.mmio_buf[..n]
    }

    fn interrupt_ready(&mut self) -> bool {
        let c = &self.cpu;
        c.s.rflags & fl::IF != 0 && !c.s.events.interrupt_shadow && c.pending_irq.is_none()
    }

    fn inject_interrupt(&mut self, vector: u8) -> sup::Result<()> {
        if self.cpu.pending_irq.is_some() {
            return Err(sup::SupError::Guest(
                "an interrupt is already pending injection".into(),
            ));
        }
        self.cpu.pending_irq = Some(vector);
        Ok(())
    }

    fn inject_nmi(&mut self) -> sup::Result<()> {
        self.cpu.nmi_pending = true;
        Ok(())
    }

    fn request_interrupt_window(&mut self, on: bool) {
        self.irq_window = on;
    }

    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> sup::Result<()> {
        self.cpu.cpuid = entries.to_vec();
        Ok(())
    }

    fn recall_handle(&self) -> Arc<dyn Recall> {
        self.recall.clone()
    }

    fn engine(&self) -> &'static str {
        "interpreter"
    }
}

impl Drop for IemVcpu {
    fn drop(&mut self) {
        let s = self.stats;
        tracing::info!(
            vcpu = self.cpu.id,
            instructions = s.instructions,
            blocks_run = s.blocks_run,
            lookups = s.lookups,
            jump_hits = s.jump_hits,
            blocks_decoded = s.blocks_decoded,
            events = s.events,
            cached_blocks = self.cache.len(),
            "iem: interpreter counters"
        );
    }
}

impl IemVcpu {
    fn finish(&mut self, e: VmExit) -> VmExit {
        self.last_io = matches!(e, VmExit::Io { .. });
        e
    }
}
