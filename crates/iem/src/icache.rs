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
    /// Backing offset of the page holding the block.
    pub page: u64,
    pub gen: u32,
    /// Second page touched by an instruction straddling the page end.
    pub page2: Option<(u64, u32)>,
}

/// The cache.
#[derive(Default)]
pub(crate) struct BlockCache {
    map: HashMap<u64, Block, BuildHasherDefault<KeyHasher>>,
}

/// Cache key of a block.
#[inline]
pub(crate) fn key(backing_off: u64, bits: u32) -> u64 {
    (backing_off << 2) | u64::from(bits >> 5)
}

impl BlockCache {
    /// Look a block up, checking that its code is unchanged.
    #[inline]
    pub(crate) fn get(&self, k: u64, mem: &pgm::GuestMemory) -> Option<&Block> {
        let b = self.map.get(&k)?;
        if mem.code_page_generation(b.page) != b.gen {
            return None;
        }
        if let Some((p, g)) = b.page2 {
            if mem.code_page_generation(p) != g {
                return None;
            }
        }
        Some(b)
    }

    /// Insert a block.
    pub(crate) fn insert(&mut self, k: u64, b: Block) -> &Block {
        if self.map.len() >= MAX_BLOCKS {
            self.map.clear();
        }
        self.map.insert(k, b);
        // Just inserted.
        self.map.get(&k).unwrap_or_else(|| unreachable!())
    }

    /// Drop everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of cached blocks.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
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
