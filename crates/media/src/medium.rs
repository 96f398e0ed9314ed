//! A disk made of a chain of images: reads fall through absent blocks to parents,
//! writes go to the top image with read-modify-write of partially written blocks.

use crate::disk::Disk;
use crate::error::{MediaError, Result};
use crate::layer::{Extent, Layer, LayerInfo};

/// Longest differencing chain accepted (VirtualBox snapshot trees are far shallower).
pub const MAX_CHAIN: usize = 255;

/// An opened medium: the top image and its ancestors, usable as a [`Disk`].
pub struct Medium {
    /// `layers[0]` is the top (writable) image, the last one is the base.
    layers: Vec<Box<dyn Layer>>,
    writable: bool,
}

/// Whether a range of the whole chain holds data (for sparse copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Some image of the chain stores data here.
    Data,
    /// Reads as zeros without touching data.
    Zero,
}

fn out_of_range(offset: u64, len: u64, size: u64) -> MediaError {
    MediaError::OutOfRange { offset, len, size }
}

impl std::fmt::Debug for Medium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Medium")
            .field("layers", &self.info())
            .field("writable", &self.writable)
            .finish()
    }
}

impl Medium {
    /// Build from already opened layers, top first. The caller has checked the links.
    pub fn from_layers(layers: Vec<Box<dyn Layer>>, writable: bool) -> Result<Medium> {
        if layers.is_empty() || layers.len() > MAX_CHAIN {
            return Err(MediaError::InvalidArgument(format!(
                "a medium needs 1..={MAX_CHAIN} images, got {}",
                layers.len()
            )));
        }
        let writable = writable && layers[0].writable();
        Ok(Medium { layers, writable })
    }

    /// Information about each image, top first.
    pub fn info(&self) -> Vec<LayerInfo> {
        self.layers.iter().map(|l| l.info()).collect()
    }

    /// Number of images in the chain.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<u64> {
        let size = self.size();
        let end = offset
            .checked_add(len as u64)
            .ok_or_else(|| out_of_range(offset, len as u64, size))?;
        if end > size {
            return Err(out_of_range(offset, len as u64, size));
        }
        Ok(end)
    }

    /// Read through the chain starting at `level`.
    fn read_level(&mut self, level: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(layer) = self.layers.get_mut(level) else {
            buf.fill(0);
            return Ok(());
        };
        // A parent may be smaller than its child (the child was resized): beyond its
        // end it has nothing, which reads as zeros.
        let lsize = layer.size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let remaining = (buf.len() - done) as u64;
            if pos >= lsize {
                buf[done..].fill(0);
                break;
            }
            let want = remaining.min(lsize - pos);
            let layer = &mut self.layers[level];
            let (ext, run) = layer.map(pos, want)?;
            let run = run.clamp(1, want) as usize;
            let piece = &mut buf[done..done + run];
            match ext {
                Extent::Data => layer.read(pos, piece)?,
                Extent::Zero => piece.fill(0),
                Extent::Absent => self.read_level(level + 1, pos, piece)?,
            }
            done += run;
        }
        Ok(())
    }

    /// Classify a range of the whole chain: data somewhere, or zeros. Returns the kind
    /// at `offset` and its run length (≥ 1, ≤ `len`).
    pub fn allocation(&mut self, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        self.check_range(offset, len.min(usize::MAX as u64) as usize)?;
        self.alloc_level(0, offset, len)
    }

    fn alloc_level(&mut self, level: usize, offset: u64, len: u64) -> Result<(Allocation, u64)> {
        let Some(layer) = self.layers.get_mut(level) else {
            return Ok((Allocation::Zero, len));
        };
        let lsize = layer.size();
        if offset >= lsize {
            return Ok((Allocation::Zero, len));
        }
        let want = len.min(lsize - offset);
        let (ext, run) = layer.map(offset, want)?;
        let run = run.clamp(1, want);
        match ext {
            Extent::Data => Ok((Allocation::Data, run)),
            Extent::Zero => Ok((Allocation::Zero, run)),
            Extent::Absent => self.alloc_level(level + 1, offset, run),
        }
    }

    fn top_path(&self) -> std::path::PathBuf {
        self.layers[0].info().path
    }

    /// Write one piece that lies inside a single allocation unit of the top image.
    fn write_piece(&mut self, unit_start: u64, unit_len: u64, pos: u64, data: &[u8]) -> Result<()> {
        let has_parent = self.layers.len() > 1;
        let top = &mut self.layers[0];
        let (ext, run) = top.map(unit_start, unit_len)?;
        let whole = pos == unit_start && data.len() as u64 == unit_len;
        if ext == Extent::Data && run >= unit_len {
            return top.write(pos, data);
        }
        let all_zero = crate::convert::is_zero(data);
        if whole {
            // A zero write to a block that already reads as zeros allocates nothing
            // (VirtualBox does the same), which keeps clones sparse.
            if all_zero && run >= unit_len {
                match ext {
                    Extent::Zero => return Ok(()),
                    Extent::Absent if !has_parent => return Ok(()),
                    Extent::Absent => {
                        if top.mark_zero(unit_start)? {
                            return Ok(());
                        }
                    }
                    Extent::Data => {}
                }
            }
            return top.write(unit_start, data);
        }
        // Partial write into a unit that is not wholly stored here: merge with what the
        // chain shows for the rest of the unit, then store the complete unit.
        let mut unit = vec![0u8; unit_len as usize];
        self.read_level(0, unit_start, &mut unit)?;
        let rel = (pos - unit_start) as usize;
        unit[rel..rel + data.len()].copy_from_slice(data);
        self.layers[0].write(unit_start, &unit)
    }
}

impl Disk for Medium {
    fn size(&self) -> u64 {
        self.layers[0].size()
    }

    fn read_only(&self) -> bool {
        !self.writable
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len())?;
        self.read_level(0, offset, buf)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        if !self.writable {
            return Err(MediaError::ReadOnly {
                path: self.top_path(),
            });
        }
        let end = self.check_range(offset, buf.len())?;
        let mut pos = offset;
        while pos < end {
            let (ustart, ulen) = self.layers[0].alloc_unit(pos);
            let piece_end = end.min(ustart.saturating_add(ulen));
            if ustart > pos || piece_end <= pos {
                return Err(MediaError::InvalidArgument(format!(
                    "internal: allocation unit {ustart}+{ulen} does not contain offset {pos}"
                )));
            }
            let data = &buf[(pos - offset) as usize..(piece_end - offset) as usize];
            self.write_piece(ustart, ulen, pos, data)?;
            pos = piece_end;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.writable {
            self.layers[0].flush()?;
        }
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(MediaError::ReadOnly {
                path: self.top_path(),
            });
        }
        let size = self.size();
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or_else(|| out_of_range(offset, len, size))?;
        let has_parent = self.layers.len() > 1;
        let mut pos = offset;
        while pos < end {
            let (ustart, ulen) = self.layers[0].alloc_unit(pos);
            let uend = ustart.saturating_add(ulen.max(1));
            // Only whole units are released; partial ones keep their data (allowed by
            // the non-deterministic discard contract).
            if ustart >= offset && uend <= end {
                let top = &mut self.layers[0];
                let mut p = ustart;
                while p < uend {
                    let (ext, run) = top.map(p, uend - p)?;
                    let run = run.clamp(1, uend - p);
                    if ext == Extent::Data {
                        top.punch(p, run)?;
                    }
                    p += run;
                }
                if has_parent {
                    let (ext, run) = top.map(ustart, ulen)?;
                    if ext == Extent::Absent && run >= ulen {
                        top.mark_zero(ustart)?;
                    }
                }
            }
            pos = uend.min(end).max(pos + 1);
        }
        Ok(())
    }
}
