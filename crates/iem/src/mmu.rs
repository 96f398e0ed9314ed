//! Address translation: segmentation checks, the guest page-table walker, and a software
//! TLB from guest-linear pages to backing offsets. All guest memory goes through pgm's
//! checked accessors; accesses to unbacked guest-physical pages become MMIO exits.

use crate::cpu::{fault, gp0, vec, Cpu, MmioAccess, Stop, R};
use sup::state::{cr0, efer};
use sup::{Segment, VmExit};

/// Marker: reads/writes of the page are MMIO.
pub(crate) const MMIO: u64 = u64::MAX;
/// Marker: writes to the page are dropped (ROM).
pub(crate) const DROP: u64 = u64::MAX - 1;

const TLB_N: usize = 1024;

/// Access kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acc {
    Read = 0,
    Write = 1,
    Exec = 2,
}

const OK_USER_SHIFT: u8 = 3;

const _: () = assert!(std::mem::size_of::<TlbEntry>() == 32);

/// One software-TLB entry: a 4 KiB linear page. 32 bytes, aligned, so a lookup touches
/// one host cache line and the whole TLB fits the L1 data cache.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
pub(crate) struct TlbEntry {
    /// Linear page number, or u64::MAX when empty.
    pub tag: u64,
    /// Backing offset of the page for reads, or MMIO.
    pub rd: u64,
    /// Backing offset for writes, MMIO, or DROP.
    pub wr: u64,
    /// Guest-physical page address in bits 63..12; allowed accesses (bit acc + 3*user) in
    /// bits 5..0; the global bit (survives CR3 reloads when CR4.PGE) in bit 6.
    bits: u64,
}

/// `TlbEntry::bits`: the global page flag.
const GLOBAL: u64 = 1 << 6;

impl TlbEntry {
    /// Guest-physical page address.
    #[inline]
    pub(crate) fn gpa(&self) -> u64 {
        self.bits & !0xfff
    }

    /// Allowed accesses: bit (acc + 3*user).
    #[inline(always)]
    pub(crate) fn ok(&self) -> u8 {
        (self.bits & 0x3f) as u8
    }

    /// Global page.
    #[inline]
    fn global(&self) -> bool {
        self.bits & GLOBAL != 0
    }
}

const EMPTY: TlbEntry = TlbEntry {
    tag: u64::MAX,
    rd: MMIO,
    wr: MMIO,
    bits: 0,
};

/// A direct-mapped software TLB.
pub(crate) struct Tlb {
    e: Box<[TlbEntry; TLB_N]>,
    /// Bumped by every flush: translations remembered elsewhere (the links between decoded
    /// blocks) are valid only while it is unchanged.
    pub epoch: u64,
    /// Bumped by the flushes that can drop a global translation remembered elsewhere: a
    /// link to code reached through a global page (kernel text) stays valid while this is
    /// unchanged, across the address-space switches that bump `epoch` (as a global TLB
    /// entry survives them on hardware).
    pub gepoch: u64,
    /// Pages (by page number modulo 64) that global links were made to since `gepoch`
    /// last changed: an INVLPG of any other page cannot invalidate one.
    gmask: u64,
}

impl Tlb {
    pub(crate) fn new() -> Self {
        Tlb {
            e: Box::new([EMPTY; TLB_N]),
            epoch: 0,
            gepoch: 0,
            gmask: 0,
        }
    }

    /// Drop every entry.
    pub(crate) fn flush_all(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.new_global_epoch();
        self.e.fill(EMPTY);
    }

    fn new_global_epoch(&mut self) {
        self.gepoch = self.gepoch.wrapping_add(1);
        self.gmask = 0;
    }

    /// Record that a link relies on the global translation of `lin` (see `gepoch`).
    pub(crate) fn note_global_link(&mut self, lin: u64) {
        self.gmask |= 1 << ((lin >> 12) % 64);
    }

    /// Drop non-global entries (CR3 write with CR4.PGE).
    pub(crate) fn flush_nonglobal(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        for e in self.e.iter_mut() {
            if !e.global() {
                *e = EMPTY;
            }
        }
    }

    /// Drop the entry for one linear address (INVLPG).
    pub(crate) fn flush_page(&mut self, lin: u64) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.gmask & (1 << ((lin >> 12) % 64)) != 0 {
            self.new_global_epoch();
        }
        let vpn = lin >> 12;
        let e = &mut self.e[(vpn as usize) % TLB_N];
        if e.tag == vpn {
            *e = EMPTY;
        }
    }

    #[inline]
    fn lookup(&self, vpn: u64, need: u8) -> Option<&TlbEntry> {
        let e = &self.e[(vpn as usize) % TLB_N];
        (e.tag == vpn && e.ok() & need != 0).then_some(e)
    }
}

/// The outcome of a page walk.
struct Walk {
    gpa: u64,
    user: bool,
    write: bool,
    exec: bool,
    dirty: bool,
    global: bool,
}

const PHYS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Read `size` (1..=8) bytes of RAM at backing offset `o`, zero-extended. Each common
/// size is copied into a buffer of exactly that size: a narrow copy into a wider, zeroed
/// buffer that is then loaded whole defeats the host's store-to-load forwarding (a stall
/// of a dozen cycles on every guest byte/word/dword load).
#[inline(always)]
fn read_backing(mem: &pgm::GuestMemory, o: u64, size: usize) -> R<u64> {
    #[inline(always)]
    fn rd<const N: usize>(mem: &pgm::GuestMemory, o: u64) -> R<[u8; N]> {
        let mut b = [0u8; N];
        mem.backing_read(o, &mut b).map_err(|_| gp0())?;
        Ok(b)
    }
    Ok(match size {
        1 => u64::from(rd::<1>(mem, o)?[0]),
        2 => u64::from(u16::from_le_bytes(rd::<2>(mem, o)?)),
        4 => u64::from(u32::from_le_bytes(rd::<4>(mem, o)?)),
        8 => u64::from_le_bytes(rd::<8>(mem, o)?),
        _ => {
            let mut b = [0u8; 8];
            mem.backing_read(o, &mut b[..size.min(8)])
                .map_err(|_| gp0())?;
            u64::from_le_bytes(b)
        }
    })
}

impl Cpu {
    /// Translate a linear address for an access; returns the TLB entry copy.
    #[inline]
    pub(crate) fn xlate(&mut self, lin: u64, acc: Acc, user: bool) -> R<TlbEntry> {
        let vpn = lin >> 12;
        let need = 1u8 << (acc as u8 + if user { OK_USER_SHIFT } else { 0 });
        if let Some(e) = self.tlb.lookup(vpn, need) {
            return Ok(*e);
        }
        self.tlb_fill(lin, acc, user)
    }

    #[cold]
    fn tlb_fill(&mut self, lin: u64, acc: Acc, user: bool) -> R<TlbEntry> {
        let w = if self.s.cr0 & cr0::PG != 0 {
            self.walk(lin, acc, user)?
        } else {
            let a = if self.s.efer & efer::LMA != 0 {
                lin
            } else {
                lin & 0xffff_ffff
            };
            Walk {
                gpa: a & !0xfff,
                user: true,
                write: true,
                exec: true,
                dirty: true,
                global: false,
            }
        };
        let (rd, wr) = match self.mem.translate(w.gpa) {
            Some(t) => match (t.read, t.write) {
                (Some(r), Some(wo)) => (r, wo),
                (Some(r), None) => (r, DROP),
                (None, Some(wo)) => (MMIO, wo),
                (None, None) => (MMIO, MMIO),
            },
            None => (MMIO, MMIO),
        };
        let wp = self.s.cr0 & cr0::WP != 0;
        let mut ok = 1u8; // supervisor read
        if (w.write || !wp) && w.dirty {
            ok |= 2;
        }
        if w.exec {
            ok |= 4;
        }
        if w.user {
            ok |= 8;
            if w.write && w.dirty {
                ok |= 16;
            }
            if w.exec {
                ok |= 32;
            }
        }
        let e = TlbEntry {
            tag: lin >> 12,
            rd,
            wr,
            bits: (w.gpa & !0xfff) | u64::from(ok) | if w.global { GLOBAL } else { 0 },
        };
        self.tlb.e[((lin >> 12) as usize) % TLB_N] = e;
        // The walk already raised the right #PF if the access is not allowed; a supervisor
        // write to a clean page got its D bit set by the walk.
        Ok(e)
    }

    fn pt_read(&self, gpa: u64, size: u32) -> u64 {
        let r = if size == 8 {
            self.mem.read_le::<8>(gpa)
        } else {
            self.mem.read_le::<4>(gpa)
        };
        r.unwrap_or(0)
    }

    /// Set bits in a paging-structure entry atomically (A/D bits).
    fn pt_set_bits(&self, gpa: u64, size: u32, old: u64, bits: u64) {
        if let Some(off) = self.mem.translate(gpa).and_then(|t| t.write) {
            let off = off + (gpa & 0xfff);
            let mut cur = old;
            for _ in 0..4 {
                match self.mem.backing_cmpxchg(off, size as u8, cur, cur | bits) {
                    Ok(found) if found == cur => return,
                    Ok(found) => cur = found,
                    Err(_) => return,
                }
            }
        }
    }

    fn pf(&mut self, lin: u64, code: u32) -> Stop {
        self.s.cr2 = lin;
        fault(vec::PF, code)
    }

    /// Walk the guest page tables (32-bit, PAE or 4-level), checking permissions and
    /// setting accessed/dirty bits.
    fn walk(&mut self, lin: u64, acc: Acc, user: bool) -> R<Walk> {
        let nxe = self.s.efer & efer::NXE != 0;
        let write = acc == Acc::Write;
        let mut code = 0u32;
        if write {
            code |= 2;
        }
        if user {
            code |= 4;
        }
        if acc == Acc::Exec && nxe {
            code |= 16;
        }
        let (mut u, mut w, mut x) = (true, true, true);
        let mut path: [(u64, u64, u32); 5] = [(0, 0, 0); 5];
        let mut n = 0usize;
        let lma = self.s.efer & efer::LMA != 0;
        let pae = self.s.cr4 & (1 << 5) != 0;
        let pse = self.s.cr4 & (1 << 4) != 0;
        let pge = self.s.cr4 & (1 << 7) != 0;
        let (mut table, shifts, esize): (u64, &[u32], u32) = if lma {
            (self.s.cr3 & PHYS_MASK, &[39, 30, 21, 12], 8)
        } else if pae {
            let a = (self.s.cr3 & 0xffff_ffe0) + ((lin >> 30) & 3) * 8;
            let e = self.pt_read(a, 8);
            if e & 1 == 0 {
                return Err(self.pf(lin, code));
            }
            (e & PHYS_MASK, &[21, 12], 8)
        } else {
            (self.s.cr3 & 0xffff_f000, &[22, 12], 4)
        };
        let mut gpa = 0;
        let mut leaf = (0u64, 0u64);
        for (lvl, &shift) in shifts.iter().enumerate() {
            let idx_mask = if esize == 4 { 0x3ff } else { 0x1ff };
            let ea = table + ((lin >> shift) & idx_mask) * u64::from(esize);
            let e = self.pt_read(ea, esize);
            if e & 1 == 0 {
                return Err(self.pf(lin, code));
            }
            if esize == 8 && e >> 63 != 0 {
                if !nxe {
                    return Err(self.pf(lin, code | 1 | 8));
                }
                x = false;
            }
            u &= e & 4 != 0;
            w &= e & 2 != 0;
            path[n] = (ea, e, esize);
            n += 1;
            let last = lvl + 1 == shifts.len();
            let large = !last
                && e & 0x80 != 0
                && (esize == 8 && (shift == 21 || shift == 30) || esize == 4 && pse);
            if last || large {
                let page = if large && esize == 4 {
                    (e & 0xffc0_0000) | (((e >> 13) & 0xff) << 32)
                } else {
                    e & PHYS_MASK & !((1u64 << shift) - 1)
                };
                gpa = page | (lin & ((1u64 << shift) - 1) & !0xfff);
                leaf = (ea, e);
                break;
            }
            table = e & if esize == 4 { 0xffff_f000 } else { PHYS_MASK };
        }
        let wp = self.s.cr0 & cr0::WP != 0;
        if (user && !u) || (write && !w && (user || wp)) || (acc == Acc::Exec && !x) {
            return Err(self.pf(lin, code | 1));
        }
        for &(ea, e, sz) in &path[..n] {
            let mut bits = 0;
            if e & 0x20 == 0 {
                bits |= 0x20;
            }
            if ea == leaf.0 && write && e & 0x40 == 0 {
                bits |= 0x40;
            }
            if bits != 0 {
                self.pt_set_bits(ea, sz, e, bits);
            }
        }
        Ok(Walk {
            gpa,
            user: u,
            write: w,
            exec: x,
            dirty: write || leaf.1 & 0x40 != 0,
            global: pge && leaf.1 & 0x100 != 0,
        })
    }

    /// Linear address of `seg:off` for an access of `size` bytes, with limit checks
    /// outside 64-bit mode.
    #[inline]
    pub(crate) fn lin(&self, seg: usize, off: u64, size: usize, write: bool) -> R<u64> {
        if self.long64() {
            let base = if seg >= 4 { self.seg(seg).base } else { 0 };
            let a = base.wrapping_add(off);
            // Canonical check: bits 63..47 must all equal bit 47.
            if ((a as i64) << 16 >> 16) as u64 != a {
                return Err(if seg == 2 { fault(vec::SS, 0) } else { gp0() });
            }
            return Ok(a);
        }
        let s = self.seg(seg);
        self.check_limit(s, seg, off, size, write)?;
        Ok(s.base.wrapping_add(off) & 0xffff_ffff)
    }

    #[inline]
    fn check_limit(&self, s: &Segment, seg: usize, off: u64, size: usize, write: bool) -> R<()> {
        let bad = || {
            if seg == 2 {
                fault(vec::SS, 0)
            } else {
                gp0()
            }
        };
        if self.pmode() && s.attr & Segment::UNUSABLE != 0 {
            return Err(bad());
        }
        let last = off.wrapping_add(size as u64 - 1);
        let ty = s.attr & 0xf;
        // Expand-down data segment: valid offsets are (limit, max].
        if self.pmode() && s.attr & Segment::S != 0 && ty & 0xc == 0x4 {
            let max = if s.attr & Segment::DB != 0 {
                0xffff_ffff
            } else {
                0xffff
            };
            if off <= u64::from(s.limit) || last > max {
                return Err(bad());
            }
            return Ok(());
        }
        if last > u64::from(s.limit) || last < off {
            return Err(bad());
        }
        if write && self.pmode() && s.attr & Segment::S != 0 && (ty & 8 != 0 || ty & 2 == 0) {
            // Code segments and read-only data segments are not writable.
            return Err(bad());
        }
        Ok(())
    }

    /// True when accesses are made with user privilege.
    #[inline]
    pub(crate) fn user(&self) -> bool {
        self.cpl() == 3
    }

    /// Read `size` (1..=8) bytes at `seg:off`.
    #[inline]
    pub(crate) fn read_mem(&mut self, seg: usize, off: u64, size: usize) -> R<u64> {
        let a = self.lin(seg, off, size, false)?;
        let u = self.user();
        self.read_lin(a, size, u)
    }

    /// Write `size` (1..=8) bytes at `seg:off`.
    #[inline]
    pub(crate) fn write_mem(&mut self, seg: usize, off: u64, size: usize, v: u64) -> R<()> {
        let a = self.lin(seg, off, size, true)?;
        let u = self.user();
        self.write_lin(a, size, v, u)
    }

    /// Read `size` (1..=8) bytes at a linear address.
    #[inline(always)]
    pub(crate) fn read_lin(&mut self, lin: u64, size: usize, user: bool) -> R<u64> {
        let off = lin & 0xfff;
        let vpn = lin >> 12;
        let need = 1u8 << if user { OK_USER_SHIFT } else { 0 };
        let e = &self.tlb.e[(vpn as usize) % TLB_N];
        if off as usize + size <= 4096 && e.tag == vpn && e.ok() & need != 0 && e.rd != MMIO {
            // The hot path: a TLB hit on RAM within one page, copied with a fixed size.
            return read_backing(&self.mem, e.rd + off, size);
        }
        self.read_lin_full(lin, size, user)
    }

    /// `read_lin` for everything but a TLB hit on RAM: fills, MMIO, page crossings.
    #[inline(never)]
    fn read_lin_full(&mut self, lin: u64, size: usize, user: bool) -> R<u64> {
        let mut b = [0u8; 8];
        let off = lin & 0xfff;
        if off as usize + size <= 4096 {
            // Fast path: RAM within one page, copied with a fixed size (no memcpy call).
            let e = self.xlate(lin, Acc::Read, user)?;
            if e.rd != MMIO {
                return read_backing(&self.mem, e.rd + off, size);
            }
        }
        self.read_bytes(lin, &mut b[..size], user)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write `size` (1..=8) bytes at a linear address.
    #[inline(always)]
    pub(crate) fn write_lin(&mut self, lin: u64, size: usize, v: u64, user: bool) -> R<()> {
        let off = lin & 0xfff;
        let vpn = lin >> 12;
        let need = 2u8 << if user { OK_USER_SHIFT } else { 0 };
        let e = &self.tlb.e[(vpn as usize) % TLB_N];
        if off as usize + size <= 4096 && e.tag == vpn && e.ok() & need != 0 && e.wr < DROP {
            // The hot path: a TLB hit on RAM within one page, copied with a fixed size.
            let o = e.wr + off;
            if o >> 12 == self.code_page {
                self.smc = true;
            }
            let b = v.to_le_bytes();
            let r = match size {
                1 => self.mem.backing_write(o, &b[..1]),
                2 => self.mem.backing_write(o, &b[..2]),
                4 => self.mem.backing_write(o, &b[..4]),
                _ => self.mem.backing_write(o, &b[..size.min(8)]),
            };
            return r.map_err(|_| gp0());
        }
        self.write_lin_full(lin, size, v, user)
    }

    /// `write_lin` for everything but a TLB hit on RAM: fills, MMIO, ROM, page crossings.
    #[inline(never)]
    fn write_lin_full(&mut self, lin: u64, size: usize, v: u64, user: bool) -> R<()> {
        let b = v.to_le_bytes();
        let off = lin & 0xfff;
        if off as usize + size <= 4096 {
            let e = self.xlate(lin, Acc::Write, user)?;
            if e.wr < DROP {
                // Fast path: RAM within one page, copied with a fixed size.
                let o = e.wr + off;
                if o >> 12 == self.code_page {
                    self.smc = true;
                }
                let r = match size {
                    1 => self.mem.backing_write(o, &b[..1]),
                    2 => self.mem.backing_write(o, &b[..2]),
                    4 => self.mem.backing_write(o, &b[..4]),
                    8 => self.mem.backing_write(o, &b[..8]),
                    _ => self.mem.backing_write(o, &b[..size]),
                };
                return r.map_err(|_| gp0());
            }
            return self.write_part(&e, off, &b[..size]);
        }
        self.write_bytes(lin, &b[..size], user)
    }

    /// Read bytes at a linear address (any length; page crossings handled).
    pub(crate) fn read_bytes(&mut self, lin: u64, buf: &mut [u8], user: bool) -> R<()> {
        let off = lin & 0xfff;
        if off as usize + buf.len() <= 4096 {
            let e = self.xlate(lin, Acc::Read, user)?;
            if e.rd != MMIO {
                return self.mem.backing_read(e.rd + off, buf).map_err(|_| gp0());
            }
            return self.mmio_read(e.gpa() + off, buf);
        }
        // Page-crossing: translate both pages before touching either.
        let first = (4096 - off) as usize;
        let e1 = self.xlate(lin, Acc::Read, user)?;
        let e2 = self.xlate(lin.wrapping_add(first as u64), Acc::Read, user)?;
        let (a, b) = buf.split_at_mut(first);
        self.read_part(&e1, off, a)?;
        self.read_part(&e2, 0, b)
    }

    fn read_part(&mut self, e: &TlbEntry, off: u64, buf: &mut [u8]) -> R<()> {
        if e.rd != MMIO {
            self.mem.backing_read(e.rd + off, buf).map_err(|_| gp0())
        } else {
            self.mmio_read(e.gpa() + off, buf)
        }
    }

    /// Write bytes at a linear address (any length; page crossings handled).
    pub(crate) fn write_bytes(&mut self, lin: u64, buf: &[u8], user: bool) -> R<()> {
        let off = lin & 0xfff;
        if off as usize + buf.len() <= 4096 {
            let e = self.xlate(lin, Acc::Write, user)?;
            return self.write_part(&e, off, buf);
        }
        let first = (4096 - off) as usize;
        let e1 = self.xlate(lin, Acc::Write, user)?;
        let e2 = self.xlate(lin.wrapping_add(first as u64), Acc::Write, user)?;
        let (a, b) = buf.split_at(first);
        self.write_part(&e1, off, a)?;
        self.write_part(&e2, 0, b)
    }

    #[inline]
    fn write_part(&mut self, e: &TlbEntry, off: u64, buf: &[u8]) -> R<()> {
        match e.wr {
            DROP => Ok(()),
            MMIO => {
                let mut data = [0u8; 16];
                let n = buf.len().min(16);
                data[..n].copy_from_slice(&buf[..n]);
                self.mmio_wq.push_back(MmioAccess {
                    gpa: e.gpa() + off,
                    len: n as u8,
                    data,
                });
                // Ends the block like a code write does: the loop checks one flag.
                self.smc = true;
                Ok(())
            }
            wo => {
                if wo >> 12 == self.code_page {
                    self.smc = true;
                }
                self.mem.backing_write(wo + off, buf).map_err(|_| gp0())
            }
        }
    }

    /// An MMIO read: answered from the replay log, or an exit to the VMM.
    #[cold]
    fn mmio_read(&mut self, gpa: u64, buf: &mut [u8]) -> R<()> {
        if let Some(a) = self.mmio_replay.get(self.replay_cursor) {
            if a.gpa == gpa && usize::from(a.len) == buf.len() {
                buf.copy_from_slice(&a.data[..buf.len()]);
                self.replay_cursor += 1;
                return Ok(());
            }
        }
        if buf.len() > 16 {
            // Only FXRSTOR-sized operands get here; treat MMIO as open bus.
            buf.fill(0xff);
            return Ok(());
        }
        self.mmio_read_pending = Some((gpa, buf.len() as u8));
        self.mmio_len = buf.len();
        self.mmio_buf = [0; 16];
        self.exit = Some(VmExit::Mmio {
            gpa,
            len: buf.len() as u8,
            write: false,
        });
        Err(Stop::Exit)
    }

    /// A locked read-modify-write of `size` bytes at `lin`: `f` maps old to new; retried
    /// until the compare-exchange on guest memory succeeds. Returns the old value.
    pub(crate) fn atomic_rmw(
        &mut self,
        lin: u64,
        size: usize,
        mut f: impl FnMut(u64) -> u64,
    ) -> R<u64> {
        let u = self.user();
        let e = self.xlate(lin, Acc::Write, u)?;
        let off = lin & 0xfff;
        if off as usize + size > 4096 || e.rd == MMIO || e.wr >= DROP || e.rd != e.wr {
            // Split across pages or not plain RAM: fall back to a non-atomic update.
            let old = self.read_lin(lin, size, u)?;
            self.write_lin(lin, size, f(old), u)?;
            return Ok(old);
        }
        let mut cur = read_backing(&self.mem, e.rd + off, size)?;
        loop {
            let new = f(cur);
            let found = self
                .mem
                .backing_cmpxchg(e.wr + off, size as u8, cur, new)
                .map_err(|_| gp0())?;
            if found == cur {
                if (e.wr + off) >> 12 == self.code_page {
                    self.smc = true;
                }
                return Ok(cur);
            }
            cur = found;
        }
    }

    /// A supervisor ("system") read of descriptor tables / TSS.
    pub(crate) fn sys_read(&mut self, lin: u64, size: usize) -> R<u64> {
        self.read_lin(lin, size, false)
    }

    /// A supervisor write of descriptor tables / TSS.
    pub(crate) fn sys_write(&mut self, lin: u64, size: usize, v: u64) -> R<()> {
        self.write_lin(lin, size, v, false)
    }

    /// Translate an instruction fetch at `lin`: the backing offset of the byte (None when
    /// it is MMIO) and whether the translation is global.
    pub(crate) fn fetch_xlate(&mut self, lin: u64) -> R<Option<(u64, bool)>> {
        let u = self.user();
        let e = self.xlate(lin, Acc::Exec, u)?;
        // `then`, not `then_some`: the offset must not be computed for MMIO (u64::MAX).
        Ok((e.rd != MMIO).then(|| (e.rd + (lin & 0xfff), e.global())))
    }

    /// Flush the TLB for a CR3 load.
    pub(crate) fn flush_cr3(&mut self) {
        if self.s.cr4 & (1 << 7) != 0 {
            self.tlb.flush_nonglobal();
        } else {
            self.tlb.flush_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tlb;

    #[test]
    fn the_global_epoch_moves_only_when_a_global_link_may_be_dropped() {
        let mut t = Tlb::new();
        let (e, g) = (t.epoch, t.gepoch);
        // An address-space switch: every link but the global ones.
        t.flush_nonglobal();
        assert_ne!(t.epoch, e);
        assert_eq!(t.gepoch, g);
        // INVLPG of a page no global link relies on.
        t.note_global_link(0xffff_ffff_8100_0000);
        t.flush_page(0x7f00_0000_1000);
        assert_eq!(t.gepoch, g);
        // INVLPG of one that may be: global links go too.
        t.flush_page(0xffff_ffff_8100_0123);
        assert_ne!(t.gepoch, g);
        // A full flush always.
        let g = t.gepoch;
        t.flush_all();
        assert_ne!(t.gepoch, g);
    }
}
