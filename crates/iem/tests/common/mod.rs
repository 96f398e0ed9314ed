//! Test harness: assemble tiny guests with the GNU assembler and run them on the
//! interpreter with a minimal VMM loop (port I/O log, MMIO map).

#![allow(dead_code)]

use iem::{IemVcpu, IemVm};
use pgm::{GuestMemory, MemoryLayout};
use std::collections::{HashMap, VecDeque};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use sup::{IoDirection, Segment, Vcpu, VcpuState, VmExit};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Assemble Intel-syntax `src` linked at `base`; returns the flat binary.
pub fn asm(src: &str, base: u64) -> Vec<u8> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("iem-asm-{}-{}", std::process::id(), n));
    std::fs::create_dir_all(&dir).unwrap();
    let s = dir.join("t.s");
    let o = dir.join("t.o");
    let b = dir.join("t.bin");
    std::fs::write(&s, format!(".intel_syntax noprefix\n{src}\n")).unwrap();
    let st = Command::new("as")
        .arg("--64")
        .arg("-o")
        .arg(&o)
        .arg(&s)
        .output()
        .expect("as");
    assert!(
        st.status.success(),
        "as failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let st = Command::new("ld")
        .args(["-m", "elf_x86_64", "--oformat", "binary", "-N"])
        .arg(format!("-Ttext={base:#x}"))
        .arg("-o")
        .arg(&b)
        .arg(&o)
        .output()
        .expect("ld");
    assert!(
        st.status.success(),
        "ld failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let bin = std::fs::read(&b).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

/// A tiny machine: 32 MiB of RAM, one or more interpreter vCPUs.
pub struct Machine {
    pub mem: Arc<GuestMemory>,
    pub vm: IemVm,
    pub vcpu: IemVcpu,
    /// Port writes: (port, value).
    pub out: Vec<(u16, u32)>,
    /// Values returned for port reads (0xffffffff when empty).
    pub input: VecDeque<u32>,
    /// MMIO registers (gpa -> value) and a log of writes.
    pub mmio: HashMap<u64, u64>,
    pub mmio_writes: Vec<(u64, u64, u8)>,
    pub mmio_reads: Vec<(u64, u8)>,
    pub exits: u64,
}

impl Machine {
    pub fn new() -> Self {
        let mem = Arc::new(GuestMemory::new(MemoryLayout::pc(32 << 20).unwrap()).unwrap());
        let vm = IemVm::new(mem.clone());
        let vcpu = vm.create_iem_vcpu(0);
        Machine {
            mem,
            vm,
            vcpu,
            out: Vec::new(),
            input: VecDeque::new(),
            mmio: HashMap::new(),
            mmio_writes: Vec::new(),
            mmio_reads: Vec::new(),
            exits: 0,
        }
    }

    /// Real mode at 0000:`base` with `code` loaded there.
    pub fn real(code_src: &str, base: u64) -> Self {
        let m = Machine::new();
        let bin = asm(&format!(".code16\n{code_src}"), base);
        m.mem.write(base, &bin).unwrap();
        let mut m = m;
        let mut s = VcpuState::reset();
        s.cs = Segment::real_mode(0, 0xb);
        s.rip = base;
        s.gpr[4] = 0x7000;
        m.vcpu = IemVcpu::from_state(0, m.mem.clone(), s);
        m
    }

    /// 64-bit long mode with identity-mapped 2 MiB pages for the first 1 GiB plus the
    /// 0xC0000000-0xFFFFFFFF GiB (for MMIO tests), CS=0x08, DS/SS=0x10, GDT at 0x1000,
    /// page tables at 0x10000, stack at 0x80000, code at `base`.
    pub fn long(code_src: &str, base: u64) -> Self {
        let m = Machine::new();
        let bin = asm(&format!(".code64\n{code_src}"), base);
        m.mem.write(base, &bin).unwrap();
        setup_long_tables(&m.mem);
        let mut m = m;
        let s = long_state(base);
        m.vcpu = IemVcpu::from_state(0, m.mem.clone(), s);
        m
    }

    /// Run until HLT (returns the exit), servicing I/O and MMIO.
    pub fn run(&mut self) -> VmExit {
        self.run_vcpu_until(|e| matches!(e, VmExit::Hlt | VmExit::Shutdown | VmExit::Unhandled(_)))
    }

    pub fn run_vcpu_until(&mut self, stop: impl Fn(&VmExit) -> bool) -> VmExit {
        for _ in 0..10_000_000u64 {
            let e = self.vcpu.run().expect("run");
            self.exits += 1;
            match &e {
                VmExit::Io {
                    port,
                    size,
                    count,
                    dir,
                } => {
                    let (port, size, count) = (*port, usize::from(*size), *count as usize);
                    let data = self.vcpu.io_data();
                    assert_eq!(data.len(), size * count);
                    match dir {
                        IoDirection::Out => {
                            for k in 0..count {
                                let mut b = [0u8; 4];
                                b[..size].copy_from_slice(&data[k * size..(k + 1) * size]);
                                self.out.push((port, u32::from_le_bytes(b)));
                            }
                        }
                        IoDirection::In => {
                            for k in 0..count {
                                let v = self.input.pop_front().unwrap_or(0xffff_ffff);
                                data[k * size..(k + 1) * size]
                                    .copy_from_slice(&v.to_le_bytes()[..size]);
                            }
                        }
                    }
                }
                VmExit::Mmio { gpa, len, write } => {
                    let d = self.vcpu.mmio_data();
                    assert_eq!(d.len(), usize::from(*len));
                    if *write {
                        let mut b = [0u8; 8];
                        let n = d.len().min(8);
                        b[..n].copy_from_slice(&d[..n]);
                        let v = u64::from_le_bytes(b);
                        self.mmio_writes.push((*gpa, v, *len));
                        self.mmio.insert(*gpa, v);
                    } else {
                        self.mmio_reads.push((*gpa, *len));
                        let v = self.mmio.get(gpa).copied().unwrap_or(0);
                        let n = d.len().min(8);
                        d[..n].copy_from_slice(&v.to_le_bytes()[..n]);
                    }
                }
                _ => {}
            }
            if stop(&e) {
                return e;
            }
        }
        panic!("guest did not stop");
    }

    /// Values written to port `p`.
    pub fn port(&self, p: u16) -> Vec<u32> {
        self.out
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, v)| *v)
            .collect()
    }

    pub fn state(&mut self) -> VcpuState {
        self.vcpu.to_state()
    }
}

/// GDT: null, 64-bit code (0x08), data (0x10), 32-bit code (0x18), 16-bit code (0x20),
/// user data (0x2b), user 64-bit code (0x33), TSS (0x38, 16 bytes) at 0x3000.
pub fn setup_long_tables(mem: &GuestMemory) {
    let gdt: [u64; 7] = [
        0,
        0x00af_9b00_0000_ffff,
        0x00cf_9300_0000_ffff,
        0x00cf_9b00_0000_ffff,
        0x0000_9b00_0000_ffff,
        0x00cf_f300_0000_ffff,
        0x00af_fb00_0000_ffff,
    ];
    for (i, d) in gdt.iter().enumerate() {
        mem.write_le::<8>(0x1000 + i as u64 * 8, *d).unwrap();
    }
    // 64-bit TSS descriptor at 0x38: base 0x3000, limit 0x67, type 9.
    let base = 0x3000u64;
    let lo = 0x67 | ((base & 0xffffff) << 16) | (0x89u64 << 40) | ((base >> 24) << 56);
    mem.write_le::<8>(0x1038, lo).unwrap();
    mem.write_le::<8>(0x1040, 0).unwrap();
    // PML4 at 0x10000 -> PDPT at 0x11000 -> PDs at 0x12000.. (4 GiB of 2 MiB pages).
    mem.write_le::<8>(0x10000, 0x11000 | 7).unwrap();
    for g in 0..4u64 {
        mem.write_le::<8>(0x11000 + g * 8, (0x12000 + g * 0x1000) | 7)
            .unwrap();
        for i in 0..512u64 {
            let pa = (g << 30) | (i << 21);
            mem.write_le::<8>(0x12000 + g * 0x1000 + i * 8, pa | 0x87)
                .unwrap();
        }
    }
}

pub fn long_state(rip: u64) -> VcpuState {
    let mut s = VcpuState::reset();
    let code = Segment {
        selector: 8,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0xb | Segment::S | Segment::P | Segment::L | Segment::G,
    };
    let data = Segment {
        selector: 0x10,
        base: 0,
        limit: 0xffff_ffff,
        attr: 0x3 | Segment::S | Segment::P | Segment::DB | Segment::G,
    };
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = data;
    s.gs = data;
    s.tr = Segment {
        selector: 0x38,
        base: 0x3000,
        limit: 0x67,
        attr: 0xb | Segment::P,
    };
    s.gdtr.base = 0x1000;
    s.gdtr.limit = 0x47;
    s.idtr.base = 0x2000;
    s.idtr.limit = 0xfff;
    s.cr0 = 0x8000_0031 | (1 << 16);
    s.cr3 = 0x10000;
    s.cr4 = 0x20 | (1 << 9);
    s.efer = 0x500 | 1 | (1 << 11);
    s.rip = rip;
    s.gpr[4] = 0x80000;
    s
}
