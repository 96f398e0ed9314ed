//! The decoded-instruction cache: basic blocks of pre-decoded instructions keyed by the
//! guest-physical (backing) address of their first byte and the code size. A block is valid
//! while the write generation pgm keeps for its page(s) is unchanged, so guest writes to code
//! (self-modifying code, module loading, page reuse) drop it without any scanning.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Longest block decoded at once.
const MAX_BLOCK: usize = 64;
/// Blocks kept before the cache is emptied (bounds memory on guests that churn code).
const MAX_BLOCKS: usize = 1 << 16;
/// Entries of the jump cache (see [`BlockCache::jump_find`]).
const JUMP_N: usize = 2048;
/// Compiled instructions kept before the cache is emptied (the arena also holds the ops of
/// blocks replaced in their slot, so it bounds memory separately).
const MAX_OPS: usize = 1 << 21;

/// A multiplicative hasher for u64 keys (the default SipHash is needlessly slow here).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A decoded basic block.
pub(crate) struct Block {
    pub instrs: Vec<Instruction>,
    /// Where the block's compiled instructions are in the cache's op arena.
    pub ops: Ops,
    /// Backing offset of the page holding the block.
    pub page: u64,
    pub gen: u32,
    /// Second page touched by an instruction straddling the page end.
    pub page2: Option<(u64, u32)>,
    /// Blocks that followed this one (branch taken / not taken), so the loop can skip the
    /// fetch translation and the hash lookup.
    pub links: [Link; 2],
}

impl Block {
    /// How to run this block, which sits in `slot`. (A page number past 32 bits, which no
    /// backing reaches, is saturated; no link is made to such a block.)
    fn target(&self, slot: u32) -> Target {
        Target {
            slot,
            ops: self.ops,
            page: u32::try_from(self.page >> 12).unwrap_or(u32::MAX),
        }
    }

    /// The code on the page an instruction straddles into, if any, is unchanged.
    fn second_page_unchanged(&self, mem: &pgm::GuestMemory) -> bool {
        self.page2
            .is_none_or(|(p, g)| mem.code_page_generation(p) == g)
    }
}

/// A block's compiled instructions: `len` ops from index `at` of the op arena (one per
/// decoded instruction, or one fewer when the last two are fused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ops {
    pub at: u32,
    pub len: u32,
}

/// What the execution loop needs to run a block: its slot (for the decoded instructions
/// of slow ops), its ops and its code page. A link holds all of it, so following a link
/// goes straight to the ops without loading the target's block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub slot: u32,
    pub ops: Ops,
    /// The block's first code page (backing offset >> 12).
    pub page: u32,
}

/// A remembered successor: the block at linear address `lin`, valid while the fetch
/// context (`ctx`: TLB epoch, code size, CPL) is the same. The target's first code page
/// and its write generation are copied here so following the link checks the code is
/// unchanged without first loading the target block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub lin: u64,
    pub ctx: u64,
    pub to: Target,
    /// The target's generation when linked.
    pub gen: u32,
    /// The target also spans a second page (checked through the block).
    pub page2: bool,
}

/// A link that matches nothing.
pub(crate) const NO_LINK: Link = Link {
    lin: u64::MAX,
    ctx: u64::MAX,
    to: Target {
        slot: u32::MAX,
        ops: Ops { at: 0, len: 0 },
        page: u32::MAX,
    },
    gen: 0,
    page2: false,
};

/// The fetch context of a link: what, besides the linear address, decides which backing
/// page an instruction fetch reads and whether it may.
#[inline]
pub(crate) fn fetch_ctx(tlb_epoch: u64, bits: u32, cpl: u8) -> u64 {
    (tlb_epoch << 10) | (u64::from(bits) << 2) | u64::from(cpl)
}

/// The fetch context of a link to code reached through a global translation: the TLB's
/// global epoch in place of its epoch, marked so it never equals a [`fetch_ctx`].
#[inline]
pub(crate) fn global_fetch_ctx(tlb_gepoch: u64, bits: u32, cpl: u8) -> u64 {
    fetch_ctx(tlb_gepoch, bits, cpl) | GLOBAL_CTX
}

/// The bit that tells a [`global_fetch_ctx`] from a [`fetch_ctx`].
const GLOBAL_CTX: u64 = 1 << 9;

/// The cache: blocks in a slab, found through a map from key to slot, so the execution loop
/// looks a block up once and then works with its slot number.
#[derive(Default)]
pub(crate) struct BlockCache {
    map: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    blocks: Vec<Block>,
    /// The compiled instructions of all blocks, back to back in the order they were
    /// decoded: one allocation, and code that runs in sequence was usually decoded in
    /// sequence, so its ops share cache lines and the hardware prefetcher's streams.
    ops: Vec<crate::exec::fast::Uop>,
    /// Recently looked-up blocks by linear address, direct-mapped: where a block's own
    /// two links miss (a return to one of many callers, an indirect call), the target is
    /// often still here, found without the fetch translation and the hash probe.
    jump: Vec<Link>,
    /// Bumped when the cache is emptied (slot numbers are reused afterwards).
    generation: u64,
}

/// Jump-cache entry of a linear address (kernel code lives at addresses whose high bits
/// are all the same, so the page-offset bits and the low page-number bits are mixed).
#[inline]
fn jump_slot(lin: u64) -> usize {
    ((lin ^ (lin >> 11)) as usize) % JUMP_N
}

/// Cache key of a block.
#[inline]
pub(crate) fn key(backing_off: u64, bits: u32) -> u64 {
    (backing_off << 2) | u64::from(bits >> 5)
}

impl BlockCache {
    /// Look a block up, checking that its code is unchanged; returns its slot.
    #[inline]
    pub(crate) fn get(&self, k: u64, mem: &pgm::GuestMemory) -> Option<u32> {
        let &slot = self.map.get(&k)?;
        let b = self.blocks.get(slot as usize)?;
        (mem.code_page_generation(b.page) == b.gen && b.second_page_unchanged(mem)).then_some(slot)
    }

    /// The block in `slot` (as returned by [`BlockCache::get`] or [`BlockCache::insert`]).
    #[inline]
    pub(crate) fn block(&self, slot: u32) -> Option<&Block> {
        self.blocks.get(slot as usize)
    }

    /// How to run the block in `slot`.
    #[inline]
    pub(crate) fn target(&self, slot: u32) -> Option<Target> {
        Some(self.blocks.get(slot as usize)?.target(slot))
    }

    /// The compiled instructions `o` names.
    #[inline]
    pub(crate) fn ops(&self, o: Ops) -> &[crate::exec::fast::Uop] {
        let at = o.at as usize;
        self.ops.get(at..at + o.len as usize).unwrap_or(&[])
    }

    /// Prefetch the first ops of the blocks that followed `slot` before, while it runs:
    /// the next block's ops are then (more often) in the cache when it starts.
    #[inline]
    pub(crate) fn prefetch_successors(&self, slot: u32) {
        if let Some(b) = self.blocks.get(slot as usize) {
            for l in &b.links {
                if let Some(op) = self.ops.get(l.to.ops.at as usize) {
                    pgm::prefetch(op);
                }
            }
        }
    }

    /// Slot numbers are valid while this is unchanged.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The successor of block `from` remembered for `lin`, if its code is unchanged.
    /// `ctx` and `gctx` are the current [`fetch_ctx`] and [`global_fetch_ctx`]: a link
    /// made in either still holds.
    #[inline]
    pub(crate) fn follow(
        &self,
        from: u32,
        lin: u64,
        ctx: u64,
        gctx: u64,
        mem: &pgm::GuestMemory,
    ) -> Option<Target> {
        let b = self.blocks.get(from as usize)?;
        let l = b
            .links
            .iter()
            .find(|l| l.lin == lin && (l.ctx == ctx || l.ctx == gctx))?;
        self.check(l, mem)
    }

    /// The target of link `l` if its code is unchanged since it was made.
    #[inline]
    fn check(&self, l: &Link, mem: &pgm::GuestMemory) -> Option<Target> {
        // A block replaced in its slot (same key, rewritten code) has a newer generation
        // than the one the link recorded, so the link is stale (and so are the ops it
        // names: a replaced block's ops are new ones, or new contents at the same place).
        if mem.code_page_generation(u64::from(l.to.page) << 12) != l.gen {
            return None;
        }
        if l.page2
            && !self
                .blocks
                .get(l.to.slot as usize)?
                .second_page_unchanged(mem)
        {
            return None;
        }
        Some(l.to)
    }

    /// The block the jump cache remembers at `lin` in context `ctx` or `gctx` (as for
    /// [`BlockCache::follow`]), with the context it was remembered in.
    #[inline]
    pub(crate) fn jump_find(
        &self,
        lin: u64,
        ctx: u64,
        gctx: u64,
        mem: &pgm::GuestMemory,
    ) -> Option<(Target, u64)> {
        let l = self.jump.get(jump_slot(lin))?;
        if l.lin != lin || (l.ctx != ctx && l.ctx != gctx) {
            return None;
        }
        Some((self.check(l, mem)?, l.ctx))
    }

    /// Remember in the jump cache that `lin` in context `ctx` is the block in `slot`.
    pub(crate) fn jump_remember(&mut self, lin: u64, ctx: u64, slot: u32) {
        let Some(l) = self.make_link(lin, ctx, slot) else {
            return;
        };
        if self.jump.is_empty() {
            self.jump = vec![NO_LINK; JUMP_N];
        }
        if let Some(e) = self.jump.get_mut(jump_slot(lin)) {
            *e = l;
        }
    }

    /// A link to the block in `to`, made now.
    fn make_link(&self, lin: u64, ctx: u64, to: u32) -> Option<Link> {
        let t = self.blocks.get(to as usize)?;
        // No link to a block whose page number does not fit one (see `Block::target`).
        u32::try_from(t.page >> 12).ok()?;
        Some(Link {
            lin,
            ctx,
            to: t.target(to),
            gen: t.gen,
            page2: t.page2.is_some(),
        })
    }

    /// Remember that block `to` (at `lin` in context `ctx`) followed block `from`.
    #[inline]
    pub(crate) fn link(&mut self, from: u32, lin: u64, ctx: u64, to: u32) {
        let Some(l) = self.make_link(lin, ctx, to) else {
            return;
        };
        if let Some(b) = self.blocks.get_mut(from as usize) {
            // Keep the most recent two successors.
            b.links[1] = b.links[0];
            b.links[0] = l;
        }
    }

    /// [`BlockCache::link`] from the block run before (`prev`: its slot and the cache
    /// generation then), unless the cache was emptied since (its slot is reused).
    #[inline]
    pub(crate) fn link_from(&mut self, prev: Option<(u32, u64)>, lin: u64, ctx: u64, to: u32) {
        if let Some((from, g)) = prev {
            if g == self.generation {
                self.link(from, lin, ctx, to);
            }
        }
    }

    /// Insert a block with its compiled instructions (replacing a stale block with the
    /// same key); returns its slot. `b.ops` is set here.
    pub(crate) fn insert(&mut self, k: u64, mut b: Block, ops: &[crate::exec::fast::Uop]) -> u32 {
        // A stale block's code decoded again (the usual case of a replacement: the page
        // was written, often without changing this code) takes the old block's place in
        // the arena when it fits; stale links cannot reach it there, their generation
        // check fails first.
        let mut existing = self.map.get(&k).copied();
        if let Some(slot) = existing {
            if let Some(old) = self.blocks.get_mut(slot as usize) {
                if ops.len() <= old.ops.len as usize {
                    let at = old.ops.at as usize;
                    if let Some(dst) = self.ops.get_mut(at..at + ops.len()) {
                        dst.copy_from_slice(ops);
                        b.ops = Ops {
                            at: at as u32,
                            len: ops.len() as u32,
                        };
                        *old = b;
                        return slot;
                    }
                }
            }
        }
        if self.ops.len() + ops.len() > MAX_OPS {
            self.clear();
            existing = None;
        }
        b.ops = Ops {
            at: self.ops.len() as u32,
            len: ops.len() as u32,
        };
        self.ops.extend_from_slice(ops);
        if let Some(slot) = existing {
            if let Some(old) = self.blocks.get_mut(slot as usize) {
                *old = b;
                return slot;
            }
        }
        if self.blocks.len() >= MAX_BLOCKS {
            self.clear();
            b.ops.at = 0;
            self.ops.extend_from_slice(ops);
        }
        let slot = self.blocks.len() as u32;
        self.blocks.push(b);
        self.map.insert(k, slot);
        slot
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.blocks.clear();
        self.ops.clear();
        self.jump.fill(NO_LINK);
        self.generation = self.generation.wrapping_add(1);
    }

    /// Number of cached blocks.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }
}

/// Decode a block from `bytes` (the rest of the page, possibly followed by up to 15 bytes
/// of the next page: `page_bytes` of them are on the first page). `ip` is the page offset
/// of the first byte. Returns the instructions and whether the last one straddles into the
/// next page. An instruction that needs bytes that are not available ends the block before
/// it; the third result says the decoder ran out of bytes.
pub(crate) fn decode_block(
    bits: u32,
    bytes: &[u8],
    page_bytes: usize,
    ip: u64,
) -> (Vec<Instruction>, bool, bool) {
    let mut d = Decoder::with_ip(bits, bytes, ip, DecoderOptions::NONE);
    let mut out = Vec::with_capacity(16);
    let mut straddle = false;
    let mut ran_out = false;
    let mut ins = Instruction::default();
    while d.can_decode() && out.len() < MAX_BLOCK {
        let pos = d.position();
        if pos >= page_bytes {
            break;
        }
        d.decode_out(&mut ins);
        if ins.code() == Code::INVALID && d.last_error() == iced_x86::DecoderError::NoMoreBytes {
            ran_out = true;
            break;
        }
        let end = pos + ins.len();
        out.push(ins);
        if end > page_bytes {
            straddle = true;
            break;
        }
        if ins.code() == Code::INVALID || ins.flow_control() != FlowControl::Next {
            break;
        }
    }
    (out, straddle, ran_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A global context no link of these tests has.
    const NOG: u64 = (999 << 10) | GLOBAL_CTX;

    fn block(mem: &pgm::GuestMemory, page: u64) -> Block {
        Block {
            instrs: Vec::new(),
            ops: Ops::default(),
            page,
            gen: mem.watch_code_page(page),
            page2: None,
            links: [NO_LINK; 2],
        }
    }

    #[test]
    fn links_follow_only_the_same_context_and_unchanged_code() {
        let mem = pgm::GuestMemory::new(pgm::MemoryLayout::pc(16 << 20).unwrap()).unwrap();
        let mut c = BlockCache::default();
        let a = c.insert(key(0x1000, 64), block(&mem, 0x1000), &[]);
        let b = c.insert(key(0x2000, 64), block(&mem, 0x2000), &[]);
        let ctx = fetch_ctx(5, 64, 0);
        c.link(a, 0xffff_8000_0000_2000, ctx, b);
        assert_eq!(
            c.follow(a, 0xffff_8000_0000_2000, ctx, NOG, &mem)
                .map(|t| t.slot),
            Some(b)
        );
        // Another TLB epoch, code size or CPL: no link.
        assert_eq!(
            c.follow(a, 0xffff_8000_0000_2000, fetch_ctx(6, 64, 0), NOG, &mem),
            None
        );
        assert_eq!(
            c.follow(a, 0xffff_8000_0000_2000, fetch_ctx(5, 32, 0), NOG, &mem),
            None
        );
        assert_eq!(
            c.follow(a, 0xffff_8000_0000_2000, fetch_ctx(5, 64, 3), NOG, &mem),
            None
        );
        assert_eq!(c.follow(a, 0xffff_8000_0000_3000, ctx, NOG, &mem), None);
        // The target's code was written: the link is stale, also once the block is
        // decoded again into the same slot, until it is linked again.
        mem.backing_write(0x2010, &[0x90]).unwrap();
        assert_eq!(c.follow(a, 0xffff_8000_0000_2000, ctx, NOG, &mem), None);
        assert_eq!(c.insert(key(0x2000, 64), block(&mem, 0x2000), &[]), b);
        assert_eq!(c.follow(a, 0xffff_8000_0000_2000, ctx, NOG, &mem), None);
        c.link(a, 0xffff_8000_0000_2000, ctx, b);
        assert_eq!(
            c.follow(a, 0xffff_8000_0000_2000, ctx, NOG, &mem)
                .map(|t| t.slot),
            Some(b)
        );
        // Emptying the cache changes the generation slot numbers belong to.
        let g = c.generation();
        c.clear();
        assert_ne!(c.generation(), g);
        assert_eq!(c.follow(a, 0xffff_8000_0000_2000, ctx, NOG, &mem), None);
    }

    #[test]
    fn a_stale_block_is_replaced_in_its_slot() {
        let mem = pgm::GuestMemory::new(pgm::MemoryLayout::pc(16 << 20).unwrap()).unwrap();
        let mut c = BlockCache::default();
        let k = key(0x3000, 64);
        let s = c.insert(k, block(&mem, 0x3000), &[]);
        assert_eq!(c.get(k, &mem), Some(s));
        mem.backing_write(0x3000, &[0xcc]).unwrap();
        assert_eq!(c.get(k, &mem), None);
        let s2 = c.insert(k, block(&mem, 0x3000), &[]);
        assert_eq!(s2, s);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(k, &mem), Some(s));
    }

    fn ops_at(ips: &[u16]) -> Vec<crate::exec::fast::Uop> {
        ips.iter()
            .map(|&ip| {
                let mut u = crate::exec::fast::Uop::SLOW;
                u.ip = ip;
                u
            })
            .collect()
    }

    #[test]
    fn a_block_decoded_again_reuses_its_ops_when_they_fit() {
        let mem = pgm::GuestMemory::new(pgm::MemoryLayout::pc(16 << 20).unwrap()).unwrap();
        let mut c = BlockCache::default();
        let k = key(0x4000, 64);
        let other = c.insert(key(0x5000, 64), block(&mem, 0x5000), &ops_at(&[9]));
        let s = c.insert(k, block(&mem, 0x4000), &ops_at(&[1, 2, 3]));
        let first = c.target(s).unwrap().ops;
        let ips = |c: &BlockCache, o: Ops| c.ops(o).iter().map(|u| u.ip).collect::<Vec<_>>();
        assert_eq!(ips(&c, first), [1, 2, 3]);
        // Rewritten code, shorter: same place in the arena.
        mem.backing_write(0x4000, &[0x90]).unwrap();
        assert_eq!(c.get(k, &mem), None);
        assert_eq!(c.insert(k, block(&mem, 0x4000), &ops_at(&[4, 5])), s);
        let second = c.target(s).unwrap().ops;
        assert_eq!(second.at, first.at);
        assert_eq!(ips(&c, second), [4, 5]);
        // Longer than the old one: appended, the other block's ops untouched.
        mem.backing_write(0x4000, &[0x90]).unwrap();
        assert_eq!(c.insert(k, block(&mem, 0x4000), &ops_at(&[6, 7, 8, 9])), s);
        let third = c.target(s).unwrap().ops;
        assert_ne!(third.at, first.at);
        assert_eq!(ips(&c, third), [6, 7, 8, 9]);
        assert_eq!(ips(&c, c.target(other).unwrap().ops), [9]);
    }

    #[test]
    fn the_jump_cache_finds_a_block_until_its_code_or_context_changes() {
        let mem = pgm::GuestMemory::new(pgm::MemoryLayout::pc(16 << 20).unwrap()).unwrap();
        let mut c = BlockCache::default();
        let b = c.insert(key(0x6000, 64), block(&mem, 0x6000), &ops_at(&[1]));
        let lin = 0xffff_ffff_8100_6000;
        let (ctx, gctx) = (fetch_ctx(3, 64, 0), global_fetch_ctx(2, 64, 0));
        assert_eq!(c.jump_find(lin, ctx, gctx, &mem), None);
        c.jump_remember(lin, gctx, b);
        let found = c.jump_find(lin, ctx, gctx, &mem).map(|(t, x)| (t.slot, x));
        assert_eq!(found, Some((b, gctx)));
        // A new local epoch (an address-space switch) keeps a global entry...
        assert!(c.jump_find(lin, fetch_ctx(4, 64, 0), gctx, &mem).is_some());
        // ...but not a new global one, another address or a rewritten page.
        assert_eq!(
            c.jump_find(lin, ctx, global_fetch_ctx(5, 64, 0), &mem),
            None
        );
        assert_eq!(c.jump_find(lin + 0x1000, ctx, gctx, &mem), None);
        mem.backing_write(0x6008, &[0x90]).unwrap();
        assert_eq!(c.jump_find(lin, ctx, gctx, &mem), None);
        // Emptying the cache forgets it.
        let b = c.insert(key(0x6000, 64), block(&mem, 0x6000), &ops_at(&[1]));
        c.jump_remember(lin, ctx, b);
        assert!(c.jump_find(lin, ctx, gctx, &mem).is_some());
        c.clear();
        assert_eq!(c.jump_find(lin, ctx, gctx, &mem), None);
    }
}
